"""Seed-replicated steps to target: cell estimates, intervals with seed and selection noise, verdicts.

A tuned cell (optimizer, batch size) ends with a few *candidate* configurations, each rerun with
several training seeds.  Conventions (``inf`` = a seed that did not reach the target):

* **cell estimate** = the median over seeds of the candidate whose median is smallest (ties: the
  first).  The median of an even number of seeds is the mean of the middle two; it is ``inf`` as
  soon as half the seeds did not reach the target.
* **noise model**: a seed's ``log S`` is its candidate's centre ``μ_c`` (the mean of its finite log
  steps) plus a residual drawn from one pool shared by the whole study: every candidate's centred
  finite log steps, scaled by ``√(n/(n−1))``.  Seed noise of steps to target is roughly
  multiplicative and of similar size across cells (``shared/docs/measurement.md``: ±20–35%), so a
  pool of all residuals estimates its shape far better than three seeds of one cell.  A candidate
  keeps its own share of seeds that did not reach the target.
* **interval** (residual bootstrap, basic/pivotal in log space): simulate the whole estimator —
  draw every candidate's seeds from the noise model, reselect, take the median — ``R`` times; with
  the errors ``e* = log θ̂* − log θ*`` against the bootstrap world's truth
  ``θ* = min_c exp(μ_c + median(pool))``, the interval is ``θ̂ · exp(−q_{1−α/2}(e*)) …
  θ̂ · exp(−q_{α/2}(e*))``.  Reselection in every draw carries the winner's curse of picking the
  luckiest candidate into the interval.  With the search replayed (a :class:`Cell` with its trials),
  each draw keeps a random half of the search trials, conditioned on keeping one that reached the
  target, so the interval does not depend on the number of resamples (:func:`_keep_reaching`).
  A pruned search trial counts as never reaching the target in the replay (``pruned="never"``, the
  default).  Measured alternatives (``benchmarks/bench_protocol.py --pruned-replay``, 60 synthetic
  studies): drawing its outcome from the trials the search saw finish beyond its bound
  (``"hotdeck"``) shortens the lower ends (median half-width 0.33 instead of 0.59 at the
  ``stability-digits-loss`` budget) but covers 90–92% instead of 91–97%; putting it at its bound
  (``"censored"``) covers only 73–78%.
* **critical batch size**: the hyperbola ``S(B) = S_min (1 + B_noise/B)`` (:mod:`batchlab.critical`)
  fitted to the cell estimates; its interval from the same bootstrap, all cells of an optimizer drawn
  jointly, again pivotal in log space.
* **verdicts**: "A needs fewer steps than C at B" (or "A's critical batch size is larger") is
  *supported* when A's interval lies wholly on the claimed side of C's, *contradicted* when it lies
  wholly on the other side, and *inconclusive* when the two intervals overlap.

Pure NumPy; no I/O and no JAX.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

__all__ = ["Cell", "CellEstimate", "Verdict", "cell_median", "estimate_cells", "fit_b_noise", "critical_errors",
           "critical_interval", "residual_pool", "compare_intervals"]

Candidates = Sequence[np.ndarray]  # one array of per-seed steps (inf = not reached) per candidate


def cell_median(steps: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median over seeds with ``inf`` for unreached seeds (mean of the middle two for even counts)."""
    steps = np.sort(np.asarray(steps, dtype=np.float64), axis=axis)
    n = steps.shape[axis]
    lo = np.take(steps, (n - 1) // 2, axis=axis)
    hi = np.take(steps, n // 2, axis=axis)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(hi), np.inf, 0.5 * (lo + hi))


def _select(medians: np.ndarray) -> tuple[int, float]:
    index = int(np.argmin(medians))
    return index, float(medians[index])


def _centre(steps: np.ndarray) -> tuple[float, float]:
    """``(mean finite log steps, share of unreached seeds)`` of one candidate."""
    finite = steps[np.isfinite(steps)]
    share = 1.0 - finite.size / steps.size
    return (float(np.mean(np.log(finite))) if finite.size else math.inf), share


def residual_pool(cells: Sequence[Candidates]) -> np.ndarray:
    """Every candidate's centred finite log steps (``√(n/(n−1))``-scaled), from candidates with ≥ 2 finite seeds.

    Returns an empty array when no candidate has two finite seeds.
    """
    pool = []
    for candidates in cells:
        for steps in candidates:
            finite = np.log(np.asarray(steps, dtype=np.float64)[np.isfinite(steps)])
            if finite.size >= 2:
                pool.append((finite - finite.mean()) * math.sqrt(finite.size / (finite.size - 1)))
    return np.concatenate(pool) if pool else np.zeros(0)


@dataclasses.dataclass(frozen=True)
class CellEstimate:
    """One cell's answer.

    Attributes:
        steps: the cell estimate (median over seeds of the chosen candidate; ``inf`` if unreached).
        low, high: the interval (``0``/``inf`` ends when the data cannot bound it).
        chosen: index of the chosen candidate.
        seeds: the number of seeds behind ``steps``.
        draws: bootstrap-world log estimates (for joint use across cells), shape ``(R,)``.
        truth: bootstrap-world log truth of the cell.
    """

    steps: float
    low: float
    high: float
    chosen: int
    seeds: int
    draws: np.ndarray = dataclasses.field(repr=False)
    truth: float = dataclasses.field(repr=False)


def _draw_candidate(steps: np.ndarray, pool: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap-world medians of one candidate, shape ``(resamples,)`` (log scale)."""
    steps = np.asarray(steps, dtype=np.float64)
    n = steps.size
    centre, share = _centre(steps)
    if not math.isfinite(centre) or pool.size == 0:  # nothing to model: resample its own seeds
        index = rng.integers(0, n, size=(resamples, n))
        with np.errstate(divide="ignore"):
            return np.log(cell_median(steps[index], axis=1))
    logs = centre + pool[rng.integers(0, pool.size, size=(resamples, n))]
    if share > 0:
        logs = np.where(rng.random((resamples, n)) < share, np.inf, logs)
    return np.log(cell_median(np.exp(logs), axis=1))


def _truth(steps: np.ndarray, pool: np.ndarray) -> float:
    centre, share = _centre(np.asarray(steps, dtype=np.float64))
    if not math.isfinite(centre) or share >= 0.5:
        return math.inf
    if pool.size == 0:
        with np.errstate(divide="ignore"):
            return float(np.log(cell_median(np.asarray(steps, dtype=np.float64))))
    # median of a mixture of (1 − share) log-normal-ish draws and share · inf
    return centre + float(np.quantile(pool, min(0.5 / (1.0 - share), 1.0)))


def _pivot(estimate: float, errors: np.ndarray, confidence: float) -> tuple[float, float]:
    """``(low, high)`` of the basic bootstrap interval in log space, back on the original scale.

    A finite estimate's interval is conditioned on the bootstrap draws in which the estimator gave a
    finite answer too (a replayed search that reached nothing is no draw of a finite answer); when
    fewer than half did, the interval is ``(0, inf)``.
    """
    if not math.isfinite(estimate):
        return (math.nan if math.isnan(estimate) else 0.0), math.inf
    errors = errors[~np.isnan(errors)]
    finite = errors[np.isfinite(errors)]
    if finite.size == 0 or finite.size < 0.5 * errors.size:
        return 0.0, math.inf
    errors = finite
    alpha = (1.0 - confidence) / 2.0
    q_low, q_high = np.quantile(errors, [alpha, 1.0 - alpha], method="inverted_cdf")
    log_estimate = math.log(estimate)
    with np.errstate(over="ignore"):
        return float(np.exp(log_estimate - q_high)), float(np.exp(log_estimate - q_low))


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell's data: the replicated candidates and, optionally, the search that chose them.

    Attributes:
        candidates: per replicated configuration, its seeds' steps (``inf`` = not reached).
        trials: single-seed steps of the cell's search trials (explore and refine; ``inf`` = not
            reached, pruned included).  Empty: the interval carries seed noise and reselection only.
        origins: for each candidate, the index in ``trials`` of the run that selected it.
        pruned_at: per search trial, the step at which pruning stopped it (``nan``: not pruned);
            empty: none known.  Used only by the ``hotdeck`` and ``censored`` replays
            (:func:`estimate_cells`'s ``pruned``).
    """

    candidates: tuple[np.ndarray, ...]
    trials: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    origins: tuple[int, ...] = ()
    pruned_at: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))


def _as_cell(cell: Cell | Candidates) -> Cell:
    if isinstance(cell, Cell):
        return cell
    return Cell(tuple(np.asarray(c, dtype=np.float64) for c in cell))


def _keep_reaching(reaching: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The m-out-of-n subsamples (each trial kept with probability 1/2), conditioned on keeping a reaching trial.

    ``reaching`` marks the trials with a finite centre; the cell's search saw at least one of them (it
    has a candidate).  A subsample that drops them all replays a search that saw *no* reaching
    configuration: an artefact of subsampling, not a draw of the estimator.  Left in, such draws make
    up ``2^-f`` of all draws (``f`` reaching trials) -- half of them for a cell with one -- and put the
    cell's interval on the knife edge of :func:`_pivot`'s "fewer than half finite" rule, so that the
    resample count alone decided between a finite interval and ``(0, inf)``.  Rejection sampling
    redraws those rows until each keeps a reaching trial (``P = 1 − 2^-f ≥ 1/2`` per try).
    """
    keep = rng.random((resamples, reaching.size)) < 0.5
    if not reaching.any():
        return keep
    redo = ~(keep & reaching).any(axis=1)
    while redo.any():
        keep[redo] = rng.random((int(redo.sum()), reaching.size)) < 0.5
        redo = ~(keep & reaching).any(axis=1)
    return keep


PRUNED_REPLAYS = ("never", "hotdeck", "censored")


def _pruned_centres(cell: Cell, centre: np.ndarray, finite: np.ndarray, pruned: str, resamples: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The replay's centres and floors (log steps) of the search trials under a treatment of pruned ones.

    ``never``: a pruned trial never reaches the target (centre ``inf``; the default).  ``censored``: it
    reaches at ``max(its bound, the best centre)`` — slower than the step it was stopped at, and no
    better than the best configuration the search saw (the optimistic end).  ``hotdeck``: per draw,
    its centre is that of a random trial of the cell that finished (reached or not) above its bound
    — the outcomes the search did observe beyond that point; ``inf`` if there is none.  A censored
    or imputed trial's single-seed draw is floored at its bound.  Returns ``(centre, floor)``, each
    of shape ``(n,)`` or ``(resamples, n)``.
    """
    floor = np.full(centre.size, -np.inf)
    if pruned == "never" or cell.pruned_at.size != centre.size or not finite.any():
        return centre, floor
    stopped = np.isfinite(cell.pruned_at) & ~np.isfinite(centre)
    with np.errstate(divide="ignore"):
        bound = np.log(np.where(stopped, cell.pruned_at, 1.0))
    floor = np.where(stopped, bound, floor)
    if pruned == "censored":
        return np.where(stopped, np.maximum(bound, centre[finite].min()), centre), floor
    finished = ~np.isfinite(cell.pruned_at)  # reached, ran out of budget or diverged
    imputed = np.broadcast_to(centre, (resamples, centre.size)).copy()
    for t in np.flatnonzero(stopped):
        donors = centre[finished & (centre > bound[t])]
        imputed[:, t] = donors[rng.integers(0, donors.size, resamples)] if donors.size else np.inf
    return imputed, np.broadcast_to(floor, imputed.shape)


def _search_draws(cell: Cell, pool: np.ndarray, resamples: int, rng: np.random.Generator,
                  pruned: str = "never") -> tuple[np.ndarray, float]:
    """Bootstrap-world log estimates of a cell, search included, and the bootstrap world's log truth.

    Every search trial ``t`` gets a centre ``μ_t``: its candidate's centre if it was replicated, else its
    own log steps.  A draw keeps each trial with probability 1/2 — an m-out-of-n bootstrap with
    m = n/2, the standard remedy for bootstrapping an extreme (the full n-out-of-n bootstrap of a
    minimum is inconsistent; on the synthetic studies of ``benchmarks/bench_protocol.py`` keeping
    1 − 1/e of the trials covered the truth in 87–91% of cells, keeping 1/2 in 92–95%), conditioned on
    keeping at least one trial that reached the target (:func:`_keep_reaching`) — redraws each kept trial's single seed ``μ_t + r``, takes the
    ``len(candidates)`` best as candidates, redraws their seeds, and answers the smallest median —
    the protocol itself, replayed on the configurations the search saw.  The truth is the best
    centre among them.  A pruned trial counts as never reaching, unless ``pruned`` says otherwise
    (:func:`_pruned_centres`).
    """
    trials = np.asarray(cell.trials, dtype=np.float64)
    with np.errstate(divide="ignore"):
        centre = np.log(trials)
    share = np.zeros(trials.size)
    for c, t in zip(cell.candidates, cell.origins):
        centre[t], share[t] = _centre(np.asarray(c, dtype=np.float64))
    seeds = max(np.asarray(c).size for c in cell.candidates)
    k = len(cell.candidates)
    finite = np.isfinite(centre) & (share < 0.5)
    truth = float(centre[finite].min() + np.median(pool)) if finite.any() else math.inf
    keep = _keep_reaching(np.isfinite(centre), resamples, rng)
    centre, floor = _pruned_centres(cell, centre, finite, pruned, resamples, rng)
    single = np.maximum(centre + pool[rng.integers(0, pool.size, size=(resamples, trials.size))], floor)
    single = np.where(keep & np.isfinite(centre), single, np.inf)
    chosen = np.argsort(single, axis=1, kind="stable")[:, :k]  # (R, k)
    rows = np.arange(resamples)[:, None]
    picked = np.isfinite(single[rows, chosen])
    picked_centre = centre[chosen] if centre.ndim == 1 else np.take_along_axis(centre, chosen, axis=1)
    logs = picked_centre[..., None] + pool[rng.integers(0, pool.size, size=(resamples, k, seeds))]
    missing = rng.random((resamples, k, seeds)) < share[chosen][..., None]
    logs = np.where(missing | ~picked[..., None], np.inf, logs)
    draws = np.log(cell_median(np.exp(logs), axis=2)).min(axis=1)
    return draws, truth


def estimate_cells(cells: Sequence[Cell | Candidates], *, confidence: float = 0.95, resamples: int = 2000,
                   rng: np.random.Generator, pool: np.ndarray | None = None,
                   pruned: str = "never") -> list[CellEstimate]:
    """Estimate and interval for each cell (see the module docstring).

    Args:
        cells: per cell, a :class:`Cell`, or just its candidates' per-seed steps (``inf`` = not reached).
        confidence: of the intervals.
        resamples: bootstrap draws.
        rng: the bootstrap's generator.
        pool: the residual pool (default: :func:`residual_pool` of the cells' candidates).
        pruned: how the search replay treats a pruned trial: ``"never"`` (as never reaching the
            target) or ``"censored"`` (slower than the step it was stopped at, and no faster than
            the best configuration the search saw; needs :attr:`Cell.pruned_at`).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> [cell] = estimate_cells([[np.array([100., 120., 90.])]], rng=rng)
        >>> cell.steps, cell.low < 100 < cell.high
        (100.0, True)
    """
    if pruned not in PRUNED_REPLAYS:
        raise ValueError(f"pruned must be one of {', '.join(PRUNED_REPLAYS)}, got {pruned!r}")
    cells = [_as_cell(c) for c in cells]
    pool = residual_pool([c.candidates for c in cells]) if pool is None else pool
    out = []
    for cell in cells:
        candidates = cell.candidates
        if not candidates:
            nan = math.nan
            out.append(CellEstimate(math.inf, nan, nan, -1, 0, np.full(resamples, np.inf), math.inf))
            continue
        chosen, steps = _select(np.array([float(cell_median(c)) for c in candidates]))
        if cell.trials.size and len(cell.origins) == len(candidates) and pool.size:
            draws, truth = _search_draws(cell, pool, resamples, rng, pruned)
        else:
            draws = np.min(np.stack([_draw_candidate(c, pool, resamples, rng) for c in candidates]), axis=0)
            truth = min(_truth(c, pool) for c in candidates)
        with np.errstate(invalid="ignore"):
            errors = draws - truth if math.isfinite(truth) else np.full(resamples, np.nan)
        low, high = _pivot(steps, errors, confidence)
        out.append(CellEstimate(steps, low, high, chosen, int(np.asarray(candidates[chosen]).size), draws, truth))
    return out


def fit_b_noise(batch_sizes: np.ndarray, log_steps: np.ndarray, *, grid: int = 481) -> np.ndarray:
    """Least-squares ``B_noise`` of ``log S = log S_min + log(1 + B_noise/B)`` for many curves at once.

    Profiles ``log S_min`` out in closed form and minimises over ``log B_noise`` on a grid spanning
    ``[B_min/1000, 1000 B_max]``, refined by a parabola through the best grid point and its neighbours.
    Non-finite steps are left out of each curve's fit; curves with fewer than 2 finite points give
    ``nan``.  Agrees with :func:`batchlab.critical.fit_hyperbola` (tested).

    Args:
        batch_sizes: shape ``(n,)``.
        log_steps: shape ``(..., n)``.

    Returns:
        ``B_noise`` per curve, shape ``log_steps.shape[:-1]``.
    """
    B = np.asarray(batch_sizes, dtype=np.float64)
    y = np.asarray(log_steps, dtype=np.float64)
    flat = y.reshape(-1, B.size)
    ok = np.isfinite(flat)
    count = ok.sum(axis=1)
    log_b = np.linspace(math.log(B.min() / 1000.0), math.log(B.max() * 1000.0), grid)
    shape = np.log1p(np.exp(log_b)[:, None] / B[None, :])  # (grid, n)
    w = ok.astype(np.float64)
    yz = np.where(ok, flat, 0.0)
    # residual r = y − shape − mean_w(y − shape); cost = Σ_w r²  for every (curve, grid point)
    sw = np.maximum(count, 1)[:, None]
    mean_y = (yz.sum(axis=1) / sw[:, 0])[:, None]  # (m, 1)
    mean_shape = (w @ shape.T) / sw  # (m, grid)
    cost = ((yz ** 2).sum(axis=1)[:, None] - 2.0 * (yz @ shape.T) + w @ (shape ** 2).T) \
        - sw * (mean_y - mean_shape) ** 2
    k = np.argmin(cost, axis=1)
    inner = np.clip(k, 1, grid - 2)
    rows = np.arange(flat.shape[0])
    c0, c1, c2 = cost[rows, inner - 1], cost[rows, inner], cost[rows, inner + 1]
    denom = c0 - 2.0 * c1 + c2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where((k == inner) & (denom > 0), 0.5 * (c0 - c2) / denom, 0.0)
    step = log_b[1] - log_b[0]
    result = np.exp(log_b[k] + np.clip(shift, -1.0, 1.0) * step)
    result[count < 2] = np.nan
    return result.reshape(y.shape[:-1])


def critical_errors(batch_sizes: Sequence[int], cells: Sequence[CellEstimate]) -> tuple[float, np.ndarray]:
    """``(B_noise, bootstrap log errors)`` of one optimizer's cells (one :class:`CellEstimate` per batch size).

    The errors are ``log B̂*_noise − log B*_noise`` of the hyperbola fitted to each bootstrap draw of the
    cells (all cells drawn jointly) against the one fitted to the bootstrap world's truths (``nan``
    where a draw or the truth has fewer than 3 finite cells).  Fewer than 3 reached batch sizes give
    ``(nan, all nan)`` (a two-parameter fit through two points is exact and usually degenerate).
    """
    B = np.asarray(batch_sizes, dtype=np.float64)
    steps = np.array([c.steps for c in cells], dtype=np.float64)
    draws = np.stack([c.draws for c in cells], axis=1)
    if np.isfinite(steps).sum() < 3:
        return math.nan, np.full(draws.shape[0], np.nan)
    with np.errstate(divide="ignore"):
        point = float(fit_b_noise(B, np.log(steps)))
    truth_curve = np.array([c.truth for c in cells])
    truth = float(fit_b_noise(B, truth_curve)) if np.isfinite(truth_curve).sum() >= 2 else math.nan
    enough = np.isfinite(draws).sum(axis=1) >= 3
    fitted = np.full(draws.shape[0], np.nan)
    if enough.any():
        fitted[enough] = fit_b_noise(B, draws[enough])
    errors = np.log(fitted) - math.log(truth) if math.isfinite(truth) and truth > 0 else np.full_like(fitted, np.nan)
    return point, errors


def critical_interval(batch_sizes: Sequence[int], cells: Sequence[CellEstimate], *,
                      confidence: float = 0.95) -> tuple[float, float, float]:
    """``(B_noise, low, high)`` of one optimizer's cells (one :class:`CellEstimate` per batch size).

    Fewer than 3 reached batch sizes give ``nan`` (see :func:`critical_errors`).
    """
    point, errors = critical_errors(batch_sizes, cells)
    if math.isnan(point):
        return math.nan, math.nan, math.nan
    low, high = _pivot(point, errors, confidence)
    return point, low, high


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A claim about two optimizers, judged by their intervals.

    Attributes:
        claim: the claim in words, e.g. ``"adam needs fewer steps than sgd at B = 256"``.
        verdict: ``supported``, ``contradicted`` or ``inconclusive``.
        evidence: the two estimates and intervals in words.
    """

    claim: str
    verdict: str
    evidence: str


def compare_intervals(a: tuple[float, float], b: tuple[float, float], *, smaller: bool) -> str:
    """``supported`` if interval ``a`` lies wholly below ``b`` (``smaller``) or above it (not
    ``smaller``), ``contradicted`` if wholly on the other side, else (overlap or unknown) ``inconclusive``.
    """
    (a_low, a_high), (b_low, b_high) = a, b
    if any(math.isnan(v) for v in (a_low, a_high, b_low, b_high)):
        return "inconclusive"
    below, above = a_high < b_low, a_low > b_high
    if smaller:
        return "supported" if below else "contradicted" if above else "inconclusive"
    return "supported" if above else "contradicted" if below else "inconclusive"
