"""End-to-end studies on a real workload (digits-cnn, the quick preset cut down): local and Dask
(thread workers) executors agree, a SIGKILL loses nothing finished, CLI and demo.  Pruning is tested
in test_pruning.py (this tiny spec never prunes), process workers in test_dask_executor.py."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from rich.console import Console
from typer.testing import CliRunner

from batchlab.cli import _register, app
from batchlab.study import load_spec, run_study
from batchlab.study.design import make_design
from batchlab.study.executors import DaskExecutor
from batchlab.store.frames import trials_frame, tracks_frame
from batchlab.train import train
from batchlab.workloads.registry import get_workload

from .conftest import REPO, tiny_data, to_toml

pytestmark = pytest.mark.slow
_register()
COMPARED = ["status", "steps_to_target", "steps_run", "best_ema_decay", "final_error", "final_loss"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny.toml"
    path.write_text(to_toml(tiny_data()))
    return path


@pytest.fixture(scope="module")
def local_run(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("local")
    summary = run_study(load_spec(tiny), folder, source=tiny.read_text())
    return folder, summary


def _by_id(folder):
    return trials_frame(folder).set_index("id")


def test_local_study_runs_every_trial_and_records_what_train_returns(local_run, tiny):
    folder, summary = local_run
    spec = load_spec(tiny)
    assert summary.total == summary.ran == len(make_design(spec)) == 8 and summary.failed == 0
    trials = _by_id(folder)
    assert set(trials["status"]) <= {"reached", "budget", "diverged"} and (trials["status"] == "reached").any()
    tracks = tracks_frame(folder)
    for trial_id, row in trials.iterrows():  # a trial's result is its best track
        own = tracks[tracks["trial_id"] == trial_id]
        assert len(own) == (2 if row["optimizer"] == "momentum+ema" else 1)
        if row["status"] == "reached":
            assert row["steps_to_target"] == own["steps_to_target"].min()
            assert row["final_error"] <= row["target"]
    # an independent call of train() with one stored configuration gives the stored result
    config = json.loads(sqlite3.connect(folder / "study.sqlite").execute(
        "SELECT config FROM trials WHERE status = 'reached' AND optimizer = 'sgd' LIMIT 1").fetchone()[0])
    result = train(get_workload("digits-cnn"), "sgd", config["hyperparameters"], config["batch_size"],
                   config["max_steps"], config["seed"], eval_every=config["eval_every"])
    stored = trials[trials["seed"] == config["seed"]].iloc[0]
    assert (result.status, result.steps_to_target) == (stored["status"], stored["steps_to_target"])


def test_dask_local_cluster_gives_identical_results(local_run, tiny, tmp_path):
    from distributed import LocalCluster

    folder, _ = local_run
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                           dashboard_address=None)
    try:
        started = time.perf_counter()
        summary = run_study(load_spec(tiny), tmp_path, executor=DaskExecutor(scheduler=cluster.scheduler_address))
        elapsed = time.perf_counter() - started
    finally:
        cluster.close()
    assert summary.ran == 8 and summary.failed == 0, elapsed
    local, dask = _by_id(folder), _by_id(tmp_path)
    assert sorted(local.index) == sorted(dask.index)
    assert local.loc[dask.index, COMPARED].equals(dask[COMPARED])
    assert dask["worker"].str.startswith("tcp://127.0.0.1:").all()


def _finished(db_path):
    if not db_path.exists():
        return {}
    with sqlite3.connect(db_path, timeout=5) as db:
        try:
            rows = db.execute("SELECT id, status, steps_to_target, steps_run, final_metrics, finished_at FROM trials"
                              " WHERE status IN ('reached', 'budget', 'diverged', 'pruned')").fetchall()
        except sqlite3.OperationalError:  # schema not created yet
            return {}
    return {row[0]: row[1:] for row in rows}


def test_sigkill_mid_study_then_rerun_finishes_without_duplicates(tmp_path):
    spec_path = tmp_path / "kill.toml"
    spec_path.write_text(to_toml(tiny_data(name="kill", trials=6, optimizers={"sgd": {}})))
    folder = tmp_path / "study"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    log = open(tmp_path / "run.log", "w")
    process = subprocess.Popen([sys.executable, "-c", "from batchlab.cli import main; main()", "study", "run",
                                str(spec_path), "--out", str(folder)], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 240
    try:
        while len(_finished(folder / "study.sqlite")) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        log.close()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "run.log").read_text()[-2000:]
    before = _finished(folder / "study.sqlite")
    design = make_design(load_spec(spec_path))
    assert 3 <= len(before) < len(design), "the kill came too late to interrupt the study"
    summary = run_study(load_spec(spec_path), folder)
    assert summary.skipped == len(before) and summary.ran == len(design) - len(before)
    after = _finished(folder / "study.sqlite")
    assert len(after) == len(design) and set(after) == {t.id for t in design}
    assert all(after[trial_id] == values for trial_id, values in before.items())  # untouched, not rerun
    with sqlite3.connect(folder / "study.sqlite") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM trials").fetchone() == (len(design),) * 2
        assert db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT optimizer, batch_size, trial_index FROM trials)"
                          ).fetchone()[0] == len(design)


def test_cli_status_report_and_the_demo_hook(local_run, tiny, tmp_path, monkeypatch):
    folder, _ = local_run
    runner = CliRunner()
    status = runner.invoke(app, ["study", "status", str(folder)])
    assert status.exit_code == 0 and "momentum+ema" in status.stdout and "sgd" in status.stdout
    rerun = runner.invoke(app, ["study", "run", str(tiny), "--out", str(folder)])
    assert rerun.exit_code == 0 and "0 trials run (8 already finished)" in rerun.stdout
    report = runner.invoke(app, ["study", "report", str(folder), "--resamples", "100"])
    assert report.exit_code == 0, report.output
    page = (folder / "report" / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 3 and "http" not in page
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "quick.toml").write_text(tiny.read_text())
    monkeypatch.setenv("BATCHLAB_STUDIES", str(presets))
    from batchlab.cli.demo import run_quick_study

    console = Console(file=io.StringIO(), width=120)
    assert run_quick_study(folder, console) == folder / "report" / "report.html"
    assert "HTML report:" in console.file.getvalue()
