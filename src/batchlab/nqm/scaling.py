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
from typing import Callable, Sequence

import numpy as np

from batchlab.critical import CriticalBatchSize, critical_batch_size
from batchlab.errors import InputError
from batchlab.nqm.optimize import KINDS, Optimum, SearchConfig, optimize
from batchlab.nqm.spectrum import Problem

__all__ = ["ScalingCurve", "scaling_curve", "check_batch_sizes"]


@dataclasses.dataclass(frozen=True)
class ScalingCurve:
    """One optimizer's curve: an :class:`Optimum` per batch size, lower bounds, critical batch size."""

    kind: str
    precond: float
    target: float
    rows: tuple[Optimum, ...]
    lower_bounds: tuple[float, ...]
    critical: CriticalBatchSize

    @property
    def batch_sizes(self) -> np.ndarray:
        return np.array([r.batch_size for r in self.rows])

    @property
    def steps(self) -> np.ndarray:
        return np.array([r.steps for r in self.rows])

    def as_dict(self) -> dict:
        rows = []
        for r, lb in zip(self.rows, self.lower_bounds):
            d = r.as_dict()
            d["lower_bound"] = lb
            rows.append(d)
        return {"optimizer": self.kind, "precond": self.precond, "target": self.target, "rows": rows,
                "critical_batch_size": self.critical.as_dict()}


def check_batch_sizes(batch_sizes: Sequence[float]) -> list[float]:
    """Validated, sorted, distinct batch sizes (each ≥ 1)."""
    out = []
    for b in batch_sizes:
        if not np.isfinite(b) or b < 1:
            raise InputError(f"batch sizes must be >= 1, got {b}")
        out.append(float(b))
    if not out:
        raise InputError("need at least one batch size")
    return sorted(set(out))


def scaling_curve(problem: Problem, kind: str, batch_sizes: Sequence[float], *, target: float,
                  precond: float = 0.0, config: SearchConfig = SearchConfig(), tolerance: float = 0.2,
                  progress: Callable[[int], None] | None = None) -> ScalingCurve:
    """Optimize ``kind`` at every batch size (warm-starting each from the previous optimum).

    Args:
        problem: NQM problem; kind: optimizer kind (see :data:`batchlab.nqm.optimize.KINDS`).
        batch_sizes: batch sizes (sorted and de-duplicated here).
        target: risk to reach; precond: preconditioner power p.
        config: search effort; tolerance: overhead tolerance of the critical batch size estimate.
        progress: called with 1 after each batch size (for progress bars).
    """
    if kind not in KINDS:
        raise InputError(f"unknown NQM optimizer {kind!r}; valid: {', '.join(KINDS)}")
    sizes = check_batch_sizes(batch_sizes)
    rows: list[Optimum] = []
    hint = None
    for B in sizes:
        opt = optimize(problem, kind, batch_size=B, target=target, precond=precond, config=config, hint=hint)
        rows.append(opt)
        hint = opt.coordinates if math.isfinite(opt.steps) else None
        if progress:
            progress(1)
    lower = tuple(problem.lower_bound_steps(B, target) for B in sizes)
    steps = np.array([r.steps for r in rows])
    return ScalingCurve(kind=kind, precond=float(precond), target=float(target), rows=tuple(rows),
                        lower_bounds=lower, critical=critical_batch_size(sizes, steps, tolerance))
