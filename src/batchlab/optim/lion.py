"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), via ``optax.lion``.

Update, with the scheduled learning rate ``α_t`` and the decay ``λ`` applied to the weight tensors
only (rank ≥ 2; see :mod:`batchlab.optim.decay`)::

    u  = sign(β₁ m + (1 − β₁) g)            (elementwise; sign(0) = 0)
    m' = β₂ m + (1 − β₂) g
    θ' = θ − α_t (u + λ θ)

Every coordinate moves by ±α_t, so Lion's learning rate is typically 3–10× smaller than AdamW's
and its weight decay 3–10× larger (the paper's advice).

Default search space: learning rate, ``1 − β₁``, ``1 − β₂`` and ``λ`` log-uniform.

Defaults on digits-cnn (target error ≤ 0.025, seeds 0 and 1): the target after 90, 88 steps at
B = 64 and 41, 106 at B = 1024; with ``+ema`` (decay 0.99) after 94, 198 and 123, 134.

Example:
    >>> from batchlab.optim import get_optimizer
    >>> get_optimizer("lion").validate({})["beta2"]
    0.99
"""

from __future__ import annotations

import optax

from batchlab.optim.base import UNIT_OPEN_RIGHT, HyperArrays, Hyperparameter
from batchlab.optim.decay import weight_decay, weight_tensors
from batchlab.optim.gradient import gradient_spec, learning_rate

__all__ = ["HYPERPARAMETERS", "SPEC", "transform"]

HYPERPARAMETERS = (
    learning_rate(1e-3, (1e-5, 1e-1)),
    Hyperparameter(
        "beta1", 0.9, "one_minus_log", (0.5, 0.99), UNIT_OPEN_RIGHT,
        "interpolation β₁ between momentum and gradient inside the sign; searched with 1 − β₁ log-uniform",
    ),
    Hyperparameter(
        "beta2", 0.99, "one_minus_log", (0.9, 0.9999), UNIT_OPEN_RIGHT,
        "decay β₂ of the momentum m; searched with 1 − β₂ log-uniform",
    ),
    weight_decay(1e-3, (1e-5, 10.0)),
)


def transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """``optax.lion(α_t, β₁, β₂, λ)`` with the decay masked to the weight tensors."""
    return optax.lion(
        hyper["learning_rate"], b1=hyper["beta1"], b2=hyper["beta2"],
        weight_decay=hyper["weight_decay"], mask=weight_tensors,
    )


SPEC = gradient_spec("lion", HYPERPARAMETERS, transform, "Lion (sign of interpolated momentum)")
