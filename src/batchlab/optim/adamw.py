"""AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay, via ``optax.adamw``.

Update, with the scheduled learning rate ``α_t``, ``k = t + 1`` and the decay ``λ`` applied to the
weight tensors only (rank ≥ 2, see :mod:`batchlab.optim.decay`; biases are not decayed)::

    m' = β₁ m + (1 − β₁) g,          s' = β₂ s + (1 − β₂) g²
    θ' = θ − α_t · ( (m' / (1 − β₁ᵏ)) / (√(s' / (1 − β₂ᵏ)) + ε) + λ θ )

The decay is *decoupled* from the gradient (it never enters ``m`` or ``s``) and, as in optax and
PyTorch, multiplied by the scheduled learning rate.

Default search space: learning rate, ``1 − β₁`` and ``λ`` log-uniform; ``β₂`` and ``ε`` fixed.

Defaults on digits-cnn (target error ≤ 0.025, seeds 0 and 1): the target after 66, 92 steps at
B = 64 and 50, 58 at B = 1024; with ``+ema`` (decay 0.99) after 173, 164 and 139, 176.

Example:
    >>> from batchlab.optim import get_optimizer
    >>> get_optimizer("adamw").validate({})["weight_decay"]
    0.0001
"""

from __future__ import annotations

import optax

from batchlab.optim.base import HyperArrays
from batchlab.optim.decay import weight_decay, weight_tensors
from batchlab.optim.gradient import gradient_spec, learning_rate
from batchlab.optim.hyperparameters import BETA2, beta1, epsilon

__all__ = ["HYPERPARAMETERS", "SPEC", "transform"]

HYPERPARAMETERS = (
    learning_rate(1e-3, (1e-5, 1e-1)),
    beta1(),
    BETA2,
    epsilon(1e-8, (1e-10, 1e-3)),
    weight_decay(1e-4, (1e-6, 1.0)),
)


def transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """``optax.adamw(α_t, β₁, β₂, ε, λ)`` with the decay masked to the weight tensors."""
    return optax.adamw(
        hyper["learning_rate"], b1=hyper["beta1"], b2=hyper["beta2"], eps=hyper["epsilon"],
        weight_decay=hyper["weight_decay"], mask=weight_tensors,
    )


SPEC = gradient_spec("adamw", HYPERPARAMETERS, transform, "AdamW (Adam with decoupled weight decay)")
