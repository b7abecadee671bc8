"""Preset studies shipped under ``studies/`` in the repository, and resolving a SPEC argument.

``SPEC`` on the command line is a TOML path or a preset name (``quick`` → ``studies/quick.toml``).
The presets folder is ``$BATCHLAB_STUDIES`` if set, else ``studies/`` at the repository root.
"""

from __future__ import annotations

import os
import pathlib

from batchlab.errors import InputError

__all__ = ["presets_folder", "preset_path", "preset_names", "resolve_spec"]


def presets_folder() -> pathlib.Path:
    """``$BATCHLAB_STUDIES``, else the repository's ``studies/`` (next to ``src/``)."""
    override = os.environ.get("BATCHLAB_STUDIES")
    return pathlib.Path(override) if override else pathlib.Path(__file__).resolve().parents[3] / "studies"


def preset_names() -> list[str]:
    """Names of the shipped presets (file stems)."""
    folder = presets_folder()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def preset_path(name: str) -> pathlib.Path:
    """The TOML file of preset ``name``.

    Raises:
        InputError: no such preset (the message lists the available ones).
    """
    path = presets_folder() / f"{name}.toml"
    if not path.is_file():
        raise InputError(f"unknown preset {name!r}; available: {', '.join(preset_names()) or 'none'}")
    return path


def resolve_spec(argument: str) -> pathlib.Path:
    """A SPEC argument as a file: an existing path, else a preset name.

    Raises:
        InputError: neither a file nor a preset.
    """
    path = pathlib.Path(argument)
    if path.suffix == ".toml" or path.exists() or os.sep in argument:
        if not path.is_file():
            raise InputError(f"spec file not found: {path}")
        return path
    return preset_path(argument)
