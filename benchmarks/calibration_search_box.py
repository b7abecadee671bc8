"""The calibrated NQM tuned where the optimizer is tuned: the reference run's momentum for the anchor, a
study's search box for the curve — re-predicted on a committed calibration, one change at a time.

``batchlab calibrate`` fits the NQM's initial state so that its tuned steps at the reference batch size
equal the reference run's.  Until this change both that fit and the predicted curve tuned every NQM
coordinate freely (the learning rate and the momentum ``β``).  But a reference run tunes its learning
rate only (Adam at ``β₁ = 0.9``, K-FAC at momentum 0.5), and a study finds the best configuration inside
its own search box (fashion-mnist's momentum: learning rate at most 0.3, ``β ≤ 0.95``): an NQM optimum
outside it is one the measurement cannot find.

For a committed calibration folder and one optimizer this re-predicts the curve three ways on the stored
NQM (its ``h``, ``c``, weights, initial risk and target), each with the initial state refitted as
:func:`batchlab.calibrate.model.build_problem` fits it (the exponent ``a`` of the risk shares ``∝ w h^a``):

1. free: the anchor and the curve tuned over every coordinate (``calibrate`` before this change);
2. anchor: the anchor at the reference run's momentum (``--anchor-momentum``; :class:`~batchlab.calibrate.model.Anchor`
   ``momentum``, the default now), the curve free;
3. box: the anchor as in 2, the curve inside the study's box (``--lr``, ``--momentum``; optimizer units,
   Adam's rate is its ``lr``; ``batchlab calibrate --search-space``).

The code is the pipeline's: :func:`~batchlab.calibrate.model.tuned_optimum` (free, and the anchor at a
fixed momentum), :func:`batchlab.nqm.drift.tuned_in_box` (the box), then the first hit (median of 400
Monte Carlo runs, :func:`~batchlab.nqm.drift.tuned_drifted_first_hit`, at rate multiples inside the box).
Adam runs its first moment's bias correction throughout; drift (K-FAC) is not modelled here.  Prints the
first-hit steps and hyperparameters per batch size, each curve's B_noise (hyperbola fit) and its ratio to
the measured ones.

Usage::

    PYTHONPATH=src python benchmarks/calibration_search_box.py results/calibration/digits/bias-correction adam \\
        --anchor-momentum 0.9 --lr 1e-4,0.03 --momentum 0.5,0.999 --measured 109,105,104
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

import numpy as np

from batchlab.calibrate.model import Anchor, _fit_exponent, _initial, tuned_optimum
from batchlab.calibrate.pipeline import box_multipliers
from batchlab.calibrate.predict import SearchBox
from batchlab.critical import critical_batch_size
from batchlab.nqm import Problem
from batchlab.nqm.drift import Drift, tuned_drifted_first_hit, tuned_in_box

BIAS_CORRECTED = ("adam",)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("optimizer", help="sgd, momentum or adam")
    parser.add_argument("--lr", required=True, help="the study's learning-rate range LOW,HIGH (optimizer units)")
    parser.add_argument("--momentum", default="", help="the study's momentum range LOW,HIGH (one value: fixed)")
    parser.add_argument("--anchor-momentum", type=float, default=None,
                        help="the reference run's momentum (a measured optimizer's own run)")
    parser.add_argument("--measured", default="", help="measured B_noise values, comma-separated")
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args()
    name = args.optimizer
    corrected = name in BIAS_CORRECTED
    stored = json.loads((args.folder / "nqm_problem.json").read_text())
    stored = stored.get("preconditioned", {}).get(name, stored)
    prediction = json.loads((args.folder / "prediction.json").read_text())
    entry = prediction["optimizers"][name]
    own = "anchor" in entry  # a measured optimizer's own run; else the SGD reference's
    anchor = entry["anchor"] if own else prediction["anchor"]
    h, c, w = (np.array(stored[k], float) for k in ("h", "c", "weights"))
    risk0, target = float(stored["initial_risk"]), float(stored["target"])
    every = int(entry["first_hit"]["every"]) if entry.get("first_hit") else 1
    sizes = [float(b) for b in entry["batch_sizes"]]
    measured = [float(x) for x in args.measured.split(",") if x]
    momentum = [float(x) for x in args.momentum.split(",") if x]
    box = SearchBox(tuple(float(x) for x in args.lr.split(",")),
                    None if name == "sgd" else (momentum[0], momentum[-1]) if momentum else (0.5, 0.999))
    kind = "sgd" if name == "sgd" else "momentum"

    def anchor_of(fixed: bool) -> Anchor:
        if not own:  # the SGD reference
            return Anchor("sgd", 0.0, float(anchor["batch_size"]), int(anchor["steps"]))
        return Anchor("momentum", 0.0, float(anchor["batch_size"]), int(anchor["steps"]), corrected,
                      args.anchor_momentum if fixed else None)

    print(f"{args.folder} {name}: anchor {anchor['steps']} steps at B = {anchor['batch_size']:g}; committed first "
          f"hits {entry['steps']}, B_noise {entry['critical_batch_size']['b_noise']:.0f}; box {box.as_dict()}")
    for label, fixed, boxed in (("1. free (anchor and curve tuned over every coordinate)", False, False),
                                ("2. anchor at the reference run's momentum, curve free", True, False),
                                ("3. anchor at the reference run's momentum, curve in the study's box", True, True)):
        a, _ = _fit_exponent(h, c, w, risk0, target, anchor_of(fixed))
        problem = Problem(h=h, c=c, s0=_initial(h, w, risk0, a), weights=w)
        none = Drift.none(h.shape[0])
        hits, rows = [], []
        for b in sizes:
            if boxed:
                best = tuned_in_box(problem, none, batch_size=b, target=target, rates=box.learning_rate,
                                    momenta=box.momenta(), averaged=name == "adam", bias_correction=corrected)
                multipliers = box_multipliers(box, best.learning_rate, best.momentum, name == "adam")
            else:
                best = tuned_optimum(problem, kind, batch_size=b, target=target, bias_correction=corrected)
                multipliers = None
            hit = tuned_drifted_first_hit(problem, none, batch_size=b, target=target, eval_every=every, optimum=best,
                                          runs=args.runs, seed=0, multipliers=multipliers, bias_correction=corrected)
            hits.append(hit.steps)
            rate = hit.learning_rate / ((1 - (hit.momentum or 0.0)) if name == "adam" else 1.0)
            rows.append(f"B={b:g}: expected {best.steps:g}, first hit {hit.steps:g} (lr {rate:.3g}"
                        + (f", momentum {hit.momentum:.3f})" if hit.momentum is not None else ")"))
        fit = critical_batch_size(sizes, hits).fit
        b_noise = fit.b_noise if fit else math.nan
        print(f"\n{label}: initial exponent {a:.3f}")
        for row in rows:
            print("  " + row)
        ratios = " / ".join(f"{b_noise / m:.2f}" for m in measured)
        print(f"  B_noise (first hit) {b_noise:.0f}" + (f"; / measured ({args.measured}): {ratios}" if measured else ""))


if __name__ == "__main__":
    main()
