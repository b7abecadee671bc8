"""Heavy-ball momentum in velocity form (the NQM engine's convention).

Update, with the scheduled learning rate ``α_t`` and momentum ``β``::

    v' = β v − α_t g
    θ' = θ + v'

Built as ``chain(scale(−α_t), trace(β))``: optax's trace of the already-scaled gradient is exactly the
velocity ``v``.  For a constant rate this equals the textbook ``trace(β)`` followed by ``scale(−α)``
(with ``v = −α · trace``); with a schedule only the velocity form matches the NQM engine, whose
per-direction state is ``(θ, v)`` with ``M = [[1 − αh, β], [−αh, β]]``.

Example:
    >>> from batchlab.optim import get_optimizer
    >>> get_optimizer("momentum").validate({"momentum": 0.99})["momentum"]
    0.99
"""

from __future__ import annotations

import optax

from batchlab.optim.base import HyperArrays
from batchlab.optim.gradient import gradient_spec
from batchlab.optim.hyperparameters import MOMENTUM, learning_rate

__all__ = ["HYPERPARAMETERS", "MOMENTUM", "SPEC", "transform"]

HYPERPARAMETERS = (learning_rate(0.01, (1e-4, 3.0)), MOMENTUM)


def transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """``v' = βv − α_t g``; the update is ``v'``."""
    return optax.chain(optax.scale(-hyper["learning_rate"]), optax.trace(decay=hyper["momentum"]))


SPEC = gradient_spec("momentum", HYPERPARAMETERS, transform, "heavy-ball momentum (velocity form)")
