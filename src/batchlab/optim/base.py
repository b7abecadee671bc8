"""Hyperparameter descriptions, validation and the interface every optimizer implements.

An optimizer in batchlab is an :class:`OptimizerSpec` (a registry entry: name, hyperparameters with
defaults and default search space, and a ``bind`` function) that, given a model and the optimizer's
*static* choices (for example the learning-rate schedule's shape), returns a :class:`Stepper`: a pair
of pure functions ``init`` and ``step`` in the optax style.

Hyperparameter **values** never enter compiled code as constants: ``init`` stores them as float32
arrays inside the optimizer state, and ``step`` reads them from there.  So one compiled training step
serves every trial of a (workload, optimizer, static choices, batch size); only a different *choice*
hyperparameter (a string such as ``lr_schedule``) needs a new compilation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Literal, Mapping, NamedTuple, Protocol

import jax

from batchlab.errors import InputError

__all__ = [
    "Interval",
    "Hyperparameter",
    "HyperArrays",
    "Model",
    "Stepper",
    "OptimizerSpec",
    "validate",
]

Scaling = Literal["log", "linear", "one_minus_log", "choice"]
Params = Any
Batch = Any
State = Any
HyperArrays = Mapping[str, jax.Array]  # hyperparameter name -> float32 array (traced inside jit)
Value = float | str


@dataclasses.dataclass(frozen=True)
class Interval:
    """The set of valid values of a numeric hyperparameter: ``low ≤/< x ≤/< high``."""

    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = True

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the interval (NaN never does)."""
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return bool(above and below)

    def __str__(self) -> str:
        left = "[" if self.low_closed else "("
        right = "]" if self.high_closed else ")"
        return f"{left}{self.low:g}, {self.high:g}{right}"


POSITIVE = Interval(0.0, math.inf, low_closed=False, high_closed=False)
UNIT_OPEN_RIGHT = Interval(0.0, 1.0, low_closed=True, high_closed=False)


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: its default, valid values and default search space.

    Scalings of the search space ``[low, high]`` (a unit value ``u ∈ [0, 1]`` maps to a value):

    * ``log``: ``x = low · (high / low)^u`` (log-uniform),
    * ``linear``: ``x = low + u (high − low)``,
    * ``one_minus_log``: ``1 − x`` is log-uniform between ``1 − high`` and ``1 − low``
      (momentum-like values close to 1),
    * ``choice``: a string from :attr:`choices`; static (changing it recompiles the step).

    Attributes:
        name: spelled-out name, e.g. ``"learning_rate"``.
        default: value used when a run does not set it.
        scaling: how the search space is sampled (see above).
        search: ``(low, high)`` bounds of the default search space, or ``None`` for choices.
        valid: the values accepted at all (an :class:`Interval`), or the tuple of allowed strings.
        description: one line for ``batchlab list`` and docs.
        tunable: whether the hyperparameter is in the optimizer's default search space.
    """

    name: str
    default: Value
    scaling: Scaling
    search: tuple[float, float] | None
    valid: Interval | tuple[str, ...]
    description: str
    tunable: bool = True

    @property
    def is_choice(self) -> bool:
        """Whether this is a static string choice rather than a traced number."""
        return self.scaling == "choice"

    def from_unit(self, u: float) -> float:
        """Map ``u ∈ [0, 1]`` to a value of the search space (see the class docstring).

        Example:
            >>> lr = Hyperparameter("learning_rate", 0.1, "log", (1e-3, 1.0), POSITIVE, "step size")
            >>> round(lr.from_unit(0.5), 6)
            0.031623
        """
        if self.search is None:
            raise InputError(f"{self.name} is a choice; it has no numeric search space")
        low, high = self.search
        if self.scaling == "log":
            return low * (high / low) ** u
        if self.scaling == "one_minus_log":
            return 1.0 - (1.0 - low) * ((1.0 - high) / (1.0 - low)) ** u
        return low + u * (high - low)

    def check(self, value: Any) -> Value:
        """Return ``value`` converted (``float`` or ``str``) or raise :class:`InputError`."""
        if self.is_choice:
            if not isinstance(value, str) or value not in self.valid:
                allowed = ", ".join(self.valid)  # type: ignore[arg-type]
                raise InputError(f"{self.name} must be one of {allowed}; got {value!r}")
            return value
        if isinstance(value, (bool, str)) or not hasattr(value, "__float__"):
            raise InputError(f"{self.name} must be a number, got {value!r}")
        number = float(value)
        assert isinstance(self.valid, Interval)
        if not self.valid.contains(number):
            raise InputError(f"{self.name} must be in {self.valid}, got {number:g}")
        return number


def validate(
    hyperparameters: tuple[Hyperparameter, ...], values: Mapping[str, Any], *, owner: str
) -> dict[str, Value]:
    """Check ``values`` against ``hyperparameters`` and fill in defaults.

    Args:
        hyperparameters: the declared hyperparameters.
        values: user-supplied name → value; may be partial.
        owner: what the hyperparameters belong to, for messages (e.g. ``"optimizer 'adam'"``).

    Returns:
        A new dict with every declared name, values converted to ``float`` or ``str``.

    Raises:
        InputError: an unknown name (the message lists the valid ones) or an invalid value.
    """
    known = {hp.name: hp for hp in hyperparameters}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(
            f"unknown hyperparameter {unknown[0]!r} for {owner}; valid: {', '.join(known)}"
        )
    return {name: hp.check(values.get(name, hp.default)) for name, hp in known.items()}


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
        from batchlab.optim.schedules import unused_by  # local: schedules imports this module

        skip = set(fixed or {}) | unused_by(str(values.get("lr_schedule", "constant")))
        return tuple(
            hp for hp in self.hyperparameters if hp.tunable and not hp.is_choice and hp.name not in skip
        )
