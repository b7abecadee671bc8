"""A synthetic study with a known answer: the tuning protocol run on a model of noisy steps to target.

No training: a trial's steps to target come from a closed-form model, so a whole study takes
milliseconds and can be repeated hundreds of times to check what the protocol and the statistics
claim (interval coverage, bias, cost), and to measure whether each phase of the protocol helps
(``benchmarks/bench_protocol.py``).

The model of one optimizer (per batch size ``B``, learning rate ``η``, other unit coordinates ``v``,
training seed noise ``ε ~ N(0, 1)``)::

    S*(B)  = s_min (1 + b_noise / B)                     steps at the optimum (the hyperbola)
    η*(B)  = η_1 min(B, b_noise)                         optimal rate: linear, then flat
    S      = S*(B) exp(curvature (log η/η*)² + Σ_j (v_j − v*_j)²) exp(sigma ε)
    diverged when η > divergence η*(B);  not reached when S > the budget

The truth of a cell is the median over seeds at the optimum, ``S*(B)``, and of the optimizer the
hyperbola's ``b_noise``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from batchlab.analysis.uncertainty import Cell
from batchlab.study.design import derived_seed, unit_points
from batchlab.study.protocol import (Result, Tuning, best, bound_for, distinct_centres, explore_round, refine_round,
                                     refine_units, replicate_candidates, warm_centre)

__all__ = ["SyntheticOptimizer", "SyntheticCell", "simulate_study"]


@dataclasses.dataclass(frozen=True)
class SyntheticOptimizer:
    """One optimizer's steps-to-target model (see the module docstring).

    The search box is ``learning_rate ∈ [rate_low, rate_high]`` (log scale) times ``extra_dims``
    unit coordinates whose optimum is ``extra_optimum``.
    """

    s_min: float = 200.0
    b_noise: float = 100.0
    rate_at_one: float = 3e-3
    curvature: float = 0.5
    divergence: float = 3.0
    sigma: float = 0.25
    rate_low: float = 1e-3
    rate_high: float = 3.0
    extra_dims: int = 1
    extra_optimum: float = 0.6
    extra_curvature: float = 2.0

    def truth(self, batch_size: float) -> float:
        return self.s_min * (1.0 + self.b_noise / batch_size)

    def rate_unit(self, rate: float) -> float:
        return math.log(rate / self.rate_low) / math.log(self.rate_high / self.rate_low)

    def mean_log_steps(self, unit: np.ndarray, batch_size: float) -> np.ndarray:
        """``log S`` without seed noise for unit points of shape ``(n, 1 + extra_dims)`` (inf: diverged)."""
        unit = np.atleast_2d(unit)
        span = math.log(self.rate_high / self.rate_low)
        log_rate = math.log(self.rate_low) + unit[:, 0] * span
        log_opt = math.log(self.rate_at_one * min(batch_size, self.b_noise))
        penalty = self.curvature * (log_rate - log_opt) ** 2
        penalty += self.extra_curvature * ((unit[:, 1:] - self.extra_optimum) ** 2).sum(axis=1)
        out = math.log(self.truth(batch_size)) + penalty
        return np.where(log_rate - log_opt > math.log(self.divergence), np.inf, out)


@dataclasses.dataclass(frozen=True)
class SyntheticCell:
    """What the protocol produced for one cell.

    Attributes:
        batch_size: the cell's batch size.
        best_trial: fewest steps of any single explore/refine trial (the old answer).
        candidates: per replicated configuration, its seeds' steps (inf = not reached).
        search: recorded steps of the explore and refine trials (inf = not reached or pruned).
        origins: for each candidate, its index in ``search``.
        pruned_at: per search trial, the step pruning stopped it at (``nan``: not pruned).
        steps_run: training steps the cell cost (pruned and unreached trials at their stopping step).
        trials: trials run.
    """

    batch_size: int
    best_trial: float
    candidates: tuple[np.ndarray, ...]
    search: np.ndarray
    origins: tuple[int, ...]
    steps_run: int
    trials: int
    pruned_at: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    def as_cell(self) -> Cell:
        """The data :func:`batchlab.analysis.uncertainty.estimate_cells` takes."""
        return Cell(self.candidates, self.search, self.origins, self.pruned_at)


def _draw(model: SyntheticOptimizer, unit: np.ndarray, batch_size: float, budget: int,
          rng: np.random.Generator) -> np.ndarray:
    mean = model.mean_log_steps(unit, batch_size)
    with np.errstate(invalid="ignore"):
        steps = np.ceil(np.exp(mean + model.sigma * rng.standard_normal(mean.shape)))
    return np.where(steps > budget, np.inf, steps)


def _cost(steps: float, bound: int | None, budget: int) -> tuple[float, int, float]:
    """``(recorded steps, steps run, pruned at or nan)`` of one trial under a pruning bound."""
    if bound is not None and steps > bound:
        return math.inf, bound, float(bound)
    if math.isinf(steps):
        return math.inf, budget, math.nan
    return steps, int(steps), math.nan


def simulate_study(model: SyntheticOptimizer, tuning: Tuning, batch_sizes: Sequence[int], *, budget: int,
                   seed: int, design: str = "sobol", prune: bool = True) -> list[SyntheticCell]:
    """Run the protocol on ``model`` at each batch size (one optimizer); deterministic in ``seed``."""
    dims = 1 + model.extra_dims
    rng = np.random.default_rng(derived_seed("synthetic", seed))
    results: dict[int, list[Result]] = {}
    cost = {b: 0 for b in batch_sizes}
    pruned_at: dict[int, list[float]] = {b: [] for b in batch_sizes}
    for b in batch_sizes:
        units = unit_points(design, dims, tuning.explore, derived_seed("design", seed, "synthetic", b))
        steps = _draw(model, units, b, budget, rng)
        cell: list[Result] = []
        for i in range(tuning.explore):
            round_ = explore_round(tuning, i)
            recorded, ran, stopped = _cost(float(steps[i]), bound_for(cell, round_) if prune else None, budget)
            cell.append(Result(tuple(units[i]), recorded, round_, i))
            pruned_at[b].append(stopped)
            cost[b] += ran
        results[b] = cell
    bests = [getattr(best(results[b]), "unit", None) for b in batch_sizes]
    if tuning.refine:
        for k, b in enumerate(batch_sizes):
            if bests[k] is None:
                continue
            warm = (warm_centre(batch_sizes, bests, k, 0, math.log(model.rate_high / model.rate_low))
                    if tuning.warm_start else None)
            centres = distinct_centres([bests[k], warm], tuning.refine_width)
            points = unit_points(design, dims, tuning.refine, derived_seed("refine", seed, "synthetic", b))
            units = refine_units(centres, points, tuning.refine_width)
            steps = _draw(model, units, b, budget, rng)
            round_ = refine_round(tuning)
            bound = bound_for(results[b], round_) if prune else None
            for i in range(units.shape[0]):
                recorded, ran, stopped = _cost(float(steps[i]), bound, budget)
                results[b].append(Result(tuple(units[i]), recorded, round_, i))
                pruned_at[b].append(stopped)
                cost[b] += ran
    cells = []
    for b in batch_sizes:
        candidates = replicate_candidates(results[b], tuning.candidates) if tuning.replicated else []
        replicas = []
        for c in candidates:
            steps = _draw(model, np.repeat(np.array([c.unit]), tuning.seeds, axis=0), b, budget, rng)
            cost[b] += int(np.where(np.isfinite(steps), steps, budget).sum())
            replicas.append(steps)
        finite = [r.steps for r in results[b] if math.isfinite(r.steps)]
        trials = len(results[b]) + len(candidates) * tuning.seeds
        origins = tuple(next(i for i, r in enumerate(results[b]) if r is c) for c in candidates)
        search = np.array([r.steps for r in results[b]], dtype=np.float64)
        cells.append(SyntheticCell(b, min(finite) if finite else math.inf, tuple(replicas), search, origins,
                                   cost[b], trials, np.array(pruned_at[b], dtype=np.float64)))
    return cells
