"""Expected risk versus a single run's first hit: is the calibrated NQM's small-batch miss a target-definition bias?

The NQM counts the steps until the *expected* risk reaches the target.  A study counts the steps
until one run's *measured* training loss first reaches it (checked every ``eval_every`` steps), and
tunes the learning rate for the median of that over seeds.  Near the noise floor a run's loss
fluctuates around its expectation, so its first hit comes earlier than the mean's crossing, and more
so at small batch sizes, where the fluctuations are large.  This measures that bias on a calibrated
NQM by Monte Carlo:

- the model of a run is :mod:`batchlab.nqm.first_hit`'s: the top-k entries (weight 1: single
  directions) simulated as written, the bulk entries (thousands of directions each, whose
  fluctuations average out) at their exact expected risk; the first hit as the training loop
  reports it (evaluations every ``eval_every`` steps, the stretch before the first one that meets
  the target replayed);
- per batch size: the steps of the expected risk at the NQM's tuned hyperparameters, and the fewest
  median first-hit steps over runs, the learning rate scanned over multiples of the expected
  optimum's (momentum kept) (:func:`batchlab.nqm.first_hit.tuned_first_hit`);
- compared with the measured cells (median over the study's design seeds) when ``--cells`` is given.

Usage (about a minute)::

    PYTHONPATH=src python benchmarks/nqm_first_hit.py results/calibration/digits/default \\
        --cells results/calibration/stability-digits-loss/cells.csv --eval-every 5
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from batchlab.critical import fit_hyperbola
from batchlab.nqm.first_hit import tuned_first_hit
from batchlab.nqm.optimize import optimize
from batchlab.nqm.spectrum import Problem

def measured(cells: Path | None, optimizer: str) -> dict[int, list[float]]:
    if cells is None:
        return {}
    out: dict[int, list[float]] = {}
    for row in csv.DictReader(cells.open()):
        if row["optimizer"] == optimizer and row["study"].endswith("(default)"):
            out.setdefault(int(row["batch_size"]), []).append(float(row["measured_steps"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("calibration", type=Path)
    parser.add_argument("--cells", type=Path)
    parser.add_argument("--optimizers", default="sgd,momentum")
    parser.add_argument("--batch-sizes", default="16,32,64,128,256,512,1024")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    nqm = json.loads((args.calibration / "nqm_problem.json").read_text())
    prediction = json.loads((args.calibration / "prediction.json").read_text())
    problem = Problem(h=np.array(nqm["h"]), c=np.array(nqm["c"]), s0=np.array(nqm["s0"]),
                      weights=np.array(nqm["weights"]))
    target = nqm["target"]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(f"{args.calibration}: NQM target {target:.4g}, {int((problem.weights == 1).sum())} single directions "
          f"simulated ({args.runs} runs), bulk at its mean; evaluated every {args.eval_every} steps, first hit replayed")
    for name in args.optimizers.split(","):
        entry = prediction["optimizers"][name]
        if entry.get("preconditioner") == "measured" or entry["precond"] != 0.0:
            raise SystemExit(f"{name}: only plain sgd/momentum entries of the reference NQM are simulated here")
        grid = np.array(entry["batch_sizes"])
        meas = measured(args.cells, name)
        print(f"\n{name}:  B  expected-risk steps  median first hit (lr x)  ratio  measured (design seeds)")
        expected, first = [], []
        for b in sizes:
            best = optimize(problem, entry["nqm_kind"], batch_size=b, target=target)
            found = tuned_first_hit(problem, entry["nqm_kind"], batch_size=b, target=target,
                                    eval_every=args.eval_every, runs=args.runs, seed=args.seed, optimum=best)
            expected.append(best.steps)
            first.append(found.steps)
            shown = "/".join(f"{s:g}" for s in meas.get(b, []))
            print(f"{b:>10d}  {best.steps:>19.0f}  {found.steps:>16.0f} ({found.multiplier:.2g})  "
                  f"{found.steps / best.steps:5.2f}  {shown}")
        fit_e, fit_f = fit_hyperbola(np.array(sizes, float), expected), fit_hyperbola(np.array(sizes, float), first)
        line = f"   B_noise on these batch sizes: expected risk {fit_e.b_noise:.0f}, median first hit {fit_f.b_noise:.0f}"
        if meas:
            med = [float(np.median(meas[b])) for b in sizes if b in meas]
            fit_m = fit_hyperbola(np.array([b for b in sizes if b in meas], float), med)
            line += f", measured (median of design seeds) {fit_m.b_noise:.0f}"
        print(line)


if __name__ == "__main__":
    main()
