"""The interface every optimizer implements: the registry entry and the bound pair of pure functions.

An optimizer in batchlab is an :class:`OptimizerSpec` (a registry entry: name, hyperparameters with
defaults and default search space, and a ``bind`` function) that, given a model and the optimizer's
*static* choices (for example the learning-rate schedule's shape), returns a :class:`Stepper`: a pair
of pure functions ``init`` and ``step`` in the optax style.

Hyperparameter **values** never enter compiled code as constants: ``init`` stores them as float32
arrays inside the optimizer state, and ``step`` reads them from there.  So one compiled training step
serves every trial of a (workload, optimizer, static choices, batch size); only a different *choice*
hyperparameter (a string such as ``lr_schedule``) needs a new compilation.

The base knows no specific transform: hyperparameter descriptions and the declarations shared by
several optimizers live in :mod:`batchlab.optim.hyperparameters` (re-exported here).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Protocol

import jax

from batchlab.errors import InputError
from batchlab.optim.hyperparameters import (
    POSITIVE,
    UNIT_OPEN_RIGHT,
    Hyperparameter,
    Interval,
    Value,
    unused_by,
    validate,
)

__all__ = [
    "POSITIVE",
    "UNIT_OPEN_RIGHT",
    "Interval",
    "Hyperparameter",
    "HyperArrays",
    "Model",
    "Stepper",
    "OptimizerSpec",
    "validate",
]

Params = Any
Batch = Any
State = Any
HyperArrays = Mapping[str, jax.Array]  # hyperparameter name -> float32 array (traced inside jit)


class Model(Protocol):
    """What an optimizer needs from a workload (every :class:`~batchlab.workloads.base.Workload`)."""

    loss_kind: str

    def loss(self, params: Params, batch: Batch) -> jax.Array: ...

    def apply(self, params: Params, inputs: jax.Array) -> jax.Array: ...


class Stepper(NamedTuple):
    """An optimizer bound to a model: pure, jittable functions (optax style).

    Attributes:
        init: ``init(params, hyper, *, batch, key) -> state``.  ``hyper`` maps names to float32
            arrays (see :func:`batchlab.optim.prepare`); the state keeps them.  ``batch`` is an
            example batch (K-FAC traces the model with it).
        step: ``step(params, state, batch, *, key) -> (params, state, loss)``: one update; ``loss``
            is the training loss of ``batch`` at the parameters *before* the update.
        evaluation_params: ``evaluation_params(params, state) -> params`` to evaluate (the raw
            parameters, or the weight average for EMA variants).
        traces_model: ``init`` needs a real example ``batch`` and must run outside ``jit``
            (K-FAC traces the model there); others accept ``batch=None``.
    """

    init: Callable[..., State]
    step: Callable[..., tuple[Params, State, jax.Array]]
    evaluation_params: Callable[[Params, State], Params]
    traces_model: bool = False


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """A registry entry.

    Attributes:
        name: registry name, e.g. ``"momentum"`` or ``"adam+ema"``.
        hyperparameters: every hyperparameter it accepts (its own, the learning-rate schedule's,
            and ``ema_decay`` for EMA variants), with defaults and default search space.
        bind: ``bind(model, static) -> Stepper``, where ``static`` is the sorted tuple of
            ``(name, value)`` pairs of its choice hyperparameters.
        description: one line for ``batchlab list``.
        ema: whether evaluation uses an exponential moving average of the weights.
    """

    name: str
    hyperparameters: tuple[Hyperparameter, ...]
    bind: Callable[[Model, tuple[tuple[str, str], ...]], Stepper]
    description: str
    ema: bool = False

    def hyperparameter(self, name: str) -> Hyperparameter:
        """The declared hyperparameter called ``name``; InputError if there is none."""
        for hp in self.hyperparameters:
            if hp.name == name:
                return hp
        valid = ", ".join(hp.name for hp in self.hyperparameters)
        raise InputError(f"unknown hyperparameter {name!r} for optimizer {self.name!r}; valid: {valid}")

    def validate(self, values: Mapping[str, Any]) -> dict[str, Value]:
        """Validate ``values`` and fill defaults (see :func:`validate`)."""
        return validate(self.hyperparameters, values, owner=f"optimizer {self.name!r}")

    def search_space(self, fixed: Mapping[str, Any] | None = None) -> tuple[Hyperparameter, ...]:
        """The default search space given some fixed values.

        Tunable numeric hyperparameters, minus those in ``fixed`` and minus schedule parameters the
        chosen ``lr_schedule`` does not use.
        """
        values = self.validate(dict(fixed or {}))
        skip = set(fixed or {}) | unused_by(str(values.get("lr_schedule", "constant")))
        return tuple(
            hp for hp in self.hyperparameters if hp.tunable and not hp.is_choice and hp.name not in skip
        )
