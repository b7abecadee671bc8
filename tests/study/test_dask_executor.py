"""The Dask executor with process workers, on loopback only: ``--workers N`` stores what the local
executor stores; a worker killed in the middle of a trial costs a rerun, never a duplicate or a crash;
a malformed or unreachable scheduler is a one-line error (exit 2), quickly."""

from __future__ import annotations

import json
import logging
import os
import sqlite3

import pandas as pd
import pytest
from typer.testing import CliRunner

from batchlab.cli import _register, app
from batchlab.study import load_spec, run_study
from batchlab.study.executors import DaskExecutor
from batchlab.store.frames import trials_frame
from batchlab.store import FINISHED

from .conftest import nqm_data, to_toml

pytestmark = pytest.mark.slow
_register()
COMPARED = ["status", "steps_to_target", "steps_run", "final_relative_risk", "final_risk"]
TRIALS = 6  # one cell (one compiled step per process), 6 trials


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "dask.toml"
    path.write_text(to_toml(nqm_data(name="dask", batch_sizes=[64], trials=TRIALS)))
    return path


@pytest.fixture(scope="module")
def local(spec_path, tmp_path_factory):
    """The reference: the same spec run by the local executor (in this process)."""
    folder = tmp_path_factory.mktemp("local")
    summary = run_study(load_spec(spec_path), folder)
    assert summary.ran == TRIALS and summary.failed == 0
    frame = trials_frame(folder).set_index("id")
    assert (frame["status"] == "reached").sum() >= 3  # the comparison is about real results
    return frame


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of 2 worker processes (nannies restart a killed one), shared by the kill tests,
    with a client of its own to install the killer on the workers."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None, resources={"trial": 1}, silence_logs=logging.CRITICAL) as cluster:
        with Client(cluster) as client:
            yield cluster, client


def _kill_after_training(marker: str):
    """A function for ``client.run``: on each worker, wrap ``batchlab.train.train`` so that the first
    trial of the whole cluster to claim ``marker`` trains, writes its worker and trial into ``marker``,
    and then SIGKILLs its own worker process before returning the result.  (A local function, so
    that Dask ships it by value and the workers never import this module.)"""

    def install() -> None:
        import functools
        import signal

        import batchlab.train as module
        from distributed import get_worker

        real = getattr(module.train, "__wrapped__", module.train)  # a previous test's wrapper

        @functools.wraps(real)
        def train(*args, **kwargs):
            result = real(*args, **kwargs)
            try:
                handle = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return result
            with os.fdopen(handle, "w") as file:
                json.dump({"worker": get_worker().address, "batch_size": args[3], "seed": args[5]}, file)
            os.kill(os.getpid(), signal.SIGKILL)

        module.train = train

    return install


def _stored(folder):
    with sqlite3.connect(folder / "study.sqlite") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM trials").fetchone() == (TRIALS, TRIALS)
    return trials_frame(folder).set_index("id")


def _killed_trial(frame, marker):
    killed = json.loads(marker.read_text())
    row = frame[(frame["batch_size"] == killed["batch_size"]) & (frame["seed"] == killed["seed"])]
    assert len(row) == 1
    return row.index[0], killed["worker"]


