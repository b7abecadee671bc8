"""The report's tables, as display-ready data frames (strings), from a :class:`StudyAnalysis`.

A cell (optimizer, batch size) with unfinished trials is marked :data:`INCOMPLETE` after its batch
size (an optimizer with any such cell, in the critical batch size table); its numbers are over the
trials finished so far, and the scaling table's ``done`` column says how many.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from batchlab.store import FAILED, FINISHED

__all__ = ["INCOMPLETE", "NOTES", "fmt_steps", "fmt_number", "scaling_table", "critical_table",
           "hyperparameter_table", "ema_table", "compute_table", "status_table", "prediction_table",
           "predicted_hyperparameter_table", "report_tables",
           "unfinished_note"]

INCOMPLETE = "*"


def unfinished_note(finished: int, total: int) -> str | None:
    """``"study unfinished: 37/96 trials done; cells marked * are incomplete ..."``, or None when
    every trial has finished."""
    if finished >= total:
        return None
    return (f"study unfinished: {finished}/{total} trials done; cells marked {INCOMPLETE} are incomplete "
            "(their numbers are over the finished trials only)")


def _cell_label(size: Any, complete: bool) -> str:
    return f"{int(size):,}" + ("" if complete else INCOMPLETE)


def _cell_labels(best: pd.DataFrame) -> list[str]:
    return [_cell_label(b, f == t) for b, f, t in zip(best["batch_size"], best["finished"], best["trials"])]


def fmt_steps(value: Any) -> str:
    """``1,234``; ``—`` for not reached (inf) or missing."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{value:,.0f}" if math.isfinite(value) else "—"


def fmt_number(value: Any, digits: int = 3) -> str:
    """Significant-digit formatting; ``—`` for missing or non-finite."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "—" if value is None else str(value)
    return f"{value:.{digits}g}" if math.isfinite(value) else "—"


def _steps_intervals(best: pd.DataFrame) -> list[str]:
    return [f"[{fmt_steps(lo)}, {fmt_steps(hi)}]" for lo, hi in zip(best["steps_low"], best["steps_high"])]


def scaling_table(best: pd.DataFrame) -> pd.DataFrame:
    """Best steps with interval, trial counts and share reached, per (optimizer, batch size)."""
    return pd.DataFrame({
        "optimizer": best["optimizer"],
        "batch size": _cell_labels(best),
        "best steps": best["best_steps"].map(fmt_steps),
        "95% interval": _steps_intervals(best),
        "trials": best["trials"],
        "done": [f"{f}/{t}" for f, t in zip(best["finished"], best["trials"])],
        "reached": best["reached"],
        "pruned": best["pruned"],
        "diverged": best["diverged"],
        "share reached": best["share_reached"].map(lambda v: "—" if not math.isfinite(v) else f"{v:.0%}"),
    })


def critical_table(critical: pd.DataFrame) -> pd.DataFrame:
    """Both critical batch size estimators per optimizer with their intervals."""
    if critical.empty:
        return pd.DataFrame()
    tol = critical["tolerance"].iloc[0]
    complete = critical["complete"] if "complete" in critical else pd.Series(True, index=critical.index)
    return pd.DataFrame({
        "optimizer": [o + ("" if c else INCOMPLETE) for o, c in zip(critical["optimizer"], complete)],
        "batch sizes reached": critical["points"],
        "B_noise (hyperbola fit)": critical["b_noise"].map(lambda v: fmt_number(v, 4)),
        "B_noise interval": [f"[{fmt_number(lo, 3)}, {fmt_number(hi, 3)}]"
                             for lo, hi in zip(critical["b_noise_low"], critical["b_noise_high"])],
        "S_min": critical["s_min"].map(fmt_steps),
        "fit RMS log residual": critical["fit_residual"].map(lambda v: fmt_number(v, 2)),
        f"largest B within {tol:.0%} of perfect scaling": critical["overhead"].map(fmt_steps),
        "interval": [f"[{fmt_steps(lo)}, {fmt_steps(hi)}]"
                     for lo, hi in zip(critical["overhead_low"], critical["overhead_high"])],
        "interpolated crossing": critical["overhead_interpolated"].map(lambda v: fmt_number(v, 4)),
    })


def hyperparameter_table(best: pd.DataFrame) -> pd.DataFrame:
    """The winning trial's hyperparameters per (optimizer, batch size) (tuned ones and EMA decay)."""
    hp = [c for c in best.columns if c.startswith("hp_")]
    varying = [c for c in hp if best[c].dropna().astype(str).nunique() > 1 or c == "hp_learning_rate"]
    out = pd.DataFrame({"optimizer": best["optimizer"], "batch size": _cell_labels(best),
                        "winning trial": best["best_trial"].fillna("—")})
    for column in varying:
        out[column.removeprefix("hp_")] = best[column].map(fmt_number)
    if "effective_learning_rate" in best:
        out["effective learning rate"] = best["effective_learning_rate"].map(fmt_number)
    if best["best_ema_decay"].notna().any():
        out["best EMA decay"] = best["best_ema_decay"].map(fmt_number)
    return out


