"""batchlab.nqm.drift against the engine (no drift), a per-direction covariance recurrence and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.errors import InputError
from batchlab.nqm import Problem, expected_risk, heavy_ball, sgd
from batchlab.nqm.drift import (Drift, drifted_first_hits, drifted_paths, drifted_risk, drifted_steps,
                                tuned_drifted)
from batchlab.nqm.first_hit import first_hits

PROBLEM = Problem(h=[2.0, 0.5, 0.05], c=[1.0, 0.4, 0.02], s0=[1.0, 2.0, 4.0], weights=[1.0, 1.0, 30.0])


@pytest.mark.parametrize("momentum", [None, 0.6])
def test_without_drift_it_is_the_engines_expected_risk(momentum):
    dyn = sgd(0.3) if momentum is None else heavy_ball(0.3, momentum)
    engine = expected_risk(PROBLEM, dyn, batch_size=8, steps=np.arange(41))
    ours = drifted_risk(PROBLEM, Drift.none(3), learning_rate=0.3, momentum=momentum, batch_size=8, steps=40)
    np.testing.assert_allclose(ours, engine, rtol=1e-10)


def _covariance_recurrence(problem, m, lr, mu, batch):
    """Independent: per direction the 2x2 covariance of (z_t, z_{t-1}) under S' = A S A^T + q b b^T."""
    out = []
    for i in range(problem.h.shape[0]):
        S = np.full((2, 2), problem.s0[i])
        risks = [S[0, 0]]
        for t in range(m.shape[0] + 5):
            g = lr * (m[t, i] if t < m.shape[0] else 1.0)
            A = np.array([[1 + mu - g * problem.h[i], -mu], [1.0, 0.0]])
            bvec = np.array([-g, 0.0])
            S = A @ S @ A.T + problem.c[i] / batch * np.outer(bvec, bvec)
            risks.append(S[0, 0])
        out.append(0.5 * problem.weights[i] * problem.h[i] * np.array(risks))
    return np.sum(out, axis=0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.05, 4.0), min_size=9, max_size=9), st.floats(0.01, 0.5), st.floats(0.0, 0.9))
def test_drift_matches_a_covariance_recurrence(values, lr, mu):
    m = np.array(values).reshape(3, 3)
    ours = drifted_risk(PROBLEM, Drift(m), learning_rate=lr, momentum=mu, batch_size=4, steps=8)
    np.testing.assert_allclose(ours, _covariance_recurrence(PROBLEM, m, lr, mu, 4), rtol=1e-9, atol=1e-300)


def test_a_uniform_drift_is_a_learning_rate_schedule():
    # multipliers equal across directions are a learning-rate schedule: 3 steps at 0.5x, then the rate
    slow = drifted_risk(PROBLEM, Drift(np.full((3, 3), 0.5)), learning_rate=0.4, momentum=None, batch_size=2,
                        steps=10)
    part = drifted_risk(PROBLEM, Drift.none(3), learning_rate=0.2, momentum=None, batch_size=2, steps=3)
    assert slow[3] == pytest.approx(part[3], rel=1e-12)
    assert slow[10] > drifted_risk(PROBLEM, Drift.none(3), learning_rate=0.4, momentum=None, batch_size=2,
                                   steps=10)[10]


def test_segments():
    d = Drift.from_segments([0, 2, 5], [[2.0, 2.0, 1.0], [1.5, 1.0, 1.0], [0.5, 1.0, 1.0]], end=7)
    assert d.length == 7 and d.multipliers[1, 0] == 2.0 and d.multipliers[2, 0] == 1.5 and d.multipliers[6, 0] == 0.5
    assert d.at(7) == 1.0
    with pytest.raises(InputError):
        Drift.from_segments([1, 2], [[1.0] * 3, [1.0] * 3], end=3)
    with pytest.raises(InputError):
        Drift.from_segments([0, 2], [[1.0] * 3, [1.0] * 3], end=2)
    with pytest.raises(InputError):
        Drift(np.array([[1.0, -1.0, 1.0]]))
    with pytest.raises(InputError):
        drifted_risk(PROBLEM, Drift.none(2), learning_rate=0.1, momentum=None, batch_size=1, steps=3)


