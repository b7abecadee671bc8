"""Steady-state closed forms, stability limits and the paper's Theorem 1/2 bounds."""

import numpy as np
import pytest

from batchlab.nqm import (
    expected_risk, from_arrays, heavy_ball, is_stable, max_stable_learning_rate, nesterov, power_law, sgd,
    stability_limit, steady_state_risk, theorem1_bound, theorem2_bound, with_ema,
)
from batchlab.nqm.risk import _lyapunov_out
from batchlab.nqm.dynamics import build_system, with_learning_rate

PROBLEM = from_arrays([1.0, 0.3, 0.05], c=[0.7, 0.3, 0.2], s0=[1.0, 2.0, 0.5])


@pytest.mark.parametrize("dyn", [
    sgd(0.7), sgd(1.9), heavy_ball(0.4, 0.9), heavy_ball(2.5, 0.5), nesterov(0.3, 0.95), with_ema(sgd(0.6), 0.9),
    with_ema(sgd(0.2), 0.8), with_ema(heavy_ball(0.3, 0.7), 0.9), with_ema(nesterov(0.3, 0.7), 0.99),
])
def test_steady_state_equals_lyapunov_solution_and_long_run_risk(dyn):
    B = 16
    closed = steady_state_risk(PROBLEM, dyn, batch_size=B, per_direction=True)
    sys = build_system(PROBLEM, dyn, B)
    lyap = _lyapunov_out(sys) * sys.weight
    np.testing.assert_allclose(closed, lyap, rtol=1e-10)
    long_run = expected_risk(PROBLEM, dyn, batch_size=B, steps=[10**7], per_direction=True)[:, 0]
    np.testing.assert_allclose(long_run, closed, rtol=1e-9)


def test_documented_closed_forms():
    """SGD αcP/(2B(2−x)); heavy ball (1+β)αcP/(2B(1−β)(2+2β−x)); Theorem 2 factor."""
    a, b, g, B = 0.5, 0.8, 0.95, 32.0
    h, c = PROBLEM.h, PROBLEM.c
    x = a * h
    np.testing.assert_allclose(steady_state_risk(PROBLEM, sgd(a), batch_size=B, per_direction=True),
                               a * c / (2 * B * (2 - x)), rtol=1e-13)
    np.testing.assert_allclose(steady_state_risk(PROBLEM, heavy_ball(a, b), batch_size=B, per_direction=True),
                               (1 + b) * a * c / (2 * B * (1 - b) * (2 + 2 * b - x)), rtol=1e-13)
    factor = (1 - g) * (1 + (1 - x) * g) / ((1 + g) * (1 - (1 - x) * g))
    np.testing.assert_allclose(steady_state_risk(PROBLEM, with_ema(sgd(a), g), batch_size=B, per_direction=True),
                               a * c / (2 * B * (2 - x)) * factor, rtol=1e-13)
    assert np.all(factor < 1)


def test_preconditioned_steady_state():
    p, a, B = 0.5, 0.3, 4.0
    P = PROBLEM.h ** (-p)
    x = a * P * PROBLEM.h
    np.testing.assert_allclose(steady_state_risk(PROBLEM, sgd(a, precond=p), batch_size=B, per_direction=True),
                               a * PROBLEM.c * P / (2 * B * (2 - x)), rtol=1e-13)


def test_stability_limits():
    assert stability_limit(sgd(1.0)) == 2.0
    assert stability_limit(heavy_ball(1.0, 0.9)) == pytest.approx(3.8)
    assert stability_limit(nesterov(1.0, 0.5)) == pytest.approx(1.5)
    p = power_law(100)
    for dyn in [sgd(1.0), heavy_ball(1.0, 0.9), nesterov(1.0, 0.5), with_ema(heavy_ball(1.0, 0.9), 0.9)]:
        lim = float(max_stable_learning_rate(p, dyn))
        inside, outside = with_learning_rate(dyn, lim * 0.999), with_learning_rate(dyn, lim * 1.001)
        assert np.isfinite(steady_state_risk(p, inside, batch_size=1))
        assert steady_state_risk(p, outside, batch_size=1) == np.inf
        assert expected_risk(p, outside, batch_size=1, steps=[10**6]) == np.inf


@pytest.mark.parametrize("lr,beta", [(0.3, 0.0), (0.3, 0.5), (0.05, 0.9), (1.5, 0.99), (0.3, (1 - np.sqrt(0.3)) ** 2)])
def test_theorem1_bound_holds(lr, beta):
    steps = np.unique(np.geomspace(1, 10**5, 60).astype(int))
    exact = expected_risk(PROBLEM, heavy_ball(lr, beta), batch_size=8, steps=steps)
    bound = theorem1_bound(PROBLEM, heavy_ball(lr, beta), batch_size=8, steps=steps)
    assert np.all(exact <= bound * (1 + 1e-12))
    # tight at both ends: equal at t = 0, and the gap vanishes as t → ∞
    t0 = theorem1_bound(PROBLEM, heavy_ball(lr, beta), batch_size=8, steps=[0])
    floor = steady_state_risk(PROBLEM, heavy_ball(lr, beta), batch_size=8)
    assert t0[0] == pytest.approx(PROBLEM.initial_risk() + floor, rel=1e-12)
    assert bound[-1] == pytest.approx(exact[-1], rel=1e-6)


