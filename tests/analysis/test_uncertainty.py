"""Seed-replicated cell estimates, their intervals and verdicts, against independent computations
and a simulator of noisy steps-to-target curves with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchlab.analysis.synthetic import SyntheticOptimizer, simulate_study
from batchlab.analysis.uncertainty import (Cell, cell_median, compare_intervals, critical_errors, critical_interval,
                                           estimate_cells, fit_b_noise, residual_pool)
from batchlab.critical import fit_hyperbola
from batchlab.study.protocol import Tuning

SIZES = np.array([16, 64, 256, 1024], dtype=np.float64)


@pytest.mark.parametrize("steps, expected", [
    ([3.0, 1.0, 2.0], 2.0), ([4.0, 1.0, 3.0, 2.0], 2.5), ([1.0, 2.0, math.inf], 2.0),
    ([1.0, math.inf, math.inf], math.inf), ([1.0, 2.0, math.inf, math.inf], math.inf),
    ([1.0, 2.0, 3.0, math.inf], 2.5), ([7.0], 7.0)])
def test_cell_median_counts_unreached_seeds_as_infinitely_many_steps(steps, expected):
    assert float(cell_median(np.array(steps))) == expected


@given(st.lists(st.floats(1.0, 1e6), min_size=1, max_size=9))
def test_cell_median_equals_numpy_median_on_reached_seeds(steps):
    assert float(cell_median(np.array(steps))) == pytest.approx(float(np.median(steps)), rel=1e-12)


def test_fit_b_noise_agrees_with_the_least_squares_hyperbola_fit():
    rng = np.random.default_rng(0)
    for _ in range(20):
        b_noise = math.exp(rng.uniform(math.log(2), math.log(5000)))
        steps = 300 * (1 + b_noise / SIZES) * np.exp(rng.normal(0, 0.2, SIZES.size))
        reference = fit_hyperbola(SIZES, steps).b_noise
        got = float(fit_b_noise(SIZES, np.log(steps)))
        if reference > 1000 * SIZES.max():  # noise made the curve steeper than 1/B: no plateau in sight
            assert got == pytest.approx(1000 * SIZES.max())
        else:
            assert got == pytest.approx(reference, rel=2e-3)
    exact = fit_b_noise(SIZES, np.log(100 * (1 + 37 / SIZES)))
    assert float(exact) == pytest.approx(37, rel=1e-3)


def test_fit_b_noise_leaves_out_unreached_points_and_many_curves_at_once():
    curves = np.log(np.array([[500 * (1 + 50 / b) for b in SIZES], [200 * (1 + 300 / b) for b in SIZES]]))
    curves[1, 3] = np.inf
    got = fit_b_noise(SIZES, curves)
    assert got[0] == pytest.approx(50, rel=1e-3)
    assert got[1] == pytest.approx(300, rel=1e-3)  # the three remaining points lie on the curve
    assert math.isnan(float(fit_b_noise(SIZES, np.array([np.log(5.0), np.inf, np.inf, np.inf]))))


def test_residual_pool_is_centred_and_scaled_per_candidate():
    cells = [[np.array([10.0, 20.0, 40.0]), np.array([5.0, math.inf, 5.0])], [np.array([8.0])]]
    pool = residual_pool(cells)
    logs = np.log([10.0, 20.0, 40.0])
    expected = np.concatenate([(logs - logs.mean()) * math.sqrt(1.5), [0.0, 0.0]])
    np.testing.assert_allclose(pool, expected, atol=1e-15)


def test_estimate_picks_the_candidate_with_the_smallest_median_and_brackets_it():
    rng = np.random.default_rng(1)
    cells = [[np.array([100.0, 140.0, 90.0]), np.array([80.0, 300.0, 95.0]), np.array([60.0, math.inf, math.inf])]]
    [cell] = estimate_cells(cells, rng=rng, resamples=500)
    assert (cell.chosen, cell.steps, cell.seeds) == (1, 95.0, 3)
    assert 0 < cell.low < cell.steps < cell.high < math.inf
    [empty] = estimate_cells([[np.array([math.inf, math.inf, 5.0])]], rng=rng, resamples=100)
    assert empty.steps == math.inf and empty.high == math.inf


def _simulated_study(rng, *, seeds, candidates, b_noises, sigma=0.3, search_bias=0.03):
    """Cells of a study whose truth is known: steps at the optimum ``200 (1 + B_noise/B)``; each
    candidate sits a little above it (imperfect search), seeds multiply by log-normal noise."""
    cells, truth = [], []
    for b_noise in b_noises:
        optimum = 200 * (1 + b_noise / SIZES)
        truth.append(optimum)
        for best in optimum:
            cells.append([best * (1 + abs(rng.normal(0, search_bias))) * np.exp(rng.normal(0, sigma, seeds))
                          for _ in range(candidates)])
    return cells, np.concatenate(truth)


def test_intervals_cover_the_known_answer_in_repeated_simulated_studies():
    """95% intervals for steps per cell and for B_noise contain the truth in >= 90% of studies."""
    rng = np.random.default_rng(2026)
    b_noises = (30.0, 100.0, 300.0)
    cell_hits, critical_hits, widths = [], [], []
    for _ in range(40):
        cells, truth = _simulated_study(rng, seeds=3, candidates=2, b_noises=b_noises)
        estimates = estimate_cells(cells, rng=rng, resamples=600)
        cell_hits += [e.low <= t <= e.high for e, t in zip(estimates, truth)]
        widths += [e.high / e.low for e in estimates]
        for k, b_noise in enumerate(b_noises):
            _, low, high = critical_interval(SIZES, estimates[4 * k:4 * k + 4])
            critical_hits.append(low <= b_noise <= high)
    assert np.mean(cell_hits) >= 0.90
    assert np.mean(critical_hits) >= 0.90
    # informative, not merely wide: with sigma = 0.3 and 3 seeds the median of 3 has a log-sd of
    # about 0.2, so an exact 95% interval spans about exp(4 x 0.2) = 2.2x
    assert np.median(widths) < 2.6


def test_critical_errors_are_the_fits_of_the_draws_against_the_fit_of_the_truths():
    """Each error is ``log`` of an independent least-squares hyperbola fit (``fit_hyperbola``) to one
    bootstrap draw of the cells over the fit to the bootstrap world's truths; and the interval's ends
    are the errors' pivotal quantiles."""
    rng = np.random.default_rng(5)
    cells, _ = _simulated_study(rng, seeds=5, candidates=2, b_noises=(100.0,))
    estimates = estimate_cells(cells, rng=rng, resamples=300)
    point, errors = critical_errors(SIZES, estimates)
    truth = fit_hyperbola(SIZES, np.exp([e.truth for e in estimates])).b_noise
    for r in (0, 7, 123):
        draw = fit_hyperbola(SIZES, np.exp([e.draws[r] for e in estimates])).b_noise
        assert errors[r] == pytest.approx(math.log(draw / truth), abs=0.02)
    _, low, high = critical_interval(SIZES, estimates)
    q_low, q_high = np.quantile(errors[np.isfinite(errors)], [0.025, 0.975], method="inverted_cdf")
    assert (low, high) == pytest.approx((point * math.exp(-q_high), point * math.exp(-q_low)), rel=1e-12)
    nan_point, nan_errors = critical_errors(SIZES[:2], estimates[:2])
    assert math.isnan(nan_point) and np.isnan(nan_errors).all() and nan_errors.size == 300


