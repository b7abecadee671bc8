"""How noisy is one run's steps to target, and does the choice of target metric change it?

The stability of a study's answer is limited by the noise of one run's steps to target at a fixed
configuration (``results/protocol-synthetic/budget_search.txt``: at ±25% per run the B_noise
criterion needs ~13-31x the quick preset's budget, at ±10% about 4x).  On digits-cnn the target is
evaluation error ≤ 0.025, i.e. at most 9 of 360 images wrong: a first passage of a jumpy integer
count.  This benchmark trains fixed configurations with several seeds, evaluating after every step,
and measures for each the spread of the first step meeting

* the workload's error target (``error ≤ 0.025``), and
* evaluation-loss targets (mean cross-entropy over the same 360 images), at the loss the runs have
  when they first meet the error target (median over all runs: the "matched" loss) and at 0.8x/1.25x
  of it.

Spread = standard deviation of ``log(steps)`` over seeds (0.25 ≈ ±25%), with a bootstrap 90%
interval over seeds, and the ratio of the loss target's spread to the error target's on the same
runs (paired).  Usage (about 10 minutes on 2 cores)::

    PYTHONPATH=src python benchmarks/bench_target_noise.py [--seeds 16] [--out results/target-noise]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

import numpy as np

import dataclasses

from batchlab.train import train
from batchlab.workloads.digits import DigitsCnn
from batchlab.workloads.registry import get_workload


@dataclasses.dataclass(frozen=True)
class _TrainSplitDigits(DigitsCnn):
    """digits-cnn evaluated on its 1,437 training images (same training: only the evaluation differs)."""

    def load_arrays(self):
        arrays = super().load_arrays()
        inputs = arrays.train_inputs.astype("float32") * arrays.input_scale + arrays.input_shift
        return arrays._replace(eval_inputs=inputs, eval_labels=arrays.train_labels)

# (optimizer, batch size, hyperparameters, steps): the fixed configurations of docs measurement.md
# (digits-cnn winners of earlier studies) plus Adam's quick-study winners at B = 64 and 1024.
CONFIGS = [
    ("sgd", 16, {"learning_rate": 0.0721}, 500),
    ("sgd", 256, {"learning_rate": 0.635}, 200),
    ("momentum", 1024, {"learning_rate": 0.0542, "momentum": 0.745}, 200),
    ("adam", 64, {"learning_rate": 0.005}, 200),
    ("adam", 1024, {"learning_rate": 0.0279}, 150),
]


def first_hit(steps: np.ndarray, values: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(values <= target)
    return float(steps[hit[0]]) if hit.size else math.inf


def spread(x: np.ndarray) -> float:
    logs = np.log(x[np.isfinite(x)])
    return float(np.std(logs, ddof=1)) if logs.size > 2 else math.nan


def _ratio(a: np.ndarray, b: np.ndarray) -> float:
    den = spread(b)
    return spread(a) / den if den > 0 else math.nan


def boot(fn, *arrays, reps=2000, seed=0):
    rng = np.random.default_rng(seed)
    n = arrays[0].shape[0]
    draws = [fn(*(a[idx] for a in arrays)) for idx in (rng.integers(0, n, n) for _ in range(reps))]
    draws = np.asarray(draws)
    draws = draws[np.isfinite(draws)]
    return float(np.quantile(draws, 0.05)), float(np.quantile(draws, 0.95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--split", choices=["eval", "train"], default="eval",
                        help="the loss targets on the evaluation split (default) or the training split; "
                             "the error target is always the workload's (evaluation split)")
    args = parser.parse_args()
    workload = get_workload("digits-cnn")
    target = workload.target_value
    scored = _TrainSplitDigits() if args.split == "train" else workload
    runs = {}
    for optimizer, batch_size, hp, steps in CONFIGS:
        curves = []
        for seed in range(args.seeds):
            result = train(workload, optimizer, hp, batch_size, steps, seed, target=-1.0, eval_every=1)
            curve = {"step": [p.step for p in result.curve], "loss": [p.metrics["loss"] for p in result.curve],
                     "error": [p.metrics["error"] for p in result.curve]}
            if scored is not workload:  # the same run (same seed: same trajectory), scored on the training split
                other = train(scored, optimizer, hp, batch_size, steps, seed, target=-1.0, eval_every=1)
                assert [p.step for p in other.curve] == curve["step"]
                curve["loss"] = [p.metrics["loss"] for p in other.curve]
            curves.append(curve)
        runs[f"{optimizer}@{batch_size}"] = {"hp": hp, "curves": curves}
        print(f"trained {optimizer}@{batch_size}: {args.seeds} seeds", flush=True)

    # the matched loss: eval loss at each run's first error hit, median over all runs
    at_hit = []
    for cell in runs.values():
        for c in cell["curves"]:
            step = np.asarray(c["step"]); hit = first_hit(step, np.asarray(c["error"]), target)
            if math.isfinite(hit):
                at_hit.append(c["loss"][int(np.flatnonzero(step == hit)[0])])
    matched = float(np.median(at_hit))
    losses = {"0.8x": 0.8 * matched, "matched": matched, "1.25x": 1.25 * matched}
    print(f"\n{args.split} loss at the first error <= {target} hit: median {matched:.4f} "
          f"(quartiles {np.quantile(at_hit, 0.25):.4f}, {np.quantile(at_hit, 0.75):.4f}; {len(at_hit)} runs)\n")

    header = f"{'cell':<16}{'target':<22}{'median steps':>13}{'reached':>9}{'sd log':>8}{'90% CI':>16}{'ratio to error':>16}{'90% CI':>16}"
    print(header)
    summary = {"split": args.split, "seeds": args.seeds, "error_target": target, "matched_loss": matched, "cells": {}}
    for name, cell in runs.items():
        hits = {"error": np.array([first_hit(np.asarray(c["step"]), np.asarray(c["error"]), target)
                                   for c in cell["curves"]])}
        for label, value in losses.items():
            hits[f"loss {label} ({value:.3f})"] = np.array([
                first_hit(np.asarray(c["step"]), np.asarray(c["loss"]), value) for c in cell["curves"]])
        base = hits["error"]
        summary["cells"][name] = {"hp": cell["hp"], "targets": {}}
        for label, h in hits.items():
            sd = spread(h)
            low, high = boot(spread, h)
            both = np.isfinite(h) & np.isfinite(base)
            ratio = spread(h[both]) / spread(base[both]) if both.sum() > 2 else math.nan
            rlow, rhigh = boot(_ratio, h[both], base[both]) if both.sum() > 2 else (math.nan, math.nan)
            finite = h[np.isfinite(h)]
            med = float(np.median(finite)) if finite.size else math.inf
            print(f"{name:<16}{label:<22}{med:>13.0f}{finite.size:>6}/{h.size:<2}{sd:>8.3f}"
                  f"{f'[{low:.3f}, {high:.3f}]':>16}{ratio:>16.2f}{f'[{rlow:.2f}, {rhigh:.2f}]':>16}")
            summary["cells"][name]["targets"][label] = {
                "steps": [None if not math.isfinite(x) else x for x in h], "median": med,
                "sd_log": sd, "sd_log_90": [low, high], "ratio_to_error": ratio, "ratio_90": [rlow, rhigh]}
        print()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"target_noise_{args.split}.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
