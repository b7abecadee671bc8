"""Nesterov momentum in optax's form (the NQM engine's convention).

The NQM writes Nesterov as a look-ahead recursion on ``(θ, v)``::

    v' = β v − α_t g(θ + β v),   θ' = θ + v'

Optax (and batchlab) keep the look-ahead point ``φ = θ + β v`` as the parameters instead; then::

    v' = β v − α_t g(φ)
    φ' = φ + β v' − α_t g(φ)

which is ``chain(scale(−α_t), trace(β, nesterov=True))`` (for a constant rate, equal to
``trace(β, nesterov=True)`` followed by ``scale(−α)``).  Per NQM direction with ``x = αh`` the state
``(φ, v)`` evolves by ``M = [[1 − (1 + β) x, β²], [−x, β]]``.  The NQM engine measures Nesterov's risk
at ``φ``, i.e. at these parameters.

Example:
    >>> from batchlab.optim import get_optimizer
    >>> sorted(hp.name for hp in get_optimizer("nesterov").search_space())
    ['learning_rate', 'momentum']
"""

from __future__ import annotations

import optax

from batchlab.optim.base import HyperArrays
from batchlab.optim.gradient import gradient_spec
from batchlab.optim.hyperparameters import MOMENTUM, learning_rate

__all__ = ["HYPERPARAMETERS", "SPEC", "transform"]

HYPERPARAMETERS = (learning_rate(0.01, (1e-4, 3.0)), MOMENTUM)


def transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """``v' = βv − α_t g``; the update is ``βv' − α_t g``."""
    return optax.chain(
        optax.scale(-hyper["learning_rate"]),
        optax.trace(decay=hyper["momentum"], nesterov=True),
    )


SPEC = gradient_spec("nesterov", HYPERPARAMETERS, transform, "Nesterov momentum (optax form)")
