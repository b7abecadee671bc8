"""Import references to user code: ``package.module:Name`` or ``path/to/file.py:Name``.

Wherever batchlab accepts a workload or optimizer *name*, it also accepts a reference to an object
in the user's own code; the registries (:mod:`batchlab.workloads.registry`,
:mod:`batchlab.optim.registry`) resolve it with :func:`resolve` and check that the object fits.

A reference is ``LOCATION:ATTRIBUTE`` (split at the last colon):

* a **file** when ``LOCATION`` ends in ``.py`` or contains a path separator: loaded with
  :func:`importlib.util.spec_from_file_location` under a module name unique to the file's path and
  contents (``batchlab_user_<hash>``); a relative path is relative to the current directory
  (a study spec makes its references absolute against the spec's folder first, see
  :func:`absolute`);
* otherwise a **module** on ``sys.path``, imported with :func:`importlib.import_module`.

The code's identity, :func:`code_digest`, is the first 12 hex digits of the SHA-256 of the bytes of
the file that defines the object (the module's ``__file__`` for module references): a trial id
includes it, so changed code is a different trial.  Files the user's code imports in turn are not
hashed.

Example:
    >>> is_reference("adam"), is_reference("examples/custom_optimizer.py:my_optimizer")
    (False, True)
    >>> split_reference("pkg.mod:Thing")
    ('pkg.mod', 'Thing')
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import os
import pathlib
import sys
from typing import Any

from batchlab.errors import InputError

__all__ = ["UserObject", "absolute", "code_digest", "is_reference", "resolve", "split_reference"]

DIGEST_HEX = 12


def is_reference(name: str) -> bool:
    """Whether ``name`` is an import reference (contains a colon) rather than a registry name."""
    return ":" in name


def _is_file(location: str) -> bool:
    return location.endswith(".py") or "/" in location or os.sep in location


def split_reference(ref: str) -> tuple[str, str]:
    """``(location, attribute)`` of ``ref``; InputError if either part is empty or malformed."""
    location, _, attribute = ref.rpartition(":")
    location, attribute = location.strip(), attribute.strip()
    if not location or not attribute or not all(part.isidentifier() for part in attribute.split(".")):
        raise InputError(f"malformed reference {ref!r}: expected package.module:Name or path/to/file.py:Name")
    return location, attribute


def absolute(ref: str, base: str | os.PathLike[str]) -> str:
    """``ref`` with a relative file location made absolute against the folder ``base``.

    Registry names and module references are returned unchanged.

    Example:
        >>> absolute("models.py:Net", "/studies")
        '/studies/models.py:Net'
        >>> absolute("adam", "/studies"), absolute("pkg.mod:Net", "/studies")
        ('adam', 'pkg.mod:Net')
    """
    if not is_reference(ref):
        return ref
    location, attribute = split_reference(ref)
    if not _is_file(location) or pathlib.Path(location).expanduser().is_absolute():
        return ref
    return f"{pathlib.Path(base) / location}:{attribute}"


@dataclasses.dataclass(frozen=True)
class UserObject:
    """A resolved reference.

    Attributes:
        ref: the reference as given.
        value: the object it names.
        digest: :func:`code_digest` of the defining file (``""`` if the module has no file).
    """

    ref: str
    value: Any
    digest: str


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGEST_HEX]


def _load_file(location: str, ref: str) -> tuple[Any, str]:
    path = pathlib.Path(location).expanduser().resolve()
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot import {ref!r}: cannot read {location} ({error.strerror or error})") from None
    digest = _digest(data)
    name = f"batchlab_user_{_digest(f'{path}|{digest}'.encode())}"
    if name in sys.modules:  # the same file with the same contents: one module, one set of classes
        return sys.modules[name], digest
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import {ref!r}: {location} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up by their module's name
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise InputError(f"cannot import {ref!r}: {location} raised {type(error).__name__}: {error}") from error
    return module, digest


def _load_module(location: str, ref: str) -> tuple[Any, str]:
    try:
        module = importlib.import_module(location)
    except ImportError as error:
        raise InputError(f"cannot import {ref!r}: {type(error).__name__}: {error}") from None
    except Exception as error:
        raise InputError(f"cannot import {ref!r}: module {location} raised {type(error).__name__}: {error}") from error
    file = getattr(module, "__file__", None)
    try:
        digest = _digest(pathlib.Path(file).read_bytes()) if file else ""
    except OSError:
        digest = ""
    return module, digest


@functools.cache
def resolve(ref: str) -> UserObject:
    """Import the object ``ref`` names (memoised per process).

    Raises:
        InputError: malformed reference, file or module that cannot be imported (or raises while
            importing), missing attribute.
    """
    location, attribute = split_reference(ref)
    module, digest = (_load_file if _is_file(location) else _load_module)(location, ref)
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise InputError(f"cannot import {ref!r}: {location} has no attribute {attribute!r}")
        value = getattr(value, part)
    return UserObject(ref, value, digest)


def code_digest(ref: str) -> str:
    """The identity of ``ref``'s code: 12 hex digits of the SHA-256 of its defining file."""
    return resolve(ref).digest
