"""The optimizer registry: a plain name → module table (the only dispatcher).

Adding an optimizer: one module defining ``SPEC`` (an :class:`~batchlab.optim.base.OptimizerSpec`)
and one line in :data:`_MODULES`.  Every entry also exists as ``"<name>+ema"``: the same optimizer
evaluated on an exponential moving average of its weights, with a tuned ``ema_decay``.
Modules are imported on first use, so listing names does not import kfac-jax.

Wherever an optimizer name is accepted, an import reference to user code is accepted too:
``package.module:name`` or ``path/to/file.py:name`` (see :mod:`batchlab.userref`), naming an
:class:`~batchlab.optim.base.OptimizerSpec` — exactly what a built-in module's ``SPEC`` is; the
simplest is :func:`batchlab.optim.gradient.gradient_spec` over an optax factory and declared
:class:`~batchlab.optim.hyperparameters.Hyperparameter` s.  The entry is renamed to the reference
(so it is distinct from every other optimizer), ``REF+ema`` wraps it like a built-in, and the
SHA-256 of its file (:func:`optimizer_code`) enters every trial id.

Example:
    >>> from batchlab.optim.registry import get_optimizer, optimizer_names
    >>> optimizer_names()[:5]
    ('sgd', 'momentum', 'nesterov', 'adam', 'kfac')
    >>> get_optimizer("adam+ema").ema
    True
"""

from __future__ import annotations

import dataclasses
import functools
import importlib

from batchlab.errors import InputError
from batchlab.optim.base import OptimizerSpec
from batchlab.optim.ema import ema_spec
from batchlab.optim.hyperparameters import EMA_DECAY, Hyperparameter
from batchlab.userref import code_digest, is_reference, resolve

__all__ = ["get_optimizer", "optimizer_code", "optimizer_names", "EMA_SUFFIX"]

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
    """The registry entry called ``name``, or named by an import reference (``REF`` or ``REF+ema``).

    Raises:
        InputError: unknown name (the message lists the valid ones); a reference that cannot be
            imported or does not name an :class:`~batchlab.optim.base.OptimizerSpec`.
    """
    base = _base(name)
    if is_reference(base):
        spec = _user_spec(base)
    elif base in _MODULES:
        spec = importlib.import_module(_MODULES[base]).SPEC
    else:
        raise InputError(f"unknown optimizer {name!r}; valid: {', '.join(optimizer_names())} "
                         "or a reference package.module:name / path/to/file.py:name")
    return ema_spec(spec) if name != base else spec


def _base(name: str) -> str:
    """``name`` without its ``+ema`` suffix (split first: a reference may contain anything else)."""
    return name[: -len(EMA_SUFFIX)] if name.endswith(EMA_SUFFIX) else name


def _user_spec(ref: str) -> OptimizerSpec:
    value = resolve(ref).value
    if not isinstance(value, OptimizerSpec):
        raise InputError(f"optimizer {ref!r} is not a batchlab.optim.OptimizerSpec (got {type(value).__name__}); "
                         "build one with batchlab.optim.gradient_spec(name, hyperparameters, transform, description)")
    if value.ema:
        raise InputError(f"optimizer {ref!r} is already an EMA variant; name the base optimizer and add {EMA_SUFFIX}")
    if not callable(value.bind):
        raise InputError(f"optimizer {ref!r}: bind is not callable")
    wrong = [hp for hp in value.hyperparameters if not isinstance(hp, Hyperparameter)]
    if wrong:
        raise InputError(f"optimizer {ref!r}: hyperparameters must be batchlab.optim.Hyperparameter, "
                         f"got {type(wrong[0]).__name__}")
    if any(hp.name == EMA_DECAY.name for hp in value.hyperparameters):
        raise InputError(f"optimizer {ref!r} declares {EMA_DECAY.name}; it is added by {EMA_SUFFIX}")
    return dataclasses.replace(value, name=ref)


def optimizer_code(name: str) -> str | None:
    """The code identity of an import reference (12 hex digits of its file's SHA-256, ``+ema`` or
    not); ``None`` for a registry name.  Trial ids include it, so changed user code makes new trials."""
    base = _base(name)
    if not is_reference(base):
        return None
    get_optimizer(name)  # checks the object
    return code_digest(base)
