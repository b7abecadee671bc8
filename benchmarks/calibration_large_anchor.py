"""What if a calibrated NQM's initial state were anchored at a large batch size instead of the reference's?

Issue 15.  ``batchlab calibrate`` fits the exponent ``a`` of the initial state (risk shares
``∝ w h^a``, :mod:`batchlab.calibrate.model`) so that the tuned NQM reproduces the reference run's
steps at its batch size.  Where that batch size is far below the gradient noise scale (fashion-mnist-mlp:
B = 128 against 1,061), the anchor mixes the initial state with the noise.  At a large batch size the
dynamics are nearly deterministic, so the initial state alone sets the steps.  This refits ``a`` so
that the tuned SGD NQM reproduces a *measured* large-batch cell (``--batch-size``, ``--steps``: for
example a study's SGD answer there) and prints the SGD and momentum curves and their hyperbola-fit
B_noise (expected-risk counts) with the calibration's exponent and with the refitted one.

Usage::

    PYTHONPATH=src python benchmarks/calibration_large_anchor.py results/calibration/fashion-mnist/measured \\
        --batch-size 4096 --steps 428 --batch-sizes 64,256,1024,4096
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

from batchlab.calibrate.model import _initial
from batchlab.calibrate.pipeline import read_nqm
from batchlab.critical import fit_hyperbola
from batchlab.nqm.optimize import optimize
from batchlab.nqm.spectrum import Problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("calibration", type=Path)
    parser.add_argument("--batch-size", type=float, required=True, help="the large-batch anchor's batch size")
    parser.add_argument("--steps", type=float, required=True, help="its measured SGD steps")
    parser.add_argument("--batch-sizes", required=True)
    args = parser.parse_args()
    prediction = json.loads((args.calibration / "prediction.json").read_text())
    stored, target = read_nqm(args.calibration)
    h, c, w, risk0 = stored.h, stored.c, stored.weights, stored.initial_risk()
    sizes = [float(b) for b in args.batch_sizes.split(",")]

    def steps(a: float, kind: str, batch_size: float) -> float:
        problem = Problem(h=h, c=c, s0=_initial(h, w, risk0, a), weights=w)
        return optimize(problem, kind, batch_size=batch_size, target=target).steps

    def gap(a: float) -> float:
        return math.log(steps(a, "sgd", args.batch_size) / args.steps)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = np.linspace(-1.0, 3.0, 9)
        values = [gap(a) for a in grid]
        crossing = [i for i in range(len(grid) - 1) if values[i] * values[i + 1] <= 0]
        if not crossing:
            raise SystemExit(f"no exponent in [-1, 3] reproduces {args.steps:g} steps at B = {args.batch_size:g}")
        refit = brentq(gap, grid[crossing[0]], grid[crossing[0] + 1], xtol=1e-3)
        print(f"# {args.calibration}: anchor {prediction['reference']['median_steps']} steps at "
              f"B = {prediction['reference']['batch_size']} (exponent {prediction['initial_exponent']:.3f}); "
              f"refitted to {args.steps:g} steps at B = {args.batch_size:g}: exponent {refit:.3f}")
        print(f"# expected-risk steps at batch sizes {[int(b) for b in sizes]}")
        for label, a in (("reference anchor", prediction["initial_exponent"]), ("large-batch anchor", refit)):
            for kind in ("sgd", "momentum"):
                curve = [steps(a, kind, b) for b in sizes]
                fit = fit_hyperbola(sizes, curve)
                b_noise = "—" if fit is None else f"{fit.b_noise:.0f}"
                print(f"{label:18s} {kind:8s} {[int(s) for s in curve]}  B_noise {b_noise}", flush=True)


if __name__ == "__main__":
    main()
