"""Workloads: offline data, model, loss, evaluation metric and target (AlgoPerf-style).

Importing this package imports JAX but loads no data; data is read on a workload's first use.
"""

from batchlab.workloads.base import Batch, LossKind, Params, Workload
from batchlab.workloads.digits import DigitsCnn
from batchlab.workloads.fashion_mnist import FashionMnistCnn, FashionMnistMlp
from batchlab.workloads.mnist1d import Mnist1dCnn
from batchlab.workloads.nqm_sampled import NqmSampled
from batchlab.workloads.registry import WORKLOADS, get_workload, list_workloads, workload_options
from batchlab.workloads.text import TextTransformer

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
