"""The calibrated NQM against seed-replicated study measurements (issue 15's validation table).

For each study folder given (a finished study with the explore / refine / replicate protocol, and a
``batchlab calibrate`` output in ``STUDY/calibration/`` or given with ``STUDY=CALIBRATION_DIR``):

* per optimizer, the predicted critical batch size (the hyperbola fit's ``B_noise`` of the NQM's
  tuned curve) against the measured one with its 95% bootstrap interval (seed and search noise,
  :mod:`batchlab.analysis.replicated`), the ratio predicted / measured with its interval, and the
  verdict on "within 2x" (supported / contradicted / inconclusive,
  :func:`batchlab.analysis.prediction.within_factor`); for an ensemble calibration (``batchlab calibrate
  --seeds N`` or ``calibrate-combine``: :mod:`batchlab.calibrate.ensemble`) the predicted one is its median
  curve's, shown with the range of its calibration seeds' own;
* per (optimizer, batch size), the predicted steps (the NQM curve interpolated log-log at the study's
  batch sizes) against the measured cell answer (median over replication seeds) with its interval;
* per (optimizer, batch size), the NQM's tuned learning rate (and momentum) against the measured
  winner's;
* one figure per study: measured steps with intervals (an open marker where the interval is unbounded),
  predicted curves.

Each ``STUDY=CALIBRATION_DIR`` is one row set, named "study (calibration folder)", so one study can
be compared with several calibrations (variants of one assumption at a time).

Writes ``OUT/table.md``, ``OUT/critical.csv``, ``OUT/cells.csv`` and ``OUT/<study name>.png``.

Usage::

    PYTHONPATH=src python benchmarks/calibration_validation.py runs/calibration-digits \\
        runs/paper-mnist1d=runs/paper-mnist1d-calibration --out results/calibration
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import shutil
import sqlite3
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from batchlab.analysis import analyze  # noqa: E402
from batchlab.analysis.prediction import PREDICTION_PATH  # noqa: E402
from batchlab.store.prediction import interpolate  # noqa: E402


def interpolate_steps(sizes: np.ndarray, values: np.ndarray, at: float) -> float:
    """Predicted steps at batch size ``at``, linear in log-log between the two bracketing sizes; ``nan``
    outside the predicted range or next to an unreachable (``nan``) point — unlike
    :func:`batchlab.store.prediction.interpolate` (used for the hyperparameters), which skips missing
    points: an unreachable batch size must not be bridged."""
    sizes, values = np.asarray(sizes, float), np.asarray(values, float)
    if not sizes[0] <= at <= sizes[-1]:
        return math.nan
    k = int(np.searchsorted(sizes, at))
    if sizes[k] == at:
        return float(values[k])
    (b0, b1), (v0, v1) = sizes[k - 1:k + 1], values[k - 1:k + 1]
    if not (v0 > 0 and v1 > 0):
        return math.nan
    t = (math.log(at) - math.log(b0)) / (math.log(b1) - math.log(b0))
    return float(math.exp(math.log(v0) + t * (math.log(v1) - math.log(v0))))


def validate(study: pathlib.Path, calibration: pathlib.Path | None,
             rename: dict[str, str] | None = None) -> tuple[str, pd.DataFrame, pd.DataFrame, dict]:
    folder = study
    if calibration is not None or rename:  # analyse a copy (its calibration/ the given one); the study is not touched
        scratch = pathlib.Path(tempfile.mkdtemp())
        folder = scratch / study.name
        folder.mkdir()
        for name in ("study.sqlite",):
            shutil.copy2(study / name, folder / name)
        if calibration is not None:
            (folder / PREDICTION_PATH).parent.mkdir()
            shutil.copy2(calibration / "prediction.json", folder / PREDICTION_PATH)
        with sqlite3.connect(folder / "study.sqlite") as db:  # the copy names the optimizer as the calibration does
            for old, new in (rename or {}).items():
                db.execute("UPDATE trials SET optimizer = ?, config = replace(config, ?, ?) WHERE optimizer = ?",
                           (new, json.dumps(old), json.dumps(new), old))
                db.execute("UPDATE meta SET value = replace(value, ?, ?) WHERE key = 'spec'",
                           (json.dumps(old), json.dumps(new)))
    result = analyze(folder)
    if result.prediction is None:
        raise SystemExit(f"{study}: no calibration/prediction.json (give STUDY=CALIBRATION_DIR)")
    raw = json.loads((folder / PREDICTION_PATH).read_text())
    name = result.spec.get("name", study.name)
    if result.spec.get("seed", 0):  # design seeds of one preset (bench_study.py --work) get their own rows
        name = f"{name} seed {result.spec['seed']}"
    if calibration is not None:  # one study may be compared with several calibrations: name the row by both
        name = f"{name} ({calibration.name})"
    critical = result.prediction_vs_measured.assign(study=name, workload=result.spec.get("workload"))
    spread = {opt: (entry.get("members") or {}).get("b_noise_range") for opt, entry in raw["optimizers"].items()}
    critical["predicted_low"] = [(spread.get(o) or [math.nan])[0] for o in critical["optimizer"]]
    critical["predicted_high"] = [(spread.get(o) or [math.nan, math.nan])[-1] for o in critical["optimizer"]]
    rows = []
    for cell in result.best.itertuples():
        predicted = raw["optimizers"].get(cell.optimizer)
        if predicted is None:
            continue
        sizes = np.array(predicted["batch_sizes"], float)
        steps = np.array([math.nan if s is None else s for s in predicted["steps"]], float)
        rates = np.array([math.nan if s is None else s for s in predicted["learning_rates"]], float)
        momenta = np.array([math.nan if s is None else s for s in predicted.get("momenta", [None] * len(sizes))], float)
        rows.append({"study": name, "optimizer": cell.optimizer, "batch_size": int(cell.batch_size),
                     "measured_steps": cell.best_steps, "measured_low": cell.steps_low,
                     "measured_high": cell.steps_high,
                     "predicted_steps": interpolate_steps(sizes, steps, cell.batch_size),
                     "measured_learning_rate": cell.hp_learning_rate,
                     "predicted_learning_rate": interpolate(sizes, rates, cell.batch_size),
                     "measured_momentum": getattr(cell, "hp_momentum", math.nan),
                     "predicted_momentum": interpolate(sizes, momenta, cell.batch_size, one_minus=True)
                     if np.isfinite(momenta).any() else math.nan,
                     "learning_rate_units": "optimizer" if predicted.get("precond", 0.0) == 0.0
                     or predicted.get("units") == "optimizer" else "proxy"})
    cells = pd.DataFrame(rows)
    cells["ratio"] = cells["predicted_steps"] / cells["measured_steps"]
    cells["inside"] = (cells["predicted_steps"] >= cells["measured_low"]) & (cells["predicted_steps"] <= cells["measured_high"])
    return name, critical, cells, raw


def figure(name: str, cells: pd.DataFrame, critical: pd.DataFrame, raw: dict, out: pathlib.Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (optimizer, group) in enumerate(cells.groupby("optimizer", sort=False)):
        color = colors[k % len(colors)]
        y = group["measured_steps"].to_numpy(float)
        low, high = group["measured_low"].to_numpy(float), group["measured_high"].to_numpy(float)
        known = np.isfinite(low) & np.isfinite(high) & (low > 0)  # else the interval is unbounded: open marker
        err = np.vstack([y - low, high - y])
        ax.errorbar(group["batch_size"][known], y[known], yerr=err[:, known], fmt="o", color=color,
                    capsize=3, label=f"{optimizer} measured (median, 95%)")
        ax.plot(group["batch_size"][~known], y[~known], "o", mfc="none", color=color)
        predicted = raw["optimizers"][optimizer]
        steps = np.array([math.nan if s is None else s for s in predicted["steps"]], float)
        ax.plot(predicted["batch_sizes"], steps, "--", color=color, label=f"{optimizer} NQM")
        row = critical[critical["optimizer"] == optimizer]
        if not row.empty and math.isfinite(row["predicted"].iloc[0]):
            ax.axvline(row["predicted"].iloc[0], color=color, lw=0.6, ls=":")
    lo, hi = cells["batch_size"].min(), cells["batch_size"].max()
    ax.set(xscale="log", yscale="log", xlim=(lo / 2, hi * 2), xlabel="batch size", ylabel="steps to target",
           title=f"{name}\nNQM (dashed; dotted: its B_noise) vs measured")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def fmt(v: float, digits: int = 3) -> str:
    return f"{v:.{digits}g}" if isinstance(v, (int, float)) and math.isfinite(v) else "—"


def markdown(critical: pd.DataFrame, cells: pd.DataFrame) -> str:
    ensemble = bool(np.isfinite(critical["predicted_low"]).any())
    lines = ["## Critical batch size (B_noise, hyperbola fit)", ""]
    if ensemble:
        lines += ["An ensemble calibration: *predicted* is the B_noise of the median curve over calibration seeds, "
                  "[seeds] the range of the seeds' own; ratio and verdict are the median curve's.", ""]
    lines += ["| study | optimizer | predicted | measured [95%] | ratio [95%] | within 2x |", "|---|---|---|---|---|---|"]
    for r in critical.itertuples():
        predicted = fmt(r.predicted) + (f" [seeds {fmt(r.predicted_low)}–{fmt(r.predicted_high)}]"
                                        if math.isfinite(r.predicted_low) else "")
        lines.append(f"| {r.study} | {r.optimizer} | {predicted} | {fmt(r.measured_b_noise)} "
                     f"[{fmt(r.measured_low)}, {fmt(r.measured_high)}] | {fmt(r.ratio)} "
                     f"[{fmt(r.ratio_low)}, {fmt(r.ratio_high)}] | {r.within} |")
    lines += ["", "## Steps to target per batch size", "",
              "| study | optimizer | B | predicted | measured [95%] | ratio | inside | lr predicted | lr measured |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in cells.itertuples():
        lr = fmt(r.predicted_learning_rate) + (" (proxy units)" if r.learning_rate_units == "proxy" else "")
        lines.append(f"| {r.study} | {r.optimizer} | {r.batch_size} | {fmt(r.predicted_steps)} | "
                     f"{fmt(r.measured_steps)} [{fmt(r.measured_low)}, {fmt(r.measured_high)}] | {fmt(r.ratio)} | "
                     f"{'yes' if r.inside else 'no'} | {lr} | {fmt(r.measured_learning_rate)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", help="STUDY or STUDY=CALIBRATION_DIR")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--rename", action="append", default=[], metavar="STUDY_NAME=CALIBRATION_NAME",
                        help="compare a study's optimizer (e.g. an import reference to a K-FAC variant) with the "
                             "calibration's entry of another name")
    args = parser.parse_args()
    rename = dict(item.split("=", 1) for item in args.rename if "=" in item)
    if len(rename) != len(args.rename):
        parser.error("--rename wants STUDY_NAME=CALIBRATION_NAME")
    args.out.mkdir(parents=True, exist_ok=True)
    criticals, all_cells = [], []
    for item in args.studies:
        study, _, calibration = item.partition("=")
        name, critical, cells, raw = validate(pathlib.Path(study), pathlib.Path(calibration) if calibration else None,
                                              rename)
        figure(name, cells, critical, raw, args.out / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}.png")
        criticals.append(critical)
        all_cells.append(cells)
    critical, cells = pd.concat(criticals, ignore_index=True), pd.concat(all_cells, ignore_index=True)
    critical.to_csv(args.out / "critical.csv", index=False)
    cells.to_csv(args.out / "cells.csv", index=False)
    text = markdown(critical, cells)
    (args.out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
