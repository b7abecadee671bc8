"""The typer application object and helpers shared by the command modules."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

import typer

from batchlab.errors import InputError

__all__ = ["app", "fail", "guarded", "parse_float_list", "parse_int_list"]

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


def parse_int_list(text: str, *, name: str) -> list[int]:
    """Parse ``"4,16,64"`` (also ``2^k`` and ``1e3`` forms) into ints, or raise InputError."""
    values = []
    for part in _split(text):
        try:
            if "^" in part:
                base, exp = part.split("^", 1)
                value = int(base) ** int(exp)
            else:
                as_float = float(part)
                if as_float != int(as_float):
                    raise ValueError
                value = int(as_float)
        except ValueError:
            raise InputError(f"{name}: {part!r} is not an integer") from None
        values.append(value)
    if not values:
        raise InputError(f"{name}: empty list")
    return values


def parse_float_list(text: str, *, name: str) -> list[float]:
    """Parse ``"0.1,0.01"`` into floats, or raise InputError."""
    values = []
    for part in _split(text):
        try:
            values.append(float(part))
        except ValueError:
            raise InputError(f"{name}: {part!r} is not a number") from None
    if not values:
        raise InputError(f"{name}: empty list")
    return values
