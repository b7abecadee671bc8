"""Analysis, report and export from synthetic store contents, checked against independent numbers."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from batchlab.analysis import analyze, bootstrap_minimum
from batchlab.critical import critical_batch_size
from batchlab.errors import InputError
from batchlab.report import write_report
from batchlab.study import parse_spec
from batchlab.study.design import make_design
from batchlab.store.frames import export_study, trials_frame
from batchlab.store import TrackOutcome, TrialOutcome, open_store

from .conftest import REPO, tiny_data

SIZES = [16, 64, 256, 1024]
# per trial index: a multiplier of the cell's ideal steps (None: did not reach the target)
FACTORS = {"sgd": [1.4, 1.0, None, 1.2, 2.0], "momentum+ema": [1.1, None, 1.0, 1.3, 1.5]}
B_NOISE = {"sgd": 64.0, "momentum+ema": 256.0}


def _ideal(optimizer, size):
    return 500.0 * (1.0 + B_NOISE[optimizer] / size)


def _steps(trial):
    factor = FACTORS[trial.optimizer][trial.index]
    return None if factor is None else int(round(_ideal(trial.optimizer, trial.batch_size) * factor))


def _outcome(trial):
    steps = _steps(trial)
    status = "reached" if steps is not None else ("budget" if trial.index != 2 else "diverged")
    curve = ((0, {"error": 0.9, "loss": 2.3}), (steps or 100, {"error": 0.02, "loss": 0.1}))
    if trial.config["ema_decays"]:  # decay 0.9 is the winner, 0.99 needs 10% more steps
        tracks = tuple(TrackOutcome(f"ema={d:g}", d, status, None if steps is None else int(steps * m),
                                    {"error": 0.02}, curve) for d, m in ((0.9, 1.0), (0.99, 1.1)))
        best_decay = 0.9
    else:
        tracks = (TrackOutcome("main", None, status, steps, {"error": 0.02}, curve),)
        best_decay = None
    return TrialOutcome(trial.id, status, steps, steps or trial.max_steps, None, best_decay, {"error": 0.02},
                        1.0, 0.1, "host", "local:1", tracks)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    spec = parse_spec(tiny_data(batch_sizes=SIZES, trials=5, optimizers={
        "sgd": {}, "momentum+ema": {"ema_decays": [0.9, 0.99]}}))
    trials = make_design(spec)
    with open_store(folder, create=True) as store:
        store.initialize(spec.to_dict(), "# synthetic", trials)
        for trial in trials:
            store.record(_outcome(trial))
        store.record(_outcome(trials[0]))  # recording again replaces, never duplicates
    return folder, trials


def test_best_steps_share_and_winner_match_the_synthetic_numbers(synthetic):
    folder, trials = synthetic
    result = analyze(folder, resamples=500)
    assert len(result.trials) == len(trials) == result.trials["id"].nunique()
    for row in result.best.itertuples():
        cell = [t for t in trials if (t.optimizer, t.batch_size) == (row.optimizer, row.batch_size)]
        reached = {t.id: _steps(t) for t in cell if _steps(t) is not None}
        winner = min(reached, key=reached.get)
        assert row.best_steps == reached[winner] and row.best_trial == winner
        assert row.share_reached == pytest.approx(len(reached) / len(cell))
        assert row.steps_low <= row.best_steps <= row.steps_high  # interval contains the point estimate
        assert row.learning_rate == next(t for t in cell if t.id == winner).hyperparameters["learning_rate"]
    ema_rows = result.best[result.best["optimizer"] == "momentum+ema"]
    assert (ema_rows["best_ema_decay"] == 0.9).all()
    momentum = ema_rows.iloc[0]
    assert momentum.effective_learning_rate == pytest.approx(momentum.learning_rate / (1 - momentum.hp_momentum))


def test_critical_batch_size_from_the_store_equals_batchlab_critical(synthetic):
    folder, trials = synthetic
    result = analyze(folder, resamples=50, critical_resamples=100)
    for row in result.critical.itertuples():
        best = [min(s for t in trials if (t.optimizer, t.batch_size) == (row.optimizer, b)
                    and (s := _steps(t)) is not None) for b in SIZES]
        expected = critical_batch_size(SIZES, best, 0.2)
        assert row.b_noise == pytest.approx(expected.fit.b_noise, rel=1e-9)
        assert row.overhead == expected.overhead
        assert row.overhead_interpolated == pytest.approx(expected.overhead_interpolated)
        assert row.b_noise_low <= row.b_noise_high and row.overhead_low <= row.overhead_high
    by_name = result.critical.set_index("optimizer")
    assert by_name.loc["sgd", "b_noise"] < by_name.loc["momentum+ema", "b_noise"]


def test_bootstrap_minimum_follows_its_exact_distribution():
    values = np.array([10.0, 20.0, 30.0, np.inf])
    draws = bootstrap_minimum(values, resamples=40_000, rng=np.random.default_rng(1))
    n = values.size
    for k, value in enumerate(values):  # P(min > v_k) = ((n - k - 1) / n)^n
        assert np.mean(draws > value) == pytest.approx(((n - k - 1) / n) ** n, abs=0.01)


def test_ema_table_keeps_every_decay(synthetic):
    folder, _ = synthetic
    ema = analyze(folder, resamples=10, critical_resamples=5).ema
    assert set(ema["ema_decay"]) == {0.9, 0.99}
    wide = ema.pivot_table(index="batch_size", columns="ema_decay", values="best_steps")
    assert (wide[0.99] >= wide[0.9]).all()


def test_report_embeds_every_figure_and_table_and_needs_no_network(synthetic):
    folder, _ = synthetic
    prediction = {"source": "test", "optimizers": {
        "sgd": {"batch_sizes": SIZES, "steps": [_ideal("sgd", b) * 0.9 for b in SIZES], "critical_batch_size": 128.0},
        "momentum+ema": {"batch_sizes": SIZES, "steps": [None, 900.0, 700.0, 600.0]}}}
    (folder / "calibration").mkdir(exist_ok=True)
    (folder / "calibration" / "prediction.json").write_text(json.dumps(prediction))
    files = write_report(folder, resamples=50, critical_resamples=20)
    page = files.html.read_text()
    images = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", page)
    assert {name for name, _ in images} == {"steps_vs_batch_size", "learning_rate_vs_batch_size", "ema"}
    assert {p.stem for p in files.figures} == {name for name, _ in images}
    for _, data in images:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG") and b"http" not in png
    for stem in ("status", "scaling", "critical_batch_size", "hyperparameters", "ema_decays", "compute", "prediction"):
        assert f"id='table-{stem}'" in page, stem
    assert not re.search(r"https?:", page) and "<script" not in page and "<link" not in page
    analysis = analyze(folder, resamples=10, critical_resamples=5)
    versus = analysis.prediction_vs_measured.set_index("optimizer")
    measured = analysis.critical.set_index("optimizer")["b_noise"]
    assert versus.loc["sgd", "ratio"] == pytest.approx(128.0 / measured["sgd"])
    fit = critical_batch_size(SIZES, [np.nan, 900.0, 700.0, 600.0]).fit
    assert versus.loc["momentum+ema", "predicted"] == pytest.approx(fit.b_noise)
    (folder / "calibration" / "prediction.json").write_text('{"optimizers": {"sgd": {"steps": [1]}}}')
    with pytest.raises(InputError, match="batch_sizes"):
        analyze(folder, resamples=10, critical_resamples=5)
    (folder / "calibration" / "prediction.json").unlink()


def test_export_writes_csv_and_parquet_that_read_back(synthetic, tmp_path):
    folder, trials = synthetic
    files = export_study(folder, tmp_path)
    assert sorted(p.name for p in files) == sorted(f"{t}.{f}" for t in ("trials", "tracks", "curves")
                                                   for f in ("csv", "parquet"))
    csv, parquet = pd.read_csv(tmp_path / "trials.csv"), pd.read_parquet(tmp_path / "trials.parquet")
    assert len(csv) == len(parquet) == len(trials)
    assert parquet["hp_learning_rate"].tolist() == trials_frame(folder)["hp_learning_rate"].tolist()
    curves = pd.read_parquet(tmp_path / "curves.parquet")
    assert set(curves.columns) == {"trial_id", "track", "step", "metric", "value"}
    tracks = pd.read_parquet(tmp_path / "tracks.parquet")
    assert len(tracks) == sum(2 if t.config["ema_decays"] else 1 for t in trials)


def test_store_analysis_and_report_layers_never_import_jax():
    code = ("import sys; import batchlab.store, batchlab.store.frames, batchlab.analysis, batchlab.report, "
            "batchlab.report.console, batchlab.plots.study_figures; "
            "bad = [m for m in sys.modules if m == 'jax' or m.startswith('jax.')]; print(bad); assert not bad")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120, capture_output=True)


def test_store_is_wal_and_ids_are_unique(synthetic):
    folder, trials = synthetic
    with open_store(folder) as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        ids = [r[0] for r in store._db.execute("SELECT id FROM trials")]
    assert len(ids) == len(set(ids)) == len(trials)
    assert trials_frame(folder).query("status != 'reached'")["steps_to_target"].isna().all()


def test_a_study_in_progress_reads_and_analyses(tmp_path):
    spec = parse_spec(tiny_data(batch_sizes=SIZES, trials=3, optimizers={"sgd": {}}))
    trials = make_design(spec)
    with open_store(tmp_path, create=True) as store:
        store.initialize(spec.to_dict(), "", trials)
        store.mark_running(trials[1].id, "host")
        for trial in trials[::3]:
            store.record(_outcome(trial))
    frame = trials_frame(tmp_path)
    assert frame["status"].value_counts().to_dict() == {"pending": 7, "reached": 4, "running": 1}
    result = analyze(tmp_path, resamples=20, critical_resamples=10)
    assert result.best["finished"].sum() == 4 and result.best["trials"].sum() == 12
    from batchlab.report.console import status_table

    _, table = status_table(tmp_path)  # no runner holds the folder: the running trial was interrupted
    headers = [c.header for c in table.columns]
    assert table.row_count == len(SIZES) and "interrupted" in headers and "running" not in headers


def test_b_noise_needs_three_reached_batch_sizes():
    from batchlab.analysis import critical_batch_sizes

    rows = [{"optimizer": "sgd", "batch_size": b, "status": s, "steps_to_target": v}
            for b, s, v in ((16, "reached", 1641.0), (64, "reached", 404.0), (256, "budget", math.nan))]
    critical = critical_batch_sizes(pd.DataFrame(rows), resamples=20).iloc[0]
    assert critical["points"] == 2 and math.isnan(critical["b_noise"]) and math.isnan(critical["b_noise_high"])
    assert critical["overhead"] == 64  # the overhead estimator still applies: 404 <= 1.2 * 1641 / 4


def test_a_study_with_nothing_finished_still_reports(tmp_path):
    spec = parse_spec(tiny_data())
    with open_store(tmp_path, create=True) as store:
        store.initialize(spec.to_dict(), "", make_design(spec))
    page = write_report(tmp_path, resamples=10, critical_resamples=5).html.read_text()
    assert "no trial has reached" not in page  # the note is drawn inside the PNG, not the HTML
    assert page.count("data:image/png;base64,") == 3 and "id='table-status'" in page
