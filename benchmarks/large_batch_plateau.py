"""Steps to target versus learning rate at one batch size: the network's plateau against the NQM's.

The calibrated NQM is too fast at large batch sizes for momentum, Adam and K-FAC (issue 15,
``results/calibration/``).  This compares the *shape* of steps versus learning rate at a batch size:

* **measured**: every configuration a study tried at that batch size (all phases and stores given;
  a configuration run with several seeds counts with its median), its steps against its effective
  learning rate ``α / (1 − β)`` (SGD: ``α``; Adam: its ``lr``, already an average's rate);
* **NQM**: the calibration's NQM for that optimizer (the reference run's, or the optimizer's own in
  its preconditioned coordinates) at the same batch size: the fewest steps until the expected risk
  reaches the target at each effective rate, the momentum tuned per rate over the study's box of
  ``β`` (the NQM's own rates: Adam's NQM ``α`` is ``lr (1 − β)``).

For each it prints the best steps and the range of effective rates whose steps are within
``--within`` (default 1.25) of the best: the width of the near-optimal plateau.  A wide measured
plateau where the NQM's is narrow says that beyond some rate the network stops getting faster (a
floor that no fixed quadratic has: on the NQM larger stable rates always help the slow directions).

Usage::

    PYTHONPATH=src python benchmarks/large_batch_plateau.py --calibration results/calibration/digits/loss-target \\
        --study results/stability-digits-loss/seed0.sqlite --study results/stability-digits-loss/seed1.sqlite \\
        --study results/stability-digits-loss/seed2.sqlite --study results/calibration/digits/loss-study/study.sqlite \\
        --batch-sizes 128,1024 --out results/calibration/plateau
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from batchlab.calibrate.pipeline import read_nqm
from batchlab.nqm.optimize import make_dynamics
from batchlab.nqm.search import search_steps
from batchlab.nqm.spectrum import Problem

MOMENTUM_KEY = {"momentum": "momentum", "adam": "beta1", "kfac": "momentum"}


def measured_points(stores: list[Path], optimizer: str, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(effective rates, steps) of every configuration whose median run reached the target (median
    over its seeds; a run that did not reach counts as infinite)."""
    runs: dict[tuple, list[int]] = defaultdict(list)
    for path in stores:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute("select config, steps_to_target, status from trials where optimizer = ? and "
                              "batch_size = ?", (optimizer, batch_size)).fetchall()
        for config, steps, status in rows:
            hyper = json.loads(config)["hyperparameters"]
            key = (str(path),) + tuple(sorted((k, v) for k, v in hyper.items() if isinstance(v, float)))
            runs[key].append(int(steps) if status == "reached" else -1)
    rates, steps = [], []
    for key, outcomes in runs.items():
        hyper = dict(key[1:])
        median = float(np.median([s if s >= 0 else np.inf for s in outcomes]))
        if not np.isfinite(median):  # the median run did not reach the target
            continue
        beta = hyper.get(MOMENTUM_KEY.get(optimizer, ""), 0.0)
        rates.append(hyper["learning_rate"] if optimizer == "adam" else hyper["learning_rate"] / (1.0 - beta))
        steps.append(median)
    return np.array(rates), np.array(steps, float)


