"""Scaling curves: optimal steps and hyperparameters versus batch size, with critical batch sizes.

Example:
    >>> from batchlab.nqm import power_law
    >>> curve = scaling_curve(power_law(1000), "sgd", [4, 64, 1024], target=0.01)
    >>> [row.batch_size for row in curve.rows]
    [4.0, 64.0, 1024.0]
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from concurrent.futures import as_completed
from typing import Callable, Sequence

import numpy as np

from batchlab.critical import CriticalBatchSize, critical_batch_size
from batchlab.errors import InputError
from batchlab.nqm import workers as processes
from batchlab.nqm.optimize import KIND_TABLE, Optimum, SearchConfig, kind_named
from batchlab.nqm.spectrum import Problem

__all__ = ["ScalingCurve", "scaling_curve", "scaling_curves", "check_batch_sizes"]


@dataclasses.dataclass(frozen=True)
class ScalingCurve:
    """One optimizer's curve: an :class:`Optimum` per batch size (a
    :class:`~batchlab.nqm.schedule_opt.ScheduleOptimum` for kind ``"schedule"``), lower bounds, critical
    batch size."""

    kind: str
    precond: float
    target: float
    rows: tuple  # Optimum or ScheduleOptimum
    lower_bounds: tuple[float, ...]
    critical: CriticalBatchSize
    seconds: float = math.nan  # wall time of the optimization

    @property
    def batch_sizes(self) -> np.ndarray:
        return np.array([r.batch_size for r in self.rows])

    @property
    def steps(self) -> np.ndarray:
        return np.array([r.steps for r in self.rows])

    def as_dict(self) -> dict:
        rows = [r.scaling_row(lb) for r, lb in zip(self.rows, self.lower_bounds)]
        return {"optimizer": self.kind, "precond": self.precond, "target": self.target, "rows": rows,
                "critical_batch_size": self.critical.as_dict()}


def check_batch_sizes(batch_sizes: Sequence[float]) -> list[float]:
    """Validated, sorted, distinct batch sizes (each ≥ 1)."""
    out = []
    for b in batch_sizes:
        try:
            value = float(b)
        except (TypeError, ValueError, OverflowError):  # e.g. a Python int beyond float range
            raise InputError(f"batch sizes must be finite numbers >= 1, got {b!r}") from None
        if not np.isfinite(value) or value < 1:
            raise InputError(f"batch sizes must be >= 1, got {b}")
        out.append(value)
    if not out:
        raise InputError("need at least one batch size")
    return sorted(set(out))


def scaling_curve(problem: Problem, kind: str, batch_sizes: Sequence[float], *, target: float,
                  precond: float = 0.0, config: SearchConfig = SearchConfig(), tolerance: float = 0.2,
                  progress: Callable[[int], None] | None = None) -> ScalingCurve:
    """Optimize ``kind`` at every batch size (warm-starting each from the previous optimum).

    Args:
        problem: NQM problem; kind: optimizer kind (see :data:`batchlab.nqm.optimize.KIND_TABLE`;
            ``"schedule"`` optimizes a ``config.pieces``-piece SGD schedule at each batch size).
        batch_sizes: batch sizes (sorted and de-duplicated here).
        target: risk to reach; precond: preconditioner power p.
        config: search effort; tolerance: overhead tolerance of the critical batch size estimate.
        progress: called with 1 after each batch size (for progress bars).
    """
    kind_named(kind)
    sizes = check_batch_sizes(batch_sizes)
    rows, seconds = _optimize_rows(problem, kind, sizes, target, precond, config, progress)
    return _assemble(problem, kind, sizes, target, precond, tolerance, rows, seconds)


def _optimize_rows(problem, kind, sizes, target, precond, config, progress=None):
    """The optimum at every batch size, each warm-started from the previous one; and the wall time."""
    start = time.perf_counter()
    rows: list[Optimum] = []
    hint, near = None, None
    entry = KIND_TABLE[kind]
    for B in sizes:
        opt = entry.optimize(problem, batch_size=B, target=target, precond=precond, config=config, hint=hint,
                             near=near)
        rows.append(opt)
        hint = (opt.coordinates or None) if math.isfinite(opt.steps) else None
        near = opt.steps / 2.0 if math.isfinite(opt.steps) else None  # larger batches need fewer steps
        if progress:
            progress(1)
    return rows, time.perf_counter() - start


def _assemble(problem, kind, sizes, target, precond, tolerance, rows, seconds) -> ScalingCurve:
    lower = tuple(problem.lower_bound_steps(B, target) for B in sizes)
    steps = np.array([r.steps for r in rows])
    return ScalingCurve(kind=kind, precond=float(precond), target=float(target), rows=tuple(rows),
                        lower_bounds=lower, critical=critical_batch_size(sizes, steps, tolerance),
                        seconds=seconds)


def _curve_job(args):
    """A worker's part of one curve: the optima (the parent fits the critical batch size)."""
    problem, kind, batch_sizes, target, precond, config, threads = args
    if threads is not None:  # a worker process: share the cores with the other workers, not oversubscribe
        from batchlab.nqm import _engine

        _engine.THREADS = threads
    return _optimize_rows(problem, kind, batch_sizes, target, precond, config)


def scaling_curves(problem: Problem, curves: Sequence[tuple], batch_sizes: Sequence[float], *,
                   target: float, config: SearchConfig = SearchConfig(), tolerance: float = 0.2,
                   workers: int | None = None,
                   progress: Callable[[int], None] | None = None) -> list[ScalingCurve]:
    """Several independent curves on up to ``workers`` processes.

    ``curves`` holds ``(kind, precond)`` or ``(kind, precond, target)`` entries (``target`` defaults
    to the keyword).  Each curve is sequential (every batch size warm-starts from the previous one),
    so the curves themselves are the unit of parallel work.  ``workers`` defaults to the number of
    CPUs; 1 runs in this process.  Results come back in the order of ``curves``; ``progress`` is
    called with the number of batch sizes after each curve.
    """
    sizes = check_batch_sizes(batch_sizes)
    jobs = []
    for kind, p, *rest in curves:
        kind_named(kind)
        jobs.append((problem, kind, sizes, rest[0] if rest else target, float(p), config))
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [job + (threads if workers > 1 else None,) for job in jobs]
    if workers <= 1:
        out = []
        for job in jobs:
            out.append(_assemble(problem, job[1], sizes, job[3], job[4], tolerance, *_curve_job(job)))
            if progress:
                progress(len(sizes))
        return out
    # the expensive kinds first, so that the last curves to finish are short ones
    order = sorted(range(len(jobs)), key=lambda i: -KIND_TABLE[jobs[i][1]].cost)
    results: dict[int, ScalingCurve] = {}
    with processes.fresh_pool(workers) as submit:
        futures = {submit(_curve_job, jobs[i]): i for i in order}
        for fut in as_completed(futures):
            job = jobs[futures[fut]]
            results[futures[fut]] = _assemble(problem, job[1], sizes, job[3], job[4], tolerance, *fut.result())
            if progress:
                progress(len(sizes))
    return [results[i] for i in range(len(jobs))]
