"""Training one configuration: a jitted step, evaluation cadence, exact first hit, divergence.

Example::

    from batchlab.train import train
    result = train(workload, "adam", {"learning_rate": 1e-3}, batch_size=128, max_steps=2000, seed=0)
    result.status, result.steps_to_target, result.final_metrics

``train(...)`` is ``run(setup(...))``: :func:`setup` validates once into a :class:`TrainSetup`, and
:func:`run` trains one without checking it again.
"""

from batchlab.train.compiled import cache_size, clear_cache, enable_compilation_cache
from batchlab.train.loop import ProgressFn, StopFn, TrainSetup, check_arguments, run, setup, train
from batchlab.train.result import EvalPoint, Snapshot, Status, TrackResult, TrainOptions, TrainResult

__all__ = [
    "EvalPoint",
    "ProgressFn",
    "Snapshot",
    "Status",
    "StopFn",
    "TrackResult",
    "TrainOptions",
    "TrainResult",
    "TrainSetup",
    "cache_size",
    "check_arguments",
    "clear_cache",
    "enable_compilation_cache",
    "run",
    "setup",
    "train",
]
