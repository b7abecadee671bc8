"""Argument checks shared by every layer, each raising a one-line :class:`~batchlab.errors.InputError`.

The lowest layer: imports nothing from batchlab but :mod:`batchlab.errors`.  Each ``check_*``
returns the value it was given (unconverted) so that a check reads as an expression, and its
message has one fixed shape, ``"<name> must be <what>, got <value>"``; callers pass the name as
the user wrote it (``"tuning.explore"``, ``"--pieces"``, ``"reference batch_size"``).

Example:
    >>> check_range(check_integer(4, "trials"), "trials", 1, 10)
    4
    >>> check_integer(True, "trials")
    Traceback (most recent call last):
    ...
    batchlab.errors.InputError: trials must be an integer, got True
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np

from batchlab.errors import InputError

__all__ = [
    "check_at_least",
    "check_finite",
    "check_finite_number",
    "check_integer",
    "check_positive",
    "check_range",
    "finite_or_none",
    "is_finite_number",
    "is_integer",
]

T = TypeVar("T")


def is_integer(value: Any, *, numpy: bool = False) -> bool:
    """Whether ``value`` is a Python ``int`` (or, with ``numpy``, also a NumPy integer) but not a bool."""
    kinds = (int, np.integer) if numpy else int
    return not isinstance(value, bool) and isinstance(value, kinds)


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite ``int`` or ``float`` (not a bool, string, NaN or ±inf)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def finite_or_none(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (not a number, bool, NaN, ±inf)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def check_integer(value: T, name: str, low: int | None = None, high: int | None = None, *,
                  numpy: bool = False, expected: str | None = None) -> T:
    """``value`` if it is an integer (:func:`is_integer`) within the bounds given, else InputError.

    One message for both failures: ``"{name} must be {expected}, got {value!r}"``, where
    ``expected`` defaults to ``"an integer"``, ``"an integer >= {low}"`` or
    ``"an integer in [{low}, {high}]"``.  Give ``expected`` to word the bounds differently (it is
    only the message: the bounds checked are ``low`` and ``high``).

    Example:
        >>> check_integer(0, "seeds", 1)
        Traceback (most recent call last):
        ...
        batchlab.errors.InputError: seeds must be an integer >= 1, got 0
    """
    if expected is None:
        expected = "an integer"
        if low is not None:
            expected += f" >= {low}" if high is None else f" in [{low}, {high}]"
        elif high is not None:
            expected += f" <= {high}"
    if (not is_integer(value, numpy=numpy) or (low is not None and value < low)
            or (high is not None and value > high)):
        raise InputError(f"{name} must be {expected}, got {value!r}")
    return value


def check_range(value: T, name: str, low: Any, high: Any) -> T:
    """``value`` if ``low <= value <= high`` (NaN never is), else ``"{name} must be in [{low}, {high}], got {value}"``."""
    if not low <= value <= high:
        raise InputError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def check_at_least(value: T, name: str, low: Any) -> T:
    """``value`` unless ``value < low``: then ``"{name} must be >= {low}, got {value}"``."""
    if value < low:
        raise InputError(f"{name} must be >= {low}, got {value}")
    return value


def check_positive(value: T, name: str) -> T:
    """``value`` if it is finite and ``> 0``, else ``"{name} must be > 0, got {value}"``."""
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be > 0, got {value}")
    return value


def check_finite(value: T, name: str) -> T:
    """``value`` if it is finite, else ``"{name} must be finite, got {value}"``."""
    if not math.isfinite(value):
        raise InputError(f"{name} must be finite, got {value}")
    return value


def check_finite_number(value: Any, name: str) -> float:
    """``float(value)`` if :func:`is_finite_number`, else ``"{name} must be a finite number, got {value!r}"``."""
    if not is_finite_number(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return float(value)
