"""Exact risk under learning-rate and batch-size schedules."""

import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.nqm import build_system, expected_risk, from_arrays, heavy_ball, sgd, with_ema
from batchlab.nqm.dynamics import with_learning_rate
from batchlab.nqm.schedules import (
    batch_size_warmup, constant, cosine, linear_decay, piecewise_constant, scheduled_risk, warmup_stable_decay,
)
from tests.nqm.reference import longdouble_steps

PROBLEM = from_arrays([1.0, 0.1, 0.01], c=[1.0, 0.5, 0.01], s0=1.0)


def _brute_schedule(problem, dyn, schedule, batch_size, T):
    """Step-by-step propagation with the rate in effect at each step (extended precision)."""
    ld = np.longdouble
    first = build_system(problem, dyn, batch_size)
    _, _, a = first.matrices()
    S = first.s0.astype(ld)[..., None, None] * a[..., :, None] * a[..., None, :]
    out = [S[..., first.out, first.out].copy()]
    for t in range(T):
        k = min(np.searchsorted(schedule.boundaries, t, side="right"), len(schedule.lengths) - 1)
        d = with_learning_rate(dyn, float(dyn.learning_rate) * schedule.lr_multipliers[k])
        sys = build_system(problem, d, batch_size * schedule.batch_multipliers[k])
        E, u, _ = sys.matrices()
        M = np.eye(E.shape[-1], dtype=ld) - E.astype(ld)
        R = sys.q.astype(ld)[..., None, None] * u[..., :, None] * u[..., None, :]
        S = M @ S @ np.swapaxes(M, -1, -2) + R
        out.append(S[..., first.out, first.out].copy())
    return (np.stack(out, -1) * first.weight[..., None]).astype(float).sum(0)


@pytest.mark.parametrize("schedule", [
    piecewise_constant([30, 50, 20], [1.0, 0.3, 0.05]),
    linear_decay(100, 0.1),
    linear_decay(100, 0.0, decay_steps=60, warmup_steps=10),
    cosine(100, 0.01, warmup_steps=5),
    warmup_stable_decay(100, warmup_steps=10, decay_steps=30, end_factor=0.05),
    batch_size_warmup([40, 60], [0.25, 1.0]),
])
@pytest.mark.parametrize("dyn", [sgd(1.2), heavy_ball(0.5, 0.8), with_ema(sgd(1.0), 0.9), with_ema(heavy_ball(0.4, 0.5), 0.8)])
def test_schedule_matches_step_by_step(schedule, dyn):
    T = 130  # also past the end of the schedule (last setting continues)
    steps = np.arange(T + 1)
    got = scheduled_risk(PROBLEM, dyn, schedule, batch_size=8, steps=steps)
    ref = _brute_schedule(PROBLEM, dyn, schedule, 8, T)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_constant_schedule_equals_expected_risk():
    dyn = heavy_ball(np.array([0.1, 0.5]), 0.9)
    steps = [0, 7, 1000, 10**6]
    np.testing.assert_allclose(scheduled_risk(PROBLEM, dyn, constant(10), batch_size=4, steps=steps),
                               expected_risk(PROBLEM, dyn, batch_size=4, steps=steps), rtol=1e-10)


def test_decay_lowers_the_final_risk():
    """A step decay reaches a lower risk than the constant rate it starts from (the floor ∝ α)."""
    dyn = sgd(1.0)
    steps = [3000]
    const = expected_risk(PROBLEM, dyn, batch_size=1, steps=steps)
    decayed = scheduled_risk(PROBLEM, dyn, piecewise_constant([2000, 1000], [1.0, 0.1]), batch_size=1, steps=steps)
    assert decayed[0] < 0.5 * const[0]


@pytest.mark.parametrize("bad", [
    lambda: piecewise_constant([10, 0], [1.0, 0.5]),
    lambda: piecewise_constant([10], [-1.0]),
    lambda: linear_decay(0, 0.1),
    lambda: linear_decay(10, 1.5),
    lambda: warmup_stable_decay(10, warmup_steps=8, decay_steps=8),
])
def test_bad_schedules_are_rejected(bad):
    with pytest.raises(InputError):
        bad()