def test_first_hits_without_drift_agree_with_the_engine_in_distribution():
    p = Problem(h=[1.0, 0.3, 0.01], c=[1.0, 0.3, 0.01], s0=[1.0, 1.0, 1.0], weights=[1.0, 1.0, 50.0])
    target = 0.08 * p.initial_risk()
    ours = drifted_first_hits(p, Drift.none(3), learning_rates=[0.5], momentum=None, batch_size=4, target=target,
                              eval_every=3, horizon=300, runs=3000, seed=1)[0]
    engine = first_hits(p, sgd(0.5), batch_size=4, target=target, eval_every=3, horizon=300, runs=3000, seed=2)
    # medians of 3000 runs: their standard error is about 2% of the median here
    assert np.median(ours) == pytest.approx(np.median(engine), rel=0.08)
    assert np.isfinite(ours).mean() == pytest.approx(np.isfinite(engine).mean(), abs=0.03)


def test_drifted_monte_carlo_matches_the_exact_mean():
    # directions of weight 1 are simulated: the mean of the paths is the exact expected risk within its error
    p = Problem(h=[1.5, 0.2], c=[2.0, 0.5], s0=[3.0, 1.0], weights=[1.0, 1.0])
    d = Drift(np.array([[2.5, 0.5], [2.5, 0.5], [0.3, 1.0]]))
    exact = drifted_risk(p, d, learning_rate=0.4, momentum=0.5, batch_size=2, steps=6)
    paths = drifted_paths(p, d, learning_rates=[0.4], momentum=0.5, batch_size=2, steps=6, runs=20000, seed=0)[0]
    mean, error = paths.mean(axis=0), paths.std(axis=0) / np.sqrt(paths.shape[0])
    assert np.all(np.abs(mean - exact) < 4.5 * error)
    # and the bulk (weight != 1) adds its exact expected risk to every run
    q = Problem(h=[1.5, 0.2], c=[2.0, 0.5], s0=[3.0, 1.0], weights=[1.0, 7.0])
    both = drifted_paths(q, d, learning_rates=[0.4], momentum=0.5, batch_size=2, steps=6, runs=50, seed=0)[0]
    bulk = drifted_risk(Problem(h=[0.2], c=[0.5], s0=[1.0], weights=[7.0]), Drift(d.multipliers[:, 1:]),
                        learning_rate=0.4, momentum=0.5, batch_size=2, steps=6)
    single = drifted_paths(Problem(h=[1.5], c=[2.0], s0=[3.0], weights=[1.0]), Drift(d.multipliers[:, :1]),
                           learning_rates=[0.4], momentum=0.5, batch_size=2, steps=6, runs=50, seed=0)[0]
    np.testing.assert_allclose(both, single + bulk, rtol=1e-12)


def test_tuning_finds_a_slower_answer_under_an_overshooting_drift():
    p = Problem(h=[10.0, 1.0, 0.1], c=[1.0, 0.1, 0.01], s0=[0.1, 1.0, 10.0], weights=[1.0, 1.0, 1.0])
    target = 0.05 * p.initial_risk()
    fresh = tuned_drifted(p, Drift.none(3), "momentum", batch_size=1024, target=target, learning_rate=0.1,
                          momentum=0.5, horizon=400)
    # the stiff direction's gradient is 3x too large for the first 5 updates: the rate must fall
    stale = tuned_drifted(p, Drift(np.tile([3.0, 1.0, 1.0], (5, 1))), "momentum", batch_size=1024, target=target,
                          learning_rate=0.1, momentum=0.5, horizon=400)
    assert stale.steps > fresh.steps
    check = drifted_steps(p, Drift(np.tile([3.0, 1.0, 1.0], (5, 1))), learning_rate=stale.learning_rate,
                          momentum=stale.momentum, batch_size=1024, target=target, horizon=400)
    assert check == stale.steps
    with pytest.raises(InputError):
        tuned_drifted(p, Drift.none(3), "nesterov", batch_size=1, target=target, learning_rate=0.1, momentum=0.5,
                      horizon=10)


