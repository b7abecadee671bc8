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

import json

from batchlab.calibrate.model import Anchor, _fit_delay, _initial
from batchlab.nqm import Problem
from calibration_delay_shift import floats, load, parse  # the same arguments, boxes and comparison


def main() -> None:
    args, boxes = parse(__doc__, "kappas", "1,1.5,2,3")
    for folder in args.folders:
        _, prediction, h, c, w, risk0, target = load(folder)
        settings = folder / "settings.json"
        floor = float(json.loads(settings.read_text())["config"]["model"]["loss_floor"]) if settings.exists() else 0.0
        anchor = Anchor("sgd", 0.0, float(prediction["anchor"]["batch_size"]), int(prediction["anchor"]["steps"]))
        curve = [tuple(row) for row in prediction["reference"].get("loss_curve", [])]
        for kappa in floats(args.kappas):
            delay, exponent, *_ = _fit_delay(h, kappa * c, w, risk0, target, anchor, curve, floor)
            problem = Problem(h=h, c=kappa * c, s0=_initial(h, w, risk0, exponent), weights=w)
            print(f"{folder} κ {kappa:g} (T0 {delay}, exponent {exponent:.2f}): "
                  + boxes.compare(problem, target, delay), flush=True)


if __name__ == "__main__":
    main()
