"""Running one trial (the worker side): a plain-dict task in, a plain-dict outcome out.

:func:`execute` is what every executor calls, in-process or on a Dask worker.  Workloads are built
once per process and kept (their data stays loaded), and :func:`batchlab.train.train` reuses one
compiled step per (workload, optimizer, static choices, batch size) with the hyperparameters as traced
arrays, so only the first trial of a cell compiles.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
import traceback
from typing import Any, Mapping

from batchlab.store import TrackOutcome, TrialOutcome, failed_outcome

__all__ = ["DEFAULT_CACHE", "execute", "task_for", "outcome_from_result", "best_track"]

_PRECEDENCE = ("reached", "pruned", "budget", "diverged")
DEFAULT_CACHE = "default"  # a task's compilation_cache: the worker's default folder


def task_for(trial: Any, *, prune_at_step: int | None, compilation_cache: str | None) -> dict[str, Any]:
    """The task an executor ships to a worker: the trial's id and configuration plus run options.

    ``compilation_cache``: a folder for JAX's persistent compilation cache, :data:`DEFAULT_CACHE`
    (the worker's default, see :func:`batchlab.train.enable_compilation_cache`) or ``None`` (off).
    """
    return {"id": trial.id, "config": dict(trial.config), "prune_at_step": prune_at_step,
            "compilation_cache": compilation_cache}


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


def outcome_from_result(task: Mapping[str, Any], result: Any, *, host: str, worker: str) -> TrialOutcome:
    """Turn a :class:`~batchlab.train.TrainResult` into the stored :class:`TrialOutcome`."""
    decays = task["config"]["ema_decays"]
    if decays:
        tracks = [TrackOutcome(f"ema={d:g}", float(d), r.status, r.steps_to_target, dict(r.final_metrics),
                               _curve(r.curve))
                  for d in decays for r in (result.ema_results[float(d)],)]
    else:
        tracks = [TrackOutcome("main", None, result.status, result.steps_to_target,
                               dict(result.final_metrics), _curve(result.curve))]
    best = best_track(tracks)
    return TrialOutcome(
        id=task["id"], status=best.status, steps_to_target=best.steps_to_target, steps_run=int(result.steps_run),
        prune_at_step=task["prune_at_step"], best_ema_decay=best.ema_decay,
        final_metrics=dict(best.final_metrics), wall_time=float(result.wall_time),
        eval_time=float(result.eval_time), host=host, worker=worker, tracks=tuple(tracks),
    )


def execute(task: Mapping[str, Any]) -> dict[str, Any]:
    """Run one trial and return its :class:`TrialOutcome` as a dict (never raises for a trial's own
    failure: an exception becomes status ``failed`` with its message, and the study goes on).

    Args:
        task: from :func:`task_for`.
    """
    host, worker = socket.gethostname(), _worker_name()
    started = time.perf_counter()
    try:
        from batchlab.train import TrainOptions, train

        if task.get("compilation_cache"):
            _enable_cache(task["compilation_cache"])
        config = task["config"]
        workload = _workload(config["workload"], json.dumps(config["workload_options"], sort_keys=True))
        decays = tuple(float(d) for d in config["ema_decays"])
        options = TrainOptions(ema_decays=decays[1:], prune_at_step=task["prune_at_step"])
        result = train(workload, config["optimizer"], config["hyperparameters"], int(config["batch_size"]),
                       int(config["max_steps"]), int(config["seed"]), target=float(config["target"]),
                       eval_every=int(config["eval_every"]), options=options)
        if result.target_metric != config["target_metric"]:
            raise RuntimeError(f"workload target metric changed: {result.target_metric} != {config['target_metric']}")
        return outcome_from_result(task, result, host=host, worker=worker).to_dict()
    except Exception as error:  # noqa: BLE001 (recorded as a failed trial, rerun next time)
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        return failed_outcome(task, last, wall_time=time.perf_counter() - started, host=host,
                              worker=worker).to_dict()
