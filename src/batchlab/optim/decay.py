"""Decoupled weight decay: its hyperparameter, and the tensors it (and trust ratios) apply to.

batchlab's layers store a weight as ``w`` with shape ``(fan_in, fan_out)`` (dense) or HWIO (conv):
every axis but the last is fan-in (see :mod:`batchlab.workloads.layers`); biases are vectors.
Weight decay is applied to the weight tensors only (rank ≥ 2), the usual practice for AdamW, Lion,
LAMB and LARS.

Example:
    >>> import jax.numpy as jnp
    >>> weight_tensors({"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)})
    {'b': False, 'w': True}
"""

from __future__ import annotations

import math
from typing import Any

import jax

from batchlab.optim.base import Hyperparameter, Interval

__all__ = ["weight_decay", "weight_tensors"]


def weight_decay(default: float, search: tuple[float, float]) -> Hyperparameter:
    """The ``weight_decay`` hyperparameter λ ≥ 0 (log-uniform search space)."""
    return Hyperparameter(
        "weight_decay", default, "log", search, Interval(0.0, math.inf, high_closed=False),
        "decoupled weight decay λ ≥ 0 of the weight tensors, multiplied by the learning rate",
    )


def weight_tensors(params: Any) -> Any:
    """A tree of booleans: ``True`` for parameters of rank ≥ 2 (kernels), ``False`` for biases."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)
