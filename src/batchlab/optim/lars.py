"""LARS (You et al. 2017, "Large Batch Training of Convolutional Networks"), via ``optax.lars``.

Heavy-ball momentum in velocity form (as :mod:`batchlab.optim.momentum`) on the weight-decayed
gradient rescaled per parameter tensor by a trust ratio.  With the decay ``λ`` applied to the weight
tensors only (rank ≥ 2; see :mod:`batchlab.optim.decay`) and the trust coefficient ``η``::

    r  = g + λ θ
    φ  = η ‖θ‖ / ‖r‖             (per tensor; φ = 1 if ‖θ‖ = 0 or ‖r‖ = 0)
    v' = β v − α_t φ r
    θ' = θ + v'

The trust ratio applies to every tensor, biases included (optax's default): a zero-initialised bias
takes one plain step ``α_t r`` and is then scaled by its own norm.  A weight tensor's step is about
``α_t η ‖θ‖``, so LARS's learning rates are large (``η = 10⁻³``).

Default search space: learning rate, ``1 − β`` and ``λ`` log-uniform; ``η`` fixed (with the trust
ratio on every tensor it only rescales the learning rate).

Defaults on digits-cnn (target error ≤ 0.025, seeds 0 and 1): the target after 134, 93 steps at
B = 64 and 46, 40 at B = 1024; with ``+ema`` (decay 0.99) after 223, 163 and 129, 145.
(Learning rate 1: 165, 91 at B = 64; 0.3 and 3: 240 and 195 with seed 0.)

Example:
    >>> from batchlab.optim import get_optimizer
    >>> get_optimizer("lars").validate({})["trust_coefficient"]
    0.001
"""

from __future__ import annotations

import optax

from batchlab.optim.base import POSITIVE, HyperArrays, Hyperparameter
from batchlab.optim.decay import weight_decay, weight_tensors
from batchlab.optim.gradient import gradient_spec, learning_rate
from batchlab.optim.momentum import MOMENTUM

__all__ = ["HYPERPARAMETERS", "SPEC", "transform"]

HYPERPARAMETERS = (
    learning_rate(2.0, (1e-2, 100.0)),
    MOMENTUM,
    weight_decay(1e-4, (1e-6, 1e-1)),
    Hyperparameter(
        "trust_coefficient", 1e-3, "log", (1e-4, 1e-1), POSITIVE,
        "trust coefficient η (> 0): a tensor's step is about α η ‖θ‖", tunable=False,
    ),
)


def transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """``optax.lars(α_t, λ, η, β)`` with the decay masked to the weight tensors."""
    return optax.lars(
        hyper["learning_rate"], weight_decay=hyper["weight_decay"], weight_decay_mask=weight_tensors,
        trust_coefficient=hyper["trust_coefficient"], momentum=hyper["momentum"],
    )


SPEC = gradient_spec("lars", HYPERPARAMETERS, transform, "LARS (momentum with layer-wise trust ratio)")
