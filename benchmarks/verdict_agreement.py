"""How often do three runs of a study agree on every pairwise verdict?  Synthetic studies with digits-like effects.

Issue 14's stability criterion asks every pairwise verdict ("A needs fewer steps than C at B", "A's
critical batch size is larger") to agree across three runs that differ only in their design seed.  On
digits-cnn 16 of the 24 verdicts agreed at every budget tried (results/stability-digits-loss*/).  This
benchmark asks the same question of the synthetic model (:mod:`batchlab.analysis.synthetic`), where the
truth is known, with three optimizers shaped like the ~4x digits study's estimates:

    sgd       S_min 34, B_noise  50        momentum  S_min 20, B_noise 115        adam  S_min 14, B_noise 110

It prints:

* per protocol (budget per cell, from the ~4x preset's up to 61x that): the study cost (training
  steps, as a ratio to the first protocol), the mean number of verdicts (of 24) that agree across a
  triple of runs, the share of triples where all 24 agree, the same predicted from each claim's
  decision rate, the share of run-verdicts that are decided, and the share that are wrong;
* per claim, sorted by its true effect: the share of runs that decide it at each budget;
* the calibration of a plug-in prediction of "a rerun gives the same verdict" (:func:`rerun_verdicts`:
  this run's estimates taken for the truth, a rerun's estimates scattered as the bootstrap's errors,
  its intervals as wide as this run's), against what the claim's other runs did;
* how a cell's interval narrows with the budget, and its calibration (:func:`widths`);
* the committed real-network runs' claims: effect size and how many runs decided each (:func:`real_claims`).

Output in ``results/protocol-synthetic/verdict_agreement.txt``.  Usage (about three minutes)::

    PYTHONPATH=src python benchmarks/verdict_agreement.py [--triples 30] [--sigma 0.15]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import pathlib

import numpy as np

from batchlab.analysis.synthetic import SyntheticOptimizer, simulate_study
from batchlab.analysis.uncertainty import (CellEstimate, compare_intervals, critical_errors, critical_interval,
                                          estimate_cells)
from batchlab.study.protocol import Tuning

BATCH_SIZES = (16, 32, 64, 128, 256, 512, 1024)
OPTIMIZERS = {"sgd": (34.0, 50.0), "momentum": (20.0, 115.0), "adam": (14.0, 110.0)}
BUDGET = 2000

PROTOCOLS = {  # name: budget per cell; the first is the stability-digits-loss preset's (~4x quick)
    "A: 16+16, 2x8": Tuning(explore=16, rounds=2, refine=16, candidates=2, seeds=8, prune_slack=1.5),
    "B: 16+16, 4x4": Tuning(explore=16, rounds=2, refine=16, candidates=4, seeds=4, prune_slack=1.5),
    "C: 24+24, 2x8": Tuning(explore=24, rounds=2, refine=24, candidates=2, seeds=8, prune_slack=1.5),
    "D: 64+64, 3x16": Tuning(explore=64, rounds=2, refine=64, candidates=3, seeds=16, prune_slack=1.5),
    "E: 128+128, 3x32": Tuning(explore=128, rounds=2, refine=128, candidates=3, seeds=32, prune_slack=1.5),
    "F: 256+256, 3x64": Tuning(explore=256, rounds=2, refine=256, candidates=3, seeds=64, prune_slack=1.5),
    "G: 512+512, 4x128": Tuning(explore=512, rounds=2, refine=512, candidates=4, seeds=128, prune_slack=1.5),
    "H: 1024+1024, 4x256": Tuning(explore=1024, rounds=2, refine=1024, candidates=4, seeds=256, prune_slack=1.5),
}


def cell_errors(cell: CellEstimate) -> np.ndarray:
    """A cell's bootstrap log errors ``log θ̂* − log θ*`` (``inf``: the draw reached nothing; all ``nan``
    when the bootstrap world's truth is unreached)."""
    if not math.isfinite(cell.truth):
        return np.full(cell.draws.shape, np.nan)
    with np.errstate(invalid="ignore"):
        return cell.draws - cell.truth


def _share_greater(x: np.ndarray, y: np.ndarray, threshold: float) -> float:
    """``P(X − Y > threshold)`` for independent ``X``, ``Y`` given by samples; an ``inf`` sample of
    either (an unreached rerun) never counts."""
    fx, fy = x[np.isfinite(x)], np.sort(y[np.isfinite(y)])
    if not x.size or not y.size or not fx.size or not fy.size:
        return 0.0
    below = np.searchsorted(fy, fx - threshold, side="left")  # y < x − threshold
    return float(below.sum()) / (x.size * y.size)


