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
from batchlab.optim.hyperparameters import BETA2, beta1, epsilon, learning_rate

__all__ = ["HYPERPARAMETERS", "SPEC", "transform"]

HYPERPARAMETERS = (
    learning_rate(1e-3, (1e-5, 1e-1)),
    beta1("decay of the first moment β₁ (Adam's momentum)"),
    BETA2,
    epsilon(1e-8, (1e-10, 1.0), tunable=True),
)


def transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """``scale_by_adam(β₁, β₂, ε)`` then ``scale(−α_t)``."""
    return optax.chain(
        optax.scale_by_adam(b1=hyper["beta1"], b2=hyper["beta2"], eps=hyper["epsilon"]),
        optax.scale(-hyper["learning_rate"]),
    )


SPEC = gradient_spec("adam", HYPERPARAMETERS, transform, "Adam with bias correction")
