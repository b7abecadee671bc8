"""Predicted vs measured critical batch size: the ratio's interval and the within-2x verdict."""

import math
import pathlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st

from batchlab.analysis.prediction import PredictedCurve, Prediction, compare_critical, within_factor


@pytest.mark.parametrize("predicted, low, high, verdict", [
    (100, 60, 150, "supported"),        # ratio in [0.67, 1.67]
    (100, 50, 200, "supported"),        # the ends exactly 2x: still within
    (100, 30, 150, "inconclusive"),     # ratio up to 3.3 at the low end
    (100, 210, 400, "contradicted"),    # the measurement is > 2x the prediction everywhere
    (100, 10, 45, "contradicted"),      # < 1/2 everywhere
    (100, math.nan, 150, "inconclusive"),
    (100, 0, 150, "inconclusive"),
    (math.inf, 60, 150, "inconclusive"),
])
def test_within_factor_cases(predicted, low, high, verdict):
    assert within_factor(predicted, low, high) == verdict


@given(st.floats(1e-3, 1e6), st.floats(1e-3, 1e6), st.floats(1.0, 100.0), st.floats(1.01, 10.0))
def test_within_factor_agrees_with_checking_the_whole_interval(predicted, low, width, factor):
    """Brute force: the verdict is 'supported' iff every point of a fine grid over the interval is within
    the factor, 'contradicted' iff none is (up to the grid's resolution at the boundary)."""
    high = low * width
    grid = np.geomspace(low, high, 2001)
    inside = (predicted / grid >= 1 / factor) & (predicted / grid <= factor)
    verdict = within_factor(predicted, low, high, factor)
    if verdict == "supported":
        assert inside.all()
    elif verdict == "contradicted":
        assert not inside.any()
    else:  # the interval overlaps [predicted / factor, predicted x factor] without lying inside it
        lo_b, hi_b = predicted / factor, predicted * factor
        assert low <= hi_b * (1 + 1e-12) and high >= lo_b * (1 - 1e-12)
        assert high > hi_b * (1 - 1e-12) or low < lo_b * (1 + 1e-12)


def test_compare_critical_carries_the_measured_interval():
    curves = {name: PredictedCurve(np.array([16.0, 64.0]), np.array([100.0, 40.0]), b)
              for name, b in (("sgd", 100.0), ("adam", 500.0), ("kfac", 50.0))}
    prediction = Prediction("test", curves, pathlib.Path("prediction.json"))
    critical = pd.DataFrame([
        {"optimizer": "sgd", "b_noise": 80.0, "b_noise_low": 60.0, "b_noise_high": 120.0, "overhead": 64.0},
        {"optimizer": "adam", "b_noise": 100.0, "b_noise_low": 70.0, "b_noise_high": 200.0, "overhead": 128.0},
        {"optimizer": "momentum", "b_noise": 90.0, "b_noise_low": 50.0, "b_noise_high": 150.0, "overhead": 64.0},
    ])
    versus = compare_critical(prediction, critical).set_index("optimizer")
    assert list(versus.index) == ["sgd", "adam"]       # kfac not measured, momentum not predicted
    assert versus.loc["sgd", "ratio"] == pytest.approx(100 / 80)
    assert versus.loc["sgd", "ratio_low"] == pytest.approx(100 / 120)
    assert versus.loc["sgd", "ratio_high"] == pytest.approx(100 / 60)
    assert versus.loc["sgd", "within"] == "supported"
    assert versus.loc["adam", "ratio_low"] == pytest.approx(2.5)
    assert versus.loc["adam", "within"] == "contradicted"
