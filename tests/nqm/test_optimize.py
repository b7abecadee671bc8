"""Optimal hyperparameters on the paper's reference problem (d = 10⁴, h = 1/i, c = h, target 0.01).

These check the paper's qualitative claims and that the search beats the grid it replaces.
"""

import math

import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.nqm import expected_risk, heavy_ball, power_law, sgd
from batchlab.nqm.optimize import optimize
from batchlab.nqm.scaling import scaling_curve, scaling_curves
from batchlab.nqm.schedule_opt import optimize_piecewise
from batchlab.nqm.solve import search_steps, steps_to_target

PROBLEM = power_law(10_000)
TARGET = 0.01
BATCHES = [4.0**k for k in range(1, 11)]


@pytest.fixture(scope="module")
def sgd_curves():
    return {p: scaling_curve(PROBLEM, "sgd", BATCHES, target=TARGET, precond=p) for p in (0.0, 0.25, 0.5, 0.75)}


def test_reported_steps_are_exact_first_hits(sgd_curves):
    for row in sgd_curves[0.0].rows[:6]:
        r = expected_risk(PROBLEM, sgd(row.learning_rate), batch_size=row.batch_size,
                          steps=[int(row.steps) - 1, int(row.steps)])
        assert r[1] <= TARGET < r[0]


def test_optimal_learning_rate_grows_linearly_then_saturates(sgd_curves):
    lr = np.array([r.learning_rate for r in sgd_curves[0.0].rows])
    ratios = lr[1:4] / lr[:3]  # B = 4 → 16 → 64 → 256
    assert np.all(np.abs(ratios / 4.0 - 1) < 0.15)
    assert np.all(lr < 2.0) and lr[-1] > 0.9 * 2.0  # below, and close to, the stability limit 2/h_max
    assert lr[-1] / lr[-2] < 1.05


def test_steps_never_below_the_lower_bound(sgd_curves):
    for curve in sgd_curves.values():
        assert np.all(curve.steps >= np.array(curve.lower_bounds))


def test_preconditioning_raises_the_critical_batch_size(sgd_curves):
    b_noise = [sgd_curves[p].critical.fit.b_noise for p in (0.0, 0.25, 0.5, 0.75)]
    assert all(b2 > 2 * b1 for b1, b2 in zip(b_noise, b_noise[1:])), b_noise


def test_momentum_matches_sgd_at_small_batch_and_wins_big_at_large_batch(sgd_curves):
    sgd_steps = {r.batch_size: r.steps for r in sgd_curves[0.0].rows}
    small = optimize(PROBLEM, "momentum", batch_size=4, target=TARGET)
    large = optimize(PROBLEM, "momentum", batch_size=2**20, target=TARGET)
    assert small.steps <= sgd_steps[4.0]
    assert small.steps >= 0.85 * sgd_steps[4.0]
    assert large.steps * 10 <= sgd_steps[2.0**20]


def test_ema_helps_at_small_batch_not_at_large(sgd_curves):
    sgd_steps = {r.batch_size: r.steps for r in sgd_curves[0.0].rows}
    small = optimize(PROBLEM, "ema", batch_size=4, target=TARGET)
    large = optimize(PROBLEM, "ema", batch_size=2**20, target=TARGET)
    assert small.steps * 3 <= sgd_steps[4.0]
    assert large.steps <= sgd_steps[2.0**20]
    assert large.steps >= 0.95 * sgd_steps[2.0**20]


def test_optimized_schedule_moves_small_batch_steps_toward_the_lower_bound(sgd_curves):
    const = sgd_curves[0.0].rows[0].steps
    # 4 pieces already reach 0.17 × the constant rate's steps (10 pieces: 0.14, at 2.7 × the time)
    sched = optimize_piecewise(PROBLEM, batch_size=4, target=TARGET, pieces=4)
    bound = PROBLEM.lower_bound_steps(4, TARGET)
    assert bound <= sched.steps <= 0.5 * const
    assert sched.risk <= TARGET


