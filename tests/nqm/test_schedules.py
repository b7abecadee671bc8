"""Exact risk under learning-rate and batch-size schedules."""

import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.nqm import build_system, expected_risk, from_arrays, heavy_ball, sgd, with_ema
from batchlab.nqm.dynamics import with_learning_rate
from batchlab.nqm.schedules import (
    batch_size_warmup, constant, cosine, linear_decay, piecewise_constant, scheduled_risk, warmup_stable_decay,
)
from tests.nqm.reference import cosine_rate, linear_decay_rate, steps_rate, wsd_rate

PROBLEM = from_arrays([1.0, 0.1, 0.01], c=[1.0, 0.5, 0.01], s0=1.0)
_ONE = lambda t: 1.0  # noqa: E731

# (schedule, learning-rate multiplier of update t, batch-size multiplier of update t): the multipliers
# are the published formulas of tests.nqm.reference, written independently of batchlab's Schedule
CASES = {
    "piecewise": (piecewise_constant([30, 50, 20], [1.0, 0.3, 0.05]),
                  lambda t: steps_rate(t, [30, 50, 20], [1.0, 0.3, 0.05]), _ONE),
    "linear": (linear_decay(100, 0.1), lambda t: linear_decay_rate(t, 100, 0.1), _ONE),
    "linear-short-warmup": (linear_decay(100, 0.0, decay_steps=60, warmup_steps=10),
                            lambda t: linear_decay_rate(t, 100, 0.0, decay=60, warmup=10), _ONE),
    "linear-long": (linear_decay(50, 0.2, decay_steps=80), lambda t: linear_decay_rate(t, 50, 0.2, decay=80), _ONE),
    "cosine-warmup": (cosine(100, 0.01, warmup_steps=5), lambda t: cosine_rate(t, 100, 0.01, warmup=5), _ONE),
    "cosine-to-zero": (cosine(64), lambda t: cosine_rate(t, 64), _ONE),
    "cosine-all-warmup": (cosine(7, 0.3, warmup_steps=7), lambda t: cosine_rate(t, 7, 0.3, warmup=7), _ONE),
    "wsd": (warmup_stable_decay(100, warmup_steps=10, decay_steps=30, end_factor=0.05),
            lambda t: wsd_rate(t, 100, 10, 30, 0.05), _ONE),
    "wsd-no-plateau": (warmup_stable_decay(20, warmup_steps=10, decay_steps=10),
                       lambda t: wsd_rate(t, 20, 10, 10), _ONE),
    "wsd-constant": (warmup_stable_decay(40, warmup_steps=0, decay_steps=0), lambda t: wsd_rate(t, 40, 0, 0), _ONE),
    "batch-warmup": (batch_size_warmup([40, 60], [0.25, 1.0]), _ONE,
                     lambda t: steps_rate(t, [40, 60], [0.25, 1.0])),
    "batch-and-rate": (batch_size_warmup([10, 20, 30], [0.125, 0.5, 1.0], [0.5, 1.0, 0.25]),
                       lambda t: steps_rate(t, [10, 20, 30], [0.5, 1.0, 0.25]),
                       lambda t: steps_rate(t, [10, 20, 30], [0.125, 0.5, 1.0])),
}
RISK_CASES = ["piecewise", "linear", "linear-short-warmup", "cosine-warmup", "wsd", "batch-warmup", "batch-and-rate"]


@pytest.mark.parametrize("name", list(CASES))
def test_schedule_multipliers_follow_their_formulas(name):
    """Every update's multipliers, through the end of the schedule and past it (the last continues).
    A zero rate is held at 1e-300 (rates must be > 0; the same to float64), hence ``atol``."""
    schedule, lr_at, batch_at = CASES[name]
    T = schedule.total_steps
    t = np.arange(T + 30)
    lr = np.array([lr_at(int(k)) for k in t])
    batch = np.array([batch_at(int(k)) for k in t])
    np.testing.assert_allclose(schedule.multiplier_at(t), lr, rtol=1e-13, atol=1e-299)
    per_update = np.repeat(schedule.lr_multipliers, schedule.lengths)
    np.testing.assert_allclose(per_update, lr[:T], rtol=1e-13, atol=1e-299)
    np.testing.assert_array_equal(np.repeat(schedule.batch_multipliers, schedule.lengths), batch[:T])


def test_schedule_formulas_at_their_landmarks():
    """The documented end points, written out (guards the reference formulas themselves)."""
    lin = linear_decay(10, 0.1)
    np.testing.assert_allclose(lin.multiplier_at([0, 5, 9, 10, 100]), [1.0, 0.55, 0.19, 0.19, 0.19], rtol=1e-14)
    assert linear_decay(10, 0.1, decay_steps=4).multiplier_at(4) == pytest.approx(0.1, rel=1e-15)
    cos = cosine(8, 0.2)
    np.testing.assert_allclose(cos.multiplier_at([0, 4, 7]), [1.0, 0.6, 0.2 + 0.4 * (1 + np.cos(7 * np.pi / 8))],
                               rtol=1e-14)
    wsd = warmup_stable_decay(10, warmup_steps=4, decay_steps=4, end_factor=0.2)
    np.testing.assert_allclose(wsd.multiplier_at(np.arange(11)),
                               [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2], rtol=1e-14)
    np.testing.assert_allclose(cosine(8, 0.2, warmup_steps=4).multiplier_at([0, 3]),
                               [0.25, 0.6 + 0.4 * np.cos(3 * np.pi / 8)], rtol=1e-14)


def _brute_schedule(problem, dyn, lr_at, batch_at, batch_size, T):
    """Step-by-step propagation (extended precision) with the rate and batch size of each update taken
    from the closed-form multipliers (a zero rate as 1e-300: the dynamics need rates > 0)."""
    ld = np.longdouble
    first = build_system(problem, dyn, batch_size)
    _, _, a = first.matrices()
    S = first.s0.astype(ld)[..., None, None] * a[..., :, None] * a[..., None, :]
    out = [S[..., first.out, first.out].copy()]
    for t in range(T):
        d = with_learning_rate(dyn, float(dyn.learning_rate) * max(lr_at(t), 1e-300))
        sys = build_system(problem, d, batch_size * batch_at(t))
        E, u, _ = sys.matrices()
        M = np.eye(E.shape[-1], dtype=ld) - E.astype(ld)
        R = sys.q.astype(ld)[..., None, None] * u[..., :, None] * u[..., None, :]
        S = M @ S @ np.swapaxes(M, -1, -2) + R
        out.append(S[..., first.out, first.out].copy())
    return (np.stack(out, -1) * first.weight[..., None]).astype(float).sum(0)


@pytest.mark.parametrize("name", RISK_CASES)
@pytest.mark.parametrize("dyn", [sgd(1.2), heavy_ball(0.5, 0.8), with_ema(sgd(1.0), 0.9), with_ema(heavy_ball(0.4, 0.5), 0.8)])
def test_schedule_matches_step_by_step(name, dyn):
    schedule, lr_at, batch_at = CASES[name]
    T = 130  # also past the end of the schedule (last setting continues)
    steps = np.arange(T + 1)
    got = scheduled_risk(PROBLEM, dyn, schedule, batch_size=8, steps=steps)
    ref = _brute_schedule(PROBLEM, dyn, lr_at, batch_at, 8, T)
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