def ema_table(ema: pd.DataFrame, best: pd.DataFrame | None = None) -> pd.DataFrame:
    """Best steps per tracked EMA decay (columns) per (optimizer, batch size) (rows); cells that
    ``best`` (:func:`batchlab.analysis.best_per_cell`) shows unfinished are marked."""
    if ema.empty:
        return pd.DataFrame()
    wide = ema.pivot_table(index=["optimizer", "batch_size"], columns="ema_decay", values="best_steps",
                           aggfunc="min").reset_index()
    complete = {} if best is None else {(o, int(b)): f == t for o, b, f, t in
                                        zip(best["optimizer"], best["batch_size"], best["finished"], best["trials"])}
    out = pd.DataFrame({"optimizer": wide["optimizer"],
                        "batch size": [_cell_label(b, complete.get((o, int(b)), True))
                                       for o, b in zip(wide["optimizer"], wide["batch_size"])]})
    for decay in [c for c in wide.columns if c not in ("optimizer", "batch_size")]:
        out[f"γ = {decay:g}"] = wide[decay].map(fmt_steps)
    return out


def compute_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Measured cost per (optimizer, batch size): steps run, wall time, time per step, pruned steps."""
    done = trials[trials["steps_run"].notna()]
    rows = []
    for (name, size), cell in done.groupby(["optimizer", "batch_size"], sort=False):
        steps = float(cell["steps_run"].sum())
        wall = float(cell["wall_time"].sum())
        pruned = cell[cell["status"] == "pruned"]
        unpruned_budget = float((pruned["max_steps"] - pruned["steps_run"]).sum())
        rows.append({"optimizer": name, "batch size": f"{int(size):,}", "trials": len(cell),
                     "steps run": f"{steps:,.0f}", "wall time (s)": f"{wall:,.1f}",
                     "mean per trial (s)": f"{wall / len(cell):,.2f}",
                     "ms per step (incl. eval)": fmt_number(1e3 * wall / steps if steps else math.nan),
                     "steps avoided by pruning (at most)": f"{unpruned_budget:,.0f}"})
    return pd.DataFrame(rows)


def status_table(trials: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Trial counts by status per optimizer (in ``order``) and in total."""
    statuses = [*FINISHED, FAILED, "running", "interrupted", "pending"]
    counts = trials.groupby("optimizer", sort=False)["status"].value_counts().unstack(fill_value=0)
    counts = counts.reindex(columns=statuses, fill_value=0)
    if order:
        counts = counts.reindex([o for o in order if o in counts.index])
    counts.loc["total"] = counts.sum()
    counts.insert(0, "trials", counts.sum(axis=1))
    return counts.reset_index().rename(columns={"index": "optimizer"})


def replicated_scaling_table(best: pd.DataFrame) -> pd.DataFrame:
    """Median steps over seeds with interval, search and replication counts, per (optimizer, batch size)."""
    return pd.DataFrame({
        "optimizer": best["optimizer"],
        "batch size": _cell_labels(best),
        "steps (median over seeds)": best["steps"].map(fmt_steps),
        "95% interval": _steps_intervals(best),
        "seeds": best["seeds"],
        "candidates": best["candidates"],
        "search trials": best["search_trials"],
        "done": [f"{f}/{t}" for f, t in zip(best["finished"], best["trials"])],
        "share of search reached": best["share_reached"].map(lambda v: "—" if not math.isfinite(v) else f"{v:.0%}"),
    })


def verdict_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Every pairwise claim with its verdict and evidence."""
    if verdicts.empty:
        return pd.DataFrame()
    return pd.DataFrame({"claim": verdicts["claim"], "verdict": verdicts["verdict"], "evidence": verdicts["evidence"]})


def prediction_table(versus: pd.DataFrame) -> pd.DataFrame:
    """Predicted vs measured critical batch size with their ratio (an ensemble calibration's prediction
    with the range over its seeds)."""
    if versus.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "optimizer": versus["optimizer"],
        "predicted B_crit (NQM)": [fmt_number(v, 4) + (f" [seeds {fmt_number(lo, 3)}–{fmt_number(hi, 3)}]"
                                                       if math.isfinite(lo) and math.isfinite(hi) else "")
                                   for v, lo, hi in zip(versus["predicted"], versus["predicted_low"],
                                                        versus["predicted_high"])],
        "measured B_noise [95%]": [f"{fmt_number(v, 4)} [{fmt_number(lo, 4)}, {fmt_number(hi, 4)}]"
                                   for v, lo, hi in zip(versus["measured_b_noise"], versus["measured_low"],
                                                        versus["measured_high"])],
        "measured (20% overhead)": versus["measured_overhead"].map(fmt_steps),
        "ratio predicted / measured [95%]": [f"{fmt_number(v, 3)} [{fmt_number(lo, 3)}, {fmt_number(hi, 3)}]"
                                             for v, lo, hi in zip(versus["ratio"], versus["ratio_low"],
                                                                  versus["ratio_high"])],
        "within 2x": versus["within"],
    })


def predicted_hyperparameter_table(versus: pd.DataFrame) -> pd.DataFrame:
    """The NQM's predicted learning rate (and momentum) next to the winning ones, per cell."""
    if versus.empty:
        return pd.DataFrame()
    out = pd.DataFrame({
        "optimizer": versus["optimizer"],
        "batch size": versus["batch_size"].map(lambda b: f"{int(b):,}"),
        "winning learning rate": versus["winning_learning_rate"].map(fmt_number),
        "predicted learning rate (NQM)": versus["predicted_learning_rate"].map(fmt_number),
        "ratio winning / predicted": versus["ratio"].map(lambda v: fmt_number(v, 3)),
    })
    if versus["winning_momentum"].notna().any():
        out["winning momentum"] = versus["winning_momentum"].map(fmt_number)
        out["predicted momentum (NQM)"] = versus["predicted_momentum"].map(fmt_number)
    return out


