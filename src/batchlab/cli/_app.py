"""The typer application object and helpers shared by the command modules."""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer

from batchlab.errors import InputError
from batchlab.jsonsafe import dumps

__all__ = ["app", "fail", "guarded", "parse_float_list", "parse_int_list", "json_text", "output_folder", "show_number"]

app = typer.Typer(
    name="batchlab",
    help="Which algorithmic choices matter at which batch sizes: NQM engine, scaling studies, calibration.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., object])


def fail(message: str) -> "typer.Exit":
    """Print ``error: message`` as one line on stderr and return an exit-2 exception to raise."""
    first_line = " ".join(str(message).split())
    print(f"error: {first_line}", file=sys.stderr)
    return typer.Exit(code=2)


def guarded(func: F) -> F:
    """Decorate a command so that :class:`InputError` becomes a one-line error and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def show_number(value: float) -> str:
    """A limit as people write it: ``2^20``, ``1e15``, ``0.5``, ``1000``."""
    if value == int(value):
        n = int(value)
        if n >= 1024 and n & (n - 1) == 0:
            return f"2^{n.bit_length() - 1}"
        if abs(n) >= 100_000 and str(n).rstrip("0") in ("1", "-1"):
            return f"{str(n).rstrip('0')}e{len(str(abs(n))) - 1}"
        return str(n)
    return f"{value:g}"


def _integer(part: str, name: str) -> int:
    """One integer from ``"64"``, ``"1e3"`` or ``"2^10"`` (exponents kept small: never a huge power)."""
    not_integer = InputError(f"{name}: {part!r} is not an integer")
    if "^" in part:
        try:
            base, exp = (int(text) for text in part.split("^", 1))
        except ValueError:
            raise not_integer from None
        if abs(base) > 1 and exp * math.log2(abs(base)) > 1024:
            raise InputError(f"{name}: {part!r} is too large")
        if exp < 0 and abs(base) != 1:
            raise not_integer
        return int(base ** exp)
    try:
        as_float = float(part)
    except ValueError:
        raise not_integer from None
    if not math.isfinite(as_float):
        raise InputError(f"{name}: {part!r} is not a finite integer")
    if as_float != int(as_float):
        raise not_integer
    try:
        return int(part)  # exact, also beyond 2^53
    except ValueError:
        return int(as_float)  # "1e3"


def parse_int_list(text: str, *, name: str, minimum: int | None = None, maximum: float | None = None,
                   max_count: int | None = None) -> list[int]:
    """Parse ``"4,16,64"`` (also ``2^k`` and ``1e3`` forms) into ints, or raise InputError.

    ``minimum``/``maximum`` bound every value, ``max_count`` the number of values.
    """
    parts = _split(text)
    if not parts:
        raise InputError(f"{name}: empty list")
    if max_count is not None and len(parts) > max_count:
        raise InputError(f"{name}: at most {max_count:,} values, got {len(parts):,}")
    values = []
    for part in parts:
        value = _integer(part, name)
        if minimum is not None and value < minimum:
            raise InputError(f"{name}: {part!r} is below the minimum {show_number(minimum)}")
        if maximum is not None and value > maximum:
            raise InputError(f"{name}: {part!r} is above the maximum {show_number(maximum)}")
        values.append(value)
    return values


def parse_float_list(text: str, *, name: str) -> list[float]:
    """Parse ``"0.1,0.01"`` into finite floats, or raise InputError."""
    values = []
    for part in _split(text):
        try:
            value = float(part)
        except ValueError:
            raise InputError(f"{name}: {part!r} is not a number") from None
        if not math.isfinite(value):
            raise InputError(f"{name}: {part!r} is not a finite number")
        values.append(value)
    if not values:
        raise InputError(f"{name}: empty list")
    return values


def json_text(value: Any) -> str:
    """Strict JSON of ``value``: ``inf``/``nan`` become ``null`` (never the invalid ``NaN`` token)."""
    return dumps(value, default=str)


def output_folder(path: str, *, flag: str) -> Path:
    """Create the output folder ``path`` (and its parents) now, before any computation, or raise
    InputError naming the problem: an empty path, an existing file on the way, no permission."""
    if not path.strip():
        raise InputError(f"{flag}: empty path")
    folder = Path(path)
    try:
        on_the_way = [part for part in (folder, *folder.parents) if part.exists() and not part.is_dir()]
        if not on_the_way:
            folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:  # permission denied, read-only file system, NUL byte, ...
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"{flag}: cannot create folder {path!r}: {reason}") from None
    if on_the_way:
        raise InputError(f"{flag}: {str(on_the_way[-1])!r} exists and is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: folder {path!r} is not writable")
    return folder
