"""What if a calibrated NQM were tuned only inside the study's search box?

Issue 15.  The NQM tunes each optimizer's learning rate and momentum freely; a study searches a box
(``[optimizers.X] search.learning_rate``, ``search.momentum`` / ``search.beta1``).  This re-tunes the
NQM of a calibration on a grid, once over wide ranges and once inside the study spec's box (Adam's
``learning_rate`` is its own ``lr = α / (1 − β)``; β over the box of ``momentum`` or ``beta1``), and
prints the expected-risk steps per batch size and the hyperbola-fit B_noise of both.

Usage::

    PYTHONPATH=src python benchmarks/calibration_study_box.py results/calibration/fashion-mnist/measured \
        studies/paper-fashion-mnist.toml 64,256,1024,4096
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from batchlab.calibrate.pipeline import read_nqm
from batchlab.critical import fit_hyperbola
from batchlab.study import load_spec
from large_batch_plateau import grid_steps  # the same grid of expected-risk steps as the plateau benchmark

FREE_RATES = np.geomspace(1e-6, 1e3, 181)
FREE_BETAS = 1.0 - np.geomspace(0.5, 0.001, 19)


def box_grid(box: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The study box's rates (61, log-spaced) and momenta (19, ``1 − β`` log-spaced; ``[0]`` if not searched)."""
    low, high = box["learning_rate"]
    key = "beta1" if name == "adam" else "momentum"
    if key not in box:
        return np.geomspace(low, high, 61), np.zeros(1)
    b0, b1 = box[key]
    return np.geomspace(low, high, 61), 1.0 - np.geomspace(1.0 - b0, 1.0 - b1, 19)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("calibration", type=Path)
    parser.add_argument("spec", type=Path, help="the study spec whose search box constrains the NQM")
    parser.add_argument("batch_sizes")
    args = parser.parse_args()
    sizes = [float(b) for b in args.batch_sizes.split(",")]
    prediction = json.loads((args.calibration / "prediction.json").read_text())
    boxes = {o.name: {d.name: (d.low, d.high) for d in o.search} for o in load_spec(args.spec).optimizers}
    for name, entry in prediction["optimizers"].items():
        if name not in boxes:
            continue
        problem, target = read_nqm(args.calibration, name)
        box = boxes[name]
        grids = {"free": (FREE_RATES, FREE_BETAS), "box": box_grid(box, name)}
        lines = [f"{name:9s} box {box}"]
        for label, (rates, betas) in grids.items():
            # Adam's lr is already an effective rate; momentum's and K-FAC's learning_rate is the NQM's α
            steps = [float(np.min(grid_steps(problem, target, entry["nqm_kind"], b, rates, betas,
                                             effective=name == "adam"))) for b in sizes]
            fit = fit_hyperbola(sizes, steps)
            lines.append(f"   {label:4s} {[int(s) for s in steps]} B_noise {fit.b_noise if fit else None:.0f}")
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