NOTES = {
    "scaling": "Interval: 95% percentile bootstrap over the cell's trials (resample, take the minimum); "
               "its lower end is the best steps itself, an upper end — means more than 2.5% of resamples "
               "held no trial that reached the target. Pruned trials count as not reaching it, so the share "
               "reached is a lower bound and the upper end conservative. Shares and best steps are over the "
               "finished trials (done); a batch size marked * has unfinished trials.",
    "critical_batch_size": "B_noise: least-squares fit of S(B) = S_min (1 + B_noise / B) in log space; overhead: "
                           "the largest batch size whose steps stay within the tolerance of perfect scaling from "
                           "the smallest one (batchlab.critical). Intervals: bootstrap over every cell's trials.",
    "hyperparameters": "The winning trial's values of the hyperparameters that vary across trials; effective "
                       "learning rate = learning_rate / (1 − momentum) where the optimizer has a momentum.",
    "replicated_scaling": "Each cell's answer is the median over fresh training seeds of the best of its replicated "
                          "configurations (chosen by the search: explore, refine; the runs that chose them are not "
                          "among the seeds). Interval: 95% residual bootstrap that replays the search (half the "
                          "trials kept, single-seed redraws, reselection) and the seeds, pivotal in log steps "
                          "(batchlab.analysis.uncertainty). A batch size marked * has unfinished trials.",
    "verdicts": "Supported: the first optimizer's 95% interval lies wholly on the claimed side of the second's; "
                "contradicted: wholly on the other side; inconclusive: the intervals overlap. Never a ranking of "
                "point estimates.",
    "prediction_hyperparameters": "Predicted: the calibrated NQM's tuned learning rate and momentum, interpolated "
                                  "log-log at each batch size (log(1 − β) for the momentum; — outside the predicted "
                                  "batch sizes). Only optimizers whose predicted learning rates are in their own "
                                  "units are listed (precond 0, or \"units\": \"optimizer\"); a preconditioned "
                                  "proxy's (Adam, K-FAC) are not comparable. Winning: the configuration that "
                                  "answers the cell (the replicated candidate, or the best trial).",
    "compute": "Wall time includes compilation (first trial of each cell) and evaluation. Steps avoided by "
               "pruning: budget minus steps run of the pruned trials, an upper bound on the saving.",
}


def report_tables(analysis: Any) -> dict[str, tuple[str, pd.DataFrame]]:
    """Every table of the report: stem → (title, display frame); empty tables are left out."""
    replicated = getattr(analysis, "replicated", False)
    scaling = (("replicated_scaling", ("Steps to target per batch size (median over seeds; interval includes search "
                                       "and seed noise)", replicated_scaling_table(analysis.best)))
               if replicated else
               ("scaling", ("Steps to target per batch size (best trial; bootstrap interval over trials)",
                            scaling_table(analysis.best))))
    tables = {
        "status": ("Trials by status", status_table(analysis.trials, analysis.optimizers)),
        scaling[0]: scaling[1],
        "verdicts": ("Which optimizer needs fewer steps, which scales further: verdicts",
                     verdict_table(getattr(analysis, "verdicts", pd.DataFrame()))),
        "critical_batch_size": ("Critical batch size per optimizer", critical_table(analysis.critical)),
        "hyperparameters": ("Winning hyperparameters", hyperparameter_table(analysis.best)),
        "ema_decays": ("Best steps per tracked EMA decay", ema_table(analysis.ema, analysis.best)),
        "compute": ("Measured compute", compute_table(analysis.trials)),
        "prediction": ("NQM prediction vs measurement", prediction_table(analysis.prediction_vs_measured)),
        "prediction_hyperparameters": ("NQM-predicted vs winning hyperparameters", predicted_hyperparameter_table(
            getattr(analysis, "hyperparameters_vs_prediction", pd.DataFrame()))),
    }
    return {k: v for k, v in tables.items() if not v[1].empty}
