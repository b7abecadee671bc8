"""The ``batchlab`` command line: thin typer front ends over library functions.

Each command group lives in its own module and registers itself on :data:`app`; this module only
assembles them and maps bad input to a one-line error with exit status 2.
"""

from __future__ import annotations

import importlib
import sys

from batchlab.cli._app import app

__all__ = ["app", "main"]

# Command modules, each adding its commands to ``app`` on import.
_COMMAND_MODULES = ("nqm", "train", "study", "calibrate", "demo")


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            importlib.import_module(f"batchlab.cli.{name}")
        except ModuleNotFoundError as exc:  # a command group not built yet
            if exc.name != f"batchlab.cli.{name}":
                raise


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _register()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="batchlab")
