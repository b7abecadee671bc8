"""Does K-FAC's stale preconditioner set its large-batch floor on digits-cnn?

Issue 15: the calibrated NQM of K-FAC holds K-FAC's damped Kronecker factors fixed at the reference
run's checkpoint, from step 0.  The network's K-FAC recomputes its factor inverses every
``inverse_update_period`` steps (default 5) from a moving average of the curvature (decay
``curvature_ema``, default 0.95).  At large batch sizes a run reaches the target in about 10 steps
(``results/stability-digits-loss-kfac/``), so for half of them it uses inverses computed at
initialisation or after 5 steps, while the NQM (6 steps at B = 1024) uses converged factors.

This reruns the winning configurations of the K-FAC ~4x study (each design seed's best replicated
candidate at each batch size given) with fresh training seeds, once as the study ran them and once
with the inverses recomputed every step (``inverse_update_period = 1``), and once more with a short
curvature average (``curvature_ema = 0.5``, inverses every step).  It prints each configuration's median
steps to target over the seeds, per variant, and the ratio to the study's default.

Usage (about 5 minutes on 2 cores)::

    PYTHONPATH=src python benchmarks/kfac_inverse_period.py --study results/stability-digits-loss-kfac/seed0.sqlite \\
        --study results/stability-digits-loss-kfac/seed1.sqlite --study results/stability-digits-loss-kfac/seed2.sqlite \\
        --batch-sizes 128,1024 --seeds 8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np

from batchlab.optim import kfac
from batchlab.optim.base import OptimizerSpec
from batchlab.train import train
from batchlab.workloads.registry import get_workload

VARIANTS = {
    "study (period 5, ema 0.95)": kfac.KfacConfig(),
    "period 1, ema 0.95": kfac.KfacConfig(inverse_update_period=1),
    "period 1, ema 0.5": kfac.KfacConfig(inverse_update_period=1, curvature_ema=0.5),
}


def spec_with(config: kfac.KfacConfig) -> OptimizerSpec:
    """The registry's K-FAC with other fixed settings (its own name: compiled steps are cached by name)."""

    def bind(model, static):
        choices = dict(static)
        return kfac.kfac_stepper(model, adaptive=choices["adaptive"] == "on", schedule=choices["lr_schedule"],
                                 config=config)

    name = f"kfac-period{config.inverse_update_period}-ema{config.curvature_ema:g}"
    return dataclasses.replace(kfac.SPEC, name=name, bind=bind)


def winner(store: Path, batch_size: int) -> tuple[dict, float]:
    """The cell's best replicated candidate: its configuration and the median of its seeds' steps."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        rows = db.execute("select config, steps_to_target, status from trials where optimizer = 'kfac' and "
                          "batch_size = ? and phase = 'replicate'", (batch_size,)).fetchall()
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
    parser.add_argument("--study", type=Path, action="append", required=True)
    parser.add_argument("--batch-sizes", default="128,1024")
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    specs = {name: spec_with(config) for name, config in VARIANTS.items()}
    print("# median steps to target over training seeds 1000 ... 1000 + seeds - 1 (inf: the median run did not reach)")
    print(f"# {'B':>5s}  {'store':40s} {'study median':>12s}  " + "  ".join(f"{n:>26s}" for n in VARIANTS))
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        for store in args.study:
            config, study_median = winner(store, batch_size)
            workload = get_workload(config["workload"])
            medians = []
            for name, spec in specs.items():
                steps = []
                for seed in range(1000, 1000 + args.seeds):
                    result = train(workload, spec, config["hyperparameters"], batch_size, config["max_steps"], seed,
                                   target=config["target"], eval_every=config["eval_every"],
                                   target_metric=config["target_metric"])
                    steps.append(float(result.steps_to_target) if result.status == "reached" else np.inf)
                medians.append(float(np.median(steps)))
            base = medians[0]
            cells = "  ".join(f"{m:12.1f} ({m / base:4.2f}x)".rjust(26) for m in medians)
            print(f"  {batch_size:5d}  {str(store)[-40:]:40s} {study_median:12.1f}  {cells}", flush=True)


if __name__ == "__main__":
    main()
