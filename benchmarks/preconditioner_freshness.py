"""Does a stale preconditioner set K-FAC's or Adam's large-batch floor on digits-cnn?

Issue 15: the calibrated NQM of K-FAC and of Adam holds the optimizer's preconditioner fixed at the
reference run's checkpoint, from step 0.  The networks' optimizers build it up during the run:

* K-FAC recomputes its factor inverses every ``inverse_update_period`` steps (default 5) from a moving
  average of the curvature (decay ``curvature_ema``, default 0.95).  At large batch sizes a run reaches
  the target in about 10 steps, so for half of them it uses inverses computed at initialisation or
  after 5 steps.
* Adam divides by ``√v̂ + ε``, ``v̂`` a bias-corrected average of the squared gradients with decay
  ``beta2`` (0.999 in the studies): over a run of 15 steps that is nearly the plain mean of every
  squared gradient since initialisation, where the gradients are largest.

This reruns the winning configurations of a study (each store's best replicated candidate at each
batch size given) with fresh training seeds, once as the study ran them and once per variant with a
fresher preconditioner: K-FAC with the inverses recomputed every step (and with a short curvature
average), Adam with ``beta2`` 0.99 and 0.9.  It prints each configuration's median steps to target over
the seeds, per variant, and the ratio to the study's setting.

Usage (about 5 minutes per optimizer on 2 cores)::

    PYTHONPATH=src python benchmarks/preconditioner_freshness.py --optimizer kfac \\
        --study results/stability-digits-loss-kfac/seed0.sqlite --study results/stability-digits-loss-kfac/seed1.sqlite \\
        --study results/stability-digits-loss-kfac/seed2.sqlite --batch-sizes 128,1024 --seeds 8
    PYTHONPATH=src python benchmarks/preconditioner_freshness.py --optimizer adam \\
        --study results/stability-digits-loss/seed0.sqlite --study results/stability-digits-loss/seed1.sqlite \\
        --study results/stability-digits-loss/seed2.sqlite --batch-sizes 128,1024 --seeds 8
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from batchlab.optim import kfac
from batchlab.optim.base import OptimizerSpec
from batchlab.train import train
from batchlab.workloads.registry import get_workload


def kfac_with(config: kfac.KfacConfig) -> OptimizerSpec:
    """The registry's K-FAC with other fixed settings, named after them."""
    return kfac.spec_with(config, f"kfac-period{config.inverse_update_period}-ema{config.curvature_ema:g}")


# per optimizer: (label, optimizer (registry name or spec), hyperparameters overriding the winner's)
VARIANTS: dict[str, list[tuple[str, Any, dict]]] = {
    "kfac": [("study (period 5, ema 0.95)", kfac_with(kfac.KfacConfig()), {}),
             ("period 1, ema 0.95", kfac_with(kfac.KfacConfig(inverse_update_period=1)), {}),
             ("period 1, ema 0.5", kfac_with(kfac.KfacConfig(inverse_update_period=1, curvature_ema=0.5)), {})],
    "adam": [("study (beta2 0.999)", "adam", {}),
             ("beta2 0.99", "adam", {"beta2": 0.99}),
             ("beta2 0.9", "adam", {"beta2": 0.9})],
}


def winner(store: Path, optimizer: str, batch_size: int) -> tuple[dict, float]:
    """The cell's best replicated candidate: its configuration and the median of its seeds' steps."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        rows = db.execute("select config, steps_to_target, status from trials where optimizer = ? and "
                          "batch_size = ? and phase = 'replicate'", (optimizer, batch_size)).fetchall()
    by_config: dict[str, list[float]] = {}
    for config, steps, status in rows:
        hyper = json.dumps(json.loads(config)["hyperparameters"], sort_keys=True)
        by_config.setdefault(hyper, []).append(float(steps) if status == "reached" else np.inf)
    hyper, steps = min(by_config.items(), key=lambda item: float(np.median(item[1])))
    config = json.loads(rows[0][0])
    return {"hyperparameters": json.loads(hyper), "max_steps": config["max_steps"],
            "eval_every": config["eval_every"], "target": config["target"],
            "target_metric": config["target_metric"], "workload": config["workload"]}, float(np.median(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizer", choices=sorted(VARIANTS), default="kfac")
    parser.add_argument("--study", type=Path, action="append", required=True)
    parser.add_argument("--batch-sizes", default="128,1024")
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    variants = VARIANTS[args.optimizer]
    print("# median steps to target over training seeds 1000 ... 1000 + seeds - 1 (inf: the median run did not reach)")
    print(f"# {'B':>5s}  {'store':40s} {'study median':>12s}  " + "  ".join(f"{v[0]:>26s}" for v in variants))
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        for store in args.study:
            config, study_median = winner(store, args.optimizer, batch_size)
            workload = get_workload(config["workload"])
            medians = []
            for _, optimizer, override in variants:
                steps = []
                for seed in range(1000, 1000 + args.seeds):
                    result = train(workload, optimizer, config["hyperparameters"] | override, batch_size,
                                   config["max_steps"], seed, target=config["target"],
                                   eval_every=config["eval_every"], target_metric=config["target_metric"])
                    steps.append(float(result.steps_to_target) if result.status == "reached" else np.inf)
                medians.append(float(np.median(steps)))
            base = medians[0]
            cells = "  ".join(f"{m:12.1f} ({m / base:4.2f}x)".rjust(26) for m in medians)
            print(f"  {batch_size:5d}  {str(store)[-40:]:40s} {study_median:12.1f}  {cells}", flush=True)


if __name__ == "__main__":
    main()
