"""Steps-to-target curves from a study's trials: best per cell, bootstrap intervals, critical batch size.

Conventions (a trial that did not reach the target counts as infinitely many steps):

* **best steps** of a cell (optimizer, B) = ``min_i S_i`` over its finished trials.
* **bootstrap interval**: resample the cell's trials with replacement ``R`` times, take the minimum
  of each resample; the interval is the ``(1 ± c)/2`` quantiles (inverted CDF, so ``inf`` is a
  valid endpoint).  Every resample minimum is ≥ the full minimum, and the best trial is in a
  resample with probability ``1 − (1 − 1/n)^n ≥ 0.63``, so the lower end equals the point estimate.
  Pruned trials count as not reaching the target (they only stopped because they could no longer
  win), which makes the upper end conservative.
* **share reached** = reached / finished trials (pruned ones count as not reached: a lower bound).
* **effective learning rate** = ``learning_rate / (1 − momentum)`` for optimizers with a
  ``momentum`` hyperparameter (heavy ball, Nesterov, K-FAC), else ``learning_rate``.
* **critical batch size** per optimizer: :func:`batchlab.critical.critical_batch_size` on the best
  steps curve (hyperbola fit ``B_noise`` and the largest B within ``1 + tolerance`` of perfect
  scaling), with percentile intervals from resampling every cell's trials jointly.  The hyperbola
  has two parameters, so ``B_noise`` is reported only from :data:`MIN_FIT_POINTS` = 3 batch sizes
  that reached the target (two points fit exactly, often with ``B_noise → ∞``); its interval is over
  the resamples in which it is defined.
* **resamples**: 1 to :data:`MAX_RESAMPLES` = 100,000 per cell (more changes no reported digit and
  only costs time and memory).
* Only finished trials enter a cell (``reached``, ``budget``, ``diverged``, ``pruned``); ``finished``
  says how many of its ``trials`` that is, so an unfinished cell's best steps and share are over
  the trials finished so far.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from batchlab.critical import critical_batch_size
from batchlab.checks import check_integer
from batchlab.errors import InputError
from batchlab.store import FAILED, FINISHED

__all__ = ["DEFAULT_RESAMPLES", "MAX_RESAMPLES", "MIN_FIT_POINTS", "bootstrap_minimum", "best_per_cell", "check_resamples",
           "critical_batch_sizes", "ema_decay_table", "effective_rate"]

MIN_FIT_POINTS = 3
MAX_RESAMPLES = 100_000
DEFAULT_RESAMPLES = 2000  # every entry point (analyze, report, compare, api.load) uses the same count,
# so that one study's outputs give the same intervals and verdicts
_BLOCK = 1 << 22  # resampled indices held at once (32 MiB)


def check_resamples(resamples: int, name: str = "resamples") -> int:
    """``resamples`` if it is an integer in ``[1, MAX_RESAMPLES]``.

    Raises:
        InputError: otherwise (one line naming ``name``).
    """
    return int(check_integer(resamples, name, 1, MAX_RESAMPLES, numpy=True,
                             expected=f"an integer in [1, {MAX_RESAMPLES:,}]"))


def bootstrap_minimum(steps: np.ndarray, *, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Minimum of each of ``resamples`` resamples (with replacement) of ``steps`` (``inf`` = not reached)."""
    steps = np.asarray(steps, dtype=np.float64)
    if steps.size == 0:
        return np.full(resamples, np.inf)
    rows = max(1, _BLOCK // steps.size)  # blocks of rows draw the same numbers as one call
    return np.concatenate([steps[rng.integers(0, steps.size, size=(min(rows, resamples - start), steps.size))]
                           .min(axis=1) for start in range(0, resamples, rows)])


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    finite_or_inf = samples[~np.isnan(samples)]
    if finite_or_inf.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite_or_inf, [alpha, 1.0 - alpha], method="inverted_cdf")
    return float(low), float(high)


def effective_rate(row: pd.Series) -> float:
    """``learning_rate / (1 − momentum)`` if the row has a momentum, else ``learning_rate``."""
    rate = row.get("hp_learning_rate", math.nan)
    momentum = row.get("hp_momentum", math.nan)
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return math.nan
    if momentum is None or (isinstance(momentum, float) and math.isnan(momentum)):
        return float(rate)
    return float(rate) / (1.0 - float(momentum))


def _steps(cell: pd.DataFrame) -> np.ndarray:
    finished = cell[cell["status"].isin(FINISHED)]
    return np.where(finished["status"] == "reached", finished["steps_to_target"], np.inf).astype(np.float64)


