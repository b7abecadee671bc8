"""Argument checks shared by the NQM modules (one-line :class:`~batchlab.errors.InputError` each)."""

from __future__ import annotations


import numpy as np

from batchlab.errors import InputError

__all__ = ["MAX_STEPS", "check_target", "check_steps"]

MAX_STEPS = 2**40  # default budget of the steps-to-target solvers


def check_target(target) -> float:
    """A target risk as a float ``> 0``, or InputError."""
    if not np.isfinite(target) or target <= 0:
        raise InputError(f"target must be a finite number > 0, got {target}")
    return float(target)


def check_steps(steps) -> np.ndarray:
    """Steps as an int64 array of non-negative integers, or InputError."""
    arr = np.asarray(steps)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError(f"steps must be non-negative integers, got {steps!r}")
    elif arr.dtype.kind not in "iu":
        raise InputError(f"steps must be non-negative integers, got {steps!r}")
    if np.any(arr < 0):
        raise InputError(f"steps must be >= 0, got {steps!r}")
    if np.any(arr > 2**62):
        raise InputError("steps must be < 2^62")
    return arr.astype(np.int64)

