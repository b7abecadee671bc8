"""A start-up delay tried by hand: every count of a committed calibration's NQM shifted by ``T0`` updates.

Issue 15.  Before ``batchlab calibrate`` fitted a start-up delay (:mod:`batchlab.calibrate.model`, "Start-up
delay"), this asked whether one would help at all.  For each committed calibration folder (``--seeds``
members) and each ``T0``, the initial state is refitted so that the tuned SGD NQM reaches its target in the
reference's steps minus ``T0`` (:func:`batchlab.calibrate.model._fit_exponent`), then SGD's and momentum's
expected-risk curves are tuned inside the study's search box (:func:`batchlab.nqm.drift.tuned_in_box`) and
``T0`` is added to every count.  Prints each curve's hyperbola-fit B_noise, its ratio to the measured one (the
hyperbola fit of ``--measured``) and the per-cell ratios predicted / measured.

Usage::

    PYTHONPATH=src python benchmarks/calibration_delay_shift.py results/calibration/digits/search-box/seed-0 \\
        --delays 0,5,10,15 --batch-sizes 16,32,64,128,256,512,1024 --sgd-box 0.01,3 --momentum-box 0.001,1,0.5,0.99 \\
        --measured-sgd 146.5,86.5,60,49,40,35.5,39.5 --measured-momentum 149.5,95,57.5,36.5,27,23.5,23.5
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np

from batchlab.calibrate.model import Anchor, _fit_exponent, _initial
from batchlab.critical import critical_batch_size
from batchlab.nqm import Problem
from batchlab.nqm.drift import Drift, tuned_in_box


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def add_box_arguments(parser: argparse.ArgumentParser) -> None:
    """The batch sizes, SGD's and momentum's search boxes and measured steps (shared with
    ``calibration_noise_scale.py``)."""
    parser.add_argument("--batch-sizes", required=True)
    parser.add_argument("--sgd-box", required=True, help="LOW,HIGH learning rate")
    parser.add_argument("--momentum-box", required=True, help="LOW,HIGH learning rate, LOW,HIGH momentum")
    parser.add_argument("--measured-sgd", required=True, help="measured steps per batch size")
    parser.add_argument("--measured-momentum", required=True)


class Boxes:
    """SGD's and momentum's boxes and measured curves from :func:`add_box_arguments`' arguments; prints the
    measured B_noise."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.sizes = floats(args.batch_sizes)
        sgd_box, mom = floats(args.sgd_box), floats(args.momentum_box)
        self.boxes = {"sgd": ((sgd_box[0], sgd_box[1]), [0.0]),
                      "momentum": ((mom[0], mom[1]), list(np.linspace(mom[2], mom[3], 8)))}
        self.measured = {"sgd": floats(args.measured_sgd), "momentum": floats(args.measured_momentum)}
        self.measured_b = {name: critical_batch_size(self.sizes, steps).fit.b_noise
                           for name, steps in self.measured.items()}
        print("measured B_noise " + ", ".join(f"{name} {b:.0f}" for name, b in self.measured_b.items()))

    def compare(self, problem: Problem, target: float, delay: int) -> str:
        """Each optimizer's steps tuned in its box plus ``delay``: B_noise, its ratio and per-cell ratios."""
        parts = []
        for name, (rates, momenta) in self.boxes.items():
            steps = [delay + tuned_in_box(problem, Drift.none(problem.h.shape[0]), batch_size=b, target=target,
                                          rates=rates, momenta=momenta, points=31, refine=4, finalists=4).steps
                     for b in self.sizes]
            fit = critical_batch_size(self.sizes, steps).fit
            b_noise = fit.b_noise if fit else math.nan
            cells = ", ".join(f"{s / m:.2f}" for s, m in zip(steps, self.measured[name]))
            parts.append(f"{name} B_noise {b_noise:.0f} ({b_noise / self.measured_b[name]:.2f}), cells {cells}")
        return " | ".join(parts)


def parse(doc: str, sweep: str, default: str) -> tuple[argparse.Namespace, Boxes]:
    """Arguments: calibration folders, the swept values (``--<sweep>``) and the boxes; quiet warnings."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="calibration folders (one seed each)")
    parser.add_argument(f"--{sweep}", default=default)
    add_box_arguments(parser)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    return args, Boxes(args)


def load(folder: Path) -> tuple[dict, dict, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """A calibration folder's ``nqm_problem.json`` and ``prediction.json``, with ``h, c, w``, the initial
    risk and the NQM's target."""
    stored = json.loads((folder / "nqm_problem.json").read_text())
    prediction = json.loads((folder / "prediction.json").read_text())
    h, c, w = (np.array(stored[k], float) for k in ("h", "c", "weights"))
    return stored, prediction, h, c, w, float(stored["initial_risk"]), float(stored["target"])


def main() -> None:
    args, boxes = parse(__doc__, "delays", "0,5,10,15")
    for folder in args.folders:
        _, prediction, h, c, w, risk0, target = load(folder)
        reference = prediction["anchor"]
        for delay in (int(x) for x in floats(args.delays)):
            anchor = Anchor("sgd", 0.0, float(reference["batch_size"]), int(round(reference["steps"] - delay)))
            exponent, _ = _fit_exponent(h, c, w, risk0, target, anchor)
            problem = Problem(h=h, c=c, s0=_initial(h, w, risk0, exponent), weights=w)
            print(f"{folder} T0 {delay:>2} (exponent {exponent:.2f}): " + boxes.compare(problem, target, delay),
                  flush=True)


if __name__ == "__main__":
    main()
