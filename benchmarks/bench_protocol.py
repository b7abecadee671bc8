"""Does each phase of the tuning protocol help?  Measured on synthetic studies with a known answer.

Runs :func:`batchlab.analysis.synthetic.simulate_study` (no training: a closed-form model of noisy steps
to target, ``batchlab.analysis.synthetic``) for several protocols over many design seeds and three
optimizers (``b_noise`` 30, 100, 300; seed noise ±25%, the size measured on digits-cnn), and prints per
protocol:

* ``cost``: training steps per study, as a ratio to the first protocol's (the old one);
* ``|err|``: median ``|log(answer / truth)|`` of a cell's steps, as a percentage;
* ``bias``: median ``log(answer / truth)``, as a percentage (negative: too optimistic);
* ``cover``: share of cells whose 95% interval contains the truth (replicated protocols only);
* ``B_noise 1.3x``: share of (optimizer, pair of design seeds) whose B_noise agree within 1.3×;
* ``B_noise err``: median ``|log(B_noise / truth)|`` as a percentage;
* ``B cover``: share of optimizers whose 95% B_noise interval contains the truth;
* ``width``: median ratio high / low of a cell's 95% interval.

The old protocol's answer is the best single trial; replicated protocols answer the median over
seeds of the best candidate (:mod:`batchlab.analysis.uncertainty`).

Usage (about a minute)::

    PYTHONPATH=src python benchmarks/bench_protocol.py [--studies 60]

With ``--budget-search`` it instead measures how B_noise stability across design seeds grows with the
study budget (batch-size grid, trials per phase, replicate seeds, per-run seed noise); output in
``results/protocol-synthetic/budget_search.txt``::

    PYTHONPATH=src python benchmarks/bench_protocol.py --budget-search --studies 60

``--pruned-replay`` compares the interval's treatments of a pruned search trial
(``estimate_cells(pruned=...)``: never reaching, hot-deck imputed, censored at its bound) by cell
coverage, median lower half-width (log steps), median width (high / low), B_noise coverage, and the
share of pairwise "fewer steps" verdicts that are decided and that are wrong (against the known
truth); output in ``results/protocol-synthetic/pruned_replay.txt``::

    PYTHONPATH=src python benchmarks/bench_protocol.py --pruned-replay --studies 60

``--fit-floor`` prints how precisely each cell must be known for the hyperbola fit's B_noise to agree
within 1.3x (output in ``results/protocol-synthetic/fit_floor.txt``).
"""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np

from batchlab.analysis.uncertainty import compare_intervals, critical_interval, estimate_cells, fit_b_noise
from batchlab.study.protocol import Tuning
from batchlab.analysis.synthetic import SyntheticOptimizer, simulate_study

BATCH_SIZES = (16, 64, 256, 1024)
B_NOISES = (30.0, 100.0, 300.0)
BUDGET = 10_000

PROTOCOLS = {
    "old: explore 6": Tuning(explore=6, rounds=6),
    "old: explore 16": Tuning(explore=16, rounds=8),
    "explore 6 + replicate 2x3": Tuning(explore=6, rounds=2, candidates=2, seeds=3),
    "explore 6 + refine 4 + replicate 2x3": Tuning(explore=6, rounds=2, refine=4, warm_start=False,
                                                    candidates=2, seeds=3),
    "explore 6 + refine 4 (warm) + replicate 2x3": Tuning(explore=6, rounds=2, refine=4, candidates=2, seeds=3),
    "explore 6 + refine 4 (warm) + replicate 1x5": Tuning(explore=6, rounds=2, refine=4, candidates=1, seeds=5),
    "explore 8 + refine 8 (warm) + replicate 2x3": Tuning(explore=8, rounds=2, refine=8, candidates=2, seeds=3),
}


