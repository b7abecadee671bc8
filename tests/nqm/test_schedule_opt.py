"""Optimized schedules and the remaining optimizer kinds on a small power law."""

import numpy as np
import pytest

from batchlab.nqm import expected_risk, power_law, sgd
from batchlab.nqm.optimize import optimize
from batchlab.nqm.schedule_opt import optimize_linear_decay, optimize_piecewise
from batchlab.nqm.schedules import scheduled_risk

PROBLEM = power_law(1000)
TARGET = 0.01


@pytest.fixture(scope="module")
def constant():
    return optimize(PROBLEM, "sgd", batch_size=16, target=TARGET)


def test_piecewise_schedule_beats_constant_and_respects_the_bound(constant):
    opt = optimize_piecewise(PROBLEM, batch_size=16, target=TARGET, pieces=8)
    assert PROBLEM.lower_bound_steps(16, TARGET) <= opt.steps <= constant.steps
    r = scheduled_risk(PROBLEM, sgd(opt.learning_rate), opt.schedule(), batch_size=16, steps=[int(opt.steps)])
    assert r[0] == pytest.approx(opt.risk, rel=1e-12) and r[0] <= TARGET
    assert all(0 < a < 2.0 for a in opt.learning_rates)  # bounded by stability (2 / h_max)


def test_linear_decay_is_exact_at_its_horizon_and_no_worse_than_constant(constant):
    # the search's staircase (default 64 pieces) only approximates the decay; the reported horizon's risk is
    # exact at step resolution whatever it is.  16 pieces: 6,700 steps (64: 6,444; constant: 29,048), 3 × faster
    opt = optimize_linear_decay(PROBLEM, batch_size=16, target=TARGET, staircase=16)
    r = scheduled_risk(PROBLEM, sgd(opt.learning_rate), opt.schedule(), batch_size=16, steps=[int(opt.steps)])
    assert r[0] <= TARGET and r[0] == pytest.approx(opt.risk, rel=1e-12)
    assert PROBLEM.lower_bound_steps(16, TARGET) <= opt.steps <= constant.steps * 1.01


@pytest.mark.parametrize("kind", ["nesterov", "momentum-ema"])
def test_other_kinds_reach_and_beat_sgd_at_large_batch(kind, constant):
    sgd_large = optimize(PROBLEM, "sgd", batch_size=4096, target=TARGET)
    opt = optimize(PROBLEM, kind, batch_size=4096, target=TARGET)
    assert opt.steps < sgd_large.steps
    assert opt.momentum is not None and 0 <= opt.momentum < 1
    if kind == "momentum-ema":
        assert opt.ema is not None and 0 <= opt.ema < 1
