"""Hyperparameter declarations: the description type, search-range scaling and the shared entries.

Every optimizer module and :mod:`batchlab.optim.base` import this module; it imports no optimizer,
no transform and no JAX.  It holds

* :class:`Interval` and :class:`Hyperparameter` (default, valid values, default search space),
  and :func:`validate`;
* the one implementation of search-range scaling, :func:`unit_to_value` and its inverse
  :func:`value_to_unit` (also used by :class:`batchlab.study.spec.SearchDim`);
* the declarations several optimizers share: :func:`learning_rate`, :data:`MOMENTUM`,
  :data:`EMA_DECAY` and the learning-rate schedule's :data:`SCHEDULE_HYPERPARAMETERS`.

Scalings of a search range ``[low, high]`` (a unit value ``u ∈ [0, 1]`` maps to a value):

* ``log``: ``x = low · (high / low)^u`` (log-uniform),
* ``linear``: ``x = low + u (high − low)``,
* ``one_minus_log``: ``1 − x`` is log-uniform between ``1 − high`` and ``1 − low``, i.e.
  ``x = 1 − (1 − low) ((1 − high) / (1 − low))^u`` (momentum-like values close to 1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Mapping

from batchlab.errors import InputError

__all__ = [
    "BETA2",
    "EMA_DECAY",
    "Hyperparameter",
    "Interval",
    "MOMENTUM",
    "POSITIVE",
    "SCALINGS",
    "SCHEDULES",
    "SCHEDULE_HYPERPARAMETERS",
    "UNIT_OPEN_RIGHT",
    "beta1",
    "epsilon",
    "learning_rate",
    "unit_to_value",
    "unused_by",
    "validate",
    "value_to_unit",
]

Scaling = Literal["log", "linear", "one_minus_log", "choice"]
Value = float | str

SCALINGS = ("log", "linear", "one_minus_log")  # the numeric scalings (``choice`` has no range)


def unit_to_value(u: float, low: float, high: float, scaling: str) -> float:
    """The value at unit coordinate ``u`` of the range ``[low, high]`` (see the module docstring).

    Any scaling other than ``log`` and ``one_minus_log`` is linear.  ``u`` is used as given (a
    NumPy scalar stays one).

    Example:
        >>> round(unit_to_value(0.5, 1e-3, 1.0, "log"), 6)
        0.031623
    """
    if scaling == "log":
        return low * (high / low) ** u
    if scaling == "one_minus_log":
        return 1.0 - (1.0 - low) * ((1.0 - high) / (1.0 - low)) ** u
    return low + u * (high - low)


def value_to_unit(value: float, low: float, high: float, scaling: str) -> float:
    """The unit coordinate of ``value`` in ``[low, high]``: the inverse of :func:`unit_to_value`.

    Not clipped: values outside the range give coordinates outside ``[0, 1]``.

    Example:
        >>> value_to_unit(0.1, 1e-3, 10.0, "log")
        0.5
    """
    if scaling == "log":
        return math.log(value / low) / math.log(high / low)
    if scaling == "one_minus_log":
        return math.log((1.0 - value) / (1.0 - low)) / math.log((1.0 - high) / (1.0 - low))
    return (value - low) / (high - low)


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

    The search space ``[low, high]`` is sampled with :attr:`scaling` (see the module docstring);
    ``choice`` hyperparameters are a string from :attr:`valid`, static (changing one recompiles the
    training step).

    Attributes:
        name: spelled-out name, e.g. ``"learning_rate"``.
        default: value used when a run does not set it.
        scaling: ``log``, ``linear``, ``one_minus_log`` or ``choice``.
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
        """Map ``u ∈ [0, 1]`` to a value of the search space (:func:`unit_to_value`).

        Example:
            >>> lr = Hyperparameter("learning_rate", 0.1, "log", (1e-3, 1.0), POSITIVE, "step size")
            >>> round(lr.from_unit(0.5), 6)
            0.031623
        """
        if self.search is None:
            raise InputError(f"{self.name} is a choice; it has no numeric search space")
        low, high = self.search
        return unit_to_value(u, low, high, self.scaling)

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


# --- shared declarations ---------------------------------------------------------------------------


def learning_rate(default: float, search: tuple[float, float]) -> Hyperparameter:
    """The ``learning_rate`` hyperparameter (log-uniform search space) with optimizer defaults."""
    return Hyperparameter(
        "learning_rate", default, "log", search, POSITIVE, "initial learning rate α (> 0)"
    )


def beta1(role: str = "decay of the first moment β₁") -> Hyperparameter:
    """The ``beta1`` of Adam-type optimizers (default 0.9; ``1 − β₁`` searched log-uniform); ``role``
    says what it does in that optimizer."""
    return Hyperparameter(
        "beta1", 0.9, "one_minus_log", (0.5, 0.999), UNIT_OPEN_RIGHT,
        f"{role}; searched with 1 − β₁ log-uniform",
    )


BETA2 = Hyperparameter(
    "beta2", 0.999, "one_minus_log", (0.9, 0.9999), UNIT_OPEN_RIGHT,
    "decay of the second moment β₂", tunable=False,
)


def epsilon(default: float, search: tuple[float, float], *, tunable: bool = False) -> Hyperparameter:
    """The denominator offset ``epsilon`` of Adam-type optimizers (log-uniform search space)."""
    return Hyperparameter("epsilon", default, "log", search, POSITIVE, "denominator offset ε (> 0)", tunable=tunable)


MOMENTUM = Hyperparameter(
    "momentum", 0.9, "one_minus_log", (0.5, 0.999), UNIT_OPEN_RIGHT,
    "momentum β in [0, 1); searched with 1 − β log-uniform",
)

EMA_DECAY = Hyperparameter(
    "ema_decay", 0.99, "one_minus_log", (0.9, 0.9999), UNIT_OPEN_RIGHT,
    "decay γ of the weight average evaluated by '+ema' optimizers; searched with 1 − γ log-uniform",
)

SCHEDULES = ("constant", "linear_decay", "cosine")  # shapes; see batchlab.optim.schedules

SCHEDULE_HYPERPARAMETERS = (
    Hyperparameter(
        "lr_schedule", "constant", "choice", None, SCHEDULES,
        "learning-rate schedule shape: constant, linear_decay or cosine (static)",
    ),
    Hyperparameter(
        "warmup_fraction", 0.0, "linear", (0.0, 0.1), Interval(0.0, 1.0, high_closed=False),
        "linear warmup over this fraction of the step budget (0: none)", tunable=False,
    ),
    Hyperparameter(
        "decay_fraction", 1.0, "linear", (0.5, 1.0), Interval(0.0, 1.0, low_closed=False),
        "the decay ends after this fraction of the step budget (linear_decay, cosine)",
    ),
    Hyperparameter(
        "end_factor", 0.01, "log", (1e-3, 0.5), Interval(0.0, 1.0),
        "final learning rate as a fraction of the initial one (linear_decay, cosine)",
    ),
)

_DECAY_ONLY = frozenset({"decay_fraction", "end_factor"})


def unused_by(schedule: str) -> frozenset[str]:
    """Names of schedule hyperparameters that ``schedule`` ignores (left out of search spaces)."""
    return _DECAY_ONLY if schedule == "constant" else frozenset()