def evaluate(tuning: Tuning, studies: int, search_noise: bool = True,
             batch_sizes: tuple[int, ...] = BATCH_SIZES, sigma: float = 0.25, pruned: str = "never") -> dict[str, float]:
    n = len(batch_sizes)
    rng = np.random.default_rng(0)
    errors, covered, b_covered, widths, cost = [], [], [], [], 0
    lower, decided, wrong = [], [], []
    b_noise: dict[float, list[float]] = {b: [] for b in B_NOISES}
    for seed in range(studies):
        per_optimizer = []
        for b in B_NOISES:
            model = SyntheticOptimizer(b_noise=b, sigma=sigma)
            cells = simulate_study(model, tuning, batch_sizes, budget=BUDGET, seed=seed * 1000 + int(b))
            cost += sum(c.steps_run for c in cells)
            per_optimizer.append((model, cells))
        if tuning.replicated:
            flat = [c.as_cell() if search_noise else list(c.candidates) for _, cells in per_optimizer for c in cells]
            estimates = estimate_cells(flat, rng=rng, resamples=400, pruned=pruned)
            for (i, (m1, c1)), (j, (m2, c2)) in itertools.combinations(enumerate(per_optimizer), 2):
                for q, (x, y) in enumerate(zip(c1, c2)):
                    t1, t2 = m1.truth(x.batch_size), m2.truth(y.batch_size)
                    if abs(math.log(t1 / t2)) < 0.01:
                        continue
                    e1, e2 = estimates[n * i + q], estimates[n * j + q]
                    verdict = compare_intervals((e1.low, e1.high), (e2.low, e2.high), smaller=t1 < t2)
                    decided.append(verdict != "inconclusive")
                    wrong.append(verdict == "contradicted")
            for k, (model, cells) in enumerate(per_optimizer):
                mine = estimates[n * k:n * k + n]
                for e, c in zip(mine, cells):
                    truth = model.truth(c.batch_size)
                    errors.append(math.log(e.steps / truth))
                    covered.append(e.low <= truth <= e.high)
                    widths.append(e.high / e.low if e.low > 0 else math.inf)
                    lower.append(math.log(e.steps / e.low) if e.low > 0 else math.inf)
                point, low, high = critical_interval(batch_sizes, mine)
                b_noise[model.b_noise].append(point)
                b_covered.append(low <= model.b_noise <= high)
        else:
            for model, cells in per_optimizer:
                answers = np.array([c.best_trial for c in cells])
                errors += [math.log(a / model.truth(c.batch_size)) for a, c in zip(answers, cells)]
                with np.errstate(divide="ignore"):
                    fitted = float(fit_b_noise(np.array(batch_sizes, float), np.log(answers))) \
                        if np.isfinite(answers).sum() >= 3 else math.nan
                b_noise[model.b_noise].append(fitted)
    errors = np.array(errors)
    agree, b_err, triples = [], [], []
    for truth, values in b_noise.items():
        values = np.array(values)
        b_err += list(np.abs(np.log(values / truth)))
        for x, y in itertools.combinations(values, 2):
            agree.append(_within(x, y))
    # The criterion on three design seeds: every optimizer's three estimates pairwise within 1.3x.
    columns = [np.array(v) for v in b_noise.values()]
    for start in range(0, studies - 2, 3):
        triples.append(all(_within(x, y) for v in columns for x, y in itertools.combinations(v[start:start + 3], 2)))
    return {"cost": cost / studies, "err": float(np.median(np.abs(errors[np.isfinite(errors)]))),
            "bias": float(np.median(errors)), "cover": float(np.mean(covered)) if covered else math.nan,
            "agree": float(np.mean(agree)), "triples": float(np.mean(triples)) if triples else math.nan,
            "b_cover": float(np.mean(b_covered)) if b_covered else math.nan,
            "width": float(np.median(widths)) if widths else math.nan, "b_err": float(np.nanmedian(b_err)),
            "lower": float(np.median(lower)) if lower else math.nan,
            "decided": float(np.mean(decided)) if decided else math.nan,
            "wrong": float(np.mean(wrong)) if wrong else math.nan}