def test_search_replayed_intervals_cover_the_known_answer_in_repeated_simulated_studies():
    """The intervals real studies get (the search replayed, :class:`Cell` with trials): the whole
    explore / refine / replicate protocol on the synthetic model of noisy steps to target, 30 design
    seeds x 3 optimizers x 4 batch sizes; 95% intervals contain the known optimum in >= 90% of cells
    and of B_noise fits (measured at 200 seeds: 92% and 97%, ``benchmarks/bench_protocol.py``)."""
    tuning = Tuning(explore=6, rounds=2, refine=4, candidates=2, seeds=3)
    rng = np.random.default_rng(11)
    cell_hits, critical_hits = [], []
    for seed in range(30):
        for b_noise in (30.0, 100.0, 300.0):
            model = SyntheticOptimizer(b_noise=b_noise, sigma=0.25)
            cells = simulate_study(model, tuning, SIZES.astype(int).tolist(), budget=10_000, seed=seed)
            estimates = estimate_cells([c.as_cell() for c in cells], rng=rng, resamples=400)
            cell_hits += [e.low <= model.truth(c.batch_size) <= e.high for e, c in zip(estimates, cells)]
            _, low, high = critical_interval(SIZES, estimates)
            critical_hits.append(low <= b_noise <= high)
    assert np.mean(cell_hits) >= 0.90
    assert np.mean(critical_hits) >= 0.90


