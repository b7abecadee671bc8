"""Centred search benchmark: how much tuning does centring each cell on the calibrated NQM save?

Runs one study twice into two folders — ``OUT/normal`` (the spec's search box) and ``OUT/centred``
(``[tuning] centre = "calibration"`` on the given prediction, optionally with fewer explore trials) —
and prints per (optimizer, batch size) each run's answer (the median over replication seeds of the
chosen configuration; the best trial for specs without replication) with its 95% interval, the
trials and training steps spent (every phase: explore, refine, replicate; pruned trials count the
steps they ran), and the totals.  ``OUT/summary.json`` holds the same numbers.

Without ``--spec`` it runs a small built-in study on ``nqm-sampled`` (the NQM itself, dim 10: SGD and
heavy-ball momentum at B = 16, 64, 256; explore 8 in 2 rounds, refine 4, 1 candidate × 3 seeds)
with a prediction computed by the NQM engine for that very problem (``batchlab.calibrate.predict``
on the workload's power-law problem and relative-risk target): the prediction is the workload's
exact expected-risk optimum, so this is the best case for centring; a calibrated network's
prediction is only approximate.  About a minute on two cores.

The prediction must cover every optimizer of the spec in its own units (``precond`` 0 or ``"units":
"optimizer"``; ``batchlab calibrate``'s ``adam``/``kfac`` entries are not) and every batch size.
Folders are resumed if they hold the same study (a rerun only reports).

Usage::

    PYTHONPATH=src python benchmarks/bench_centred_search.py [--spec SPEC.toml --prediction prediction.json]
        [--centred-explore N] [--width 0.5] [--out DIR]
    PYTHONPATH=src python benchmarks/bench_centred_search.py --compare NORMAL_DIR CENTRED_DIR
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import pathlib
import tempfile
import time
import tomllib
from typing import Any

from batchlab.analysis import analyze
from batchlab.store.frames import trials_frame
from batchlab.study import parse_spec, run_study

_CENTRE_KEYS = ("centre", "calibration", "centre_width")


def default_study(folder: pathlib.Path) -> tuple[dict[str, Any], pathlib.Path]:
    """The built-in spec (a dict) and its exact NQM prediction, written to ``folder/prediction.json``."""
    from batchlab.calibrate.predict import PROXIES, optimizer_entry, predict
    from batchlab.nqm.spectrum import power_law

    dim, sizes = 10, [16, 64, 256]
    spec = {"name": "centred-bench", "workload": "nqm-sampled", "workload_options": {"dim": dim},
            "batch_sizes": sizes, "seed": 0, "eval_every": 5, "budget": {"steps": 600},
            "tuning": {"explore": 8, "rounds": 2, "refine": 4, "candidates": 1, "seeds": 3},
            "optimizers": {"sgd": {}, "momentum": {}}}
    problem = power_law(dim)  # the workload's default problem: h_i = c_i = i^-1, s0_i = 1
    initial = float((problem.weights * 0.5 * problem.h * problem.s0).sum())
    curves = predict(problem, target=0.01 * initial, batch_sizes=sizes,  # target: relative risk 0.01
                     optimizers={name: PROXIES[name] for name in spec["optimizers"]})
    path = folder / "prediction.json"
    path.write_text(json.dumps({"source": f"exact NQM optimum of nqm-sampled (dim {dim})",
                                "optimizers": {name: optimizer_entry(c) for name, c in curves.items()}}, indent=1))
    return spec, path


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def measure(spec_data: dict[str, Any], base_dir: pathlib.Path, folder: pathlib.Path) -> dict[str, Any]:
    """Run (or resume) the spec into ``folder``; per cell its answer and what the search spent."""
    spec = parse_spec(spec_data, default_name="study", base_dir=base_dir)
    started = time.perf_counter()
    summary = run_study(spec, folder)
    wall = time.perf_counter() - started
    return summarize(folder, wall_s=wall, ran=summary.ran, total=summary.total)


def summarize(folder: pathlib.Path, *, wall_s: float = math.nan, ran: int = 0, total: int | None = None,
              optimizers: set[str] | None = None) -> dict[str, Any]:
    """Per cell of a finished study folder its answer and what the search spent (``optimizers``: only these)."""
    analysis = analyze(folder, resamples=500, critical_resamples=50)
    trials = trials_frame(folder)
    if optimizers is not None:
        trials = trials[trials["optimizer"].isin(optimizers)]
    cells = {}
    for row in analysis.best.itertuples():
        if optimizers is not None and row.optimizer not in optimizers:
            continue
        rows = trials[(trials["optimizer"] == row.optimizer) & (trials["batch_size"] == row.batch_size)]
        search = rows[rows["phase"] != "replicate"]
        cells[f"{row.optimizer}@{int(row.batch_size)}"] = {
            "answer": _num(row.best_steps), "low": _num(row.steps_low), "high": _num(row.steps_high),
            "trials": len(rows), "search_trials": len(search), "steps": int(rows["steps_run"].fillna(0).sum()),
            "search_steps": int(search["steps_run"].fillna(0).sum()),
            "learning_rate": _num(getattr(row, "learning_rate", math.nan))}
    return {"folder": str(folder), "wall_s": wall_s, "ran": ran, "trials": len(trials) if total is None else total,
            "steps": int(trials["steps_run"].fillna(0).sum()), "cells": cells}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}" if abs(value) >= 10 else f"{value:.3g}"


def report(normal: dict[str, Any], centred: dict[str, Any]) -> str:
    lines = [f"{'cell':<18} {'answer: normal':>24} {'centred':>24}   {'trials n/c':>10} {'steps n/c':>15} "
             f"{'steps saved':>11}"]
    for key, a in normal["cells"].items():
        b = centred["cells"].get(key, {})
        answer = lambda c: f"{_fmt(c.get('answer'))} [{_fmt(c.get('low'))}, {_fmt(c.get('high'))}]"  # noqa: E731
        saved = 1.0 - b.get("steps", 0) / a["steps"] if a["steps"] else math.nan
        lines.append(f"{key:<18} {answer(a):>24} {answer(b):>24}   {a['trials']:>4}/{b.get('trials', 0):<5} "
                     f"{a['steps']:>7,}/{b.get('steps', 0):<7,} {saved:>10.0%}")
    saved = 1.0 - centred["steps"] / normal["steps"] if normal["steps"] else math.nan
    lines.append(f"{'total':<18} {'':>24} {'':>24}   {normal['trials']:>4}/{centred['trials']:<5} "
                 f"{normal['steps']:>7,}/{centred['steps']:<7,} {saved:>10.0%}")
    lines.append(f"wall time: normal {normal['wall_s']:.1f} s ({normal['ran']} trials run now), "
                 f"centred {centred['wall_s']:.1f} s ({centred['ran']} run now)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=pathlib.Path, help="study spec (TOML); default: the built-in nqm-sampled study")
    parser.add_argument("--prediction", type=pathlib.Path, help="prediction.json (needed with --spec)")
    parser.add_argument("--centred-explore", type=int, help="explore trials of the centred run (default: the spec's)")
    parser.add_argument("--width", type=float, default=0.5, help="centre_width, decades (default 0.5)")
    parser.add_argument("--out", type=pathlib.Path, help="output folder (default: a temporary one)")
    parser.add_argument("--compare", nargs=2, type=pathlib.Path, metavar=("NORMAL", "CENTRED"),
                        help="only compare two finished study folders (the normal one restricted to the "
                             "centred one's optimizers)")
    args = parser.parse_args()
    if args.compare:
        normal_dir, centred_dir = args.compare
        centred = summarize(centred_dir)
        names = {key.split("@")[0] for key in centred["cells"]}
        print(report(summarize(normal_dir, optimizers=names), centred))
        return
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="bench-centred-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.spec is None:
        data, prediction = default_study(out)
        base_dir = out
    else:
        if args.prediction is None:
            parser.error("--spec needs --prediction")
        data = tomllib.loads(args.spec.read_text(encoding="utf-8"))
        data.setdefault("name", args.spec.stem)
        prediction, base_dir = args.prediction, args.spec.resolve().parent
    if "tuning" in data:
        tuning = {k: v for k, v in data.pop("tuning").items() if k not in _CENTRE_KEYS}
    else:  # a plain spec: `trials` explored in min(3, trials) rounds, as its protocol is
        trials = data.pop("trials", 8)
        tuning = {"explore": trials, "rounds": min(3, trials)}
    normal = copy.deepcopy(data) | {"tuning": tuning}
    centred = copy.deepcopy(data) | {"tuning": tuning | {
        "centre": "calibration", "calibration": str(pathlib.Path(prediction).resolve()), "centre_width": args.width}}
    if args.centred_explore is not None:
        centred["tuning"]["explore"] = args.centred_explore
        centred["tuning"]["rounds"] = min(centred["tuning"].get("rounds", 2), args.centred_explore)
    results = {"normal": measure(normal, base_dir, out / "normal"),
               "centred": measure(centred, base_dir, out / "centred")}
    results["width"], results["prediction"] = args.width, str(prediction)
    (out / "summary.json").write_text(json.dumps(results, indent=1))
    print(report(results["normal"], results["centred"]))
    print(f"folders and summary.json in {out}")


if __name__ == "__main__":
    main()