def test_workers_option_stores_the_local_executors_results(local, spec_path, tmp_path):
    result = CliRunner().invoke(app, ["study", "run", str(spec_path), "--workers", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{TRIALS} trials run (0 already finished)" in result.stdout
    frame = _stored(tmp_path)
    assert sorted(frame.index) == sorted(local.index)
    assert local.loc[frame.index, COMPARED].equals(frame[COMPARED])
    assert frame["worker"].str.fullmatch(r"tcp://127\.0\.0\.1:\d+").all()
    assert frame["worker"].nunique() == 2  # one trial per worker in flight: both got the first two
    assert not set(frame["worker"]) & set(local["worker"])


def test_a_worker_killed_mid_trial_is_replaced_and_the_trial_rerun(cluster, local, spec_path, tmp_path):
    cluster, client = cluster
    marker = tmp_path / "killed.json"
    client.run(_kill_after_training(str(marker)))
    executor = DaskExecutor(scheduler=cluster.scheduler_address)
    summary = run_study(load_spec(spec_path), tmp_path / "study", executor=executor)
    assert (summary.ran, summary.failed, summary.skipped) == (TRIALS, 0, 0)
    frame = _stored(tmp_path / "study")
    trial_id, dead = _killed_trial(frame, marker)
    assert local.loc[frame.index, COMPARED].equals(frame[COMPARED])
    assert frame["status"].isin(FINISHED).all() and (frame["attempts"] == 1).all()  # Dask reran it, not the runner
    assert dead not in set(frame["worker"])  # the killed process returned nothing
    assert frame.loc[trial_id, "worker"].startswith("tcp://127.0.0.1:")


def test_a_killed_worker_beyond_allowed_failures_is_a_failed_trial_the_next_run_reruns(
        cluster, local, spec_path, tmp_path, monkeypatch):
    cluster, client = cluster
    monkeypatch.setattr(cluster.scheduler, "allowed_failures", 0)  # the first death raises KilledWorker
    marker = tmp_path / "killed.json"
    client.run(_kill_after_training(str(marker)))
    folder = tmp_path / "study"
    first = run_study(load_spec(spec_path), folder, executor=DaskExecutor(scheduler=cluster.scheduler_address))
    # the run ends with the round that failed (later rounds are designed and bounded from complete results)
    first_round = TRIALS // min(3, TRIALS)
    assert (first.ran, first.failed, first.counts["failed"]) == (first_round, 1, 1)
    frame = _stored(folder)
    trial_id, _ = _killed_trial(frame, marker)
    assert frame.loc[trial_id, "status"] == "failed" and frame.loc[trial_id, "error"].startswith("KilledWorker: ")
    others = frame.drop(index=trial_id)
    done = others[others["status"].isin(FINISHED)]
    assert len(done) == first_round - 1 and (others.drop(index=done.index)["status"] == "pending").all()
    # (values, not dtypes: the pending rows leave this frame's metric columns with missing values)
    pd.testing.assert_frame_equal(local.loc[done.index, COMPARED], done[COMPARED], check_dtype=False)

    second = run_study(load_spec(spec_path), folder, executor=DaskExecutor(scheduler=cluster.scheduler_address))
    assert (second.skipped, second.ran, second.failed) == (first_round - 1, TRIALS - first_round + 1, 0)
    frame = _stored(folder)
    assert frame["status"].isin(FINISHED).all()
    assert local.loc[frame.index, COMPARED].equals(frame[COMPARED])
    assert frame.loc[trial_id, "attempts"] == 2 and (frame.drop(index=trial_id)["attempts"] == 1).all()


USER_OPTIMIZER = """
import optax
from batchlab.optim import gradient_spec
from batchlab.optim.hyperparameters import learning_rate

def transform(hyper):
    return optax.scale(-hyper["learning_rate"])

plain = gradient_spec("plain", (learning_rate(0.1, (0.05, 3.0)),), transform, "plain SGD, from a user file")
"""


def test_a_user_optimizer_file_runs_on_the_workers_and_stores_what_the_local_executor_stores(cluster, tmp_path):
    """Bring-your-own code on a cluster: the spec names ``my_opt.py:plain`` relative to its own folder,
    which is on nobody's ``sys.path``; the worker processes resolve the same file (the study records its
    absolute path and code digest) and store the results the local executor stores."""
    cluster, _ = cluster
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_opt.py").write_text(USER_OPTIMIZER)
    spec_path = code / "user.toml"
    spec_path.write_text(to_toml(nqm_data(name="user", batch_sizes=[64], trials=4,
                                          optimizers={"my_opt.py:plain": {}})))
    spec = load_spec(spec_path)
    assert spec.optimizers[0].name == f"{code / 'my_opt.py'}:plain"
    run_study(spec, tmp_path / "local")
    local = trials_frame(tmp_path / "local").set_index("id")
    assert (local["status"] == "reached").sum() >= 2 and (local["optimizer"] == spec.optimizers[0].name).all()
    summary = run_study(spec, tmp_path / "dask", executor=DaskExecutor(scheduler=cluster.scheduler_address))
    assert (summary.ran, summary.failed) == (4, 0)
    remote = trials_frame(tmp_path / "dask").set_index("id")
    assert sorted(remote.index) == sorted(local.index)
    assert local.loc[remote.index, COMPARED].equals(remote[COMPARED])
    assert remote["worker"].str.fullmatch(r"tcp://127\.0\.0\.1:\d+").all()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--scheduler", "notanaddress"],
     "invalid Dask scheduler address 'notanaddress' (missing port number in address 'notanaddress'); "
     "expected e.g. tcp://10.0.0.5:8786"),
    (["--scheduler", "tcp://127.0.0.1:notaport"],
     "invalid Dask scheduler address 'tcp://127.0.0.1:notaport' (invalid literal for int() with base 10: 'notaport');"
     " expected e.g. tcp://10.0.0.5:8786"),
    (["--scheduler", "tcp://127.0.0.1:0"],
     "invalid Dask scheduler address 'tcp://127.0.0.1:0' (port 0 is not in 1..65535)"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"],
     "--workers starts a local cluster; it cannot be combined with --scheduler"),
    (["--workers", "0"], "--workers must be in [1, 256] (processes on this machine; for more, start a cluster and "
                         "pass --scheduler), got 0"),
    (["--workers", "4294967296"], "--workers must be in [1, 256] (processes on this machine; for more, start a "
                                  "cluster and pass --scheduler), got 4294967296"),
])
def test_a_malformed_scheduler_is_a_one_line_error(arguments, message, tmp_path):
    result = CliRunner().invoke(app, ["study", "run", "quick", "--out", str(tmp_path / "study"), *arguments])
    assert (result.exit_code, result.stderr, result.stdout) == (2, f"error: {message}\n", "")
    assert not (tmp_path / "study").exists()


def test_an_unreachable_scheduler_is_a_one_line_error_after_the_connect_timeout(tmp_path):
    import dask

    # Dask's own setting (or DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=1s); nothing listens on port 1
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = CliRunner().invoke(app, ["study", "run", "quick", "--scheduler", "tcp://127.0.0.1:1",
                                          "--out", str(tmp_path / "study")])
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    assert result.stderr == ("error: cannot reach the Dask scheduler at tcp://127.0.0.1:1: "
                             "Timed out trying to connect to tcp://127.0.0.1:1 after 1 s\n")
    assert not (tmp_path / "study").exists()
