"""Running one trial: a :class:`TrialTask` in, a :class:`~batchlab.store.TrialOutcome` out.

A task is the trial the design made (its hyperparameters validated there, once), the study's one
workload instance (its data loaded once) and the run options of this attempt.  :func:`run_task` trains
it in this process as it is: :func:`batchlab.train.train` with the trial's validated
:class:`~batchlab.optim.Prepared`, nothing rebuilt and its hyperparameters not validated again.

:func:`execute` is the worker side of the Dask executor, the one place a trial crosses a process
boundary and so the one place it travels as a dict (:meth:`TrialTask.to_dict`): the worker builds the
workload once per process (kept, its data loaded) and trains through :func:`batchlab.train.train`,
which validates the configuration it received.  Either way one compiled step serves every trial of a
(workload, optimizer, static choices, batch size), the hyperparameters being traced arrays, so only
the first trial of a cell compiles.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import socket
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, Mapping

from batchlab.store import TrackOutcome, TrialOutcome, failed_outcome

if TYPE_CHECKING:  # a Dask worker imports this module for execute(): no design (SciPy) there
    from batchlab.study.design import Trial

__all__ = ["DEFAULT_CACHE", "TrialTask", "best_track", "execute", "outcome_from_result", "run_task"]

_PRECEDENCE = ("reached", "pruned", "budget", "diverged")
DEFAULT_CACHE = "default"  # a task's compilation_cache: the worker's default folder


@dataclasses.dataclass(frozen=True)
class TrialTask:
    """One attempt at a trial, as the runner hands it to an executor.

    Attributes:
        trial: the design's trial (configuration and validated hyperparameters).
        workload: the study's workload instance.
        prune_at_step: the round's pruning bound for its cell (``None``: none).
        compilation_cache: a folder for JAX's persistent compilation cache, :data:`DEFAULT_CACHE`
            (the worker's default, see :func:`batchlab.train.enable_compilation_cache`) or ``None`` (off).
    """

    trial: Trial
    workload: Any
    prune_at_step: int | None = None
    compilation_cache: str | None = None

    @property
    def id(self) -> str:
        return self.trial.id

    def to_dict(self) -> dict[str, Any]:
        """What the Dask executor ships to a worker (see :func:`execute`)."""
        return {"id": self.id, "config": dict(self.trial.config), "prune_at_step": self.prune_at_step,
                "compilation_cache": self.compilation_cache}


def _options(config: Mapping[str, Any], prune_at_step: int | None) -> Any:
    from batchlab.train import TrainOptions

    decays = tuple(float(d) for d in config["ema_decays"])
    return TrainOptions(ema_decays=decays[1:], prune_at_step=prune_at_step)


@functools.lru_cache(maxsize=8)
def _workload(name: str, options_json: str) -> Any:
    from batchlab.workloads.registry import get_workload

    return get_workload(name, **json.loads(options_json))


@functools.lru_cache(maxsize=4)
def _enable_cache(path: str) -> None:
    from batchlab.train import enable_compilation_cache

    enable_compilation_cache(None if path == DEFAULT_CACHE else path)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"local:{os.getpid()}"


def best_track(tracks: list[TrackOutcome]) -> TrackOutcome:
    """The track that decides the trial: fewest steps among reached ones (first listed on ties), else
    the first whose status ranks highest in reached > pruned > budget > diverged."""
    reached = [t for t in tracks if t.status == "reached"]
    if reached:
        return min(reached, key=lambda t: t.steps_to_target)  # min keeps the first of equals
    return min(tracks, key=lambda t: _PRECEDENCE.index(t.status) if t.status in _PRECEDENCE else 99)


def _curve(points: Any) -> tuple[tuple[int, dict[str, float]], ...]:
    return tuple((int(p.step), {k: float(v) for k, v in p.metrics.items()}) for p in points)


def outcome_from_result(trial_id: str, config: Mapping[str, Any], prune_at_step: int | None, result: Any, *,
                        host: str, worker: str) -> TrialOutcome:
    """Turn the :class:`~batchlab.train.TrainResult` of the trial ``trial_id`` (configuration
    ``config``) into the stored :class:`TrialOutcome`."""
    decays = config["ema_decays"]
    if decays:
        tracks = [TrackOutcome(f"ema={d:g}", float(d), r.status, r.steps_to_target, dict(r.final_metrics),
                               _curve(r.curve))
                  for d in decays for r in (result.ema_results[float(d)],)]
    else:
        tracks = [TrackOutcome("main", None, result.status, result.steps_to_target,
                               dict(result.final_metrics), _curve(result.curve))]
    best = best_track(tracks)
    return TrialOutcome(
        id=trial_id, status=best.status, steps_to_target=best.steps_to_target, steps_run=int(result.steps_run),
        prune_at_step=prune_at_step, best_ema_decay=best.ema_decay,
        final_metrics=dict(best.final_metrics), wall_time=float(result.wall_time),
        eval_time=float(result.eval_time), host=host, worker=worker, tracks=tuple(tracks),
    )


def _attempt(trial_id: str, config: Mapping[str, Any], prune_at_step: int | None, cache: str | None,
             training: Callable[[], Any]) -> TrialOutcome:
    """Run ``training()`` and record its outcome; an exception becomes status ``failed`` with its
    message (the study goes on, and the next run retries the trial)."""
    host, worker = socket.gethostname(), _worker_name()
    started = time.perf_counter()
    try:
        if cache:
            _enable_cache(cache)
        result = training()
        if result.target_metric != config["target_metric"]:
            raise RuntimeError(f"target metric changed: {result.target_metric} != {config['target_metric']}")
        return outcome_from_result(trial_id, config, prune_at_step, result, host=host, worker=worker)
    except Exception as error:  # noqa: BLE001 (recorded as a failed trial, rerun next time)
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        return failed_outcome({"id": trial_id, "prune_at_step": prune_at_step}, last,
                              wall_time=time.perf_counter() - started, host=host, worker=worker)


def run_task(task: TrialTask) -> TrialOutcome:
    """Run one trial in this process (never raises for a trial's own failure: see :func:`execute`)."""
    trial, config = task.trial, task.trial.config

    def training() -> Any:
        from batchlab.train import train

        return train(task.workload, trial.prepared or trial.optimizer, trial.hyperparameters, trial.batch_size,
                     trial.max_steps, trial.seed, target=float(config["target"]), eval_every=int(config["eval_every"]),
                     options=_options(config, task.prune_at_step), target_metric=config["target_metric"])

    return _attempt(task.id, config, task.prune_at_step, task.compilation_cache, training)


def execute(task: Mapping[str, Any]) -> dict[str, Any]:
    """Run one trial on a Dask worker and return its :class:`TrialOutcome` as a dict (never raises for
    a trial's own failure: an exception becomes status ``failed`` with its message, and the study
    goes on).

    Args:
        task: from :meth:`TrialTask.to_dict`.
    """
    config = task["config"]

    def training() -> Any:
        from batchlab.train import train

        workload = _workload(config["workload"], json.dumps(config["workload_options"], sort_keys=True))
        return train(workload, config["optimizer"], config["hyperparameters"], int(config["batch_size"]),
                     int(config["max_steps"]), int(config["seed"]), target=float(config["target"]),
                     eval_every=int(config["eval_every"]), options=_options(config, task["prune_at_step"]),
                     target_metric=config["target_metric"])

    return _attempt(task["id"], config, task["prune_at_step"], task.get("compilation_cache"), training).to_dict()
