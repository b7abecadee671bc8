"""Strict JSON for numbers that may be ``inf`` or ``nan``: they are written as ``null``.

Python's :func:`json.dumps` writes ``NaN`` and ``Infinity`` by default, which no strict JSON reader
accepts.  batchlab's stores, exports and ``--json`` outputs go through :func:`json_ready` (or
:func:`dumps`), so a missing or undefined number is always ``null``.

Example::

    >>> dumps({"steps": [120.0, float("inf")], "b_noise": float("nan")})
    '{"steps": [120.0, null], "b_noise": null}'
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from batchlab.checks import finite_or_none

__all__ = ["dumps", "finite_or_none", "json_ready"]


def json_ready(value: Any) -> Any:
    """``value`` ready for strict JSON: mappings as dicts with string keys, lists and tuples as lists,
    NumPy scalars as Python numbers and non-finite floats as ``None`` (everything else unchanged)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        value = value.item()  # a NumPy scalar or 0-d array
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **options: Any) -> str:
    """:func:`json.dumps` of :func:`json_ready` ``(value)`` that never writes ``NaN`` or ``Infinity``.

    Args:
        value: what to write.
        **options: passed to :func:`json.dumps` (``sort_keys``, ``indent``, ``default``, ...).

    Raises:
        ValueError: only if a ``default`` hook itself returns a non-finite float.
    """
    return json.dumps(json_ready(value), allow_nan=False, **options)