def test_search_beats_the_100_point_learning_rate_grid():
    B = 64.0
    grid = np.logspace(-4, math.log10(2.0), 100, endpoint=False)
    opt = optimize(PROBLEM, "sgd", batch_size=B, target=TARGET).steps
    # points slower than twice the optimum cannot compete: they report inf at once (no galloping)
    grid_steps = search_steps(PROBLEM, sgd(grid), batch_size=B, target=TARGET, cap=2 * opt)
    assert np.isfinite(grid_steps).any()
    i = int(np.argmin(grid_steps))
    best_grid = steps_to_target(PROBLEM, sgd(float(grid[i])), batch_size=B, target=TARGET).steps
    assert opt <= best_grid


def test_search_beats_the_learning_rate_momentum_grid():
    """100 log learning rates × 20 momenta 1 − logspace(−5, 0): the grid's points near the optimum's
    effective learning rate (the only ones that can compete) are evaluated exactly."""
    B = 1024.0
    opt = optimize(PROBLEM, "momentum", batch_size=B, target=TARGET)
    lr = np.logspace(-6, math.log10(4.0), 100)
    mom = 1 - np.logspace(-5, 0, 20)
    L, M = np.meshgrid(lr, mom, indexing="ij")
    near = np.abs(np.log10(L / (1 - M)) - math.log10(opt.effective_learning_rate)) < 0.4
    # only points that reach the target within twice the optimum's steps can compete: the others report
    # inf at once instead of galloping to their (irrelevant) answer (same best point, 40 s → 12 s)
    steps = search_steps(PROBLEM, heavy_ball(L[near], M[near]), batch_size=B, target=TARGET, cap=2 * opt.steps)
    assert np.isfinite(steps).any()
    i = int(np.argmin(steps))
    best_grid = steps_to_target(PROBLEM, heavy_ball(float(L[near][i]), float(M[near][i])), batch_size=B,
                                target=TARGET).steps
    assert opt.steps <= best_grid


def test_unknown_kind_is_rejected():
    with pytest.raises(InputError, match="valid"):
        optimize(PROBLEM, "adamw", batch_size=4, target=TARGET)


def test_parallel_curves_equal_the_sequential_ones():
    problem = power_law(300)
    specs = [("sgd", 0.0), ("momentum", 0.5)]
    parallel = scaling_curves(problem, specs, [4, 256], target=TARGET, workers=2)
    for (kind, p), curve in zip(specs, parallel):
        alone = scaling_curve(problem, kind, [4, 256], target=TARGET, precond=p)
        assert (curve.kind, curve.precond) == (kind, p)
        np.testing.assert_array_equal(curve.steps, alone.steps)
        assert [r.learning_rate for r in curve.rows] == [r.learning_rate for r in alone.rows]


@pytest.mark.parametrize("kind, p, B", [("ema", 0.0, 64.0), ("momentum", 0.75, 2.0**18), ("ema", 0.5, 4.0)])
def test_search_beats_the_100_by_20_grid_elsewhere(kind, p, B):
    """The 100 log learning rates (up to twice the stability limit's scale) × 20 values 1 − logspace(−5, 0)
    of momentum or EMA decay, ranked on the compressed spectrum, the best four certified exactly."""
    from batchlab.nqm.optimize import make_dynamics
    from batchlab.nqm.solve import compress

    hmax = float(np.max(PROBLEM.h ** (1 - p)))
    L, M = np.meshgrid(np.logspace(-7, math.log10(4.0 / hmax), 100), 1 - np.logspace(-5, 0, 20, endpoint=False),
                       indexing="ij")
    L, M = L.ravel(), M.ravel()
    ok = L * hmax < (2 * (1 + M) if kind == "momentum" else 2)
    L, M = L[ok], M[ok]
    other = "momentum" if kind == "momentum" else "ema"

    def dyn(lr, v):
        return make_dynamics(kind, learning_rate=lr, **{other: v}, precond=p)

    opt = optimize(PROBLEM, kind, batch_size=B, target=TARGET, precond=p).steps
    # ranked among the points that reach the target within twice the optimum's steps (the others, which
    # cannot compete, report inf at once instead of galloping): the same top four as an uncapped ranking
    ranked = search_steps(compress(PROBLEM, 128), dyn(L, M), batch_size=B, target=TARGET, cap=2 * opt)
    assert np.isfinite(ranked).sum() >= 4
    best_grid = min(steps_to_target(PROBLEM, dyn(float(L[i]), float(M[i])), batch_size=B, target=TARGET).steps
                    for i in np.argsort(ranked)[:4])
    assert opt <= best_grid
