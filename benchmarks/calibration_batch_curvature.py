"""The curvature a network reaches its target with, per batch size, and an NQM that uses it.

Issue 15, "find out why it misses".  A calibrated NQM has one curvature, measured at the checkpoint of the
reference run (one batch size, one learning rate).  This measures, for plain SGD at each batch size of
``--sizes`` with that batch size's learning rate (``--rates``: for example a study's winners), the Gauss-Newton
spectrum at the run's first hit of the target (top eigenvalue, trace by Lanczos + SLQ, ``tr Σ``), median over
``--seeds`` training seeds, against the checkpoint's (the folder's ``spectra.json``).

Then it re-predicts SGD with each batch size's own curvature scale ``k_B = tr H_B / tr H_checkpoint``: the
committed NQM (its fitted initial state and delay) with ``h`` and ``c`` scaled by ``k_B`` and ``s0`` by
``1 / k_B`` (the same initial risk; the noise scales with the curvature as for the cross-entropy's Fisher),
SGD's expected-risk steps tuned inside ``--box`` (:func:`batchlab.nqm.drift.tuned_in_box`).  It prints the
hyperbola-fit B_noise of both curves, their ratios to ``--measured`` (steps per batch size) and per-cell
ratios.  Such a scale is the same NQM at the rate ``k α`` (``k θ²`` follows it), so under tuning it can only
relabel rates; what matters is which rates each batch size can reach.  So it also prints, per batch size, the
*effective rate* ``lr k_B`` of the measured runs and the NQM's expected-risk steps and median first hit
(``--every``, 200 Monte Carlo runs) at that rate, next to the runs' own steps.

Usage (about 5 minutes for fashion-mnist-mlp's four study batch sizes)::

    PYTHONPATH=src python benchmarks/calibration_batch_curvature.py fashion-mnist-mlp \\
        results/calibration/fashion-mnist/delay/seed-0 --sizes 64,256,1024,4096 --rates 0.126,0.239,0.294,0.423 \\
        --box 0.03,1 --measured 1600,681,408,428
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import jax
import numpy as np

from batchlab.calibrate.measure import MeasureConfig, measure
from batchlab.critical import critical_batch_size
from batchlab.nqm import Problem, sgd
from batchlab.nqm.drift import Drift, drifted_risk, tuned_in_box
from batchlab.nqm.first_hit import first_hits
from batchlab.train import TrainOptions, run, setup
from batchlab.workloads.registry import get_workload


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload")
    parser.add_argument("folder", type=Path, help="a calibration folder (one seed)")
    parser.add_argument("--sizes", type=floats, required=True)
    parser.add_argument("--rates", type=floats, required=True, help="SGD's learning rate per batch size")
    parser.add_argument("--box", type=floats, required=True, help="LOW,HIGH learning rate of the re-prediction")
    parser.add_argument("--measured", type=floats, default=None,
                        help="measured steps per batch size (without it, or with a batch size repeated to compare "
                             "rates, no re-prediction)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=5000)
    parser.add_argument("--every", type=int, default=10, help="evaluation cadence of the NQM's first hits")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    stored = json.loads((args.folder / "nqm_problem.json").read_text())
    prediction = json.loads((args.folder / "prediction.json").read_text())
    spectra = json.loads((args.folder / "spectra.json").read_text())
    target = prediction["target"]
    reference = prediction["reference"]
    print(f"{args.workload}, calibration {args.folder}: target {target['metric']} <= {target['value']}; checkpoint "
          f"(SGD lr {reference['hyperparameters']['learning_rate']:.4g}, B = {reference['batch_size']}, step "
          f"{prediction['checkpoint_step']}): top eigenvalue {spectra['eigenvalues'][0]:.2f}, trace "
          f"{spectra['trace']:.1f}, tr Σ {spectra['gradient_noise']['trace_sigma']:.1f}")
    workload = get_workload(args.workload)
    workload.load()
    config = MeasureConfig(top_k=4, slq_probes=4, slq_steps=48)
    scales, hits = [], []
    print("\nAt each run's first hit of the target (GGN; median over seeds):")
    for batch, rate in zip(args.sizes, args.rates):
        rows = []
        for seed in range(args.seeds):
            result = run(setup(workload, "sgd", {"learning_rate": rate}, int(batch), args.horizon, seed,
                               target=target["value"], target_metric=target["metric"], eval_every=10,
                               options=TrainOptions(keep_hit=True)))
            if result.steps_to_target is None:
                continue
            found = measure(workload, result.checkpoints[result.steps_to_target].params, config,
                            key=jax.random.PRNGKey(seed))
            rows.append((result.steps_to_target, float(found.top.values[0]), found.trace,
                         float(found.noise.as_dict()["trace_sigma"])))
        if not rows:
            print(f"   B {batch:6.0f} lr {rate:.4g}: no run reached the target")
            scales.append(1.0)
            hits.append(math.nan)
            continue
        hit, top, trace, sigma = (float(np.median([r[i] for r in rows])) for i in range(4))
        scales.append(trace / spectra["trace"])
        hits.append(hit)
        print(f"   B {batch:6.0f} lr {rate:.4g} (lr/B {rate / batch:.2e}): steps {hit:.0f}, top eigenvalue {top:.2f}, "
              f"trace {trace:.1f} (x{scales[-1]:.2f} the checkpoint's), tr Σ {sigma:.1f}   "
              f"[seeds: {', '.join(f'{r[0]}/{r[2]:.0f}' for r in rows)} steps/trace]", flush=True)

    h, c, w, s0 = (np.array(stored[k], float) for k in ("h", "c", "weights", "s0"))
    delay = int(stored.get("delay") or 0)
    nqm = Problem(h=h, c=c, s0=s0, weights=w)
    limit = 2.0 / float(h.max())
    print(f"\nThe NQM at each run's effective rate lr x k_B (its stability limit 2 / h_max = {limit:.3f}; "
          f"+ delay {delay}):")
    for batch, rate, k, hit in zip(args.sizes, args.rates, scales, hits):
        if math.isnan(hit):
            continue  # no run reached the target: no curvature measured
        alpha = rate * k
        if alpha >= limit:
            print(f"   B {batch:6.0f}: effective rate {alpha:.3f}, past the NQM's limit; runs {hit:.0f} steps")
            continue
        risk = drifted_risk(nqm, Drift.none(h.shape[0]), learning_rate=alpha, momentum=None, batch_size=batch,
                            steps=args.horizon)
        below = np.flatnonzero(risk <= float(stored["target"]))
        first = first_hits(nqm, sgd(alpha), batch_size=batch, target=float(stored["target"]), eval_every=args.every,
                           horizon=args.horizon, runs=200)
        expected = f"{below[0] + delay}" if below.size else "never"
        print(f"   B {batch:6.0f}: effective rate {alpha:.3f}: NQM expected {expected}, first hit "
              f"{float(np.median(first)) + delay:.0f}; runs {hit:.0f}", flush=True)
    if args.measured is None or len(set(args.sizes)) < len(args.sizes):
        return
    measured_fit = critical_batch_size(args.sizes, args.measured).fit
    print(f"\nSGD re-predicted (expected risk, tuned in lr [{args.box[0]:g}, {args.box[1]:g}], + delay {delay}); "
          f"measured B_noise {measured_fit.b_noise:.0f}")
    for name, ks in (("as calibrated", [1.0] * len(scales)), ("curvature per batch size", scales)):
        steps = []
        for batch, k in zip(args.sizes, ks):
            problem = Problem(h=h * k, c=c * k, s0=s0 / k, weights=w)
            best = tuned_in_box(problem, Drift.none(h.shape[0]), batch_size=batch, target=float(stored["target"]),
                                rates=(args.box[0], args.box[1]), momenta=[0.0], points=31, refine=4, finalists=4)
            steps.append(delay + best.steps)
        fit = critical_batch_size(args.sizes, steps).fit
        b_noise = fit.b_noise if fit else math.nan
        cells = ", ".join(f"{s / m:.2f}" for s, m in zip(steps, args.measured))
        print(f"   {name:25s} steps {[int(s) for s in steps]}  B_noise {b_noise:.0f} "
              f"({b_noise / measured_fit.b_noise:.2f})  cells {cells}", flush=True)


if __name__ == "__main__":
    main()
