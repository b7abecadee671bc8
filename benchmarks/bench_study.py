"""Study benchmark: is a preset's answer stable across design seeds, and what does it cost?

Runs a preset (default ``quick``) once per design seed (default 0, 1, 2; each run into a fresh
folder, after one warm-up run that fills JAX's compilation cache) and prints, per run, its wall time
(as a ratio to the first run's, and in seconds on this machine), training steps, every optimizer's
B_noise with its 95% interval, and every pairwise verdict.  Then the stability summary the issue
asks for:

* **verdicts**: for each claim, the verdicts of all runs; *stable* when they agree (inconclusive in
  every run counts as agreeing);
* **B_noise**: per optimizer, the largest ratio between the runs' estimates (target ≤ 1.3).

``--pruning`` also reruns the first seed without pruning and prints the steps saved and whether
every cell's answer is identical; ``--dask`` reruns it on a loopback LocalCluster of 2 worker
processes (wall-time ratio, identical answers).  ``--out DIR`` writes the summary as JSON
(``DIR/stability.json``) so that documentation can cite a committed file.

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
    return {"verdicts": {c: {"runs": v, "stable": len(set(v)) == 1} for c, v in verdicts.items()},
            "stable_verdicts": sum(len(set(v)) == 1 for v in verdicts.values()), "claims": len(claims),
            "b_noise_ratio": spread,
            "b_noise_within_1.3": all(r is not None and r <= 1.3 for r in spread.values())}


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
    args = parser.parse_args()

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
        print(f"wrote {out / 'stability.json'}")


if __name__ == "__main__":
    main()
