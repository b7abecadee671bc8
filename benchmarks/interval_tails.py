"""Where do a cell interval's long lower ends come from?  Their width against the search's reaching trials.

For every cell of one or more committed stability stores (``results/stability-digits-loss/seed<N>.sqlite``
and its ``stability.json``), the lower and upper half-widths of the cell's 95% interval in log steps
(``log(steps / low)``, ``log(high / steps)``) against how many of its explore and refine trials
reached the target (the others were pruned, diverged or ran out of budget).  The search replay of
:mod:`batchlab.analysis.uncertainty` keeps a random half of those trials and counts a pruned one as
never reaching, so a cell with few reaching trials often loses all its good ones in a draw.

Then the same stores analysed with each of the replay's treatments of a pruned trial
(``estimate_cells(pruned=...)``: ``never`` reaching, the default; ``hotdeck``, drawn from the outcomes
the search observed beyond its bound; ``censored``, at its bound or the best centre, the optimistic
end): the median lower half-width, how many verdicts are decided, how many agree across the runs and
how many are reversed, and every optimizer's B_noise per run.  Their coverage on synthetic studies
is ``benchmarks/bench_protocol.py --pruned-replay``.

Usage (about a minute; output in ``results/stability-digits-loss/interval_tails.txt``)::

    PYTHONPATH=src python benchmarks/interval_tails.py results/stability-digits-loss
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import shutil
import sqlite3
import tempfile

import numpy as np
import pandas as pd

from bench_study import stability  # the same agreement and reversal counts as the stability benchmark
from batchlab.analysis.replicated import replicated_cells, replicated_critical, verdicts
from batchlab.analysis.uncertainty import PRUNED_REPLAYS
from batchlab.store.frames import trials_frame


def tails(folder: pathlib.Path) -> pd.DataFrame:
    summary = json.loads((folder / "stability.json").read_text())
    rows = []
    for run in summary["runs"]:
        store = folder / f"seed{run['seed']}.sqlite"
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as con:
            trials = pd.read_sql("select optimizer, batch_size, status from trials "
                                 "where phase in ('explore', 'refine')", con)
        for (optimizer, batch_size), group in trials.groupby(["optimizer", "batch_size"]):
            steps, low, high = run["cells"][f"{optimizer}@{batch_size}"]
            if steps is None or not low or high is None:
                continue
            rows.append({"seed": run["seed"], "cell": f"{optimizer}@{batch_size}", "search": len(group),
                         "reached": int((group["status"] == "reached").sum()),
                         "pruned": int((group["status"] == "pruned").sum()),
                         "low_tail": math.log(steps / low), "high_tail": math.log(high / steps)})
    return pd.DataFrame(rows)


def replays(folder: pathlib.Path) -> None:
    seeds = [run["seed"] for run in json.loads((folder / "stability.json").read_text())["runs"]]
    frames = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:  # a store is opened in its own study folder
            shutil.copy(folder / f"seed{seed}.sqlite", pathlib.Path(tmp) / "study.sqlite")
            frames[seed] = trials_frame(tmp)
    print(f"\nthe replay's treatments of a pruned trial, on the same {len(seeds)} stores:")
    for pruned in PRUNED_REPLAYS:
        runs, lower, b_noise = [], [], {}
        for seed in seeds:
            cells, estimates = replicated_cells(frames[seed], pruned=pruned)
            critical = replicated_critical(cells, estimates)
            table = verdicts(cells, critical)
            runs.append(dict(zip(table["claim"], table["verdict"])))
            lower += [math.log(c.steps / c.steps_low) for c in cells.itertuples() if c.steps_low > 0]
            for row in critical.itertuples():
                b_noise.setdefault(row.optimizer, []).append(
                    f"{row.b_noise:.0f} [{row.b_noise_low:.0f}, {row.b_noise_high:.0f}]")
        summary = stability([{"verdicts": run, "b_noise": {}, "cells": {}} for run in runs])
        decided = sum(v != "inconclusive" for run in runs for v in run.values())
        print(f"  {pruned:9s} lower half-width {np.median(lower):.2f}; decided {decided}/{summary['claims'] * len(runs)}; "
              f"agree across runs {summary['stable_verdicts']}/{summary['claims']}; "
              f"reversed {len(summary['reversed_verdicts'])}")
        for name, entries in b_noise.items():
            print(f"            B_noise {name}: {' / '.join(entries)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=pathlib.Path)
    args = parser.parse_args()
    frame = tails(args.folder)
    bins = pd.cut(frame["reached"], [0, 4, 6, 8, 12, 1000], labels=["1-4", "5-6", "7-8", "9-12", "13+"])
    table = frame.groupby(bins, observed=True)[["low_tail", "high_tail"]].median().round(2)
    table["cells"] = frame.groupby(bins, observed=True).size()
    print(f"{len(frame)} cells of {args.folder}: interval half-widths in log steps (median) "
          "by the number of search trials that reached the target")
    print(table.to_string())
    print(f"all cells: lower {frame['low_tail'].median():.2f}, upper {frame['high_tail'].median():.2f}; "
          f"correlation(reached, lower) {np.corrcoef(frame['reached'], frame['low_tail'])[0, 1]:.2f}; "
          f"pruned share of search trials {frame['pruned'].sum() / frame['search'].sum():.2f}")
    replays(args.folder)


if __name__ == "__main__":
    main()
