"""The optimizer registry: a plain name → module table (the only dispatcher).

Adding an optimizer: one module defining ``SPEC`` (an :class:`~batchlab.optim.base.OptimizerSpec`)
and one line in :data:`_MODULES`.  Every entry also exists as ``"<name>+ema"``: the same optimizer
evaluated on an exponential moving average of its weights, with a tuned ``ema_decay``.
Modules are imported on first use, so listing names does not import kfac-jax.

Example:
    >>> from batchlab.optim.registry import get_optimizer, optimizer_names
    >>> optimizer_names()[:5]
    ('sgd', 'momentum', 'nesterov', 'adam', 'kfac')
    >>> get_optimizer("adam+ema").ema
    True
"""

from __future__ import annotations

import functools
import importlib

from batchlab.errors import InputError
from batchlab.optim.base import OptimizerSpec
from batchlab.optim.ema import ema_spec

__all__ = ["get_optimizer", "optimizer_names", "EMA_SUFFIX"]

EMA_SUFFIX = "+ema"

_MODULES = {
    "sgd": "batchlab.optim.sgd",
    "momentum": "batchlab.optim.momentum",
    "nesterov": "batchlab.optim.nesterov",
    "adam": "batchlab.optim.adam",
    "kfac": "batchlab.optim.kfac",
    "adamw": "batchlab.optim.adamw",
    "lion": "batchlab.optim.lion",
    "lamb": "batchlab.optim.lamb",
    "lars": "batchlab.optim.lars",
    "muon": "batchlab.optim.muon",
    "schedule-free-adamw": "batchlab.optim.schedule_free_adamw",
}


def optimizer_names() -> tuple[str, ...]:
    """Every registered name: the base optimizers, then their ``+ema`` variants."""
    return tuple(_MODULES) + tuple(name + EMA_SUFFIX for name in _MODULES)


@functools.cache
def get_optimizer(name: str) -> OptimizerSpec:
    """The registry entry called ``name``.

    Raises:
        InputError: unknown name (the message lists the valid ones).
    """
    base = name[: -len(EMA_SUFFIX)] if name.endswith(EMA_SUFFIX) else name
    if base not in _MODULES:
        raise InputError(f"unknown optimizer {name!r}; valid: {', '.join(optimizer_names())}")
    spec = importlib.import_module(_MODULES[base]).SPEC
    return ema_spec(spec) if name != base else spec