def _within(x: float, y: float, factor: float = 1.3) -> bool:
    return bool(np.isfinite(x) and np.isfinite(y) and max(x / y, y / x) <= factor)


QUICK = Tuning(explore=6, rounds=2, refine=4, candidates=2, seeds=3)
DENSE_GRID = (16, 32, 64, 128, 256, 512, 1024)
FINE_GRID = tuple(int(round(16 * 2 ** (k / 2))) for k in range(13))  # 16 ... 1024 in steps of sqrt(2)

# Budgets tried by --budget-search, cheapest first: (name, batch sizes, tuning per cell, seed noise).
# Seed noise 0.25 is the size measured on digits-cnn with its error target; 0.10 asks what a smoother
# target metric would buy.
BUDGETS = [
    ("quick (4 B, 6+4, 2x3)", BATCH_SIZES, QUICK, 0.25),
    ("4 B, 6+4, 2x6", BATCH_SIZES, Tuning(explore=6, rounds=2, refine=4, candidates=2, seeds=6), 0.25),
    ("7 B, 6+4, 2x3", DENSE_GRID, QUICK, 0.25),
    ("7 B, 8+8, 2x8", DENSE_GRID, Tuning(explore=8, rounds=2, refine=8, candidates=2, seeds=8), 0.25),
    ("7 B, 16+16, 2x8", DENSE_GRID, Tuning(explore=16, rounds=2, refine=16, candidates=2, seeds=8), 0.25),
    ("7 B, 32+32, 3x16", DENSE_GRID, Tuning(explore=32, rounds=2, refine=32, candidates=3, seeds=16), 0.25),
    ("7 B, 48+48, 3x24", DENSE_GRID, Tuning(explore=48, rounds=2, refine=48, candidates=3, seeds=24), 0.25),
    ("7 B, 64+64, 3x32", DENSE_GRID, Tuning(explore=64, rounds=2, refine=64, candidates=3, seeds=32), 0.25),
    ("13 B, 64+64, 3x32", FINE_GRID, Tuning(explore=64, rounds=2, refine=64, candidates=3, seeds=32), 0.25),
    ("7 B, 16+16, 1x64", DENSE_GRID, Tuning(explore=16, rounds=2, refine=16, candidates=1, seeds=64), 0.25),
    ("quick, seed noise 0.10", BATCH_SIZES, QUICK, 0.10),
    ("7 B, 16+16, 2x8, noise 0.10", DENSE_GRID, Tuning(explore=16, rounds=2, refine=16, candidates=2, seeds=8), 0.10),
    ("7 B, 32+32, 1x16, noise 0.10", DENSE_GRID, Tuning(explore=32, rounds=2, refine=32, candidates=1, seeds=16), 0.10),
]


def budget_search(studies: int, only: str | None = None) -> None:
    """B_noise stability against budget: how much must a study spend for B_noise to agree within 1.3x?"""
    chosen = [b for b in BUDGETS if only is None or b[0] in (BUDGETS[0][0], only)]
    rows = [(name, evaluate(tuning, studies, batch_sizes=grid, sigma=sigma)) for name, grid, tuning, sigma in chosen]
    base = rows[0][1]["cost"]
    print(f"{'budget':30s} {'cost':>6s} {'pairs 1.3x':>11s} {'3 seeds all 1.3x':>17s} {'B_noise err':>12s} "
          f"{'B cover':>8s} {'cell cover':>11s}")
    for name, r in rows:
        print(f"{name:30s} {r['cost'] / base:6.2f} {r['agree']:11.0%} {r['triples']:17.0%} {r['b_err']:12.0%} "
              f"{r['b_cover']:8.0%} {r['cover']:11.0%}")


