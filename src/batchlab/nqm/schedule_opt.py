"""Optimized learning-rate schedules for (preconditioned) SGD on the NQM.

Two families, both tuned to reach the target in as few steps as possible:

- **piecewise constant** with ``K`` equal pieces, each piece's rate free (bounded by stability) —
  the paper's optimized schedules (its Figure 3b–c);
- **linear decay** from ``α₀`` to ``α₀ · end_factor`` over the whole run (Shallue et al.'s protocol).

For a horizon ``T`` the rates minimise the final risk ``L(T)``; the reported steps are the shortest
horizon for which the optimized schedule ends at or below the target (found by bisection on ``T``),
with the risk at that horizon recomputed exactly on the full problem.  SGD's per-piece closed form
``s ← r^{2L} s + q (1 − r^{2L}) / (1 − r²)`` makes ``L(T)`` cost ``O(K d)``; linear decay is evaluated
as a many-piece staircase during the search and exactly, step by step, for the reported horizon.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.optimize import minimize

from batchlab.errors import InputError
from batchlab.nqm.dynamics import sgd, stability_limit
from batchlab.nqm.schedules import Schedule, linear_decay, piecewise_constant, scheduled_risk
from batchlab.nqm.checks import check_target
from batchlab.nqm.spectrum import Problem, compress

__all__ = ["ScheduleOptimum", "optimize_piecewise", "optimize_linear_decay"]


@dataclasses.dataclass(frozen=True)
class ScheduleOptimum:
    """An optimized schedule: ``learning_rates`` per piece (``K`` pieces over ``steps``)."""

    family: str
    batch_size: float
    target: float
    precond: float
    steps: float
    learning_rates: tuple[float, ...]
    end_factor: float | None
    risk: float

    @property
    def learning_rate(self) -> float:
        return self.learning_rates[0]

    def schedule(self) -> Schedule:
        if self.family == "linear-decay":
            return linear_decay(int(self.steps), self.end_factor)
        lengths = _pieces(int(self.steps), len(self.learning_rates))
        lr = np.array(self.learning_rates)
        return piecewise_constant(lengths, lr / lr[0])

    @property
    def coordinates(self) -> tuple[float, ...]:
        """No search coordinates (each batch size is optimized from scratch): no warm-start hint."""
        return ()

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["steps"] = None if not math.isfinite(self.steps) else int(self.steps)
        d["learning_rate"] = self.learning_rate
        return d

    def scaling_row(self, lower_bound: float) -> dict:
        """A row of a scaling curve's JSON (kind ``"schedule"``): :meth:`as_dict`, no momentum or EMA,
        the lower bound, and the first piece's rate as the effective learning rate."""
        return {**self.as_dict(), "momentum": None, "ema": None, "lower_bound": lower_bound,
                "effective_learning_rate": self.learning_rate}


