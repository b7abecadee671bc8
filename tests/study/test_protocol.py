"""The tuning protocol's pure pieces, and the whole protocol on synthetic studies with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchlab.analysis.synthetic import SyntheticOptimizer, simulate_study
from batchlab.analysis.uncertainty import critical_interval, estimate_cells
from batchlab.errors import InputError
from batchlab.study.protocol import (Result, Tuning, bound_for, distinct_centres, explore_round, fallback_candidates,
                                     refine_round, refine_units, replicate_candidates, replicate_round, warm_centre)


def test_explore_rounds_split_the_trials_evenly_and_refine_comes_last():
    tuning = Tuning(explore=6, rounds=2)
    assert [explore_round(tuning, i) for i in range(6)] == [0, 0, 0, 1, 1, 1]
    assert [explore_round(Tuning(explore=7, rounds=3), i) for i in range(7)] == [0, 0, 0, 1, 1, 2, 2]
    assert refine_round(tuning) == 2


def test_pruning_bounds_come_from_earlier_rounds_only():
    results = [Result((0.1,), 50, 0, 0), Result((0.2,), math.inf, 0, 1), Result((0.3,), 20, 1, 0)]
    assert bound_for(results, 0) is None
    assert bound_for(results, 1) == 50
    assert bound_for(results, 2) == 20


def test_pruning_slack_multiplies_the_incumbent_and_rounds_up():
    results = [Result((0.1,), 25, 0, 0), Result((0.3,), 40, 0, 1)]
    assert bound_for(results, 1, 1.0) == 25
    assert bound_for(results, 1, 1.5) == 38      # ceil(37.5)
    assert bound_for(results, 1, 2.0) == 50
    assert bound_for(results, 0, 2.0) is None
    with pytest.raises(InputError, match="prune_slack"):
        Tuning(prune_slack=0.9)


def test_a_slack_keeps_the_stored_spec_without_it_and_the_identity_with_it():
    from batchlab.study.spec import parse_spec
    base = {"name": "s", "workload": "nqm-sampled", "batch_sizes": [16], "seed": 0,
            "budget": {"steps": 50}, "optimizers": {"sgd": {}}, "tuning": {"explore": 4}}
    plain = parse_spec(base)
    slack = parse_spec({**base, "tuning": {"explore": 4, "prune_slack": 1.5}})
    assert "prune_slack" not in plain.to_dict()["tuning"]          # stored form as before the key
    assert slack.to_dict()["tuning"]["prune_slack"] == 1.5
    assert slack.identity() == plain.identity()                      # resumable with another slack
    assert slack.protocol.prune_slack == 1.5


def test_fallback_replicates_the_next_configurations_only_when_every_candidate_failed():
    search = [Result((0.5,), 30, 0, 0, "a"), Result((0.1,), 20, 1, 1, "b"), Result((0.1,), 20, 2, 0, "c"),
              Result((0.7,), math.inf, 0, 2, "d"), Result((0.9,), 7, 0, 3, "e"), Result((0.3,), 40, 0, 4, "f")]
    inf = math.inf
    # e and b were replicated: e diverged on 3 of 4 seeds, b on 2 of 4 (median = mean of 20 and inf)
    failed = {"e": [7, inf, inf, inf], "b": [20, 21, inf, inf]}
    chosen = fallback_candidates(search, failed, 2)
    # the next best distinct configurations: not c (b's configuration), not d (never reached)
    assert [r.key for r in chosen] == ["a", "f"]
    assert [r.key for r in fallback_candidates(search, failed, 5)] == ["a", "f"]
    # one candidate that reached on at least half its seeds (3 of 5: median 24): no fallback
    assert fallback_candidates(search, {"e": [inf] * 4, "b": [20, 24, 30, inf, inf]}, 2) == []
    assert fallback_candidates(search, {}, 2) == []                        # nothing replicated yet
    # every distinct reached configuration failed: nothing is left to replicate
    assert [r.key for r in fallback_candidates(search, failed | {"a": [inf] * 3, "f": [inf] * 3}, 2)] == []
    tuning = Tuning(explore=6, rounds=2, refine=4, candidates=2, seeds=3, fallback=2)
    assert [replicate_round(tuning, k) for k in range(3)] == [3, 4, 5]
    assert tuning.trials_per_cell() == 6 + 4 + 2 * 3 * 3
    with pytest.raises(InputError, match="tuning.fallback needs tuning.candidates"):
        Tuning(fallback=1)
    with pytest.raises(InputError, match=r"tuning.fallback must be in \[0, 10\], got 11"):
        Tuning(candidates=1, fallback=11)


def test_candidates_are_the_best_distinct_reached_configurations():
    results = [Result((0.5,), 30, 0, 0), Result((0.1,), 20, 1, 1), Result((0.1,), 20, 2, 0),
               Result((0.7,), math.inf, 0, 2), Result((0.9,), 20, 0, 3)]
    chosen = replicate_candidates(results, 2)
    assert [(c.unit, c.round, c.index) for c in chosen] == [((0.9,), 0, 3), ((0.1,), 1, 1)]
    assert len(replicate_candidates(results, 10)) == 3  # only three distinct reached configurations


def test_warm_centre_takes_the_middle_of_the_neighbours_learning_rate_ranges():
    span = math.log(1000.0)  # learning rate range [1e-3, 1]
    sizes = [16, 64, 256]
    u = {16: 0.2, 256: 0.5}
    bests = [(u[16], 0.3), None, (u[256], 0.9)]
    centre = warm_centre(sizes, bests, 1, 0, span)
    # from 16: [u16, u16 + log 4 / span]; from 256: [u256 - log 4 / span, u256]; these overlap
    low, high = max(u[16], u[256] - math.log(4) / span), min(u[16] + math.log(4) / span, u[256])
    assert centre[0] == pytest.approx(0.5 * (low + high))
    assert centre[1] == 0.3  # the nearest neighbour's other coordinates (ties: the smaller batch size)
    assert warm_centre(sizes, [None, None, None], 1, 0, span) is None


def test_refinement_points_stay_in_their_boxes_and_in_the_unit_cube():
    points = np.random.default_rng(0).random((10, 2))
    units = refine_units([(0.05, 0.5), (0.9, 0.9)], points, 0.1)
    assert np.all(units >= 0) and np.all(units < 1)
    assert np.all(np.abs(units[0::2] - [0.05, 0.5]) <= 0.1 + 1e-12)
    assert np.all(np.abs(units[1::2] - [0.9, 0.9]) <= 0.1 + 1e-12)
    assert distinct_centres([(0.5, 0.5), None, (0.52, 0.5), (0.8, 0.5)], 0.1) == [(0.5, 0.5), (0.8, 0.5)]


@pytest.mark.parametrize("kwargs, message", [
    ({"explore": 0}, "tuning.explore"), ({"rounds": 7}, "tuning.rounds"), ({"refine": -1}, "tuning.refine"),
    ({"refine_width": 0.0}, "tuning.refine_width"), ({"candidates": 2, "seeds": 1}, "tuning.seeds"),
    ({"candidates": -1}, "tuning.candidates")])
def test_bad_tuning_budgets_are_one_line_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        Tuning(**kwargs)


def test_the_protocol_is_deterministic_in_its_seed():
    tuning = Tuning(explore=6, rounds=2, refine=4, candidates=2, seeds=3)
    a = simulate_study(SyntheticOptimizer(), tuning, (16, 64, 256), budget=10_000, seed=3)
    b = simulate_study(SyntheticOptimizer(), tuning, (16, 64, 256), budget=10_000, seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.search, y.search)
        assert [list(c) for c in x.candidates] == [list(c) for c in y.candidates]
        assert x.steps_run == y.steps_run


def test_protocol_intervals_cover_the_known_answer_in_repeated_synthetic_studies():
    """The whole protocol (explore, refine, replicate) on synthetic studies whose answer is known:
    the 95% intervals of steps per cell and of B_noise contain the truth in >= 90% of studies."""
    tuning = Tuning(explore=6, rounds=2, refine=4, candidates=2, seeds=3)
    sizes = (16, 64, 256, 1024)
    rng = np.random.default_rng(0)
    cell_hits, critical_hits = [], []
    for seed in range(15):
        models = [SyntheticOptimizer(b_noise=b) for b in (30.0, 100.0, 300.0)]
        runs = [simulate_study(m, tuning, sizes, budget=10_000, seed=1000 * seed + k) for k, m in enumerate(models)]
        estimates = estimate_cells([c.as_cell() for run in runs for c in run], rng=rng, resamples=400)
        for k, (model, run) in enumerate(zip(models, runs)):
            mine = estimates[4 * k:4 * k + 4]
            cell_hits += [e.low <= model.truth(c.batch_size) <= e.high for e, c in zip(mine, run)]
            _, low, high = critical_interval(sizes, mine)
            critical_hits.append(low <= model.b_noise <= high)
    assert np.mean(cell_hits) >= 0.90
    assert np.mean(critical_hits) >= 0.90
