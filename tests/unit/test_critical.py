"""Critical batch size estimators recover known parameters from synthetic curves."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchlab.critical import critical_batch_size, fit_hyperbola, overhead_critical_batch_size
from batchlab.errors import InputError

B = 2.0 ** np.arange(0, 21, 2)


@given(st.floats(10, 1e6), st.floats(1, 1e5))
def test_hyperbola_fit_recovers_parameters(s_min, b_noise):
    fit = fit_hyperbola(B, s_min * (1 + b_noise / B))
    assert fit.s_min == pytest.approx(s_min, rel=1e-6)
    assert fit.b_noise == pytest.approx(b_noise, rel=1e-6)
    assert fit.residual < 1e-8


def test_hyperbola_fit_with_noise_is_close():
    rng = np.random.default_rng(0)
    S = 500 * (1 + 3000 / B) * np.exp(rng.normal(0, 0.02, B.size))
    fit = fit_hyperbola(B, S)
    assert fit.b_noise == pytest.approx(3000, rel=0.1)
    assert 0.005 < fit.residual < 0.05


def test_overhead_estimator_on_exact_hyperbola():
    """For S = S_min(1 + b/B): S(B)·B / (S(B0)·B0) = (B + b)/(B0 + b) ≤ 1.2  ⇔  B ≤ 1.2 B0 + 0.2 b."""
    b = 4096.0
    S = 100 * (1 + b / B)
    last, crossing = overhead_critical_batch_size(B, S, 0.2)
    exact = 1.2 * B[0] + 0.2 * b
    assert last == B[B <= exact].max()
    assert crossing == pytest.approx(exact, rel=0.3)  # log–log interpolation between grid points


def test_perfect_scaling_everywhere_and_unreachable_points():
    S = 1e6 / B
    assert overhead_critical_batch_size(B, S)[0] == B[-1]
    S2 = S.copy()
    S2[-1] = math.inf
    crit = critical_batch_size(B, S2)
    assert crit.overhead == B[-2]


def test_bad_input():
    with pytest.raises(InputError):
        fit_hyperbola([1, 2], [1])
    with pytest.raises(InputError):
        overhead_critical_batch_size([0, 2], [1, 1])
    assert fit_hyperbola([4], [10]) is None
