"""The workload registry: a plain name → module table (the only dispatcher), imported lazily.

Adding a workload: one module defining a frozen dataclass subclass of
:class:`~batchlab.workloads.base.Workload`, and one line in :data:`_MODULES`.  A workload's module is
imported on first use (as the optimizer registry does), so listing names or building one workload
imports no other workload's model code.

Wherever a workload name is accepted, an import reference to user code is accepted too:
``package.module:Name`` or ``path/to/file.py:Name`` (see :mod:`batchlab.userref`), naming a concrete
frozen-dataclass subclass of :class:`~batchlab.workloads.base.Workload` that sets every class
attribute the base declares (:data:`REQUIRED_ATTRIBUTES`).  Its ``version`` and the SHA-256 of its
file (:func:`workload_code`) enter every trial id.

Example:
    >>> from batchlab.workloads.registry import list_workloads, workload_class
    >>> list_workloads()[:2]
    ['fashion-mnist-cnn', 'fashion-mnist-mlp']
    >>> workload_class("digits-cnn").target_metric
    'error'
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from typing import Any, Iterator, Mapping

from batchlab.errors import InputError
from batchlab.userref import code_digest, is_reference, resolve
from batchlab.workloads.base import Workload

__all__ = ["REQUIRED_ATTRIBUTES", "WORKLOADS", "get_workload", "list_workloads", "workload_class", "workload_code",
           "workload_options"]

REQUIRED_ATTRIBUTES = ("name", "version", "target_metric", "target_value", "default_max_steps",
                       "default_eval_every", "loss_kind")

_MODULES: dict[str, tuple[str, str]] = {  # name → (module, class)
    "fashion-mnist-cnn": ("batchlab.workloads.fashion_mnist", "FashionMnistCnn"),
    "fashion-mnist-mlp": ("batchlab.workloads.fashion_mnist", "FashionMnistMlp"),
    "digits-cnn": ("batchlab.workloads.digits", "DigitsCnn"),
    "mnist1d-cnn": ("batchlab.workloads.mnist1d", "Mnist1dCnn"),
    "text-transformer": ("batchlab.workloads.text", "TextTransformer"),
    "nqm-sampled": ("batchlab.workloads.nqm_sampled", "NqmSampled"),
}


def list_workloads() -> list[str]:
    """The registered workload names, in registry order."""
    return list(_MODULES)


@functools.cache
def workload_class(name: str) -> type[Workload]:
    """The class registered as ``name``, or named by the import reference ``name`` (imported now).

    Raises:
        InputError: unknown workload name (the message lists the valid ones); a reference that
            cannot be imported or does not name a concrete frozen ``Workload`` dataclass.
    """
    if is_reference(name):
        return _user_class(name)
    if name not in _MODULES:
        raise InputError(f"unknown workload {name!r}; valid workloads: {', '.join(_MODULES)}")
    module, attribute = _MODULES[name]
    return getattr(importlib.import_module(module), attribute)


def _user_class(ref: str) -> type[Workload]:
    value = resolve(ref).value
    if not (isinstance(value, type) and issubclass(value, Workload)):
        raise InputError(f"workload {ref!r} is not a subclass of batchlab.workloads.base.Workload "
                         f"(got {type(value).__name__})")
    if inspect.isabstract(value):
        missing = ", ".join(sorted(value.__abstractmethods__))
        raise InputError(f"workload {ref!r} is abstract: it does not implement {missing}")
    params = getattr(value, "__dataclass_params__", None)
    if "__dataclass_fields__" not in value.__dict__ or params is None or not params.frozen:
        raise InputError(f"workload {ref!r} must be decorated @dataclasses.dataclass(frozen=True)")
    missing = [attribute for attribute in REQUIRED_ATTRIBUTES if not hasattr(value, attribute)]
    if missing:
        raise InputError(f"workload {ref!r} does not set the class attribute(s) {', '.join(missing)}")
    return value


def workload_code(name: str) -> str | None:
    """The code identity of an import reference (12 hex digits of its file's SHA-256); ``None`` for a
    registry name.  Trial ids include it, so changed user code makes new trials."""
    if not is_reference(name):
        return None
    workload_class(name)  # checks the object
    return code_digest(name)


class _Registry(Mapping[str, "type[Workload]"]):
    """Read-only name → class view of the registry; a class is imported when it is looked up."""

    def __getitem__(self, name: str) -> type[Workload]:
        if name not in _MODULES:
            raise KeyError(name)
        return workload_class(name)

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)

    def __repr__(self) -> str:
        return f"WORKLOADS({', '.join(_MODULES)})"


WORKLOADS: Mapping[str, type[Workload]] = _Registry()


def workload_options(name: str) -> dict[str, Any]:
    """The options of workload ``name`` and their defaults, e.g. ``{"hidden_units": 256, ...}``.

    Raises:
        InputError: unknown workload name.
    """
    return {field.name: field.default for field in dataclasses.fields(workload_class(name))}


def get_workload(name: str, **options: Any) -> Workload:
    """Construct workload ``name`` with ``options`` (data is loaded lazily, on first use).

    Args:
        name: a registry name, see :func:`list_workloads`.
        **options: the workload's options (fields of its dataclass), validated by the workload.

    Returns:
        The workload instance.

    Raises:
        InputError: unknown name, unknown option (the message lists the valid ones) or an option
            value out of range.

    Example:
        >>> workload = get_workload("fashion-mnist-mlp", hidden_units=128)
        >>> workload.target_metric, workload.target_value
        ('error', 0.12)
    """
    cls = workload_class(name)
    valid = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        raise InputError(f"{name}: unknown option(s) {', '.join(unknown)}; valid options: {listed}")
    return cls(**options)