def grid_steps(problem: Problem, target: float, kind: str, batch_size: float, rates: np.ndarray,
               betas: np.ndarray, *, effective: bool = True) -> np.ndarray:
    """Expected-risk steps to ``target`` on a grid (``inf`` where unstable or out of reach): per rate for
    ``kind`` ``"sgd"``, per (rate, β) for momentum-type NQMs.  ``effective``: the rates are ``α / (1 − β)``
    (and Adam's ``lr``); otherwise they are the NQM's ``α`` itself (momentum's and K-FAC's ``learning_rate``)."""
    if kind == "sgd":
        dyn = make_dynamics("sgd", learning_rate=rates)
    else:
        R, Bt = np.meshgrid(rates, betas, indexing="ij")
        dyn = make_dynamics("momentum", learning_rate=R * (1.0 - Bt) if effective else R, momentum=Bt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return search_steps(problem, dyn, batch_size=batch_size, target=target)


def nqm_curve(problem: Problem, target: float, kind: str, batch_size: float, rates: np.ndarray,
              betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fewest expected-risk steps at each effective rate (β tuned over ``betas``) and the β chosen."""
    steps = grid_steps(problem, target, kind, batch_size, rates, betas)
    if kind == "sgd":
        return steps, np.zeros_like(rates)
    best = np.argmin(steps, axis=1)
    return steps[np.arange(len(rates)), best], betas[best]


def plateau(rates: np.ndarray, steps: np.ndarray, within: float) -> tuple[float, float, float]:
    """Best steps and the lowest / highest rate within ``within`` of it."""
    ok = np.isfinite(steps)
    if not ok.any():
        return float("inf"), float("nan"), float("nan")
    best = float(np.min(steps[ok]))
    near = ok & (steps <= within * best)
    return best, float(np.min(rates[near])), float(np.max(rates[near]))


def nqm_at(rate, grid, nqm_steps) -> float:
    """The NQM's steps at ``rate`` (log-log interpolation on the grid; ``inf`` beyond its stable rates)."""
    finite = np.isfinite(nqm_steps)
    if rate > np.max(grid[finite]):
        return float("inf")
    return float(np.exp(np.interp(np.log(rate), np.log(grid[finite]), np.log(nqm_steps[finite]))))


def side_ratios(rates, steps, grid, nqm_steps) -> tuple[tuple[float, int], float]:
    """((median measured / NQM steps on the slow side, configurations there), largest measured rate
    that reached / the NQM's largest stable rate)."""
    finite = np.isfinite(nqm_steps)
    best_rate = grid[finite][np.argmin(nqm_steps[finite])]
    slow = rates <= best_rate / 2
    at = np.exp(np.interp(np.log(rates[slow]), np.log(grid[finite]), np.log(nqm_steps[finite])))
    ratio = float(np.median(steps[slow] / at)) if slow.any() else float("nan")
    return (ratio, int(slow.sum())), float(np.max(rates) / np.max(grid[finite]))


def _ratio(measured: float, nqm: float) -> str:
    return "unstable" if not np.isfinite(nqm) else f"{measured / nqm:5.2f}   "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calibration", type=Path, required=True)
    parser.add_argument("--study", type=Path, action="append", required=True)
    parser.add_argument("--batch-sizes", default="128,1024")
    parser.add_argument("--optimizers", default=None, help="default: every optimizer of the calibration")
    parser.add_argument("--within", type=float, default=1.25)
    parser.add_argument("--beta-box", default="0.5,0.99", help="the study's box of beta (momentum-type NQMs)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    prediction = json.loads((args.calibration / "prediction.json").read_text())
    names = args.optimizers.split(",") if args.optimizers else list(prediction["optimizers"])
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    lo, hi = (float(v) for v in args.beta_box.split(","))
    betas = 1.0 - np.geomspace(1.0 - lo, 1.0 - hi, 15)
    lines = [f"# steps vs effective learning rate; plateau = rates within {args.within}x of the best steps",
             f"# calibration {args.calibration}; studies {', '.join(str(s) for s in args.study)}",
             "# slow side: median measured / NQM steps over the configurations at rates <= half the NQM's best rate;",
             "# beyond wall: the largest measured rate that reached / the NQM's largest stable rate;",
             "# floor: measured best / NQM best; same rate: measured best / the NQM's steps at the measured best's rate",
             "#   (unstable: that rate is beyond the NQM's stability limit)",
             "optimizer   B     measured: best  plateau [lo, hi]  width   |  NQM: best  plateau [lo, hi]  width  "
             "| slow side (n)  beyond wall  floor  same rate  configs"]
    panels = []
    for name in names:
        entry = prediction["optimizers"][name]
        problem, target = read_nqm(args.calibration, name)
        kind = entry["nqm_kind"]
        for B in sizes:
            rates, steps = measured_points(args.study, name, B)
            if rates.size == 0:
                continue
            grid = np.geomspace(rates.min() / 10, rates.max() * 10, 121)
            nqm_steps, nqm_beta = nqm_curve(problem, target, kind, float(B), grid, betas)
            mb, mlo, mhi = plateau(rates, steps, args.within)
            nb, nlo, nhi = plateau(grid, nqm_steps, args.within)
            slow, wall = side_ratios(rates, steps, grid, nqm_steps)
            best_rate = float(rates[np.argmin(steps)])
            lines.append(f"{name:10s} {B:5d}   {mb:6.1f}  [{mlo:8.4g}, {mhi:8.4g}]  {mhi / mlo:5.2f}x  |  "
                         f"{nb:6.1f}  [{nlo:8.4g}, {nhi:8.4g}]  {nhi / nlo:5.2f}x  | {slow[0]:5.2f} ({slow[1]:2d})"
                         f"      {wall:5.2f}x    {mb / nb:5.2f}   {_ratio(mb, nqm_at(best_rate, grid, nqm_steps))}"
                         f"      {rates.size}")
            panels.append((name, B, rates, steps, grid, nqm_steps))
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "plateau.txt").write_text(text + "\n")
        _figure(panels, sizes, args.out / "plateau.png")


def _figure(panels, sizes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(p[0] for p in panels))
    fig, axes = plt.subplots(len(names), len(sizes), figsize=(4.2 * len(sizes), 3.0 * len(names)), squeeze=False)
    for name, B, rates, steps, grid, nqm_steps in panels:
        ax = axes[names.index(name), sizes.index(B)]
        ax.scatter(rates, steps, s=12, color="C0", label="network (each configuration)")
        ax.plot(grid, np.where(np.isfinite(nqm_steps), nqm_steps, np.nan), color="C3", label="NQM (β tuned per rate)")
        ax.set(xscale="log", yscale="log", title=f"{name}, B = {B}", xlabel="effective learning rate",
               ylabel="steps to target")
        ax.set_ylim(max(1, 0.7 * min(np.min(steps), np.nanmin(np.where(np.isfinite(nqm_steps), nqm_steps, np.nan)))),
                    5 * np.max(steps))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
