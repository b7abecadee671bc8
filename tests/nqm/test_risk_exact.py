"""The exact engine against independent computations, on random and on degenerate settings."""

import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.nqm import (
    build_system, expected_risk, from_arrays, heavy_ball, nesterov, power_law, sgd, with_ema,
)
from tests.nqm.reference import longdouble_steps, system_moment_decimal

RTOL = 1e-9


def _random_problem(rng, d=6):
    h = np.sort(10 ** rng.uniform(-5, 0, d))[::-1]
    return from_arrays(h, c=h * rng.uniform(0.2, 3, d), s0=rng.uniform(0.1, 2, d), weights=rng.integers(1, 4, d))


def _random_dynamics(rng, kind):
    lr = 10 ** rng.uniform(-2, 0.2)
    beta = 1 - 10 ** rng.uniform(-3, 0)
    gamma = 1 - 10 ** rng.uniform(-3, 0)
    p = rng.choice([0.0, 0.25, 0.5, 0.75])
    return {
        "sgd": sgd(lr, precond=p),
        "heavy_ball": heavy_ball(lr, beta, precond=p),
        "nesterov": nesterov(lr * 0.5, beta, precond=p),
        "sgd_ema": with_ema(sgd(lr, precond=p), gamma),
        "momentum_ema": with_ema(heavy_ball(lr, beta, precond=p), gamma),
        "nesterov_ema": with_ema(nesterov(lr * 0.5, beta, precond=p), gamma),
    }[kind]


KINDS = ["sgd", "heavy_ball", "nesterov", "sgd_ema", "momentum_ema", "nesterov_ema"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(4))
def test_matches_step_by_step_on_random_settings(kind, seed):
    rng = np.random.default_rng(1000 * seed + KINDS.index(kind))
    problem = _random_problem(rng)
    dyn = _random_dynamics(rng, kind)
    B = float(rng.choice([1, 7, 128, 4096]))
    T = 600
    sys = build_system(problem, dyn, B)
    if not np.all(sys.x < sys.limit):
        pytest.skip("unstable draw")
    ref = (longdouble_steps(sys, T) * sys.weight[..., None]).astype(float)
    steps = np.arange(T + 1)
    got = expected_risk(problem, dyn, batch_size=B, steps=steps, per_direction=True)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0)
    np.testing.assert_allclose(expected_risk(problem, dyn, batch_size=B, steps=steps), ref.sum(0), rtol=RTOL)


def _degenerate_cases():
    x = 0.3
    b_crit = (1 - np.sqrt(x)) ** 2
    h = np.array([1.0, 0.2, 1e-3])
    cases = {
        # heavy ball at critical damping for the first direction: β = (1 − √x)²
        "hb-critical": (h, heavy_ball(x, b_crit)),
        # Nesterov at critical damping: (1 − β)² = x (1 + β)²
        "nesterov-critical": (h, nesterov(((1 - 0.6) / (1 + 0.6)) ** 2, 0.6)),
        # EMA decay equal to the SGD root 1 − x (the authors' pitfall: lr 0.2, γ 0.9 on 1/i)
        "ema-equal-root": (np.array([0.5, 1.0, 1 / 3]), with_ema(sgd(0.2), 0.9)),
        "momentum-ema-equal-root": (h, with_ema(heavy_ball(0.1, 0.5), 0.9)),
        "x-equals-one": (h, sgd(1.0)),
        "hb-x-equals-one": (h, heavy_ball(1.0, 0.5)),
        "ema-x-equals-one": (h, with_ema(sgd(1.0), 0.5)),
        "sgd-near-limit": (h, sgd(2.0 * (1 - 1e-9))),
        "hb-near-limit": (h, heavy_ball(2.0 * 1.9 * (1 - 1e-9), 0.9)),
        "nesterov-near-limit": (h, nesterov(2 * 1.5 / 2.0 * (1 - 1e-9), 0.5)),
        "ema-near-limit": (h, with_ema(sgd(2.0 * (1 - 1e-9)), 0.99)),
        "slow-direction": (np.array([1e-12, 1e-9]), heavy_ball(0.5, 0.99)),
        "momentum-near-one": (h, heavy_ball(0.01, 1 - 1e-7)),
        "beta-zero": (h, heavy_ball(0.7, 0.0)),
        # momentum + EMA (3 states, modal closed form with a doubling fallback)
        "momentum-ema-critical": (h, with_ema(heavy_ball(x, b_crit), 0.9)),
        "momentum-ema-slow": (np.array([1e-9, 1e-6, 1.0]), with_ema(heavy_ball(0.5, 0.99), 0.999)),
        "nesterov-ema-near-limit": (h, with_ema(nesterov(1.5 * (1 - 1e-9), 0.5), 0.99)),
        "nesterov-ema-negative-root": (h, with_ema(nesterov(1.3, 0.2), 0.3)),
        "momentum-ema-gamma-zero": (h, with_ema(heavy_ball(0.3, 0.8), 0.0)),
    }
    return cases


@pytest.mark.parametrize("name", list(_degenerate_cases()))
def test_degenerate_cases_against_decimal_reference(name):
    h, dyn = _degenerate_cases()[name]
    problem = from_arrays(h, c=h, s0=1.0)
    B = 8.0
    sys = build_system(problem, dyn, B)
    steps = np.array([0, 1, 2, 3, 17, 1000, 123_457, 10**8])
    got = expected_risk(problem, dyn, batch_size=B, steps=steps, per_direction=True)
    for i in range(problem.dim):
        for j, t in enumerate(steps):
            ref = system_moment_decimal(sys, i, t) * sys.weight[i]
            assert got[i, j] == pytest.approx(ref, rel=RTOL, abs=0), (name, i, t)