def _rerun_errors(errors: np.ndarray) -> np.ndarray:
    errors = np.asarray(errors, dtype=np.float64)
    errors = errors[~np.isnan(errors)]
    finite = errors[np.isfinite(errors)]
    return errors - np.median(finite) if finite.size else errors


def rerun_verdicts(a: tuple[float, float, float, np.ndarray], b: tuple[float, float, float, np.ndarray], *,
                   smaller: bool) -> dict[str, float]:
    """Predicted share of independent reruns of the study giving each verdict on "A vs B".

    ``a`` and ``b`` are ``(estimate, low, high, bootstrap log errors)`` (:func:`cell_errors`,
    :func:`critical_errors`).  A rerun's estimate scatters around this run's as the bootstrap's
    errors do (centred on their median: ``log θ̂' = log θ̂ + e − median(e)``) and its interval keeps
    this run's width relative to its estimate, so the rerun finds A's interval wholly below B's when
    ``log high_A + ẽ_A < log low_B + ẽ_B``.  A plug-in prediction: it takes this run's estimates for
    the truth, so a verdict decided by a hair is predicted to recur in about half the reruns.  An
    unknown or unbounded interval gives ``inconclusive`` with certainty.

    Returns:
        ``{"supported": p, "contradicted": q, "inconclusive": 1 − p − q}``.

    """
    values = (a[0], a[1], a[2], b[0], b[1], b[2])
    if any(math.isnan(v) for v in values) or not (0 < a[1] and a[2] < math.inf and 0 < b[1] and b[2] < math.inf):
        return {"supported": 0.0, "contradicted": 0.0, "inconclusive": 1.0}
    ea, eb = _rerun_errors(a[3]), _rerun_errors(b[3])
    below = _share_greater(eb, ea, math.log(a[2] / b[1]))  # A's rerun interval wholly below B's
    above = _share_greater(ea, eb, math.log(b[2] / a[1]))  # wholly above
    supported, contradicted = (below, above) if smaller else (above, below)
    return {"supported": supported, "contradicted": contradicted, "inconclusive": max(0.0, 1.0 - below - above)}


def run_verdicts(tuning: Tuning, seed: int, sigma: float, rng: np.random.Generator) -> tuple[dict, dict, int, dict]:
    """One synthetic study: ``(verdict per claim, truth side per claim, cost in steps, predicted share of
    reruns giving the same verdict per claim)``."""
    models = {name: SyntheticOptimizer(s_min=s, b_noise=b, sigma=sigma, rate_at_one=3e-3)
              for name, (s, b) in OPTIMIZERS.items()}
    studies = {name: simulate_study(m, tuning, BATCH_SIZES, budget=BUDGET, seed=seed * 97 + k)
               for k, (name, m) in enumerate(models.items())}
    cost = sum(c.steps_run for cells in studies.values() for c in cells)
    flat = [c.as_cell() for cells in studies.values() for c in cells]
    estimates = estimate_cells(flat, rng=rng, resamples=400)
    n = len(BATCH_SIZES)
    per = {name: estimates[k * n:(k + 1) * n] for k, name in enumerate(studies)}
    critical = {name: critical_interval(BATCH_SIZES, per[name]) for name in studies}
    critical_err = {name: critical_errors(BATCH_SIZES, per[name])[1] for name in studies}
    verdicts, truth, same = {}, {}, {}
    for a, c in itertools.combinations(studies, 2):
        for q, b in enumerate(BATCH_SIZES):
            claim = f"{a} < {c} @ {b}"
            ea, ec = per[a][q], per[c][q]
            verdicts[claim] = compare_intervals((ea.low, ea.high), (ec.low, ec.high), smaller=True)
            truth[claim] = models[a].truth(b) < models[c].truth(b)
            same[claim] = rerun_verdicts((ea.steps, ea.low, ea.high, cell_errors(ea)),
                                         (ec.steps, ec.low, ec.high, cell_errors(ec)), smaller=True)[verdicts[claim]]
        claim = f"{a} B_noise > {c}"
        verdicts[claim] = compare_intervals(critical[a][1:], critical[c][1:], smaller=False)
        truth[claim] = models[a].b_noise > models[c].b_noise
        same[claim] = rerun_verdicts((*critical[a], critical_err[a]), (*critical[c], critical_err[c]),
                                     smaller=False)[verdicts[claim]]
    return verdicts, truth, cost, same


