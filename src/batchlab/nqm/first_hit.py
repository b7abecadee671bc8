"""One run's first hit of the target, by Monte Carlo: the steps a study actually measures.

The NQM's steps to target (:func:`batchlab.nqm.optimize.optimize`) are the first step at which the
*expected* risk is at or below the target.  A study measures something else: the first step at which
*one run's* loss is at or below it (found by evaluating every ``eval_every`` steps and replaying the
stretch before the first evaluation that meets it, :mod:`batchlab.train.loop`), and tunes the
learning rate for the median of that over seeds.  Near the noise floor a run's loss fluctuates around its
expectation, so it dips below a target the expectation only approaches, and a larger learning rate
(a higher floor, reached sooner) pays off; at large batch sizes the fluctuations vanish and both
counts agree.  On the calibrated digits-cnn NQM SGD's median first hit is
0.74x the expected crossing at B = 16 and 0.97x at B = 1024 (``benchmarks/nqm_first_hit.py``,
``results/calibration/first-hit/nqm_first_hit.txt``).

Model of a run: the entries with weight 1 (single directions: a calibrated NQM's top-k eigenpairs)
are simulated as written (:func:`batchlab.nqm.simulate.simulate`: Gaussian start ``N(0, s0)``,
Gaussian gradient noise ``N(0, c/B)``); every other entry stands for ``w`` directions whose
fluctuations average out, and contributes its exact expected risk (:func:`batchlab.nqm.risk.expected_risk`).
A problem whose every entry has a weight other than 1 therefore gives the expected-risk crossing (when
the expected risk falls monotonically, as it does from above the noise floor).  All learning rates of a scan share the same random numbers
(common random numbers), so their medians are compared with little noise.

Example:
    >>> from batchlab.nqm import Problem, sgd
    >>> p = Problem(h=[1.0, 0.1], c=[1.0, 0.1], s0=[1.0, 1.0], weights=[1.0, 1.0])
    >>> hits = first_hits(p, sgd(0.5), batch_size=4, target=0.05, eval_every=1, horizon=200, runs=50)
    >>> hits.shape
    (50,)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from batchlab.errors import InputError
from batchlab.nqm.checks import check_steps
from batchlab.nqm.dynamics import Dynamics
from batchlab.nqm.optimize import KIND_TABLE, KINDS, Optimum, SearchConfig, optimize
from batchlab.nqm.risk import expected_risk
from batchlab.nqm.simulate import simulate
from batchlab.nqm.spectrum import Problem

__all__ = ["FirstHit", "first_hits", "hit_steps", "tuned_first_hit", "MULTIPLIERS"]

MULTIPLIERS = tuple(float(2 ** (k / 2)) for k in range(-3, 4))  # 0.35 … 2.83: learning-rate multiples tried


@dataclasses.dataclass(frozen=True)
class FirstHit:
    """The fewest median first-hit steps of one NQM optimizer kind at one batch size.

    Attributes:
        steps: median over runs of the first hit as :func:`first_hits` reports it (``inf``: the median
            run never hits within the horizon).
        learning_rate: the learning rate that gives it (``multiplier`` × the expected-risk optimum's).
        momentum: the expected-risk optimum's momentum (kept), ``None`` for kinds without one.
        multiplier: the chosen multiple of the expected-risk optimum's learning rate.
        hit_fraction: the share of runs that hit within the horizon at that rate.
        expected_steps: the expected-risk optimum's steps (the NQM's usual count).
    """

    steps: float
    learning_rate: float
    momentum: float | None
    multiplier: float
    hit_fraction: float
    expected_steps: float


def _sub(problem: Problem, mask: np.ndarray) -> Problem:
    return Problem(h=problem.h[mask], c=problem.c[mask], s0=problem.s0[mask], weights=problem.weights[mask])


def first_hits(problem: Problem, dyn: Dynamics, *, batch_size: float, target: float, eval_every: int, horizon: int,
               runs: int = 400, seed: int = 0, replay: bool = True) -> np.ndarray:
    """Each run's first hit of ``risk ≤ target`` as a study's training loop reports it; ``inf`` for runs
    that never hit by ``horizon`` (module docstring for the model of a run).

    The loop (:mod:`batchlab.train.loop`) evaluates every ``eval_every`` steps and, at the first
    evaluation ``t_e`` that meets the target, replays the steps since the previous one and reports
    ``min{t ∈ (t_e − eval_every, t_e] : risk(t) ≤ target}``; ``replay=False`` reports ``t_e``.

    Raises:
        InputError: ``eval_every`` or ``horizon`` not a positive integer, ``runs < 2``.
    """
    for value, name in ((eval_every, "eval_every"), (horizon, "horizon")):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(runs, bool) or int(runs) != runs or runs < 2:
        raise InputError(f"runs must be an integer >= 2, got {runs!r}")
    every = int(eval_every)
    last = every * math.ceil(int(horizon) / every)  # the horizon, on the evaluation grid
    steps = check_steps(np.arange(0, last + 1) if replay else np.arange(0, last + 1, every))
    single = problem.weights == 1.0
    risk = np.zeros((int(runs), steps.size))
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is a run that never hits
        if single.any():
            risk += simulate(_sub(problem, single), dyn, batch_size=batch_size, steps=steps, num_runs=int(runs),
                             seed=seed).paths
        if (~single).any():
            risk += expected_risk(_sub(problem, ~single), dyn, batch_size=batch_size, steps=steps)[None, :]
    hit = risk <= target
    if not replay:
        reached = hit.any(axis=1)
        return np.where(reached, np.argmax(hit, axis=1) * every, math.inf).astype(float)
    return hit_steps(hit, every)


def hit_steps(hit: np.ndarray, every: int) -> np.ndarray:
    """The training loop's first hit per run from ``hit[run, t]`` (risk at or below the target after
    ``t`` updates, ``t = 0 … T`` with ``T`` a multiple of ``every``): evaluate every ``every`` updates,
    then replay the stretch since the previous evaluation; ``inf`` where no evaluation meets it."""
    grid = hit[:, ::every]
    reached = grid.any(axis=1)
    evaluation = np.argmax(grid, axis=1)  # index of the first evaluation that meets the target
    out = np.full(hit.shape[0], math.inf)
    for run in np.flatnonzero(reached):
        e = int(evaluation[run])
        if e == 0:
            out[run] = 0.0
            continue
        start = (e - 1) * every + 1  # the replayed stretch (t_{e-1}, t_e]
        out[run] = float(start + np.argmax(hit[run, start:e * every + 1]))
    return out


def tuned_first_hit(problem: Problem, kind: str, *, batch_size: float, target: float, eval_every: int,
                    precond: float = 0.0, runs: int = 400, seed: int = 0, multipliers=MULTIPLIERS,
                    optimum: Optimum | None = None, config: SearchConfig = SearchConfig(),
                    horizon_factor: float = 4.0) -> FirstHit:
    """The fewest median first-hit steps of ``kind`` at ``batch_size``, its learning rate scanned over
    ``multipliers`` × the expected-risk optimum's (``optimum``, computed if not given; its other
    hyperparameters kept), each over the same ``runs`` random runs, up to ``horizon_factor`` × the
    optimum's steps (rounded up to the evaluation grid).  Ties go to the smaller multiplier.

    Raises:
        InputError: an unknown kind, bad multipliers, or see :func:`first_hits`.
    """
    if kind not in KINDS:
        raise InputError(f"unknown NQM kind {kind!r}; valid: {', '.join(KINDS)}")
    if not len(multipliers) or not all(math.isfinite(m) and m > 0 for m in multipliers):
        raise InputError("learning-rate multipliers must be positive and finite")
    best = optimum or optimize(problem, kind, batch_size=batch_size, target=target, precond=precond, config=config)
    if not math.isfinite(best.steps):
        return FirstHit(math.inf, best.learning_rate, best.momentum, 1.0, 0.0, best.steps)
    horizon = int(eval_every * math.ceil(max(horizon_factor * best.steps, eval_every) / eval_every))  # on the grid
    build = KIND_TABLE[kind].build
    found = None
    for m in sorted(multipliers):
        dyn = build(best.learning_rate * m, best.momentum, best.ema, precond)
        hits = first_hits(problem, dyn, batch_size=batch_size, target=target, eval_every=eval_every,
                          horizon=horizon, runs=runs, seed=seed)
        median = float(np.median(hits))
        if found is None or median < found.steps:
            found = FirstHit(median, best.learning_rate * m, best.momentum, m, float(np.isfinite(hits).mean()),
                             best.steps)
    return found
