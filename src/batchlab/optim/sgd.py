"""Plain stochastic gradient descent.

Update, with the scheduled learning rate ``α_t``::

    θ' = θ − α_t g

On the noisy quadratic model this is the NQM's SGD dynamics ``θ' = (1 − αh) θ − α ε`` exactly.

Example:
    >>> from batchlab.optim import get_optimizer
    >>> get_optimizer("sgd").validate({"learning_rate": 0.5})["learning_rate"]
    0.5
"""

from __future__ import annotations

import optax

from batchlab.optim.base import HyperArrays
from batchlab.optim.gradient import gradient_spec
from batchlab.optim.hyperparameters import learning_rate

__all__ = ["HYPERPARAMETERS", "SPEC", "transform"]

HYPERPARAMETERS = (learning_rate(0.1, (1e-3, 10.0)),)


def transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """``u = −α_t g``."""
    return optax.scale(-hyper["learning_rate"])


SPEC = gradient_spec("sgd", HYPERPARAMETERS, transform, "stochastic gradient descent")
