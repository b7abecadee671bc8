"""Adam (Kingma & Ba 2015) with bias correction, via ``optax.scale_by_adam``.

Update, with the scheduled learning rate ``α_t`` and ``k = t + 1``::

    m' = β₁ m + (1 − β₁) g,          s' = β₂ s + (1 − β₂) g²
    θ' = θ − α_t · (m' / (1 − β₁ᵏ)) / (√(s' / (1 − β₂ᵏ)) + ε)

Default search space: learning rate log-uniform, ``1 − β₁`` log-uniform, ε log-uniform (the paper
tunes Adam's ε); ``β₂`` is fixed at its default unless a study overrides it.

Example:
    >>> from batchlab.optim import get_optimizer
    >>> get_optimizer("adam").validate({})["epsilon"]
    1e-08
"""

from __future__ import annotations

import optax

from batchlab.optim.base import HyperArrays
from batchlab.optim.gradient import gradient_spec
from batchlab.optim.hyperparameters import POSITIVE, UNIT_OPEN_RIGHT, Hyperparameter, learning_rate

__all__ = ["HYPERPARAMETERS", "SPEC", "transform"]

HYPERPARAMETERS = (
    learning_rate(1e-3, (1e-5, 1e-1)),
    Hyperparameter(
        "beta1", 0.9, "one_minus_log", (0.5, 0.999), UNIT_OPEN_RIGHT,
        "decay of the first moment β₁ (Adam's momentum); searched with 1 − β₁ log-uniform",
    ),
    Hyperparameter(
        "beta2", 0.999, "one_minus_log", (0.9, 0.9999), UNIT_OPEN_RIGHT,
        "decay of the second moment β₂", tunable=False,
    ),
    Hyperparameter("epsilon", 1e-8, "log", (1e-10, 1.0), POSITIVE, "denominator offset ε (> 0)"),
)


def transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """``scale_by_adam(β₁, β₂, ε)`` then ``scale(−α_t)``."""
    return optax.chain(
        optax.scale_by_adam(b1=hyper["beta1"], b2=hyper["beta2"], eps=hyper["epsilon"]),
        optax.scale(-hyper["learning_rate"]),
    )


SPEC = gradient_spec("adam", HYPERPARAMETERS, transform, "Adam with bias correction")
