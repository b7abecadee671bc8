"""The ``batchlab`` command line: thin typer front ends over library functions.

Each command group lives in its own module and registers itself on :data:`app`; this module only
assembles them and maps bad input to a one-line error with exit status 2.
"""

from __future__ import annotations

import importlib
import os
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
    # Before JAX loads: XLA:CPU logs a multi-line error for every executable it loads from the
    # persistent compilation cache (tuning flags +prefer-no-gather/scatter taken for missing CPU
    # features; openxla/xla#44565) although the load works.  Set TF_CPP_MIN_LOG_LEVEL to see them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _register()
    from typer._click import exceptions as click  # typer 0.29 vendors click (pinned in pyproject)

    try:
        code = app(args=argv if argv is not None else sys.argv[1:], prog_name="batchlab", standalone_mode=False)
    except click.NoArgsIsHelpError as help_request:  # `batchlab nqm`: the group's help
        print(help_request.ctx.get_help() if help_request.ctx else str(help_request))
        sys.exit(0)
    except click.UsageError as error:  # a bad flag or value: one line, exit 2
        where = f"{error.ctx.command_path}: " if error.ctx is not None else ""
        print(f"error: {where}{' '.join(error.format_message().split())}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
