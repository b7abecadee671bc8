"""How noisy is steps-to-target across training seeds, for the error target and for a loss target?

The seed noise of one cell's steps to target sets how many replicate seeds a study needs for a stable
critical batch size (``bench_protocol.py --budget-search``).  This runs one fixed configuration with
several training seeds through ``batchlab train --json`` (full budget, dense evaluation), then reads off
the first evaluation at which each run reaches

* the workload's error target, and
* an evaluation-loss target of matched difficulty: the median, over runs, of the evaluation loss at the
  error target's median first-hit step,

and prints the spread of ``log(steps)`` across seeds for both (standard deviation, and 1.4826 × MAD).

Usage (a few minutes on 2 cores)::

    PYTHONPATH=src python benchmarks/bench_seed_noise.py --seeds 8 --batch-sizes 64,512
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import numpy as np


def run(workload: str, optimizer: str, batch_size: int, seed: int, steps: int, hps: list[str]) -> list[dict]:
    command = [sys.executable, "-c", "from batchlab.cli import main; main()", "train", "--workload", workload, "--optimizer", optimizer,
               "--batch-size", str(batch_size), "--seed", str(seed), "--max-steps", str(steps),
               "--eval-every", "5", "--target", "1e-6", "--json"]
    for hp in hps:
        command += ["--hp", hp]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("{"):])["curve"]


def first_hit(curve: list[dict], metric: str, target: float) -> float:
    for point in curve:
        if point["metrics"].get(metric, math.inf) <= target:
            return float(point["step"])
    return math.inf


def spread(steps: list[float]) -> tuple[float, float, int]:
    logs = np.log([s for s in steps if math.isfinite(s)])
    if logs.size < 2:
        return math.nan, math.nan, int(logs.size)
    mad = 1.4826 * float(np.median(np.abs(logs - np.median(logs))))
    return float(np.std(logs, ddof=1)), mad, int(logs.size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", default="digits-cnn")
    parser.add_argument("--optimizer", default="momentum")
    parser.add_argument("--hp", action="append", default=None, help="NAME=VALUE (repeatable)")
    parser.add_argument("--batch-sizes", default="64,512")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--error-target", type=float, default=0.025)
    args = parser.parse_args()
    hps = args.hp or ["learning_rate=0.05", "momentum=0.9"]
    print(f"{args.workload} {args.optimizer} {' '.join(hps)}; {args.seeds} seeds, {args.steps} steps, eval every 5")
    print(f"{'B':>6s} {'target':>22s} {'median steps':>13s} {'sd log':>7s} {'MAD log':>8s} {'reached':>8s}")
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        curves = [run(args.workload, args.optimizer, batch_size, s, args.steps, hps) for s in range(args.seeds)]
        error_steps = [first_hit(c, "error", args.error_target) for c in curves]
        finite = [s for s in error_steps if math.isfinite(s)]
        if not finite:
            print(f"{batch_size:6d} error target never reached")
            continue
        middle = float(np.median(finite))
        losses = [next(p["metrics"]["loss"] for p in c if p["step"] >= middle) for c in curves]
        loss_target = float(np.median(losses))
        loss_steps = [first_hit(c, "loss", loss_target) for c in curves]
        for label, steps in ((f"error <= {args.error_target:g}", error_steps), (f"loss <= {loss_target:.4f}", loss_steps)):
            sd, mad, reached = spread(steps)
            print(f"{batch_size:6d} {label:>22s} {np.median(steps):13.0f} {sd:7.3f} {mad:8.3f} {reached:5d}/{len(steps)}")


if __name__ == "__main__":
    main()
