"""Workloads: offline data, model, loss, evaluation metric and target (AlgoPerf-style).

Importing this package imports JAX but loads no data and no workload's model module: the concrete
classes (``DigitsCnn``, …) resolve on first access, as the registry's entries do.
"""

from __future__ import annotations

import importlib
from typing import Any

from batchlab.workloads.base import Batch, LossKind, Params, Workload
from batchlab.workloads.registry import WORKLOADS, get_workload, list_workloads, workload_options

_CLASSES = {
    "DigitsCnn": "digits",
    "FashionMnistCnn": "fashion_mnist",
    "FashionMnistMlp": "fashion_mnist",
    "Mnist1dCnn": "mnist1d",
    "NqmSampled": "nqm_sampled",
    "TextTransformer": "text",
}

__all__ = [
    "Batch",
    "DigitsCnn",
    "FashionMnistCnn",
    "FashionMnistMlp",
    "LossKind",
    "Mnist1dCnn",
    "NqmSampled",
    "Params",
    "TextTransformer",
    "WORKLOADS",
    "Workload",
    "get_workload",
    "list_workloads",
    "workload_options",
]


def __getattr__(name: str) -> Any:
    if name not in _CLASSES:
        raise AttributeError(f"module 'batchlab.workloads' has no attribute {name!r}")
    return getattr(importlib.import_module(f"batchlab.workloads.{_CLASSES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