def evaluate(tuning: Tuning, triples: int, sigma: float) -> dict:
    """Verdict agreement over ``triples`` groups of three runs, and each claim's decision rate."""
    rng = np.random.default_rng(0)
    agree, all_agree, cost = [], [], []
    outcomes: dict[str, list[str]] = {}
    predicted: dict[str, list[float]] = {}
    truth: dict[str, bool] = {}
    for t in range(triples):
        runs = [run_verdicts(tuning, 3 * t + r, sigma, rng) for r in range(3)]
        truth = runs[0][1]
        same = [len({run[0][claim] for run in runs}) == 1 for claim in truth]
        agree.append(sum(same))
        all_agree.append(all(same))
        for verdicts, _, steps, same in runs:
            cost.append(steps)
            for claim, v in verdicts.items():
                outcomes.setdefault(claim, []).append(v)
                predicted.setdefault(claim, []).append(same[claim])
    # Per claim, the share of runs that decide it (right or wrong) and that decide it wrongly; three
    # runs agree with probability p^3 + (1 - p)^3 when a claim is decided with probability p (a wrong
    # verdict counts as a third outcome, which no protocol here produces).
    decided = {c: float(np.mean([v != "inconclusive" for v in vs])) for c, vs in outcomes.items()}
    wrong = {c: float(np.mean([v != "inconclusive" and (v == "supported") != truth[c] for v in vs]))
             for c, vs in outcomes.items()}
    p_all = float(np.prod([p ** 3 + (1 - p) ** 3 for p in decided.values()]))
    # The rerun prediction against what the other runs of the same claim did: (predicted, observed share).
    calibration = []
    for claim, vs in outcomes.items():
        for i, (v, p) in enumerate(zip(vs, predicted[claim])):
            others = vs[:i] + vs[i + 1:]
            calibration.append((p, float(np.mean([o == v for o in others]))))
    return {"calibration": calibration, "cost": float(np.mean(cost)), "agree": float(np.mean(agree)), "claims": len(truth),
            "all": float(np.mean(all_agree)), "p_all": p_all, "decided": decided, "wrong": wrong}


def true_ratio(claim: str) -> float:
    """The claim's true effect as a ratio >= 1 (steps, or B_noise)."""
    models = {n: SyntheticOptimizer(s_min=s, b_noise=b) for n, (s, b) in OPTIMIZERS.items()}
    if "B_noise" in claim:
        a, c = claim.split(" B_noise > ")
        x, y = models[a].b_noise, models[c].b_noise
    else:
        pair, b = claim.split(" @ ")
        a, c = pair.split(" < ")
        x, y = models[a].truth(float(b)), models[c].truth(float(b))
    return max(x / y, y / x)


def widths(studies: int = 10) -> None:
    """How a cell's interval narrows with the budget, and whether it stays calibrated.

    All three optimizers, ``studies`` studies each: the median lower and upper half-width of a cell's
    95% interval (log steps), the 95th percentile of the estimate's actual ``|log(θ̂ / truth)|``, and the
    shares of cells whose truth lies below the interval, above it, and inside it.
    """
    print(f"interval half-widths and calibration (3 optimizers x {studies} studies x 7 cells)")
    print(f"{'protocol':22s} {'lower':>6s} {'upper':>6s} {'|error| 95%':>12s} {'truth below':>12s} "
          f"{'truth above':>12s} {'cover':>6s}")
    for name in ("A: 16+16, 2x8", "D: 64+64, 3x16", "E: 128+128, 3x32", "F: 256+256, 3x64", "H: 1024+1024, 4x256"):
        rng = np.random.default_rng(0)
        lower, upper, error, below, above = [], [], [], [], []
        for seed in range(studies):
            for k, (s_min, b_noise) in enumerate(OPTIMIZERS.values()):
                model = SyntheticOptimizer(s_min=s_min, b_noise=b_noise, sigma=0.15)
                cells = simulate_study(model, PROTOCOLS[name], BATCH_SIZES, budget=BUDGET, seed=seed * 97 + k)
                for e, c in zip(estimate_cells([c.as_cell() for c in cells], rng=rng, resamples=400), cells):
                    truth = model.truth(c.batch_size)
                    lower.append(math.log(e.steps / e.low) if e.low > 0 else math.inf)
                    upper.append(math.log(e.high / e.steps))
                    error.append(abs(math.log(e.steps / truth)))
                    below.append(truth < e.low)
                    above.append(truth > e.high)
        inside = 1.0 - np.mean(below) - np.mean(above)
        print(f"{name:22s} {np.median(lower):6.3f} {np.median(upper):6.3f} {np.quantile(error, 0.95):12.3f} "
              f"{np.mean(below):12.1%} {np.mean(above):12.1%} {inside:6.1%}", flush=True)


REAL = ("stability-digits-loss", "stability-digits-loss-6x", "stability-digits-loss-s12")


