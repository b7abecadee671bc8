"""Invariants of the exact engine (hypothesis)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from batchlab.nqm import expected_risk, from_arrays, heavy_ball, nesterov, sgd, steady_state_risk, with_ema

curv = st.lists(st.floats(1e-4, 1.0), min_size=1, max_size=5)
lrs = st.floats(1e-3, 0.95)
moms = st.floats(0.0, 0.999)
steps = st.lists(st.integers(0, 10**6), min_size=1, max_size=4)


def _dyn(kind, lr, mom, gamma):
    return {
        0: sgd(lr), 1: heavy_ball(lr, mom), 2: nesterov(lr * 0.5, mom), 3: with_ema(sgd(lr), gamma),
        4: with_ema(heavy_ball(lr, mom), gamma),
    }[kind]


@given(curv, lrs, moms, st.floats(0.0, 0.999), st.integers(0, 4), steps, st.floats(1, 1e5))
def test_risk_is_nonnegative_and_finite_when_stable(h, lr, mom, gamma, kind, t, B):
    problem = from_arrays(h)
    r = expected_risk(problem, _dyn(kind, lr, mom, gamma), batch_size=B, steps=t)
    assert np.all(r >= 0) and np.all(np.isfinite(r))


@given(curv, lrs, moms, st.floats(0.0, 0.999), st.integers(0, 4), steps, st.floats(1, 1e4), st.integers(2, 64))
def test_k_times_the_batch_divides_the_noise_term_by_k(h, lr, mom, gamma, kind, t, B, k):
    problem = from_arrays(h)
    dyn = _dyn(kind, lr, mom, gamma)
    transient = expected_risk(from_arrays(h, c=0.0), dyn, batch_size=1, steps=t)
    noise_B = expected_risk(problem, dyn, batch_size=B, steps=t) - transient
    noise_kB = expected_risk(problem, dyn, batch_size=k * B, steps=t) - transient
    scale = expected_risk(problem, dyn, batch_size=B, steps=t)
    np.testing.assert_allclose(noise_kB * k, noise_B, rtol=1e-7, atol=1e-12 * np.max(scale))


@given(curv, lrs, moms, st.integers(0, 4), steps)
def test_per_direction_sums_and_duplicates_equal_weights(h, lr, mom, kind, t):
    dyn = _dyn(kind, lr, mom, 0.9)
    p = from_arrays(h)
    per = expected_risk(p, dyn, batch_size=3, steps=t, per_direction=True)
    np.testing.assert_allclose(per.sum(0), expected_risk(p, dyn, batch_size=3, steps=t), rtol=1e-12)
    doubled = from_arrays(np.repeat(h, 2))
    weighted = from_arrays(h, weights=2.0)
    np.testing.assert_allclose(expected_risk(doubled, dyn, batch_size=3, steps=t),
                               expected_risk(weighted, dyn, batch_size=3, steps=t), rtol=1e-12)


@given(curv, lrs, moms, st.integers(0, 4), st.floats(1, 1e4))
def test_risk_approaches_the_steady_state(h, lr, mom, kind, B):
    dyn = _dyn(kind, lr, mom, 0.5)
    p = from_arrays(h, s0=0.0)  # start at the optimum: risk rises monotonically to the floor... in the limit
    floor = steady_state_risk(p, dyn, batch_size=B)
    late = expected_risk(p, dyn, batch_size=B, steps=[10**9])
    np.testing.assert_allclose(late, floor, rtol=1e-6)
