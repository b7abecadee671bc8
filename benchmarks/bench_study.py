"""Study benchmark: is a preset's answer stable across design seeds, and what does it cost?

Runs a preset (default ``quick``) once per design seed (default 0, 1, 2; each run into a fresh
folder, after one warm-up run that fills JAX's compilation cache) and prints, per run, its wall time
(as a ratio to the first run's, and in seconds on this machine), training steps, every optimizer's
B_noise with its 95% interval, and every pairwise verdict.  Then the stability summary the issue
asks for:

* **verdicts**: for each claim, the verdicts of all runs; *stable* when they agree (inconclusive in
  every run counts as agreeing);
* **reversed**: the claims *supported* in one run and *contradicted* in another (a decided verdict
  that another design seed overturns; agreement can also fail between *inconclusive* and a decided
  verdict, when an effect sits near the edge of what the intervals resolve);
* **B_noise**: per optimizer, the largest ratio between the runs' estimates (target ≤ 1.3);
* **cells**: the largest / smallest estimate of each cell's steps across runs (median and maximum
  over cells), and how often one run's 95% interval contains another run's estimate (for calibrated
  intervals and two equally noisy estimates about 83%: their difference has √2 times the spread).

``--pruning`` also reruns the first seed without pruning and prints the steps saved and whether
every cell's answer is identical; ``--dask`` reruns it on a loopback LocalCluster of 2 worker
processes (wall-time ratio, identical answers).  ``--out DIR`` writes the summary as JSON
(``DIR/stability.json``) so that documentation can cite a committed file, and the figure
``DIR/stability.png`` (every run's B_noise and steps per cell with their 95% intervals);
``--replot DIR`` redraws the figure and recomputes the summary (the runs untouched) of a committed
``DIR/stability.json`` without running anything.

Usage (quick preset: about 2-3 minutes per seed on the 2 shared cores)::

    PYTHONPATH=src python benchmarks/bench_study.py [--preset quick] [--seeds 0,1,2] [--pruning] [--dask] [--out DIR]

A long preset (``studies/stability-digits.toml``: the budget the synthetic benchmark says the 1.3x
criterion needs) runs across sessions with ``--work``: rerun the same command to resume::

    PYTHONPATH=src nice python benchmarks/bench_study.py --preset studies/stability-digits.toml \
        --work runs/stability-digits --out results/stability-digits
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import pathlib
import tempfile
import time

import numpy as np

from batchlab.analysis import analyze
from batchlab.study import RunOptions, load_spec, resolve_spec, run_study


def _run(spec, folder: pathlib.Path, **options) -> dict:
    started = time.perf_counter()
    summary = run_study(spec, folder, options=RunOptions(**options))
    wall = time.perf_counter() - started
    analysis = analyze(folder)
    cells = {f"{r.optimizer}@{int(r.batch_size)}": [_num(r.best_steps), _num(r.steps_low), _num(r.steps_high)]
             for r in analysis.best.itertuples()}
    critical = {r.optimizer: [_num(r.b_noise), _num(r.b_noise_low), _num(r.b_noise_high)]
                for r in analysis.critical.itertuples()}
    verdicts = dict(zip(analysis.verdicts["claim"], analysis.verdicts["verdict"]))
    return {"seed": spec.seed, "wall_s": wall, "trials": summary.total, "steps": summary.steps_run,
            "cells": cells, "b_noise": critical, "verdicts": verdicts}


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value) -> str:
    return "—" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def stability(runs: list[dict]) -> dict:
    """Verdict agreement and B_noise spread across runs."""
    claims = list(runs[0]["verdicts"])
    verdicts = {claim: [run["verdicts"].get(claim) for run in runs] for claim in claims}
    spread = {}
    for name in runs[0]["b_noise"]:
        values = [run["b_noise"][name][0] for run in runs]
        finite = [v for v in values if v is not None and v > 0]
        spread[name] = max(a / b for a, b in itertools.permutations(finite, 2)) if len(finite) == len(values) \
            and len(finite) > 1 else None
    reversed_ = [c for c, v in verdicts.items() if {"supported", "contradicted"} <= set(v)]
    ratios, inside, pairs = [], 0, 0
    for key in runs[0]["cells"]:
        points = [run["cells"][key][0] for run in runs]
        if all(p is not None for p in points) and len(points) > 1:
            ratios.append(max(points) / min(points))
        for run, other in itertools.permutations(runs, 2):
            point, (_, low, high) = other["cells"][key][0], run["cells"][key]
            if point is not None:
                pairs += 1
                inside += (low or 0.0) <= point <= (math.inf if high is None else high)
    return {"verdicts": {c: {"runs": v, "stable": len(set(v)) == 1} for c, v in verdicts.items()},
            "stable_verdicts": sum(len(set(v)) == 1 for v in verdicts.values()), "claims": len(claims),
            "reversed_verdicts": reversed_,
            "cell_ratio_median": float(np.median(ratios)) if ratios else None,
            "cell_ratio_max": max(ratios) if ratios else None,
            "other_points_inside": [inside, pairs],
            "b_noise_ratio": spread,
            "b_noise_within_1.3": all(r is not None and r <= 1.3 for r in spread.values())}


def _print_cells(summary: dict) -> None:
    if summary["cell_ratio_median"] is not None:
        inside, pairs = summary["other_points_inside"]
        print(f"steps per cell, largest / smallest across runs: median {summary['cell_ratio_median']:.2f}, "
              f"max {summary['cell_ratio_max']:.2f}; another run's estimate inside a run's 95% interval: "
              f"{inside}/{pairs} ({inside / max(pairs, 1):.0%}; ~83% expected for calibrated intervals of "
              "two equally noisy estimates)")


def plot_stability(payload: dict, path: pathlib.Path) -> None:
    """Every run's steps per cell (one panel per optimizer) and B_noise, with 95% intervals."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = payload["runs"]
    optimizers = list(runs[0]["b_noise"])
    fig, axes = plt.subplots(1, len(optimizers) + 1, figsize=(4 * (len(optimizers) + 1), 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    offsets = [1.0 + 0.06 * (k - (len(runs) - 1) / 2) for k in range(len(runs))]
    for ax, name in zip(axes, optimizers):
        for k, run in enumerate(runs):
            cells = [(int(key.split("@")[1]), v) for key, v in run["cells"].items() if key.split("@")[0] == name]
            cells = [(b * offsets[k], v) for b, v in sorted(cells) if v[0] is not None]
            if not cells:
                continue
            b = [c[0] for c in cells]
            mid = [c[1][0] for c in cells]
            low = [m - (c[1][1] if c[1][1] is not None else m) for m, c in zip(mid, cells)]
            high = [(c[1][2] if c[1][2] is not None else m) - m for m, c in zip(mid, cells)]
            ax.errorbar(b, mid, yerr=[low, high], marker="o", ms=3, capsize=2, lw=1, color=colors[k],
                        label=f"design seed {run['seed']}")
        ax.set(yscale="log", xlabel="batch size", title=name)
        ax.set_xscale("log", base=2)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].set_ylabel("steps to target (median over seeds)")
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    for k, run in enumerate(runs):
        for j, name in enumerate(optimizers):
            b, low, high = run["b_noise"][name]
            if b is None:
                continue
            low = b if low is None else low
            high = b if high is None else high
            ax.errorbar([j + 0.15 * (k - (len(runs) - 1) / 2)], [b], yerr=[[b - low], [high - b]], marker="o",
                        ms=4, capsize=3, color=colors[k], label=f"design seed {run['seed']}" if j == 0 else None)
    ax.set(yscale="log", xticks=range(len(optimizers)), xticklabels=optimizers, ylabel="B_noise [95%]",
           title="critical batch size")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    summary = payload["stability"]
    fig.suptitle(f"{payload['preset']}: {summary['stable_verdicts']}/{summary['claims']} verdicts agree; "
                 "B_noise largest ratio " + ", ".join(f"{n} {r:.2f}" if r is not None else f"{n} —"
                                                      for n, r in summary["b_noise_ratio"].items()), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pruning", action="store_true")
    parser.add_argument("--dask", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--work", default=None,
                        help="keep each run's store in WORK/seed<N> and resume it when rerun (long presets run "
                             "across sessions; wall times then cover the last invocation only); default: a "
                             "temporary folder and a warm-up run")
    parser.add_argument("--replot", default=None, metavar="DIR",
                        help="recompute the summary and redraw DIR/stability.png from DIR/stability.json, then exit")
    args = parser.parse_args()
    if args.replot:
        folder = pathlib.Path(args.replot)
        payload = json.loads((folder / "stability.json").read_text())
        payload["stability"] = stability(payload["runs"])  # derived only: the runs are kept as they are
        (folder / "stability.json").write_text(json.dumps(payload, indent=1))
        _print_cells(payload["stability"])
        print(f"decided verdicts reversed between runs: {len(payload['stability']['reversed_verdicts'])}")
        plot_stability(payload, folder / "stability.png")
        print(f"wrote {folder / 'stability.png'}")
        return

    base = load_spec(resolve_spec(args.preset))
    seeds = [int(s) for s in args.seeds.split(",")]
    with (contextlib.nullcontext(args.work) if args.work else tempfile.TemporaryDirectory()) as tmp:
        root = pathlib.Path(tmp)
        if not args.work:
            run_study(dataclasses.replace(base, seed=seeds[0]), root / "warmup")  # fills the compilation cache
        runs = [_run(dataclasses.replace(base, seed=s), root / f"seed{s}") for s in seeds]
        extra = {}
        if args.pruning:
            full = _run(dataclasses.replace(base, seed=seeds[0]), root / "unpruned", prune=False)
            extra["pruning"] = {"steps_pruned": runs[0]["steps"], "steps_unpruned": full["steps"],
                                "saving": 1 - runs[0]["steps"] / full["steps"],
                                "wall_ratio": runs[0]["wall_s"] / full["wall_s"],
                                "identical_answers": full["cells"] == runs[0]["cells"]}
        if args.dask:
            dask = _run(dataclasses.replace(base, seed=seeds[0]), root / "dask", executor="dask", workers=2)
            extra["dask"] = {"wall_ratio": dask["wall_s"] / runs[0]["wall_s"],
                             "identical_answers": dask["cells"] == runs[0]["cells"]}
    first = runs[0]["wall_s"]
    for run in runs:
        print(f"seed {run['seed']}: {run['trials']} trials, {run['steps']:,} steps, wall {run['wall_s'] / first:.2f}x "
              f"of seed {seeds[0]} ({run['wall_s']:.0f} s here)")
        for name, (b, low, high) in run["b_noise"].items():
            print(f"  B_noise {name}: {_fmt(b)} [{_fmt(low)}, {_fmt(high)}]")
    summary = stability(runs)
    print(f"verdicts stable across seeds {seeds}: {summary['stable_verdicts']}/{summary['claims']}")
    for claim, entry in summary["verdicts"].items():
        print(f"  {'=' if entry['stable'] else '≠'} {claim}: {' / '.join(entry['runs'])}")
    print(f"decided verdicts reversed between runs: {len(summary['reversed_verdicts'])}")
    _print_cells(summary)
    for name, ratio in summary["b_noise_ratio"].items():
        print(f"B_noise {name}: largest ratio between runs {'—' if ratio is None else f'{ratio:.2f}'}")
    for key, value in extra.items():
        print(f"{key}: {value}")
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        payload = {"preset": base.name, "seeds": seeds, "runs": runs, "stability": summary, **extra,
                   "command": f"PYTHONPATH=src python benchmarks/bench_study.py --preset {args.preset} "
                              f"--seeds {args.seeds}" + " --pruning" * args.pruning + " --dask" * args.dask
                              + (f" --work {args.work}" if args.work else "") + f" --out {args.out}"}
        (out / "stability.json").write_text(json.dumps(payload, indent=1))
        plot_stability(payload, out / "stability.png")
        print(f"wrote {out / 'stability.json'} and {out / 'stability.png'}")


if __name__ == "__main__":
    main()
