"""What if a calibrated NQM's gradient noise were scaled by κ: SGD's and momentum's predictions re-made.

Issue 15.  ``benchmarks/calibration_noise_coupling.py`` finds that at one learning rate the network pays more
steps for a small batch than its NQM does, on both workloads, although the NQM's noise floor at the
checkpoint is within 0.54-1.24x of the network's.  The simplest model of that extra cost is more noise.
For each committed calibration folder and each κ of ``--kappas`` this scales the NQM's noise ``c`` by κ,
refits the start-up delay and the initial state to the reference run's loss curve and steps
(:func:`batchlab.calibrate.model._fit_delay`, as ``batchlab calibrate`` does), tunes SGD's and momentum's
expected-risk steps inside the study's search box (:func:`batchlab.nqm.drift.tuned_in_box`), adds the delay
and prints each curve's hyperbola-fit B_noise, its ratio to the measured one (the hyperbola fit of the
given measured steps) and the per-cell ratios predicted / measured.  Nothing is trained.

Usage (about 4 minutes for three fashion-mnist-mlp folders, 7 for six digits-cnn ones)::

    PYTHONPATH=src python benchmarks/calibration_noise_scale.py results/calibration/fashion-mnist/delay/seed-{0,1,2} \\
        --kappas 1,1.5,2,3 --batch-sizes 64,256,1024,4096 --sgd-box 0.03,1 --momentum-box 0.003,0.3,0.5,0.95 \\
        --measured-sgd 1600,681,408,428 --measured-momentum 1780,468,197,114
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np

from batchlab.calibrate.model import Anchor, _fit_delay, _initial
from batchlab.critical import critical_batch_size
from batchlab.nqm import Problem
from batchlab.nqm.drift import Drift, tuned_in_box


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="calibration folders (one seed each)")
    parser.add_argument("--kappas", default="1,1.5,2,3")
    parser.add_argument("--batch-sizes", required=True)
    parser.add_argument("--sgd-box", required=True, help="LOW,HIGH learning rate")
    parser.add_argument("--momentum-box", required=True, help="LOW,HIGH learning rate, LOW,HIGH momentum")
    parser.add_argument("--measured-sgd", required=True, help="measured steps per batch size")
    parser.add_argument("--measured-momentum", required=True)
    args = parser.parse_args()
    sizes = floats(args.batch_sizes)
    sgd_box, mom = floats(args.sgd_box), floats(args.momentum_box)
    boxes = {"sgd": ((sgd_box[0], sgd_box[1]), [0.0]),
             "momentum": ((mom[0], mom[1]), list(np.linspace(mom[2], mom[3], 8)))}
    measured = {"sgd": floats(args.measured_sgd), "momentum": floats(args.measured_momentum)}
    measured_b = {name: critical_batch_size(sizes, steps).fit.b_noise for name, steps in measured.items()}
    print("measured B_noise " + ", ".join(f"{name} {b:.0f}" for name, b in measured_b.items()))
    warnings.simplefilter("ignore")
    for folder in args.folders:
        stored = json.loads((folder / "nqm_problem.json").read_text())
        prediction = json.loads((folder / "prediction.json").read_text())
        h, c, w = (np.array(stored[k], float) for k in ("h", "c", "weights"))
        risk0, target = float(stored["initial_risk"]), float(stored["target"])
        settings = folder / "settings.json"
        floor = float(json.loads(settings.read_text())["config"]["model"]["loss_floor"]) if settings.exists() else 0.0
        anchor = Anchor("sgd", 0.0, float(prediction["anchor"]["batch_size"]), int(prediction["anchor"]["steps"]))
        curve = [tuple(row) for row in prediction["reference"].get("loss_curve", [])]
        for kappa in floats(args.kappas):
            delay, exponent, *_ = _fit_delay(h, kappa * c, w, risk0, target, anchor, curve, floor)
            problem = Problem(h=h, c=kappa * c, s0=_initial(h, w, risk0, exponent), weights=w)
            parts = []
            for name, (rates, momenta) in boxes.items():
                steps = [delay + tuned_in_box(problem, Drift.none(h.shape[0]), batch_size=b, target=target,
                                              rates=rates, momenta=momenta, points=31, refine=4, finalists=4).steps
                         for b in sizes]
                fit = critical_batch_size(sizes, steps).fit
                b_noise = fit.b_noise if fit else math.nan
                cells = ", ".join(f"{s / m:.2f}" for s, m in zip(steps, measured[name]))
                parts.append(f"{name} B_noise {b_noise:.0f} ({b_noise / measured_b[name]:.2f}), cells {cells}")
            print(f"{folder} κ {kappa:g} (T0 {delay}, exponent {exponent:.2f}): " + " | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
