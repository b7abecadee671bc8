"""A seed-replicated study's answer: per-cell steps with intervals, critical batch sizes, verdicts.

Reads a trials frame (:func:`batchlab.store.frames.trials_frame`) whose trials carry a ``phase``
(``explore``, ``refine`` or ``replicate``) and, for replicates, the ``origin`` trial they rerun.
Per (optimizer, batch size) the search trials (explore and refine) and the replicated candidates
become one :class:`batchlab.analysis.uncertainty.Cell`; estimates and intervals are those of
:mod:`batchlab.analysis.uncertainty` (the median over seeds of the best candidate; a residual
bootstrap that replays the search and the seeds).  All cells of a study share one residual pool.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from batchlab.critical import critical_batch_size
from batchlab.store import FAILED, FINISHED
from batchlab.analysis.uncertainty import Cell, compare_intervals, critical_interval, estimate_cells

__all__ = ["is_replicated", "replicated_cells", "replicated_critical", "verdicts"]



def is_replicated(trials: pd.DataFrame) -> bool:
    """Whether the study ran a replicate phase (some trial's ``phase`` is ``replicate``)."""
    return "phase" in trials.columns and bool((trials["phase"] == "replicate").any())


def _steps(rows: pd.DataFrame) -> np.ndarray:
    return np.where(rows["status"] == "reached", rows["steps_to_target"], np.inf).astype(np.float64)


def _cell(rows: pd.DataFrame) -> tuple[Cell, pd.DataFrame, list[str]]:
    """The cell's data, its finished search trials (in order) and the origin id of each candidate."""
    search = rows[rows["phase"].isin(["explore", "refine"]) & rows["status"].isin(FINISHED)]
    search = search.sort_values(["round", "trial_index"], kind="stable")
    replicas = rows[(rows["phase"] == "replicate") & rows["status"].isin(FINISHED)]
    position = {trial_id: i for i, trial_id in enumerate(search["id"])}
    origins = [o for o in dict.fromkeys(replicas.sort_values("trial_index", kind="stable")["origin"]) if o in position]
    candidates = tuple(_steps(replicas[replicas["origin"] == o]) for o in origins)
    stopped = search["steps_run"] if "steps_run" in search.columns else np.nan
    pruned_at = np.where(search["status"] == "pruned", stopped, np.nan).astype(np.float64)
    cell = Cell(candidates, _steps(search), tuple(position[o] for o in origins), pruned_at)
    return cell, search, origins


def replicated_cells(trials: pd.DataFrame, *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0,
                     order: list[str] | None = None, pruned: str = "never") -> tuple[pd.DataFrame, dict]:
    """One row per (optimizer, batch size): the cell's answer and interval, and the chosen configuration.

    ``pruned`` is how the interval's search replay treats a pruned trial (stopped at its
    ``steps_run``): see :func:`batchlab.analysis.uncertainty.estimate_cells`.

    Returns:
        ``(frame, estimates)``: the frame has ``optimizer``, ``batch_size``, ``trials``, ``finished``,
        ``search_trials``, ``candidates``, ``seeds``, ``steps`` (median over seeds of the chosen
        candidate; ``inf`` if unreached), ``steps_low``, ``steps_high``, ``complete``, ``best_trial``
        (the chosen candidate's selecting trial), its ``hp_*``, ``learning_rate`` and
        ``effective_learning_rate``; ``estimates`` maps ``(optimizer, batch size)`` to its
        :class:`~batchlab.analysis.uncertainty.CellEstimate` (for :func:`replicated_critical`).
    """
    from batchlab.analysis.scaling import effective_rate

    order = order or list(dict.fromkeys(trials["optimizer"]))
    hp_columns = [c for c in trials.columns if c.startswith("hp_")]
    keys, cells, extras = [], [], []
    for optimizer in order:
        for batch_size, rows in trials[trials["optimizer"] == optimizer].groupby("batch_size", sort=True):
            cell, search, origins = _cell(rows)
            keys.append((optimizer, int(batch_size)))
            cells.append(cell)
            extras.append((rows, search, origins))
    estimates = estimate_cells(cells, confidence=confidence, resamples=resamples, rng=np.random.default_rng(seed),
                               pruned=pruned)
    out = []
    for (optimizer, batch_size), cell, estimate, (rows, search, origins) in zip(keys, cells, estimates, extras):
        counts = search["status"].value_counts()
        row = {"optimizer": optimizer, "batch_size": batch_size, "trials": len(rows),
               "finished": int(rows["status"].isin(FINISHED).sum()), "search_trials": len(search),
               **{status: int(counts.get(status, 0)) for status in FINISHED},
               FAILED: int((rows["status"] == FAILED).sum()),
               "share_reached": counts.get("reached", 0) / len(search) if len(search) else math.nan,
               "candidates": len(cell.candidates), "seeds": estimate.seeds, "steps": estimate.steps,
               "best_steps": estimate.steps, "steps_low": estimate.low, "steps_high": estimate.high,
               "complete": bool(rows["status"].isin(FINISHED).all()), "best_trial": None,
               "best_ema_decay": math.nan}
        if estimate.chosen >= 0:
            winner = search[search["id"] == origins[estimate.chosen]].iloc[0]
            row.update(best_trial=winner["id"], best_ema_decay=winner.get("best_ema_decay", math.nan),
                       **{c: winner[c] for c in hp_columns},
                       learning_rate=winner.get("hp_learning_rate", math.nan),
                       effective_learning_rate=effective_rate(winner))
        out.append(row)
    return pd.DataFrame(out), dict(zip(keys, estimates))


def replicated_critical(frame: pd.DataFrame, estimates: dict, *, confidence: float = 0.95,
                        tolerance: float = 0.2) -> pd.DataFrame:
    """Per optimizer: ``B_noise`` of the hyperbola through the cell answers, with its bootstrap
    interval, and the 20%-overhead estimator on the same curve (no interval)."""
    rows = []
    for optimizer, cells in frame.groupby("optimizer", sort=False):
        sizes = [int(b) for b in cells["batch_size"]]
        mine = [estimates[(optimizer, b)] for b in sizes]
        b_noise, low, high = critical_interval(sizes, mine, confidence=confidence)
        point = critical_batch_size(np.array(sizes, dtype=np.float64), cells["steps"].to_numpy(float), tolerance)
        fitted = point.fit is not None and math.isfinite(b_noise)
        rows.append({"optimizer": optimizer, "points": int(np.isfinite(cells["steps"]).sum()),
                     "s_min": point.fit.s_min if fitted else math.nan,
                     "b_noise": b_noise, "b_noise_low": low, "b_noise_high": high,
                     "fit_residual": point.fit.residual if fitted else math.nan,
                     "overhead": point.overhead, "overhead_low": math.nan, "overhead_high": math.nan,
                     "overhead_interpolated": point.overhead_interpolated, "tolerance": tolerance,
                     "complete": bool(cells["complete"].all())})
    return pd.DataFrame(rows)


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "?"
    if math.isinf(value):
        return "∞"
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def verdicts(cells: pd.DataFrame, critical: pd.DataFrame, *, order: list[str] | None = None) -> pd.DataFrame:
    """Every pairwise claim with its verdict (see :func:`~batchlab.analysis.uncertainty.compare_intervals`).

    For optimizers ``A`` before ``C`` in ``order``: "A needs fewer steps than C at B = b" for every batch
    size both ran, and "A's critical batch size is larger than C's".  *supported*: A's interval lies
    wholly on the claimed side of C's; *contradicted*: wholly on the other side; *inconclusive*: they
    overlap (or one is unknown).

    Returns:
        Columns ``a``, ``b``, ``batch_size`` (``None`` for the critical-batch-size claim), ``claim``,
        ``verdict``, ``evidence``.
    """
    order = order or list(dict.fromkeys(cells["optimizer"]))
    rows = []
    for a, c in itertools.combinations(order, 2):
        left = cells[cells["optimizer"] == a].set_index("batch_size")
        right = cells[cells["optimizer"] == c].set_index("batch_size")
        for size in sorted(set(left.index) & set(right.index)):
            x, y = left.loc[size], right.loc[size]
            verdict = compare_intervals((x["steps_low"], x["steps_high"]), (y["steps_low"], y["steps_high"]),
                                        smaller=True)
            evidence = (f"{a} {_fmt(x['steps'])} [{_fmt(x['steps_low'])}, {_fmt(x['steps_high'])}] vs "
                        f"{c} {_fmt(y['steps'])} [{_fmt(y['steps_low'])}, {_fmt(y['steps_high'])}] steps")
            rows.append({"a": a, "b": c, "batch_size": int(size),
                         "claim": f"{a} needs fewer steps than {c} at B = {int(size):,}",
                         "verdict": verdict, "evidence": evidence})
        ca, cc = critical[critical["optimizer"] == a], critical[critical["optimizer"] == c]
        if len(ca) and len(cc):
            x, y = ca.iloc[0], cc.iloc[0]
            verdict = compare_intervals((x["b_noise_low"], x["b_noise_high"]), (y["b_noise_low"], y["b_noise_high"]),
                                        smaller=False)
            evidence = (f"B_noise {a} {_fmt(x['b_noise'])} [{_fmt(x['b_noise_low'])}, {_fmt(x['b_noise_high'])}] vs "
                        f"{c} {_fmt(y['b_noise'])} [{_fmt(y['b_noise_low'])}, {_fmt(y['b_noise_high'])}]")
            rows.append({"a": a, "b": c, "batch_size": None,
                         "claim": f"{a}'s critical batch size is larger than {c}'s",
                         "verdict": verdict, "evidence": evidence})
    return pd.DataFrame(rows, columns=["a", "b", "batch_size", "claim", "verdict", "evidence"])