def pruned_replay(studies: int) -> None:
    """The search replay's two treatments of a pruned trial (``estimate_cells(pruned=...)``), compared."""
    print(f"{'budget':30s} {'pruned':>9s} {'cell cover':>11s} {'lower':>6s} {'width':>6s} {'B cover':>8s} "
          f"{'decided':>8s} {'wrong':>6s}")
    for name, grid, tuning, sigma in [b for b in BUDGETS if b[0] in PRUNED_BUDGETS]:
        for pruned in ("never", "hotdeck", "censored"):
            r = evaluate(tuning, studies, batch_sizes=grid, sigma=sigma, pruned=pruned)
            print(f"{name:30s} {pruned:>9s} {r['cover']:11.1%} {r['lower']:6.2f} {r['width']:6.2f} "
                  f"{r['b_cover']:8.0%} {r['decided']:8.0%} {r['wrong']:6.1%}")


PRUNED_BUDGETS = ("quick (4 B, 6+4, 2x3)", "7 B, 16+16, 2x8", "quick, seed noise 0.10",
                  "7 B, 16+16, 2x8, noise 0.10")


def fit_floor(curves: int = 3000) -> None:
    """How precisely must each cell be known for B_noise to agree within 1.3x?  Exact hyperbolas
    ``S = 200 (1 + B_noise / B)`` plus Gaussian noise of the given sd on ``log S``, fitted by
    :func:`fit_b_noise`; the share of independent pairs of fits within 1.3x."""
    rng = np.random.default_rng(0)
    print(f"{'batch sizes':12s} {'sd log S':>9s} " + " ".join(f"{'B_noise ' + str(int(b)):>12s}" for b in B_NOISES))
    for grid in (BATCH_SIZES, DENSE_GRID):
        sizes = np.array(grid, float)
        for sd in (0.18, 0.10, 0.05, 0.03):
            shares = []
            for b in B_NOISES:
                y = np.log(200.0 * (1.0 + b / sizes)) + rng.normal(0.0, sd, (2 * curves, sizes.size))
                fitted = fit_b_noise(sizes, y)
                shares.append(float(np.mean([_within(x, z) for x, z in zip(fitted[0::2], fitted[1::2])])))
            print(f"{len(grid):12d} {sd:9.2f} " + " ".join(f"{share:12.0%}" for share in shares))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=60)
    parser.add_argument("--budget-search", action="store_true",
                        help="B_noise stability against study budget instead of the protocol comparison")
    parser.add_argument("--fit-floor", action="store_true",
                        help="the cell precision a stable B_noise fit needs (exact curves plus noise)")
    parser.add_argument("--pruned-replay", action="store_true",
                        help="compare the replay's treatments of pruned trials (never reaching / censored)")
    args = parser.parse_args()
    if args.pruned_replay:
        pruned_replay(args.studies)
        return
    if args.fit_floor:
        fit_floor()
        return
    if args.budget_search:
        budget_search(args.studies)
        return
    rows = {name: evaluate(t, args.studies) for name, t in PROTOCOLS.items()}
    base = next(iter(rows.values()))["cost"]
    print(f"{'protocol':46s} {'cost':>6s} {'|err|':>6s} {'bias':>6s} {'cover':>6s} {'B_noise 1.3x':>13s} "
          f"{'B_noise err':>12s} {'B cover':>8s} {'width':>6s}")
    for name, r in rows.items():
        cover = "—" if math.isnan(r["cover"]) else f"{r['cover']:.0%}"
        b_cover = "—" if math.isnan(r["b_cover"]) else f"{r['b_cover']:.0%}"
        width = "—" if math.isnan(r["width"]) else f"{r['width']:.2f}"
        print(f"{name:46s} {r['cost'] / base:6.2f} {r['err']:6.0%} {r['bias']:+6.0%} {cover:>6s} "
              f"{r['agree']:13.0%} {r['b_err']:12.0%} {b_cover:>8s} {width:>6s}")


if __name__ == "__main__":
    main()