def _pieces(T: int, K: int) -> np.ndarray:
    base = np.full(K, T // K, dtype=np.int64)
    base[: T - base.sum()] += 1
    return base[base > 0]


def _final_risk(problem: Problem, rates: np.ndarray, lengths: np.ndarray, batch_size: float, precond: float):
    """``L(T)`` for SGD with piecewise-constant ``rates`` (rows: candidates), exact per piece."""
    P = problem.h ** (-precond)
    hx = problem.h * P
    qc = problem.c * P**2 / batch_size
    s = np.broadcast_to(problem.s0, rates.shape[:-1] + problem.h.shape).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for k, L in enumerate(lengths):
            a = rates[..., k][..., None]
            x = a * hx
            log_r2 = np.where(x < 1, 2 * np.log1p(-np.minimum(x, 1)), 2 * np.log(np.abs(x - 1)))
            decay = np.exp(L * log_r2)
            G = -np.expm1(L * log_r2) / (x * (2 - x))
            s = decay * s + a**2 * qc * G
    risk = np.sum(problem.weights * 0.5 * problem.h * s, axis=-1)
    return np.where(np.isfinite(risk), risk, np.inf)


def _rates(v: np.ndarray, amax: float) -> np.ndarray:
    """Rates from logit coordinates: ``α = α_max · 10^v / (1 + 10^v)`` (resolves rates near 0 and
    a hair below the stability limit alike)."""
    return amax / (1.0 + 10.0 ** (-v))


def _best_rates(problem, T, K, batch_size, precond, start=None):
    """Rates (bounded by stability) minimising L(T) with K equal pieces, from ``start`` (logit
    coordinates) or else from the best constant rate; never worse than that start."""
    lengths = _pieces(T, K)
    k = len(lengths)
    amax = float(stability_limit(sgd(1.0)) / np.max(problem.h ** (1 - precond)))
    lo, hi = -12.0, 9.0

    def f(v):
        return float(np.log(_final_risk(problem, _rates(v, amax)[None, :], lengths, batch_size, precond)[0]))

    if start is None:  # the best constant rate is the start
        cands = np.linspace(-9.0, 4.0, 66)
        vals = _final_risk(problem, _rates(cands, amax)[:, None].repeat(k, 1), lengths, batch_size, precond)
        starts = [np.full(k, cands[int(np.argmin(vals))])]
    else:  # warm start from a nearby horizon's optimum
        starts = [np.clip(np.asarray(start, float)[:k], lo, hi)]
    best = None
    for v0 in starts:
        res = minimize(f, v0, method="L-BFGS-B", bounds=[(lo, hi)] * k, options={"maxiter": 60})
        if best is None or res.fun < best.fun:
            best = res
    return best.x, float(np.exp(best.fun))


def _shortest_horizon(reaches, start: int, max_steps: int, rel: float):
    """Bracket ``(lo, hi)`` of the shortest horizon with ``reaches(T, hi)`` true: double from ``start``,
    then bisect to a relative width ``rel`` (``reaches`` gets the current upper end as a warm-start
    hint, ``None`` while doubling).  ``None`` if even ``max_steps`` does not reach."""
    T = start
    while not reaches(T, None):
        T *= 2
        if T > max_steps:
            return None
    lo, hi = T // 2, T
    while hi - lo > max(1, int(hi * rel)):
        mid = (lo + hi) // 2
        if reaches(mid, hi):
            hi = mid
        else:
            lo = mid
    return lo, hi


def optimize_piecewise(problem: Problem, *, batch_size: float, target: float, pieces: int = 10,
                       precond: float = 0.0, max_steps: int = 2**36) -> ScheduleOptimum:
    """The fewest steps with an optimized ``pieces``-piece schedule (SGD, preconditioner power p)."""
    target = check_target(target)
    if int(pieces) != pieces or pieces < 1:
        raise InputError(f"pieces must be a positive integer, got {pieces}")
    small = compress(problem)
    cache: dict[int, tuple[np.ndarray, float]] = {}

    def solve_T(T, prob, start=None):
        key = (T, id(prob))
        if key not in cache:
            cache[key] = _best_rates(prob, T, pieces, batch_size, precond, start)
        return cache[key]

    bracket = _shortest_horizon(lambda T, hi: solve_T(T, small, None if hi is None else solve_T(hi, small)[0])[1]
                                <= target, max(pieces, 8), max_steps, 1 / 2000)
    if bracket is None:
        return ScheduleOptimum("piecewise", batch_size, target, precond, math.inf, (), None, math.nan)
    lo, hi = bracket
    # exact on the full problem: re-optimise the rates there and step the horizon until it reaches
    v, risk = _best_rates(problem, hi, pieces, batch_size, precond, solve_T(hi, small)[0])
    while risk > target:
        lo, hi = hi, int(hi * 1.01) + 1
        v, risk = _best_rates(problem, hi, pieces, batch_size, precond, v)
    lo = max(1, min(lo, int(hi * 0.98)))  # the compressed bracket is approximate: widen it
    while hi - lo > 1:  # shortest horizon on the full problem
        mid = (lo + hi) // 2
        v_mid, risk_mid = _best_rates(problem, mid, pieces, batch_size, precond, v)
        if risk_mid <= target:
            hi, v, risk = mid, v_mid, risk_mid
        else:
            lo = mid
    amax = float(stability_limit(sgd(1.0)) / np.max(problem.h ** (1 - precond)))
    rates = _rates(v, amax)
    lengths = _pieces(hi, pieces)
    exact = float(scheduled_risk(problem, sgd(float(rates[0]), precond=precond),
                                 piecewise_constant(lengths, rates[:len(lengths)] / rates[0]),
                                 batch_size=batch_size, steps=[hi])[0])
    return ScheduleOptimum("piecewise", float(batch_size), target, float(precond), float(hi),
                           tuple(float(r) for r in rates[:len(lengths)]), None, exact)


def optimize_linear_decay(problem: Problem, *, batch_size: float, target: float, precond: float = 0.0,
                          staircase: int = 64, max_steps: int = 2**30) -> ScheduleOptimum:
    """The fewest steps with a tuned linear decay ``α₀ → α₀ · end_factor`` over the run.

    The search evaluates the decay as a ``staircase``-piece approximation on a compressed spectrum;
    the reported horizon's risk is recomputed exactly at step resolution on the full problem
    (``O(T d)``), and the horizon is increased until that exact risk is at or below the target.
    """
    target = check_target(target)
    small = compress(problem)
    amax = float(stability_limit(sgd(1.0)) / np.max(problem.h ** (1 - precond)))
    ends = np.concatenate([[0.0], np.geomspace(1e-4, 1.0, 17)])

    def best(T, prob):
        lengths = _pieces(T, staircase)
        frac = (np.cumsum(lengths) - lengths / 2) / T
        a0 = amax * np.geomspace(1e-8, 1 - 1e-9, 81)
        rates = a0[:, None, None] * (1 - (1 - ends)[None, :, None] * frac[None, None, :])
        risk = _final_risk(prob, rates.reshape(-1, len(lengths)), lengths, batch_size, precond).reshape(81, -1)
        i, j = np.unravel_index(np.argmin(risk), risk.shape)
        return float(a0[i]), float(ends[j]), float(risk[i, j])

    bracket = _shortest_horizon(lambda T, hi: best(T, small)[2] <= target, 8, max_steps, 1 / 1000)
    if bracket is None:
        return ScheduleOptimum("linear-decay", batch_size, target, precond, math.inf, (), None, math.nan)
    lo, hi = bracket
    while True:  # exact, step resolution, full problem
        a0, end, _ = best(hi, problem)
        risk = float(scheduled_risk(problem, sgd(a0, precond=precond), linear_decay(hi, end),
                                    batch_size=batch_size, steps=[hi])[0])
        if risk <= target or hi > max_steps:
            break
        hi = int(hi * 1.01) + 1
    return ScheduleOptimum("linear-decay", float(batch_size), target, float(precond), float(hi), (a0,), end, risk)
