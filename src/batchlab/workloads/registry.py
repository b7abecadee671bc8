"""The workload registry: a plain name → module table (the only dispatcher), imported lazily.

Adding a workload: one module defining a frozen dataclass subclass of
:class:`~batchlab.workloads.base.Workload`, and one line in :data:`_MODULES`.  A workload's module is
imported on first use (as the optimizer registry does), so listing names or building one workload
imports no other workload's model code.

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
from typing import Any, Iterator, Mapping

from batchlab.errors import InputError
from batchlab.workloads.base import Workload

__all__ = ["WORKLOADS", "get_workload", "list_workloads", "workload_class", "workload_options"]

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
    """The class registered as ``name`` (its module is imported now).

    Raises:
        InputError: unknown workload name (the message lists the valid ones).
    """
    if name not in _MODULES:
        raise InputError(f"unknown workload {name!r}; valid workloads: {', '.join(_MODULES)}")
    module, attribute = _MODULES[name]
    return getattr(importlib.import_module(module), attribute)


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