def real_claims(root: pathlib.Path = pathlib.Path("results")) -> None:
    """The committed real-network runs (digits-cnn, three design seeds each): each claim's effect (the
    geometric mean over runs of the larger / smaller estimate) and how many of the three runs decided it."""
    runs = {name: json.loads((root / name / "stability.json").read_text()) for name in REAL
            if (root / name / "stability.json").exists()}
    if not runs:
        return
    print("digits-cnn, the committed stability runs (results/<name>/stability.json): effect and runs deciding (of 3)")
    first = next(iter(runs.values()))
    effects = {}
    for claim in first["stability"]["verdicts"]:
        ratios = []
        for run in first["runs"]:
            if "critical batch size" in claim:
                a, c = claim.split("'s critical batch size is larger than ")
                x, y = run["b_noise"][a][0], run["b_noise"][c.rstrip("'s")][0]
            else:
                pair, size = claim.split(" at B = ")
                a, c = pair.split(" needs fewer steps than ")
                key = size.replace(",", "")
                x, y = run["cells"][f"{a}@{key}"][0], run["cells"][f"{c}@{key}"][0]
            ratios.append(max(x / y, y / x))
        effects[claim] = float(np.exp(np.mean(np.log(ratios))))
    print(f"{'claim':60s} {'effect':>7s} " + " ".join(f"{name.replace('stability-digits-loss', 'loss') or 'loss':>9s}"
                                                     for name in runs))
    for claim in sorted(effects, key=effects.get):
        counts = []
        for data in runs.values():
            verdicts = data["stability"]["verdicts"].get(claim, {"runs": []})["runs"]
            counts.append(f"{sum(v != 'inconclusive' for v in verdicts)}/{len(verdicts)}"
                          + ("" if len(set(verdicts)) == 1 else "*"))
        print(f"{claim:60s} {effects[claim]:7.2f} " + " ".join(f"{c:>9s}" for c in counts))
    print("effect: from the first run set (~4x); * = the three runs disagree")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--triples", type=int, default=30)
    parser.add_argument("--sigma", type=float, default=0.15, help="seed noise of log steps")
    args = parser.parse_args()
    print(f"synthetic digits-like study (7 batch sizes, 3 optimizers, 24 claims), seed noise {args.sigma}, "
          f"{args.triples} triples of runs per protocol")
    print(f"{'protocol':22s} {'cost':>6s} {'agree (mean)':>13s} {'all 24 agree':>13s} {'P(all agree)':>13s} "
          f"{'decided':>8s} {'wrong':>6s}")
    base, rows = None, {}
    for name, tuning in PROTOCOLS.items():
        r = rows[name] = evaluate(tuning, args.triples, args.sigma)
        base = base or r["cost"]
        print(f"{name:22s} {r['cost'] / base:6.2f} {r['agree']:10.1f}/{r['claims']:<2d} {r['all']:13.0%} "
              f"{r['p_all']:13.1%} {np.mean(list(r['decided'].values())):8.0%} "
              f"{np.mean(list(r['wrong'].values())):6.1%}", flush=True)
    print()
    print("share of runs deciding each claim, by its true effect (a claim decided in a share p of runs")
    print("agrees across three runs with probability p^3 + (1-p)^3: below 0.9 when 0.04 < p < 0.96)")
    names = list(rows)
    claims = sorted(rows[names[0]]["decided"], key=true_ratio)
    print(f"{'claim':26s} {'ratio':>6s} " + " ".join(f"{n.split(':')[0]:>10s}" for n in names))
    for claim in claims:
        cells = []
        for n in names:
            p = rows[n]["decided"][claim]
            cells.append(f"{p:9.0%}" + ("*" if 0.04 < p < 0.96 else " "))
        print(f"{claim:26s} {true_ratio(claim):6.2f} " + " ".join(f"{c:>10s}" for c in cells))
    print("* = the claim's verdict agrees across three runs with probability below 0.9")
    print()
    print("the rerun prediction (rerun_verdicts, above) per run-verdict, against the share of the")
    print("claim's other runs (same protocol) that gave the same verdict, all protocols pooled")
    pairs = np.array([pair for r in rows.values() for pair in r["calibration"]])
    print(f"{'predicted same':>15s} {'run-verdicts':>13s} {'mean predicted':>15s} {'observed same':>14s}")
    for low, high in ((0.0, 0.5), (0.5, 0.8), (0.8, 0.9), (0.9, 0.95), (0.95, 0.99), (0.99, 1.01)):
        inside = (pairs[:, 0] >= low) & (pairs[:, 0] < high)
        if inside.any():
            print(f"{f'[{low:.2f}, {min(high, 1.0):.2f}' + (']' if high > 1 else ')'):>15s} {int(inside.sum()):13d} "
                  f"{pairs[inside, 0].mean():15.1%} {pairs[inside, 1].mean():14.1%}")
    print()
    widths()
    print()
    real_claims()


if __name__ == "__main__":
    main()