@pytest.mark.parametrize("resamples", [300, 1000, 2000, 4000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_cell_whose_search_reached_once_gets_the_same_interval_at_any_resample_count(resamples, seed):
    """One search trial of six reached the target and was replicated.  Half of the unconditioned
    m-out-of-n subsamples drop it, which put the interval on the knife edge of the "fewer than half
    finite" rule: (0, inf) or finite depending on the resample count (seen on calibration-digits,
    momentum B = 16).  Conditioned on keeping it, the interval is the candidate's seed noise, the same
    within Monte Carlo error at every count."""
    inf = math.inf
    cell = Cell(candidates=(np.array([155.0, 210.0, 289.0, 230.0, 180.0]),),
                trials=np.array([inf, inf, 200.0, inf, inf, inf]), origins=(2,))
    noise = np.random.default_rng(5).lognormal(0.0, 0.25, size=(6, 5))  # other cells: a 35-residual pool
    others = [Cell(candidates=(100.0 * row,), trials=np.array([100.0, 150.0, inf]), origins=(0,)) for row in noise]
    estimate = estimate_cells([cell, *others], rng=np.random.default_rng(seed), resamples=resamples)[0]
    assert estimate.steps == 210.0
    # the seed-noise-only interval of the median of 5 from the same pool, by direct simulation
    pool = residual_pool([c.candidates for c in (cell, *others)])
    rng = np.random.default_rng(99)
    errors = np.median(pool[rng.integers(0, pool.size, size=(200_000, 5))], axis=1) - np.median(pool)
    low, high = 210.0 * np.exp(-np.quantile(errors, [0.975, 0.025], method="inverted_cdf"))
    # the pool is discrete: a quantile near an atom may land on its neighbour (~15% apart here)
    assert estimate.low == pytest.approx(low, rel=0.2)
    assert estimate.high == pytest.approx(high, rel=0.2)


def test_the_minimum_over_single_seed_trials_would_not_cover():
    """The old answer (best of N single-seed trials, interval from resampling trials) is biased low:
    the same simulator puts the truth above its interval far more often than 5%."""
    rng = np.random.default_rng(7)
    misses = []
    for _ in range(200):
        steps = 400 * np.exp(rng.normal(0, 0.3, 6))
        draws = steps[rng.integers(0, 6, size=(500, 6))].min(axis=1)
        misses.append(400 > np.quantile(draws, 0.975, method="inverted_cdf"))
    assert np.mean(misses) > 0.3


@pytest.mark.parametrize("a, b, smaller, verdict", [
    ((10, 20), (30, 40), True, "supported"), ((30, 40), (10, 20), True, "contradicted"),
    ((10, 35), (30, 40), True, "inconclusive"), ((30, 40), (10, 20), False, "supported"),
    ((10, 20), (30, 40), False, "contradicted"), ((10, math.inf), (30, 40), True, "inconclusive"),
    ((math.nan, math.nan), (30, 40), True, "inconclusive")])
def test_verdicts_follow_the_intervals(a, b, smaller, verdict):
    assert compare_intervals(a, b, smaller=smaller) == verdict


def _frame_of(optimizer, cells):
    """A trials frame (the store's columns the replicated analysis reads) from synthetic cells."""
    rows = []
    for cell in cells:
        ids = [f"{optimizer}-{cell.batch_size}-s{i}" for i in range(cell.search.size)]
        for i, steps in enumerate(cell.search):
            pruned = np.isfinite(cell.pruned_at[i])
            rows.append({"id": ids[i], "optimizer": optimizer, "batch_size": cell.batch_size, "phase": "explore",
                         "round": 0, "trial_index": i, "origin": None, "hp_learning_rate": 0.1 * (i + 1),
                         "status": "reached" if np.isfinite(steps) else "pruned" if pruned else "budget",
                         "steps_to_target": steps if np.isfinite(steps) else np.nan,
                         "steps_run": cell.pruned_at[i] if pruned else steps if np.isfinite(steps) else 20_000})
        for k, (origin, seeds) in enumerate(zip(cell.origins, cell.candidates)):
            for j, steps in enumerate(seeds):
                rows.append({"id": f"{ids[origin]}-r{j}", "optimizer": optimizer, "batch_size": cell.batch_size,
                             "phase": "replicate", "round": 9, "trial_index": 3 * k + j, "origin": ids[origin],
                             "hp_learning_rate": 0.1 * (origin + 1),
                             "status": "reached" if np.isfinite(steps) else "budget",
                             "steps_to_target": steps if np.isfinite(steps) else np.nan})
    return pd.DataFrame(rows)


def test_a_replicated_study_frame_gives_the_estimates_of_its_cells_and_verdicts():
    from batchlab.analysis.replicated import replicated_cells, replicated_critical, verdicts
    from batchlab.analysis.synthetic import SyntheticOptimizer, simulate_study
    from batchlab.study.protocol import Tuning

    tuning = Tuning(explore=6, rounds=2, refine=4, candidates=2, seeds=3)
    fast = simulate_study(SyntheticOptimizer(s_min=20, b_noise=3000), tuning, (16, 64, 256, 1024), budget=20_000, seed=1)
    slow = simulate_study(SyntheticOptimizer(s_min=500, b_noise=10), tuning, (16, 64, 256, 1024), budget=20_000, seed=2)
    frame = pd.concat([_frame_of("fast", fast), _frame_of("slow", slow)], ignore_index=True)
    cells, estimates = replicated_cells(frame, resamples=500, seed=0)
    direct = estimate_cells([c.as_cell() for c in fast + slow], rng=np.random.default_rng(0), resamples=500)
    np.testing.assert_allclose(cells["steps"], [e.steps for e in direct])
    np.testing.assert_allclose(cells["steps_low"], [e.low for e in direct])
    chosen = [c.origins[e.chosen] for c, e in zip(fast + slow, direct)]
    np.testing.assert_allclose(cells["learning_rate"], [0.1 * (i + 1) for i in chosen])
    critical = replicated_critical(cells, estimates)
    table = verdicts(cells, critical)
    # fast needs ~5x fewer steps at B = 1024: supported; slow needs fewer at B = 16: contradicted
    at_1024 = table[table["batch_size"] == 1024].iloc[0]
    assert at_1024["verdict"] == "supported" and at_1024["claim"] == "fast needs fewer steps than slow at B = 1,024"
    assert table[table["batch_size"] == 16].iloc[0]["verdict"] == "contradicted"
    fast_row, slow_row = critical.iloc[0], critical.iloc[1]
    assert fast_row["b_noise_low"] <= 3000 <= fast_row["b_noise_high"]
    assert slow_row["b_noise_low"] <= 10 <= slow_row["b_noise_high"]
    claim = table[table["batch_size"].isna()].iloc[0]
    assert claim["claim"] == "fast's critical batch size is larger than slow's"
    assert claim["verdict"] == compare_intervals((fast_row["b_noise_low"], fast_row["b_noise_high"]),
                                                 (slow_row["b_noise_low"], slow_row["b_noise_high"]), smaller=False)


def test_every_entry_point_uses_the_same_resample_count():
    """``study report``, ``study compare``, :func:`analyze`, :func:`write_report` and ``api.load`` share
    one default, so one study's outputs give the same intervals and verdicts (a verdict whose intervals
    nearly touch could otherwise differ between the report and ``compare`` by Monte Carlo error alone)."""
    import inspect

    import typer

    from batchlab import api
    from batchlab.analysis import DEFAULT_RESAMPLES, analyze
    from batchlab.cli import study as cli_study
    from batchlab.report.html import write_report

    for function in (analyze, write_report, api.load):
        assert inspect.signature(function).parameters["resamples"].default == DEFAULT_RESAMPLES
    for command in (cli_study.report_command, cli_study.compare_command):
        option = inspect.signature(command).parameters["resamples"].default
        assert isinstance(option, typer.models.OptionInfo) and option.default == DEFAULT_RESAMPLES


def test_a_replicated_study_frame_hands_its_pruning_steps_to_the_replay():
    """A store's pruned trials (status ``pruned``, stopped at ``steps_run``) reach the replay as
    :attr:`Cell.pruned_at`: every treatment gives the intervals of the synthetic cells themselves."""
    from batchlab.analysis.replicated import replicated_cells

    tuning = Tuning(explore=6, rounds=2, refine=4, candidates=2, seeds=3)
    cells = simulate_study(SyntheticOptimizer(b_noise=100), tuning, (16, 64, 256, 1024), budget=20_000, seed=3)
    assert sum(np.isfinite(c.pruned_at).sum() for c in cells) >= 4  # the protocol pruned some trials
    frame = _frame_of("sgd", cells)
    for pruned in ("never", "hotdeck", "censored"):
        table, _ = replicated_cells(frame, resamples=300, seed=0, pruned=pruned)
        direct = estimate_cells([c.as_cell() for c in cells], rng=np.random.default_rng(0), resamples=300,
                                pruned=pruned)
        np.testing.assert_allclose(table["steps_low"], [e.low for e in direct])
        np.testing.assert_allclose(table["steps_high"], [e.high for e in direct])


def test_the_replay_imputes_a_pruned_trial_from_what_the_search_observed_beyond_its_bound():
    """Search: a replicated trial (centre log 40), trials at 100 and 300 steps, one that ran out of
    budget, and two pruned at step 45.  ``censored`` puts a pruned trial at max(its bound, the best
    centre) = 45 steps; ``hotdeck`` draws it from the trials that finished above 45 steps (100, 300
    and the unreached one, equally often); ``never`` leaves it unreachable."""
    from batchlab.analysis.uncertainty import _pruned_centres

    inf, nan = math.inf, math.nan
    cell = Cell(candidates=(np.array([38.0, 40.0, 42.0]),), trials=np.array([41.0, 100.0, 300.0, inf, inf, inf]),
                origins=(0,), pruned_at=np.array([nan, nan, nan, nan, 45.0, 45.0]))
    centre = np.log(cell.trials)
    centre[0] = np.mean(np.log([38.0, 40.0, 42.0]))
    finite = np.isfinite(centre)
    rng = np.random.default_rng(0)
    same, floor = _pruned_centres(cell, centre, finite, "never", 100, rng)
    assert np.array_equal(same, centre) and np.all(floor == -inf)
    censored, floor = _pruned_centres(cell, centre, finite, "censored", 100, rng)
    np.testing.assert_allclose(censored[4:], math.log(45.0))
    np.testing.assert_array_equal(censored[:4], centre[:4])
    np.testing.assert_allclose(floor[4:], math.log(45.0))
    imputed, floor = _pruned_centres(cell, centre, finite, "hotdeck", 30_000, rng)
    assert imputed.shape == (30_000, 6) and np.all(imputed[:, :4] == centre[:4])
    values, counts = np.unique(imputed[:, 4:], return_counts=True)
    np.testing.assert_allclose(values, [math.log(100.0), math.log(300.0), inf])
    np.testing.assert_allclose(counts / counts.sum(), 1 / 3, atol=0.01)


def test_the_replay_treatments_agree_without_pruning_and_order_their_lower_ends():
    """No pruned trial: every treatment is the default, draw for draw.  On synthetic studies with
    pruning the optimistic ``censored`` replay has the shortest lower ends and ``never`` the longest
    (``benchmarks/bench_protocol.py --pruned-replay``: coverage 91-97% never, 90-92% hotdeck,
    73-78% censored)."""
    tuning = Tuning(explore=6, rounds=2, refine=4, candidates=2, seeds=3)
    model = SyntheticOptimizer(b_noise=100)
    plain = simulate_study(model, tuning, (16, 64, 256, 1024), budget=20_000, seed=5, prune=False)
    runs = {p: estimate_cells([c.as_cell() for c in plain], rng=np.random.default_rng(1), resamples=300, pruned=p)
            for p in ("never", "hotdeck", "censored")}
    for p in ("hotdeck", "censored"):
        assert [(e.low, e.high) for e in runs[p]] == [(e.low, e.high) for e in runs["never"]]
    lower = {}
    for p in ("never", "hotdeck", "censored"):
        widths = []
        for seed in range(8):
            cells = simulate_study(model, tuning, (16, 64, 256, 1024), budget=20_000, seed=seed)
            estimates = estimate_cells([c.as_cell() for c in cells], rng=np.random.default_rng(seed), resamples=300,
                                       pruned=p)
            widths += [math.log(e.steps / e.low) for e in estimates if e.low > 0]
        lower[p] = np.median(widths)
    assert lower["never"] > lower["hotdeck"] > lower["censored"]
    with pytest.raises(ValueError, match="pruned must be one of"):
        estimate_cells([c.as_cell() for c in plain], rng=np.random.default_rng(0), pruned="dropped")
