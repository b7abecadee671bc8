"""Re-predict a finished calibration as one run's median first hit, without measuring again.

``batchlab calibrate`` now predicts what a study measures: the median over runs of one run's first
hit of the target, checked every ``eval_every`` steps (:mod:`batchlab.nqm.first_hit`).  Calibrations
written before that hold only the expected risk's crossing.  This reads a calibration folder's
``nqm_problem.json`` and ``prediction.json`` and writes the folder again (into ``--out``, the measurement files and figures
copied, ``prediction.png`` left out) with the first-hit entries exactly as the pipeline writes them
(:func:`batchlab.calibrate.pipeline.first_hit_entry`): the expected-risk optimum stored per batch size
is the starting point of the learning-rate scan, so nothing is re-tuned.

Usage::

    PYTHONPATH=src python benchmarks/first_hit_prediction.py results/calibration/digits/default \\
        --every 5 --out results/calibration/digits/default-first-hit
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from batchlab.calibrate.pipeline import adam_optimizer_units, first_hit_entry, read_nqm
from batchlab.jsonsafe import dumps
from batchlab.nqm.first_hit import tuned_first_hit
from batchlab.nqm.optimize import Optimum


def repredict(folder: Path, *, every: int, runs: int, seed: int | None) -> dict:
    prediction = json.loads((folder / "prediction.json").read_text())
    seed = prediction.get("seed", 0) if seed is None else seed
    for name, entry in prediction["optimizers"].items():
        if "first_hit" in entry:
            raise SystemExit(f"{folder}: {name} already has a first-hit prediction")
        problem, target = read_nqm(folder, name)
        rates = entry.get("nqm_learning_rates", entry["learning_rates"])
        hits = []
        for b, steps, rate, momentum in zip(entry["batch_sizes"], entry["steps"], rates, entry["momenta"]):
            optimum = Optimum(entry["nqm_kind"], b, target, entry["precond"], np.inf if steps is None else steps, "",
                              rate, momentum, None, (), 0)
            hits.append(tuned_first_hit(problem, entry["nqm_kind"], batch_size=b, target=target, eval_every=every,
                                        precond=entry["precond"], runs=runs, seed=seed, optimum=optimum))
        base = dict(entry, learning_rates=rates)
        new = first_hit_entry(base, tuple(hits), every, runs, seed)
        if "nqm_learning_rates" in entry:  # Adam: the optimizer's lr = α / (1 − β), as the pipeline writes it
            adam_optimizer_units(new)
        prediction["optimizers"][name] = new
    return prediction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("calibration", type=Path)
    parser.add_argument("--every", type=int, required=True, help="the study's eval_every")
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=None, help="default: the calibration's seed")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    prediction = repredict(args.calibration, every=args.every, runs=args.runs, seed=args.seed)
    if args.out.resolve() != args.calibration.resolve():
        shutil.copytree(args.calibration, args.out, dirs_exist_ok=True)
    (args.out / "prediction.png").unlink(missing_ok=True)  # it drew the expected-risk curves
    (args.out / "prediction.json").write_text(dumps(prediction, indent=1) + "\n")
    for name, entry in prediction["optimizers"].items():
        print(f"{name:9s} B_noise expected {entry['expected_critical_batch_size']['b_noise']!s:>20s}  "
              f"first hit {entry['critical_batch_size']['b_noise']!s:>20s}  steps {entry['steps']}")


if __name__ == "__main__":
    main()
