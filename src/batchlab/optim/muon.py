"""Muon (Jordan et al. 2024): momentum orthogonalised by Newton–Schulz, via ``optax.contrib.muon``.

Weight tensors (rank ≥ 2) are updated by Muon; every other parameter (biases) by its Adam fallback
(optax's ``adamw`` with no decay, Nesterov, ``β₁ = 0.9``, ``β₂ = 0.999``).  For a weight ``W`` viewed as
a matrix of shape ``(fan_in, fan_out)``, with ``k = t + 1``::

    m' = β m + (1 − β) g
    M  = β m̂' + (1 − β) ĝ                (Nesterov; m̂', ĝ bias-corrected as in optax)
    O  ≈ U Vᵀ for M = U S Vᵀ               (5 quintic Newton–Schulz steps on M / ‖M‖_F)
    W' = W − α_t · √max(1, fan_out / fan_in) · O

and the fallback uses the learning rate ``adam_learning_rate_ratio · α_t``.

**Convolution kernels.**  By default optax sends every parameter that is not 2-D to the Adam
fallback, so a 4-D HWIO conv kernel would not be Muon's.  batchlab instead passes
``muon_weight_dimension_numbers`` so that a kernel of any rank ≥ 2 is orthogonalised as the matrix
``(H·W·I, O)`` — its fan-in × fan-out view, the same convention as the layers' initialisation
(:mod:`batchlab.workloads.layers`) and the usual way Muon is applied to CNNs (each filter flattened).
On digits-cnn, optax's default split (conv kernels by Adam) needed 106 and 79 steps at B = 64 and
29 and 32 at B = 1024 (seeds 0, 1) against the numbers below: no clear winner on this evidence.
Dense matrices (including embeddings and the output layer) are Muon's, as in optax's default.

Default search space: learning rate, ``1 − β`` and the fallback's learning-rate ratio log-uniform.

Defaults on digits-cnn (target error ≤ 0.025, seeds 0 and 1): the target after 41, 67 steps at
B = 64 and 34, 40 at B = 1024; with ``+ema`` (decay 0.99) after 101, 96 and 89, 103.

Example:
    >>> from batchlab.optim import get_optimizer
    >>> get_optimizer("muon").validate({})["momentum"]
    0.95
"""

from __future__ import annotations

from typing import Any

import jax
import optax
import optax.contrib

from batchlab.optim.base import POSITIVE, UNIT_OPEN_RIGHT, HyperArrays, Hyperparameter
from batchlab.optim.gradient import gradient_spec, learning_rate

__all__ = ["HYPERPARAMETERS", "SPEC", "matrix_views", "transform"]

HYPERPARAMETERS = (
    learning_rate(0.02, (1e-4, 1.0)),
    Hyperparameter(
        "momentum", 0.95, "one_minus_log", (0.5, 0.999), UNIT_OPEN_RIGHT,
        "Muon's momentum β in [0, 1); searched with 1 − β log-uniform",
    ),
    Hyperparameter(
        "adam_learning_rate_ratio", 1.0, "log", (1e-2, 10.0), POSITIVE,
        "learning rate of the Adam fallback (biases) as a multiple of Muon's",
    ),
)


def matrix_views(params: Any) -> Any:
    """Per parameter: ``MuonDimensionNumbers`` (all axes but the last are fan-in) or ``None``.

    Example:
        >>> import jax.numpy as jnp
        >>> views = matrix_views({"w": jnp.zeros((3, 3, 1, 16)), "b": jnp.zeros(16)})
        >>> views["w"].reduction_axis, views["w"].output_axis, views["b"]
        ((0, 1, 2), 3, None)
    """

    def view(p):
        if p.ndim < 2:
            return None
        return optax.contrib.MuonDimensionNumbers(tuple(range(p.ndim - 1)), p.ndim - 1)

    return jax.tree.map(view, params)


def transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """``optax.contrib.muon`` with the fallback's rate tied to Muon's and conv kernels as matrices."""
    rate = hyper["learning_rate"]
    return optax.contrib.muon(
        rate, beta=hyper["momentum"], adam_learning_rate=rate * hyper["adam_learning_rate_ratio"],
        muon_weight_dimension_numbers=matrix_views,
    )


SPEC = gradient_spec("muon", HYPERPARAMETERS, transform, "Muon on weight matrices, Adam on biases")