@pytest.mark.parametrize("off", [1.0, 0.02, 30.0])
def test_tuning_extends_its_grid_past_an_edge_and_refines(off):
    # the optimum sits just below the stability wall (rate 0.2): from a good centre, one 50x too small
    # and one 30x too large, the grid walks there and its refinement lands within 3% of a fine scan
    p = Problem(h=[10.0, 1.0, 0.1], c=[1.0, 0.1, 0.01], s0=[0.1, 1.0, 10.0], weights=[1.0, 1.0, 1.0])
    target = 0.05 * p.initial_risk()
    scan = min(drifted_steps(p, Drift.none(3), learning_rate=lr, momentum=None, batch_size=256, target=target,
                             horizon=300) for lr in np.geomspace(0.15, 0.21, 200))
    found = tuned_drifted(p, Drift.none(3), "sgd", batch_size=256, target=target, learning_rate=0.1 * off,
                          momentum=None, horizon=300)
    assert scan <= found.steps <= 1.03 * scan
    if off < 1.0:  # without extensions it stops at the grid's edge, slower
        stuck = tuned_drifted(p, Drift.none(3), "sgd", batch_size=256, target=target, learning_rate=0.1 * off,
                              momentum=None, horizon=300, extensions=0)
        assert stuck.steps > 1.5 * scan
    with pytest.raises(InputError, match="two distinct"):
        tuned_drifted(p, Drift.none(3), "sgd", batch_size=256, target=target, learning_rate=0.1, momentum=None,
                      horizon=10, lr_multipliers=[1.0])


def _adam_form(problem, m, lr, beta, batch, steps, rng=None, runs=1):
    """Independent: Adam's first moment as optax writes it, ``μ' = β μ + (1 − β) m_t g``, update
    ``θ' = θ − lr μ' / (1 − β^{t+1})``, per direction, from ``θ_0 = √s0`` (deterministic when ``rng`` is
    None: then ``½ Σ w h θ²`` is the expected risk of ``θ_0 ~ N(0, s0)``), or Monte Carlo runs."""
    h, c, s0, w = problem.h, problem.c, problem.s0, problem.weights
    theta = np.sqrt(s0) * (np.ones((runs, h.size)) if rng is None else rng.standard_normal((runs, h.size)))
    moment = np.zeros_like(theta)
    out = [0.5 * (w * h * theta ** 2).sum(axis=1)]
    for t in range(steps):
        noise = 0.0 if rng is None else rng.standard_normal(theta.shape) * np.sqrt(c / batch)
        mult = m[t] if t < m.shape[0] else 1.0
        moment = beta * moment + (1 - beta) * mult * (h * theta + noise)
        theta = theta - lr * moment / (1 - beta ** (t + 1))
        out.append(0.5 * (w * h * theta ** 2).sum(axis=1))
    return np.array(out).T  # (runs, steps + 1)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.2, 3.0), min_size=6, max_size=6), st.floats(0.05, 1.0), st.floats(0.0, 0.95))
def test_bias_correction_is_adams_first_moment(values, lr, beta):
    """Noise-free, ``drifted_risk(bias_correction=True)`` at NQM rate ``α = lr (1 − β)`` and momentum β
    is Adam's update with a bias-corrected first moment (and the drift multiplying its gradients)."""
    m = np.array(values).reshape(2, 3)
    quiet = Problem(h=PROBLEM.h, c=np.zeros(3), s0=PROBLEM.s0, weights=PROBLEM.weights)
    ours = drifted_risk(quiet, Drift(m), learning_rate=lr * (1 - beta), momentum=beta, batch_size=4, steps=12,
                        bias_correction=True)
    np.testing.assert_allclose(ours, _adam_form(quiet, m, lr, beta, 4, 12)[0], rtol=1e-8, atol=1e-300)


def test_bias_correction_with_noise_matches_monte_carlo_and_is_void_for_sgd():
    lr, beta = 0.4, 0.8
    exact = drifted_risk(PROBLEM, Drift.none(3), learning_rate=lr * (1 - beta), momentum=beta, batch_size=4,
                         steps=15, bias_correction=True)
    runs = _adam_form(PROBLEM, np.ones((0, 3)), lr, beta, 4, 15, rng=np.random.default_rng(3), runs=20_000)
    mean, se = runs.mean(axis=0), runs.std(axis=0) / np.sqrt(runs.shape[0])
    assert np.all(np.abs(mean - exact) <= 4.5 * se + 1e-12)
    paths = drifted_paths(PROBLEM, Drift.none(3), learning_rates=[lr * (1 - beta)], momentum=beta, batch_size=4,
                          steps=15, runs=20_000, seed=1, bias_correction=True)[0]
    assert np.all(np.abs(paths.mean(axis=0) - exact) <= 4.5 * paths.std(axis=0) / np.sqrt(20_000) + 1e-12)
    plain = drifted_risk(PROBLEM, Drift.none(3), learning_rate=0.3, momentum=None, batch_size=4, steps=15)
    assert np.array_equal(plain, drifted_risk(PROBLEM, Drift.none(3), learning_rate=0.3, momentum=None,
                                              batch_size=4, steps=15, bias_correction=True))
    # the first update takes Adam's full step lr, not the heavy ball's lr (1 - beta)
    full = drifted_risk(PROBLEM, Drift.none(3), learning_rate=lr, momentum=None, batch_size=4, steps=1)
    assert exact[1] == pytest.approx(full[1], rel=1e-12)


