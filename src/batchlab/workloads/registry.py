"""The workload registry: a plain name → class table.

Adding a workload: one module defining a frozen dataclass subclass of
:class:`~batchlab.workloads.base.Workload`, and one line in :data:`WORKLOADS`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from batchlab.errors import InputError
from batchlab.workloads.base import Workload
from batchlab.workloads.digits import DigitsCnn
from batchlab.workloads.fashion_mnist import FashionMnistCnn, FashionMnistMlp
from batchlab.workloads.mnist1d import Mnist1dCnn
from batchlab.workloads.nqm_sampled import NqmSampled
from batchlab.workloads.text import TextTransformer

__all__ = ["WORKLOADS", "get_workload", "list_workloads", "workload_options"]

WORKLOADS: dict[str, type[Workload]] = {
    cls.name: cls
    for cls in (
        FashionMnistCnn,
        FashionMnistMlp,
        DigitsCnn,
        Mnist1dCnn,
        TextTransformer,
        NqmSampled,
    )
}


def list_workloads() -> list[str]:
    """The registered workload names, in registry order."""
    return list(WORKLOADS)


def workload_options(name: str) -> dict[str, Any]:
    """The options of workload ``name`` and their defaults, e.g. ``{"hidden_units": 256, ...}``.

    Raises:
        InputError: unknown workload name.
    """
    return {field.name: field.default for field in dataclasses.fields(_lookup(name))}


def _lookup(name: str) -> type[Workload]:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise InputError(f"unknown workload {name!r}; valid workloads: {', '.join(WORKLOADS)}") from None


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
    cls = _lookup(name)
    valid = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        raise InputError(f"{name}: unknown option(s) {', '.join(unknown)}; valid options: {listed}")
    return cls(**options)
