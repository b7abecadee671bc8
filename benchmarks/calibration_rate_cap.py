"""What if a calibrated NQM's curvature held only up to the reference run's learning rate?

Issue 15, "why momentum, Adam and K-FAC miss at large batch sizes".  The network's steps versus
learning rate at a large batch size have a flat floor where the NQM has a narrow valley
(``benchmarks/large_batch_plateau.py``): on digits-cnn at B = 1024 momentum takes about 21 steps at
every effective rate from 0.6 to 2.8, where the NQM's valley reaches 11.  One reading is the edge of
stability: at rates above the one the curvature was measured at, the network moves to flatter regions
(its sharpness settles near the stability limit of the rate), so a larger rate buys no progress, while
the NQM's fixed curvature keeps rewarding it up to its stability limit.

This tests that reading on a finished calibration without measuring again: every optimizer's
effective rate ``α / (1 − β)`` (SGD: ``α``; Adam: its ``lr``) is capped at its reference run's
(sgd and momentum: the SGD reference's rate; measured adam and kfac: their own reference's), and the
fewest expected-risk steps per batch size are found on a grid (rates, and β over ``[0.5, 0.99]``), with
the hyperbola-fit B_noise; then the same without the cap.  Proxy entries (``P = H^-p``) are skipped:
their rates are not the optimizer's.  It also prints the reference batch size against the gradient
noise scale B_noise measured at the checkpoint: a reference above it runs where the curvature, not the
noise, limits the rate.

``--cap NAME=RATE`` (repeatable) replaces an optimizer's cap by a given effective rate, for example the
lowest rate of the network's measured floor at the largest batch size (``large_batch_plateau.py``'s
``plateau [lo, hi]``): what a short rate scan at a large batch size could at best give the NQM.

Usage::

    PYTHONPATH=src python benchmarks/calibration_rate_cap.py results/calibration/digits/loss-target \\
        --batch-sizes 16,32,64,128,256,512,1024 [--cap momentum=0.5847 ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from batchlab.calibrate.pipeline import read_nqm
from batchlab.critical import fit_hyperbola
from batchlab.nqm.spectrum import Problem
from large_batch_plateau import grid_steps  # the same grid of expected-risk steps as the plateau benchmark

RATES = np.geomspace(1e-6, 1e3, 181)
BETAS = 1.0 - np.geomspace(0.5, 0.01, 15)


def fewest_steps(problem: Problem, target: float, kind: str, batch_size: float, cap: float) -> float:
    """Fewest expected-risk steps over the grid of effective rates ``≤ cap`` (and β for momentum)."""
    return float(np.min(grid_steps(problem, target, kind, batch_size, RATES[RATES <= cap], BETAS)))


def reference_cap(prediction: dict, name: str) -> float | None:
    """The effective rate of the reference run an optimizer's NQM comes from (None: a proxy entry)."""
    entry = prediction["optimizers"][name]
    if entry.get("preconditioner") == "measured":
        hyper = entry["reference"]["hyperparameters"]
        if name == "adam":
            return float(hyper["learning_rate"])
        return float(hyper["learning_rate"]) / (1.0 - float(hyper.get("momentum", 0.0)))
    if entry["precond"] != 0.0:
        return None
    return float(prediction["reference"]["hyperparameters"]["learning_rate"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("calibration", type=Path)
    parser.add_argument("--batch-sizes", required=True)
    parser.add_argument("--cap", action="append", default=[], metavar="NAME=RATE",
                        help="this effective-rate cap for NAME instead of its reference run's rate")
    args = parser.parse_args()
    given = {}
    for item in args.cap:
        name, _, rate = item.partition("=")
        try:
            given[name] = float(rate)
        except ValueError:
            parser.error(f"--cap wants NAME=RATE, got {item!r}")
    prediction = json.loads((args.calibration / "prediction.json").read_text())
    sizes = [float(b) for b in args.batch_sizes.split(",")]
    noise = prediction.get("noise_scales", {}).get("b_noise")
    print(f"# {args.calibration}: reference batch size {prediction['reference']['batch_size']}, "
          f"gradient noise scale B_noise at the checkpoint {noise:.0f}" if noise else f"# {args.calibration}")
    print(f"# expected-risk steps at batch sizes {[int(b) for b in sizes]}")
    for name, entry in prediction["optimizers"].items():
        cap = given.get(name, reference_cap(prediction, name))
        if given and name not in given:
            continue
        if cap is None:
            print(f"{name:9s} proxy entry (P = H^-{entry['precond']}): skipped")
            continue
        problem, target = read_nqm(args.calibration, name)
        print(f"{name:9s} effective-rate cap {cap:.4g}" + (" (given)" if name in given else ""))
        for label, c in (("free", np.inf), ("capped", cap)):
            steps = [fewest_steps(problem, target, entry["nqm_kind"], b, c) for b in sizes]
            fit = fit_hyperbola(sizes, steps)
            b_noise = "—" if fit is None else f"{fit.b_noise:.0f}"
            print(f"   {label:6s} steps {[int(s) if np.isfinite(s) else None for s in steps]}  B_noise {b_noise}",
                  flush=True)


if __name__ == "__main__":
    main()