def _box_problem():
    from batchlab.nqm import power_law

    return power_law(40)


@settings(max_examples=12, deadline=None)
@given(st.floats(1e-3, 0.3), st.floats(1.5, 300.0), st.sampled_from([4.0, 64.0, 1024.0]),
       st.lists(st.floats(0.0, 0.99), min_size=1, max_size=3), st.booleans())
def test_box_tuning_is_the_best_of_the_box(low, span, batch_size, momenta, averaged):
    """tuned_in_box stays inside its box, its steps are the exact expected-risk crossing of what it
    returns, and no setting of an independent dense scan of the same box is more than one step faster
    (the scan's and the grid's rate resolutions are both about 2%)."""
    from batchlab.nqm.drift import tuned_in_box

    problem = _box_problem()
    none = Drift.none(problem.h.shape[0])
    target = 0.05 * problem.initial_risk()
    high = low * span
    best = tuned_in_box(problem, none, batch_size=batch_size, target=target, rates=(low, high), momenta=momenta,
                        averaged=averaged)
    mus = sorted(set(momenta))
    if not np.isfinite(best.steps):
        return
    mu = best.momentum or 0.0
    assert mu in [pytest.approx(m) for m in mus] or (best.momentum is None and mus == [0.0])
    lr = best.learning_rate / ((1 - mu) if averaged else 1.0)  # back in the box's units
    assert low * (1 - 1e-9) <= lr <= high * (1 + 1e-9)
    horizon = int(best.steps) + 2
    assert drifted_steps(problem, none, learning_rate=best.learning_rate, momentum=best.momentum, batch_size=batch_size,
                         target=target, horizon=horizon) == best.steps
    scan = min(drifted_steps(problem, none, learning_rate=r * ((1 - m) if averaged else 1.0), momentum=m or None,
                             batch_size=batch_size, target=target, horizon=horizon)
               for m in mus for r in np.geomspace(low, high, max(8, int(np.log(span) / np.log(1.02)))))
    assert scan >= best.steps - 1


def test_box_tuning_agrees_with_the_free_optimum_when_the_box_holds_it():
    """A box around the engine's free optimum (rate x/÷ 4, its momentum and two neighbours) finds its
    steps to within 2%; a box that excludes it (rates 30x too small) is slower."""
    from batchlab.nqm.drift import tuned_in_box
    from batchlab.nqm.optimize import optimize

    problem = _box_problem()
    none = Drift.none(problem.h.shape[0])
    target = 0.05 * problem.initial_risk()
    for batch_size in (16.0, 1024.0):
        free = optimize(problem, "momentum", batch_size=batch_size, target=target)
        around = [free.momentum, 1 - (1 - free.momentum) * 1.3, 1 - (1 - free.momentum) / 1.3]
        boxed = tuned_in_box(problem, none, batch_size=batch_size, target=target,
                             rates=(free.learning_rate / 4, free.learning_rate * 4), momenta=around)
        assert boxed.steps <= free.steps * 1.02 + 1
        low = tuned_in_box(problem, none, batch_size=batch_size, target=target,
                           rates=(free.learning_rate / 1000, free.learning_rate / 30), momenta=around)
        assert low.steps > free.steps


@pytest.mark.parametrize("rates, momenta, message", [
    ((0.1, 0.01), [0.9], "0 < low <= high"), ((0.0, 1.0), [0.9], "0 < low <= high"),
    ((0.01, 0.1), [], "box momenta"), ((0.01, 0.1), [1.0], "box momenta"),
])
def test_bad_boxes_are_refused(rates, momenta, message):
    from batchlab.nqm.drift import tuned_in_box

    problem = _box_problem()
    with pytest.raises(InputError, match=message):
        tuned_in_box(problem, Drift.none(problem.h.shape[0]), batch_size=4.0, target=0.1, rates=rates, momenta=momenta)
