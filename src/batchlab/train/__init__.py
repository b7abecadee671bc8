"""Training one configuration: a jitted step, evaluation cadence, exact first hit, divergence.

Example::

    from batchlab.train import train
    result = train(workload, "adam", {"learning_rate": 1e-3}, batch_size=128, max_steps=2000, seed=0)
    result.status, result.steps_to_target, result.final_metrics
"""

from batchlab.train.compiled import cache_size, clear_cache, enable_compilation_cache
from batchlab.train.loop import ProgressFn, StopFn, check_arguments, train
from batchlab.train.result import EvalPoint, Status, TrackResult, TrainOptions, TrainResult

__all__ = [
    "EvalPoint",
    "ProgressFn",
    "Status",
    "StopFn",
    "TrackResult",
    "TrainOptions",
    "TrainResult",
    "cache_size",
    "check_arguments",
    "clear_cache",
    "enable_compilation_cache",
    "train",
]
