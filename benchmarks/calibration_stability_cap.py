"""What if a calibrated NQM's learning rates had to stay stable in a sharper direction than the checkpoint's?

Issue 15, "why momentum misses": the network's sharpness changes along training (digits-cnn, SGD
reference lr 0.464 at B = 128: λ₁ = 33.7 at initialisation, 0.99 after 4 steps (a catapult), 16.7 at
step 12, 4.95 at 24 and 4.6 at the checkpoint, step 47; ``results/calibration/``), while the NQM keeps
the checkpoint's.  This script adds one zero-risk direction (``h = λ_s``, ``c = 0``, ``s0 = 0``) to a
calibrated NQM (``nqm_problem.json``): it changes no risk, only the largest stable learning rate
(``2/λ_s`` for SGD, ``2(1 + β)/λ_s`` for heavy ball), and prints the tuned steps per batch size, the
hyperbola-fit B_noise and the tuned rates for SGD and momentum at each ``λ_s``.

Usage::

    PYTHONPATH=src python benchmarks/calibration_stability_cap.py results/calibration/digits/default/nqm_problem.json 8 16.7 33.7
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from batchlab.calibrate.predict import PROXIES, predict
from batchlab.critical import critical_batch_size
from batchlab.nqm.spectrum import Problem

SIZES = (16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("problem", help="nqm_problem.json of a calibration")
    parser.add_argument("caps", nargs="*", type=float, help="curvatures λ_s of the added direction")
    args = parser.parse_args()
    d = json.loads(open(args.problem).read())
    print(f"batch sizes {[int(b) for b in SIZES]}")
    for cap in [None, *args.caps]:
        h, c, s0, w = (np.array(d[k], float) for k in ("h", "c", "s0", "weights"))
        if cap is not None:
            h, c, s0, w = np.append(h, cap), np.append(c, 0.0), np.append(s0, 0.0), np.append(w, 1.0)
        curves = predict(Problem(h=h, c=c, s0=s0, weights=w), target=d["target"], batch_sizes=SIZES,
                         optimizers={k: PROXIES[k] for k in ("sgd", "momentum")})
        for name, curve in curves.items():
            steps = np.array(curve.steps, float)
            fit = critical_batch_size(np.array(SIZES), steps, 0.2).fit
            rates = [f"{r.learning_rate:.3g}" + (f"/{r.momentum:.2f}" if r.momentum else "") for r in curve.rows]
            print(f"λ_s {'none' if cap is None else f'{cap:g}':>5}  {name:9s} steps {[int(s) for s in steps]}  "
                  f"B_noise {fit.b_noise if fit else float('nan'):.1f}  lr[/β] {' '.join(rates)}")


if __name__ == "__main__":
    main()
