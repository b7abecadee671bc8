"""The start-up delay (issue 15): a calibrated NQM's run begins after ``T0`` updates, ``T0`` and the initial
state fitted to the reference run's loss curve (:mod:`batchlab.calibrate.model`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from batchlab.calibrate.model import (Anchor, ModelConfig, _fit_delay, _initial, anchor_path, delayed_means,
                                      tuned_optimum)
from batchlab.calibrate.pipeline import delayed_curve, delayed_hit
from batchlab.calibrate.reference import loss_curve
from batchlab.critical import critical_batch_size
from batchlab.errors import InputError
from batchlab.nqm import Problem
from batchlab.nqm.first_hit import FirstHit
from batchlab.nqm.scaling import scaling_curve
from batchlab.train.result import EvalPoint

H = np.geomspace(2.0, 2e-3, 16)
C = 0.3 * H
W = np.ones_like(H)
RISK0, TARGET = 2.0, 0.03


def _point(step, train_loss=None):
    return EvalPoint(step, {"loss": 9.0} | ({} if train_loss is None else {"train_loss": train_loss}))


def test_loss_curve_takes_the_median_interval_loss_and_skips_replays():
    runs = [
        [_point(0), _point(5, 2.0), _point(10, 1.0), _point(11), _point(12), _point(15, 0.5)],  # replays 11, 12
        [_point(0), _point(5, 3.0), _point(10, 0.8)],  # met the target at 10
        [_point(0), _point(5, 4.0), _point(10, 1.2), _point(15, 0.7), _point(20, 0.6)],
    ]
    curve = loss_curve(runs, end=15)
    assert curve == ((0, 5, 3.0), (5, 10, 1.0), (10, 15, 0.6))  # the interval [10, 15) of runs 1 and 3; no [15, 20)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.01, 10.0), min_size=30, max_size=30), st.integers(0, 12),
       st.lists(st.integers(1, 6), min_size=1, max_size=6))
def test_delayed_means_against_a_brute_force_loop(path, delay, widths):
    path = np.array(path)
    stops = np.cumsum(widths)
    curve = [(int(a), int(b), 1.0) for a, b in zip(np.concatenate([[0], stops[:-1]]), stops)]
    expected = []
    for a, b, _ in curve:
        values = [path[0] if t < delay else path[t - delay] for t in range(a, b)]
        expected.append(sum(values) / len(values))
    np.testing.assert_allclose(delayed_means(path, delay, curve), expected, rtol=1e-12)


def _synthetic(anchor: Anchor, exponent: float, delay: int, every: int):
    """The loss curve a run delayed by ``delay`` and then following the NQM with ``exponent`` makes, the
    anchor's steps set to that run's hit of the target."""
    problem = Problem(h=H, c=C, s0=_initial(H, W, RISK0, exponent), weights=W)
    best = tuned_optimum(problem, anchor.kind, batch_size=anchor.batch_size, target=TARGET,
                         bias_correction=anchor.bias_correction, momentum=anchor.momentum)
    steps = int(best.steps) + delay
    anchor = Anchor(anchor.kind, 0.0, anchor.batch_size, steps, anchor.bias_correction, anchor.momentum)
    path = anchor_path(problem, Anchor(anchor.kind, 0.0, anchor.batch_size, steps - delay, anchor.bias_correction,
                                       anchor.momentum), TARGET, steps)
    edges = list(range(0, steps + 1, every))
    intervals = [(a, b, 0.0) for a, b in zip(edges, edges[1:])]
    means = delayed_means(path, delay, intervals)
    return anchor, [(a, b, float(m)) for (a, b, _), m in zip(intervals, means)]


def _check_fit(anchor, curve, delay, fit):
    """``fit`` found ``delay``; its exponent makes the tuned NQM hit the target ``steps − delay`` updates in
    (the exponent is identified only up to that integer count); its residual is the delayed run's, small."""
    found, exponent, how, rule, residual = fit
    assert (found, how, rule) == (delay, "fit", "fit")
    problem = Problem(h=H, c=C, s0=_initial(H, W, RISK0, exponent), weights=W)
    shifted = Anchor(anchor.kind, 0.0, anchor.batch_size, anchor.steps - delay, anchor.bias_correction,
                     anchor.momentum)
    assert tuned_optimum(problem, anchor.kind, batch_size=anchor.batch_size, target=TARGET,
                         bias_correction=anchor.bias_correction, momentum=anchor.momentum).steps == shifted.steps
    path = anchor_path(problem, shifted, TARGET, curve[-1][1])
    again = np.log([v for _, _, v in curve]) - np.log(delayed_means(path, delay, curve))
    assert residual == pytest.approx(math.sqrt(np.mean(again**2)), rel=1e-9) and residual < 0.05


@pytest.mark.parametrize("delay, every", [(0, 1), (4, 1), (11, 1), (7, 5)])
def test_the_fit_recovers_a_known_delay(delay, every):
    anchor, curve = _synthetic(Anchor("sgd", 0.0, 32.0, 1), 1.3, delay, every)
    fit = _fit_delay(H, C, W, RISK0, TARGET, anchor, curve, 0.0)
    _check_fit(anchor, curve, delay, fit)
    assert fit[1] == pytest.approx(1.3, abs=0.05)


def test_the_fit_recovers_a_delay_under_adams_bias_corrected_heavy_ball():
    anchor, curve = _synthetic(Anchor("momentum", 0.0, 64.0, 1, True, 0.9), 1.6, 5, 2)
    _check_fit(anchor, curve, 5, _fit_delay(H, C, W, RISK0, TARGET, anchor, curve, 0.0))


def test_no_delay_without_a_curve_or_a_plain_anchor():
    anchor, curve = _synthetic(Anchor("sgd", 0.0, 32.0, 1), 1.3, 4, 1)
    assert _fit_delay(H, C, W, RISK0, TARGET, anchor, curve[:1], 0.0)[0::3] == (
        0, "none (a loss curve of fewer than two intervals)")
    proxy = Anchor("momentum", 0.5, 32.0, anchor.steps)
    assert _fit_delay(H, C, W, RISK0, TARGET, proxy, curve, 0.0)[0::3] == (0, "none (anchor)")


def test_delay_setting_is_checked():
    ModelConfig(delay="none").check()
    with pytest.raises(InputError, match="delay must be fit or none"):
        ModelConfig(delay="soon").check()


def test_delayed_curves_and_hits_add_the_delay_and_refit_the_critical_batch_size():
    problem = Problem(h=H, c=C, s0=_initial(H, W, RISK0, 1.3), weights=W)
    curve = scaling_curve(problem, "sgd", [4, 16, 64, 256, 1024], target=TARGET)
    shifted = delayed_curve(curve, 9)
    np.testing.assert_array_equal(shifted.steps, curve.steps + 9)
    assert shifted.critical == critical_batch_size([4, 16, 64, 256, 1024], curve.steps + 9)
    assert shifted.critical.fit.b_noise < curve.critical.fit.b_noise  # a constant flattens the curve
    assert delayed_curve(curve, 0) is curve
    hit = FirstHit(steps=20.0, learning_rate=0.1, momentum=None, multiplier=1.0, hit_fraction=1.0, expected_steps=22.0)
    assert delayed_hit(hit, 3) == FirstHit(23.0, 0.1, None, 1.0, 1.0, 25.0)
    assert math.isinf(delayed_hit(FirstHit(math.inf, 0.1, None, 1.0, 0.5, math.inf), 3).steps)