@pytest.mark.parametrize("lr,gamma", [(0.3, 0.5), (0.05, 0.99), (1.5, 0.9), (0.2, 0.94)])
def test_theorem2_bound_holds(lr, gamma):
    steps = np.unique(np.geomspace(1, 10**5, 60).astype(int))
    dyn = with_ema(sgd(lr), gamma)
    exact = expected_risk(PROBLEM, dyn, batch_size=8, steps=steps)
    bound = theorem2_bound(PROBLEM, dyn, batch_size=8, steps=steps)
    assert np.all(exact <= bound * (1 + 1e-12))


def test_ema_lowers_the_floor_without_slowing_convergence():
    """Paper: with γ < 1 − x for every direction, EMA's transient is no slower and its floor lower."""
    problem = power_law(200)
    lr = 0.5
    gamma = 0.4  # < 1 − x = 0.5 for the largest x
    floor_sgd = steady_state_risk(problem, sgd(lr), batch_size=4)
    floor_ema = steady_state_risk(problem, with_ema(sgd(lr), gamma), batch_size=4)
    assert floor_ema < floor_sgd
    noiseless = from_arrays(problem.h, c=0.0)
    t = np.array([10, 100, 1000])
    r_sgd = expected_risk(noiseless, sgd(lr), batch_size=4, steps=t)
    r_ema = expected_risk(noiseless, with_ema(sgd(lr), gamma), batch_size=4, steps=t)
    assert np.all(r_ema <= r_sgd * 2.0)  # same rate; at most a constant factor from the lag


def test_unstable_nesterov_gives_inf_not_an_exception():
    """`nqm risk --batch-size 64 --steps 10 --nesterov --lr 100 --dim 1000` raised LinAlgError (singular
    Lyapunov system).  Nesterov with β = 0 is SGD: risk Σ w ½ h ((1−x)^{2t} s0 + q Σ_{k<t} (1−x)^{2k})."""
    problem = power_law(1000)
    dyn = nesterov(100.0, 0.0)
    assert steady_state_risk(problem, dyn, batch_size=64) == np.inf
    assert not is_stable(problem, dyn)
    risk = expected_risk(problem, dyn, batch_size=64, steps=[0, 10, 1000])
    h, c, s0 = problem.h, problem.c, problem.s0
    x, q = 100.0 * h, 100.0**2 * c / 64
    noise = sum((1 - x) ** (2 * k) for k in range(10))
    at10 = np.sum(0.5 * h * problem.weights * ((1 - x) ** 20 * s0 + q * noise))
    assert risk[0] == pytest.approx(problem.initial_risk(), rel=1e-14)
    assert risk[1] == pytest.approx(at10, rel=1e-10) and np.isfinite(risk[1])
    assert risk[2] == np.inf


@pytest.mark.parametrize("dyn", [nesterov(1e-20, 0.0), nesterov(1e-20, 0.5), nesterov(1e-150, 0.9),
                                 with_ema(nesterov(1e-20, 0.9), 0.9), with_ema(heavy_ball(1e-20, 0.5), 0.99)])
def test_steady_state_of_tiny_steps_matches_the_heavy_ball_closed_form(dyn):
    """For x → 0 every momentum form (and its EMA) has the heavy-ball floor (1+β)αc/(2B(1−β)(2+2β−x));
    solving with I − M⊗M lost it (M⊗M rounds to I: singular, or 4x off)."""
    base = dyn.base if hasattr(dyn, "base") else dyn
    a, b, B = float(base.learning_rate), float(base.momentum), 16.0
    x = a * PROBLEM.h
    expected = (1 + b) * a * PROBLEM.c / (2 * B * (1 - b) * (2 + 2 * b - x))
    np.testing.assert_allclose(steady_state_risk(PROBLEM, dyn, batch_size=B, per_direction=True), expected,
                               rtol=1e-12)
    assert is_stable(PROBLEM, dyn)


@pytest.mark.parametrize("dyn", [sgd(1e300), heavy_ball(1e300, 0.9), nesterov(1e300, 0.5),
                                 with_ema(sgd(1e300), 0.9), with_ema(heavy_ball(1e300, 0.5), 0.5)])
def test_overflowing_learning_rates_give_the_initial_risk_then_inf(dyn):
    with np.errstate(all="raise"):  # no overflow warnings either
        risk = expected_risk(PROBLEM, dyn, batch_size=1, steps=[0, 1, 10**6])
        floor = steady_state_risk(PROBLEM, dyn, batch_size=1)
    assert risk[0] == pytest.approx(PROBLEM.initial_risk(), rel=1e-14)
    assert risk[1] == np.inf and risk[2] == np.inf and floor == np.inf
