"""LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning"), via ``optax.lamb``.

Adam's direction plus decoupled weight decay, rescaled per parameter tensor by a trust ratio so
that each layer moves by about ``α_t ‖θ‖``.  With ``k = t + 1`` and the decay ``λ`` applied to the
weight tensors only (rank ≥ 2; see :mod:`batchlab.optim.decay`)::

    m' = β₁ m + (1 − β₁) g,          s' = β₂ s + (1 − β₂) g²
    r  = (m' / (1 − β₁ᵏ)) / (√(s' / (1 − β₂ᵏ)) + ε) + λ θ
    θ' = θ − α_t · φ · r,      φ = ‖θ‖ / ‖r‖  (per tensor; φ = 1 if ‖θ‖ = 0 or ‖r‖ = 0)

The trust ratio applies to every tensor, biases included (optax's default): a zero-initialised bias
takes one plain step ``α_t r`` and is then scaled by its own norm.

Default search space: learning rate, ``1 − β₁`` and ``λ`` log-uniform; ``β₂`` and ``ε`` fixed.

Defaults on digits-cnn (target error ≤ 0.025, seeds 0 and 1): the target after 109, 85 steps at
B = 64 and 40, 60 at B = 1024; with ``+ema`` (decay 0.99) after 118, 133 and 94, 117.

Example:
    >>> from batchlab.optim import get_optimizer
    >>> get_optimizer("lamb").validate({})["epsilon"]
    1e-06
"""

from __future__ import annotations

import optax

from batchlab.optim.base import HyperArrays
from batchlab.optim.decay import weight_decay, weight_tensors
from batchlab.optim.gradient import gradient_spec, learning_rate
from batchlab.optim.hyperparameters import BETA2, beta1, epsilon

__all__ = ["HYPERPARAMETERS", "SPEC", "transform"]

HYPERPARAMETERS = (
    learning_rate(1e-2, (1e-4, 1.0)),
    beta1(),
    BETA2,
    epsilon(1e-6, (1e-10, 1e-3)),
    weight_decay(1e-4, (1e-6, 1.0)),
)


def transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """``optax.lamb(α_t, β₁, β₂, ε, λ)`` with the decay masked to the weight tensors."""
    return optax.lamb(
        hyper["learning_rate"], b1=hyper["beta1"], b2=hyper["beta2"], eps=hyper["epsilon"],
        weight_decay=hyper["weight_decay"], mask=weight_tensors,
    )


SPEC = gradient_spec("lamb", HYPERPARAMETERS, transform, "LAMB (Adam with layer-wise trust ratio)")
