"""The bulk's gradient noise from tr Σ instead of tr HΣ: SGD's and momentum's predictions both ways.

The calibrated NQM gives its bulk (every direction outside the top-k) the noise ``c = r h`` with one
ratio ``r``.  The default (``--bulk-noise curvature-weighted``) picks ``r`` so that the NQM reproduces the
measured ``tr HΣ``, the noise's injection of risk per step; ``--bulk-noise total`` so that it reproduces
``tr Σ``, which sets SGD's noise floor (``α tr Σ / 4B`` for small ``α h``).  This re-predicts SGD and momentum
on a committed calibration's reference NQM with each ``r`` (the top-k unchanged, the initial state refitted
to the reference run, first hits as ``batchlab calibrate`` computes them), without training anything.

Usage (about 2 minutes for fashion-mnist-mlp)::

    PYTHONPATH=src python benchmarks/calibration_bulk_noise.py results/calibration/fashion-mnist/bias-correction \\
        --every 20
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from batchlab.calibrate.model import Anchor, _fit_exponent, _initial
from batchlab.calibrate.predict import PROXIES, predict
from batchlab.critical import critical_batch_size
from batchlab.nqm import Problem
from batchlab.nqm.first_hit import tuned_first_hit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=pathlib.Path, help="a calibration folder (its reference NQM)")
    parser.add_argument("--every", type=int, required=True, help="the first hit's evaluation cadence")
    args = parser.parse_args()
    stored = json.loads((args.folder / "nqm_problem.json").read_text())
    spectra = json.loads((args.folder / "spectra.json").read_text())
    prediction = json.loads((args.folder / "prediction.json").read_text())
    h, c, w = (np.array(stored[k], float) for k in ("h", "c", "weights"))
    risk0, target = float(stored["initial_risk"]), float(stored["target"])
    noise = spectra["gradient_noise"]
    top = int(np.sum(w == 1.0))
    ratios = {"curvature-weighted": float(stored["bulk_noise_ratio"]),
              "total": float((noise["trace_sigma"] - c[:top].sum()) / (w[top:] @ h[top:]))}
    if stored["bulk_noise_rule"] != "curvature-weighted":
        raise SystemExit(f"{args.folder}: its bulk noise rule is {stored['bulk_noise_rule']}, not curvature-weighted")
    reference = prediction["reference"]
    anchor = Anchor("sgd", 0.0, float(reference["batch_size"]), int(reference["median_steps"]))
    sizes = prediction["optimizers"]["sgd"]["batch_sizes"]
    print(f"{args.folder}: reference NQM, anchor {anchor.steps} steps at B = {anchor.batch_size:g}, first hit every "
          f"{args.every}; committed B_noise sgd {prediction['optimizers']['sgd']['critical_batch_size']['b_noise']:.1f}, "
          f"momentum {prediction['optimizers']['momentum']['critical_batch_size']['b_noise']:.1f}")
    for rule, r in ratios.items():
        bulk = c.copy()
        bulk[top:] = c[top:] * r / ratios["curvature-weighted"]
        exponent, _ = _fit_exponent(h, bulk, w, risk0, target, anchor)
        problem = Problem(h=h, c=bulk, s0=_initial(h, w, risk0, exponent), weights=w)
        curves = predict(problem, target=target, batch_sizes=sizes,
                         optimizers={"sgd": PROXIES["sgd"], "momentum": PROXIES["momentum"]})
        print(f"\nbulk noise {rule}: r = {r:.3f}, initial exponent {exponent:.3f}; first-hit steps per batch size "
              f"{[int(b) for b in sizes]}")
        for name, curve in curves.items():
            hits = [tuned_first_hit(problem, curve.kind, batch_size=row.batch_size, target=target,
                                    eval_every=args.every, precond=curve.precond, runs=400, seed=0, optimum=row).steps
                    for row in curve.rows]
            b_noise = critical_batch_size(sizes, hits).fit.b_noise
            print(f"  {name}: {[int(s) if np.isfinite(s) else None for s in hits]}, B_noise {b_noise:.1f}")


if __name__ == "__main__":
    main()
