"""Validation of workload options (the fields of a workload's frozen dataclass).

Each check raises :class:`batchlab.errors.InputError` with a one-line message naming the workload,
the option, the allowed range and the value received.
"""

from __future__ import annotations

from typing import Any

from batchlab.checks import check_range, is_finite_number, is_integer
from batchlab.errors import InputError

__all__ = ["check_int", "check_float", "check_str"]


def check_int(workload: str, option: str, value: Any, low: int, high: int) -> None:
    """``value`` must be an integer (not a bool) with ``low <= value <= high``."""
    if not is_integer(value):
        raise InputError(f"{workload}: option {option} must be an integer in [{low}, {high}], got {value!r}")
    check_range(value, f"{workload}: option {option}", low, high)


def check_float(workload: str, option: str, value: Any, low: float, high: float, *, open_low: bool = False) -> None:
    """``value`` must be a finite real number in ``[low, high]`` (``(low, high]`` if ``open_low``)."""
    bracket = "(" if open_low else "["
    if not is_finite_number(value):
        raise InputError(f"{workload}: option {option} must be a number in {bracket}{low}, {high}], got {value!r}")
    if value > high or value < low or (open_low and value == low):
        raise InputError(f"{workload}: option {option} must be in {bracket}{low}, {high}], got {value}")


def check_str(workload: str, option: str, value: Any) -> None:
    """``value`` must be a string."""
    if not isinstance(value, str):
        raise InputError(f"{workload}: option {option} must be a string, got {value!r}")
