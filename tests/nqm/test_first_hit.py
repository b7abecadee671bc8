"""One run's first hit of the target (``batchlab.nqm.first_hit``) against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2

from batchlab.errors import InputError
from batchlab.nqm import Problem, sgd
from batchlab.nqm.first_hit import first_hits, tuned_first_hit
from batchlab.nqm.optimize import optimize


def _reported(values: np.ndarray, target: float, every: int) -> float:
    """What the training loop reports for one run whose loss at step t is ``values[t]``: the first
    evaluation (every ``every`` steps, from 0) meeting the target, then the first step meeting it in
    the stretch since the previous evaluation."""
    for t in range(0, values.size, every):
        if values[t] <= target:
            if t == 0:
                return 0.0
            return float(next(s for s in range(t - every + 1, t + 1) if values[s] <= target))
    return math.inf


def test_noiseless_single_direction_median_follows_the_chi_square_median():
    """Without gradient noise a single direction decays deterministically from a random start
    ``θ₀ ~ N(0, s0)``: ``risk_t = ½ h θ₀² (1 − αh)^{2t}`` is monotone in ``θ₀²``, so the median first hit
    is the first hit of the path started at the median ``θ₀² = s0 · χ²₁ median``."""
    h, s0, lr, target, every = 2.0, 3.0, 0.05, 1e-3, 3
    problem = Problem(h=[h], c=[0.0], s0=[s0], weights=[1.0])
    hits = first_hits(problem, sgd(lr), batch_size=8, target=target, eval_every=every, horizon=600, runs=4001, seed=3)
    t = np.arange(601)
    median_path = 0.5 * h * s0 * chi2.median(1) * (1 - lr * h) ** (2 * t)
    assert np.median(hits) == _reported(median_path, target, every)
    grid = first_hits(problem, sgd(lr), batch_size=8, target=target, eval_every=every, horizon=600, runs=4001,
                      seed=3, replay=False)  # the first evaluation meeting it, without the replay
    assert np.all(grid % every == 0) and np.all((grid - hits >= 0) & (grid - hits < every))
    # and each run's hit is that of its own start: runs with θ₀² below the median hit no later
    assert np.mean(hits <= np.median(hits)) >= 0.5


def test_bulk_entries_give_the_expected_risk_crossing_on_the_evaluation_grid():
    """Entries with weight != 1 stand for many directions and contribute their expected risk: a problem
    of such entries only has no randomness, and its first hit is the closed-form expected risk's
    crossing ``Σ w ½ h [(1−αh)^{2t} s0 + α² c/B (1 − (1−αh)^{2t}) / (1 − (1−αh)²)]`` as the loop reports it."""
    h, c, s0, w = np.array([1.0, 0.1]), np.array([0.5, 0.05]), np.array([1.0, 2.0]), np.array([3.0, 40.0])
    lr, b, every = 0.4, 16.0, 5
    problem = Problem(h=h, c=c, s0=s0, weights=w)
    t = np.arange(2001)[:, None]
    q = (1 - lr * h) ** 2
    risk = (w * 0.5 * h * (q**t * s0 + lr**2 * c / b * (1 - q**t) / (1 - q))).sum(axis=1)
    target = 0.5 * risk[-1] + 0.5 * risk[200]  # a target the mean reaches well inside the horizon
    hits = first_hits(problem, sgd(lr), batch_size=b, target=target, eval_every=every, horizon=2000, runs=7)
    assert np.all(hits == _reported(risk, target, every))


def test_a_target_below_the_noise_floor_is_hit_by_some_runs_and_never_by_the_mean():
    """Gradient noise makes one run's loss fluctuate around its expectation: with a target below the
    expected risk's steady state (never reached in expectation), a single direction's runs still dip
    below it (P(½ h θ² ≤ target) > 0 for a Gaussian θ), while an all-bulk copy never does."""
    h, c, lr, b = 1.0, 1.0, 0.5, 1.0
    floor = 0.5 * h * lr**2 * c / b / (1 - (1 - lr * h) ** 2)  # steady-state expected risk
    target = 0.5 * floor
    single = first_hits(Problem(h=[h], c=[c], s0=[1.0], weights=[1.0]), sgd(lr), batch_size=b, target=target, eval_every=1,
                        horizon=400, runs=500, seed=1)
    assert np.isfinite(single).mean() > 0.95
    bulk = first_hits(Problem(h=[h], c=[c], s0=[1.0], weights=[2.0]), sgd(lr), batch_size=b, target=2 * target,
                      eval_every=1, horizon=400, runs=5)
    assert np.all(np.isinf(bulk))


def test_tuned_first_hit_never_does_worse_than_the_expected_optimum_on_a_deterministic_problem():
    """On an all-bulk problem the first hit at multiplier 1 is the expected optimum's steps (the
    expected risk falls monotonically to the target); the scan can only keep or improve it."""
    problem = Problem(h=np.geomspace(1, 1e-3, 20), c=np.geomspace(1, 1e-3, 20), s0=1.0, weights=np.full(20, 5.0))
    target = 0.02 * problem.initial_risk()
    best = optimize(problem, "sgd", batch_size=32, target=target)
    found = tuned_first_hit(problem, "sgd", batch_size=32, target=target, eval_every=4, runs=3, optimum=best)
    assert found.expected_steps == best.steps
    assert found.steps <= best.steps
    assert found.learning_rate == pytest.approx(best.learning_rate * found.multiplier)
    assert found.hit_fraction == 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"eval_every": 0}, "eval_every"), ({"horizon": 2.5}, "horizon"), ({"runs": 1}, "runs"),
])
def test_bad_arguments_are_input_errors(kwargs, message):
    args = {"batch_size": 4, "target": 0.1, "eval_every": 1, "horizon": 10, "runs": 4} | kwargs
    with pytest.raises(InputError, match=message):
        first_hits(Problem(h=[1.0], c=[1.0], s0=[1.0], weights=[1.0]), sgd(0.1), **args)
    with pytest.raises(InputError, match="kind"):
        tuned_first_hit(Problem(h=[1.0], c=[1.0], s0=[1.0], weights=[1.0]), "adam", batch_size=4, target=0.1, eval_every=1)