def test_authors_pitfall_gives_a_sane_risk():
    """lr 0.2, γ 0.9 on the 1/i spectrum: the authors' notebook reports ~1e11; the risk must stay below
    its initial value and equal a direct propagation."""
    problem = power_law(100)
    dyn = with_ema(sgd(0.2), 0.9)
    r = expected_risk(problem, dyn, batch_size=1, steps=[0, 100, 1000])
    assert np.all(np.isfinite(r)) and r[1] < r[0] and r[2] < r[0]
    sys = build_system(problem, dyn, 1)
    ref = (longdouble_steps(sys, 100)[:, -1] * sys.weight).sum()
    assert r[1] == pytest.approx(float(ref), rel=RTOL)


@pytest.mark.parametrize("dyn", [sgd(2.5), heavy_ball(4.0, 0.9), nesterov(2.0, 0.9), with_ema(sgd(2.5), 0.9),
                                 with_ema(heavy_ball(4.0, 0.9), 0.5)])
def test_unstable_settings_report_infinity_never_nan(dyn):
    problem = power_law(50)
    r = expected_risk(problem, dyn, batch_size=4, steps=[0, 1, 10, 10**4, 10**8])
    assert not np.any(np.isnan(r))
    assert r[-1] == np.inf and r[0] == pytest.approx(problem.initial_risk())
    assert r[2] > r[0]


def test_vectorised_grid_equals_pointwise():
    problem = power_law(300)
    lr = np.array([0.05, 0.5, 1.5])[:, None]
    mom = np.array([0.0, 0.9, 0.99])[None, :]
    steps = np.array([[1, 10], [100, 5000]])
    grid = expected_risk(problem, heavy_ball(lr, mom), batch_size=32, steps=steps)
    assert grid.shape == (3, 3, 2, 2)
    for i in range(3):
        for j in range(3):
            one = expected_risk(problem, heavy_ball(lr[i, 0], mom[0, j]), batch_size=32, steps=steps)
            np.testing.assert_allclose(grid[i, j], one, rtol=1e-13)


def test_batch_size_array_broadcasts_with_hyperparameters():
    problem = power_law(100)
    B = np.array([1.0, 64.0, 4096.0])
    r = expected_risk(problem, sgd(np.array([0.1, 0.5, 1.0])), batch_size=B, steps=[100])
    for k in range(3):
        assert r[k, 0] == pytest.approx(expected_risk(problem, sgd([0.1, 0.5, 1.0][k]), batch_size=B[k], steps=[100])[0],
                                        rel=1e-13)


def test_initial_risk_of_reference_problem():
    problem = power_law()
    assert problem.initial_risk() == pytest.approx(0.5 * np.sum(1 / np.arange(1, 10001)), rel=1e-15)
    assert expected_risk(problem, sgd(0.1), batch_size=1, steps=0) == pytest.approx(4.8938, abs=1e-4)


@pytest.mark.parametrize("bad", [
    lambda: sgd(-0.1), lambda: sgd(0.0), lambda: heavy_ball(0.1, 1.0), lambda: heavy_ball(0.1, -0.1),
    lambda: with_ema(sgd(0.1), 1.0), lambda: sgd(0.1, precond=1.5), lambda: sgd(float("nan")),
])
def test_out_of_range_hyperparameters_are_rejected(bad):
    with pytest.raises(InputError):
        bad()


def test_bad_batch_size_and_steps_are_rejected():
    with pytest.raises(InputError, match="batch_size"):
        expected_risk(power_law(10), sgd(0.1), batch_size=0.5, steps=[1])
    with pytest.raises(InputError, match="steps"):
        expected_risk(power_law(10), sgd(0.1), batch_size=1, steps=[-1])
    with pytest.raises(InputError, match="steps"):
        expected_risk(power_law(10), sgd(0.1), batch_size=1, steps=[1.5])


def test_momentum_ema_closed_form_matches_doubling_where_trusted():
    """The modal closed form for momentum + EMA against exact doubling on a power law, many settings."""
    from batchlab.nqm import _closed, _engine
    from batchlab.nqm.dynamics import stability_limit

    rng = np.random.default_rng(7)
    problem = power_law(300)
    steps = np.array([0, 1, 2, 3, 10, 1000, 10**5, 10**8])
    trusted = total = 0
    for trial in range(40):
        mk = heavy_ball if trial % 2 else nesterov
        beta = 0.0 if trial % 7 == 0 else 1 - 10 ** rng.uniform(-4, 0)
        gamma = 1 - 10 ** rng.uniform(-5, 0)
        lr = float(stability_limit(mk(1.0, beta))) * rng.uniform(0.001, 0.999) ** (1 if trial % 3 else 6)
        sys = build_system(problem, with_ema(mk(lr, beta), gamma), 16.0).reshape(-1)
        value, cancel = _closed.momentum_ema_moment(sys, steps)
        ref = np.stack([_engine.doubling_moment(sys, np.full(sys.shape[0], t)) for t in steps], 1)
        good = cancel <= _closed.TRUST
        np.testing.assert_allclose(value[good], ref[good], rtol=1e-9, atol=0)
        trusted += good.sum()
        total += good.size
    assert trusted / total > 0.99  # the doubling fallback stays rare
