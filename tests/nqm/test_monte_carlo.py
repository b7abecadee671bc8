"""Monte Carlo sample paths agree with the exact expected risk within their standard error."""

import numpy as np
import pytest

from batchlab.nqm import expected_risk, heavy_ball, nesterov, power_law, sgd, with_ema
from batchlab.nqm.schedules import piecewise_constant, scheduled_risk
from batchlab.nqm.simulate import simulate

PROBLEM = power_law(20)
STEPS = [0, 1, 5, 30, 150]


@pytest.mark.parametrize("dyn", [
    sgd(0.8), heavy_ball(0.3, 0.9), nesterov(0.3, 0.8), with_ema(sgd(0.8), 0.9),
    with_ema(heavy_ball(0.3, 0.8), 0.7), sgd(0.5, precond=0.5),
])
def test_monte_carlo_mean_within_four_standard_errors(dyn):
    mc = simulate(PROBLEM, dyn, batch_size=2, steps=STEPS, num_runs=4000, seed=7)
    exact = expected_risk(PROBLEM, dyn, batch_size=2, steps=STEPS)
    z = np.abs(mc.mean - exact) / mc.stderr
    assert np.all(z < 4), (z, mc.mean, exact)


def test_monte_carlo_under_a_schedule():
    sched = piecewise_constant([20, 40], [1.0, 0.2], batch_multipliers=[0.5, 1.0])
    dyn = heavy_ball(0.4, 0.5)
    mc = simulate(PROBLEM, dyn, batch_size=4, steps=STEPS, num_runs=4000, seed=3, schedule=sched)
    exact = scheduled_risk(PROBLEM, dyn, sched, batch_size=4, steps=STEPS)
    assert np.all(np.abs(mc.mean - exact) / mc.stderr < 4)


def test_monte_carlo_is_seeded():
    a = simulate(PROBLEM, sgd(0.5), batch_size=1, steps=[10], num_runs=10, seed=1)
    b = simulate(PROBLEM, sgd(0.5), batch_size=1, steps=[10], num_runs=10, seed=1)
    c = simulate(PROBLEM, sgd(0.5), batch_size=1, steps=[10], num_runs=10, seed=2)
    np.testing.assert_array_equal(a.paths, b.paths)
    assert not np.array_equal(a.paths, c.paths)