def best_per_cell(trials: pd.DataFrame, *, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0, order: list[str] | None = None) -> pd.DataFrame:
    """One row per (optimizer, batch size): counts, best steps with its bootstrap interval, and the
    winning trial's hyperparameters (``hp_*``), learning rate and effective learning rate.

    Args:
        trials: :func:`batchlab.store.frames.trials_frame`.
        confidence: of the percentile interval.
        resamples: bootstrap resamples per cell.
        seed: of the bootstrap.
        order: optimizer order of the rows (default: first appearance).

    Raises:
        InputError: ``resamples`` outside ``[1, MAX_RESAMPLES]``.
    """
    resamples = check_resamples(resamples)
    rng = np.random.default_rng(seed)
    hp_columns = [c for c in trials.columns if c.startswith("hp_")]
    rows = []
    for (optimizer, batch_size), cell in trials.groupby(["optimizer", "batch_size"], sort=False):
        steps = _steps(cell)
        counts = cell["status"].value_counts()
        finished = int(steps.size)
        best = float(steps.min()) if steps.size else math.inf
        low, high = _interval(bootstrap_minimum(steps, resamples=resamples, rng=rng), confidence)
        row = {"optimizer": optimizer, "batch_size": int(batch_size), "trials": len(cell), "finished": finished,
               **{status: int(counts.get(status, 0)) for status in FINISHED + (FAILED,)},
               "share_reached": counts.get("reached", 0) / finished if finished else math.nan,
               "best_steps": best, "steps_low": low, "steps_high": high,
               "best_trial": None, "best_ema_decay": math.nan}
        if math.isfinite(best):
            reached = cell[cell["status"] == "reached"]
            winner = reached.loc[reached["steps_to_target"].idxmin()]
            row.update(best_trial=winner["id"], best_ema_decay=winner.get("best_ema_decay", math.nan),
                       **{c: winner[c] for c in hp_columns},
                       learning_rate=winner.get("hp_learning_rate", math.nan),
                       effective_learning_rate=effective_rate(winner))
        rows.append(row)
    frame = pd.DataFrame(rows)
    order = order or list(dict.fromkeys(trials["optimizer"]))
    if frame.empty:
        return frame
    frame["_rank"] = frame["optimizer"].map({o: i for i, o in enumerate(order)})
    return frame.sort_values(["_rank", "batch_size"]).drop(columns="_rank").reset_index(drop=True)


def _b_noise(estimate) -> float:
    fit = estimate.fit
    return fit.b_noise if fit is not None and fit.points >= MIN_FIT_POINTS else math.nan


def critical_batch_sizes(trials: pd.DataFrame, *, tolerance: float = 0.2, confidence: float = 0.95,
                         resamples: int = 200, seed: int = 0, order: list[str] | None = None) -> pd.DataFrame:
    """Both critical batch size estimators per optimizer, with bootstrap percentile intervals.

    Returns:
        One row per optimizer: ``points`` (batch sizes that reached), ``s_min``, ``b_noise``,
        ``b_noise_low/high``, ``fit_residual``, ``overhead``, ``overhead_low/high``,
        ``overhead_interpolated`` (+ ``_low/_high``), ``tolerance``, ``complete`` (every trial of
        every cell finished).

    Raises:
        InputError: ``resamples`` outside ``[1, MAX_RESAMPLES]``.
    """
    resamples = check_resamples(resamples)
    rng = np.random.default_rng(seed)
    order = order or list(dict.fromkeys(trials["optimizer"]))
    rows = []
    for optimizer in order:
        sub = trials[trials["optimizer"] == optimizer]
        cells = [(int(b), _steps(cell)) for b, cell in sub.groupby("batch_size")]
        sizes = np.array([b for b, _ in cells], dtype=np.float64)
        best = np.array([s.min() if s.size else np.inf for _, s in cells])
        point = critical_batch_size(sizes, best, tolerance)
        draws = np.stack([bootstrap_minimum(s, resamples=resamples, rng=rng) for _, s in cells], axis=1) \
            if cells else np.zeros((resamples, 0))
        samples = {"b_noise": [], "overhead": [], "overhead_interpolated": []}
        for curve in draws:
            if np.isfinite(curve).sum() == 0:
                continue
            estimate = critical_batch_size(sizes, curve, tolerance)
            samples["b_noise"].append(_b_noise(estimate))
            samples["overhead"].append(estimate.overhead)
            samples["overhead_interpolated"].append(estimate.overhead_interpolated)
        fitted = not math.isnan(_b_noise(point))
        row = {"optimizer": optimizer, "points": int(np.isfinite(best).sum()),
               "s_min": point.fit.s_min if fitted else math.nan,
               "b_noise": point.fit.b_noise if fitted else math.nan,
               "fit_residual": point.fit.residual if fitted else math.nan,
               "overhead": point.overhead, "overhead_interpolated": point.overhead_interpolated,
               "tolerance": tolerance, "complete": bool(sub["status"].isin(FINISHED).all())}
        for name, values in samples.items():
            row[f"{name}_low"], row[f"{name}_high"] = _interval(np.asarray(values, dtype=np.float64), confidence)
        rows.append(row)
    return pd.DataFrame(rows)


def ema_decay_table(tracks: pd.DataFrame) -> pd.DataFrame:
    """For ``+ema`` optimizers: best steps per (optimizer, batch size, decay) over trials, and how many
    trials reached the target with that decay."""
    ema = tracks[tracks["ema_decay"].notna()]
    if ema.empty:
        return pd.DataFrame(columns=["optimizer", "batch_size", "ema_decay", "best_steps", "reached", "trials"])
    steps = np.where(ema["status"] == "reached", ema["steps_to_target"], np.inf)
    ema = ema.assign(steps=steps, hit=ema["status"] == "reached")
    table = ema.groupby(["optimizer", "batch_size", "ema_decay"], sort=True).agg(
        best_steps=("steps", "min"), reached=("hit", "sum"), trials=("hit", "size")).reset_index()
    table["reached"] = table["reached"].astype(int)
    return table
