"""Adam's first-moment bias correction in the calibrated NQM: does it close Adam's large-batch miss?

The calibrated NQM of Adam (:mod:`batchlab.calibrate.precondition`) is heavy ball in Adam's
preconditioned coordinates with ``μ = β₁`` and ``α = lr (1 − β₁)``, "up to ``m``'s bias correction, which
fades".  Adam divides its first moment by ``1 − β₁^{t+1}``, so its first update takes the full step ``lr``
where the heavy ball takes ``lr (1 − β₁)`` (10x smaller at ``β₁ = 0.9``), and the correction lasts a few
``1 / (1 − β₁)`` updates: at a large batch size, where a run is 10-20 updates long, the whole run.

For a committed calibration folder this re-predicts Adam's curve both ways with the same code
(:func:`batchlab.calibrate.model.tuned_optimum`, then :func:`~batchlab.nqm.drift.tuned_drifted_first_hit`
without drift; ``bias_correction`` off and on), each with the initial state refitted to the reference
run's steps at the anchor batch size, as :func:`batchlab.calibrate.model.build_problem` fits it (the
exponent ``a`` of the initial risk shares ``∝ w h^a``).  Prints expected-risk and first-hit steps per batch size, the
B_noise of each (hyperbola fit), and its ratio to the measured B_noise values given.

Usage::

    PYTHONPATH=src python benchmarks/adam_bias_correction.py results/calibration/digits/loss-target \\
        --measured 109,105,104
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from batchlab.calibrate.model import Anchor, _fit_exponent, _initial, tuned_optimum
from batchlab.critical import critical_batch_size
from batchlab.nqm import Problem
from batchlab.nqm.drift import Drift, tuned_drifted_first_hit


def fit_initial(h, c, w, risk0: float, target: float, anchor: tuple[float, float], corrected: bool) -> tuple[float, Problem]:
    """The initial-state exponent whose tuned expected steps at the anchor equal the reference's, as
    :func:`batchlab.calibrate.model.build_problem` fits it, and the problem it gives."""
    exponent, _ = _fit_exponent(h, c, w, risk0, target, Anchor("momentum", 0.0, anchor[0], int(anchor[1]), corrected))
    return exponent, Problem(h=h, c=c, s0=_initial(h, w, risk0, exponent), weights=w)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=pathlib.Path, help="a calibration folder with a measured adam")
    parser.add_argument("--measured", default="", help="measured B_noise values, comma-separated")
    parser.add_argument("--runs", type=int, default=400, help="Monte Carlo runs per first hit")
    args = parser.parse_args()
    stored = json.loads((args.folder / "nqm_problem.json").read_text())["preconditioned"]["adam"]
    entry = json.loads((args.folder / "prediction.json").read_text())["optimizers"]["adam"]
    h, c, w = (np.array(stored[k], float) for k in ("h", "c", "weights"))
    risk0, target = float(stored["initial_risk"]), float(stored["target"])
    anchor = (float(entry["anchor"]["batch_size"]), float(entry["anchor"]["steps"]))
    every = int(entry["first_hit"]["every"]) if entry.get("first_hit") else 1
    sizes = [float(b) for b in entry["batch_sizes"]]
    measured = [float(x) for x in args.measured.split(",") if x]
    print(f"{args.folder}: Adam's NQM, anchor {anchor[1]:g} steps at B = {anchor[0]:g}, first hit every {every}; "
          f"committed prediction: first hit {entry['steps']}, B_noise {entry['critical_batch_size']['b_noise']:.0f}")
    for corrected in (False, True):
        a, problem = fit_initial(h, c, w, risk0, target, anchor, corrected)
        expected, hits, rows = [], [], []
        for b in sizes:
            best = tuned_optimum(problem, "momentum", batch_size=b, target=target, bias_correction=corrected)
            hit = tuned_drifted_first_hit(problem, Drift.none(h.shape[0]), batch_size=b, target=target,
                                          eval_every=every, optimum=best, runs=args.runs, seed=0,
                                          bias_correction=corrected)
            expected.append(best.steps)
            hits.append(hit.steps)
            rows.append(f"B={b:g}: {best.steps:g} / {hit.steps:g} (lr {hit.learning_rate / (1 - (hit.momentum or 0)):.3g}, "
                        f"β₁ {hit.momentum:.2f})")
        b_expected = critical_batch_size(sizes, expected).fit.b_noise
        b_hit = critical_batch_size(sizes, hits).fit.b_noise
        label = "with bias correction" if corrected else "without (as calibrate)"
        print(f"\n{label}: initial exponent {a:.3f}; steps expected / first hit, Adam's lr and β₁:")
        for row in rows:
            print("  " + row)
        ratios = " / ".join(f"{b_hit / m:.2f}" for m in measured)
        print(f"  B_noise: expected {b_expected:.0f}, first hit {b_hit:.0f}" +
              (f"; first hit / measured ({args.measured}): {ratios}" if measured else ""))


if __name__ == "__main__":
    main()
