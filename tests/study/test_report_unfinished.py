"""An unfinished study says so: report banner and marked cells, shares over finished trials; a trial left
`running` by a dead runner shows as interrupted."""

from __future__ import annotations

import fcntl
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from batchlab.cli import _register, app
from batchlab.study import parse_spec
from batchlab.study.design import make_design
from batchlab.store import LOCK_NAME, TrackOutcome, TrialOutcome, open_store, runner_active

from .conftest import tiny_data

_register()
RUNNER = CliRunner()
BANNER = ("study unfinished: {done}/{total} trials done; cells marked * are incomplete "
          "(their numbers are over the finished trials only)")


def _outcome(trial, status, steps):
    reached = status == "reached"
    curve = ((0, {"error": 0.9}), (steps, {"error": 0.02 if reached else 0.5}))
    return TrialOutcome(trial.id, status, steps if reached else None, steps, None, None, {"error": 0.02}, 2.0, 0.1,
                        "host", "local:1",
                        (TrackOutcome("main", None, status, steps if reached else None, {"error": 0.02}, curve),))


def _study(folder, *, finish_all=False):
    """sgd at B = 16 and 64, 3 trials each.  B = 16: reached at 300 and 200, one out of budget (all
    finished).  B = 64: one reached at 90; one left running by a dead runner, one pending."""
    spec = parse_spec(tiny_data(batch_sizes=[16, 64], trials=3, optimizers={"sgd": {}}))
    trials = make_design(spec)
    cells = {b: sorted((t for t in trials if t.batch_size == b), key=lambda t: t.index) for b in (16, 64)}
    with open_store(folder, create=True) as store:
        store.initialize(spec.to_dict(), "", trials)
        for trial, (status, steps) in zip(cells[16], (("reached", 300), ("reached", 200), ("budget", 100))):
            store.record(_outcome(trial, status, steps))
        store.record(_outcome(cells[64][0], "reached", 90))
        store.mark_running(cells[64][1].id, "host")
        if finish_all:
            store.record(_outcome(cells[64][1], "reached", 70))
            store.record(_outcome(cells[64][2], "diverged", 10))
    return cells


def _csv(folder, stem):
    return pd.read_csv(folder / "report" / f"{stem}.csv", dtype=str, keep_default_na=False)


def test_report_of_an_unfinished_study_says_so_and_marks_its_cells(tmp_path):
    cells = _study(tmp_path)
    result = RUNNER.invoke(app, ["study", "report", str(tmp_path), "--resamples", "50"])
    assert result.exit_code == 0, result.output
    banner = BANNER.format(done=4, total=6)
    assert result.stdout.splitlines()[0] == banner
    page = (tmp_path / "report" / "report.html").read_text()
    assert f"<p class='unfinished' id='unfinished'>{banner}</p>" in page
    assert page.index("id='unfinished'") < page.index("<h2>Study</h2>")  # at the top
    scaling = _csv(tmp_path, "scaling")
    assert scaling[["batch size", "trials", "done", "reached", "best steps", "share reached"]].values.tolist() == [
        ["16", "3", "3/3", "2", "200", "67%"],  # 2 of 3 finished trials reached
        ["64*", "3", "1/3", "1", "90", "100%"],  # over the one finished trial; the cell is marked
    ]
    winners = _csv(tmp_path, "hyperparameters")
    assert winners["batch size"].tolist() == ["16", "64*"]
    assert winners["winning trial"].tolist() == [cells[16][1].id, cells[64][0].id]
    assert _csv(tmp_path, "critical_batch_size")["optimizer"].tolist() == ["sgd*"]
    status = _csv(tmp_path, "status").set_index("optimizer")
    assert status.loc["sgd", ["trials", "reached", "budget", "running", "interrupted", "pending"]].tolist() == \
        ["6", "3", "1", "0", "1", "1"]


def test_report_of_a_finished_study_has_no_banner_and_no_marks(tmp_path):
    _study(tmp_path, finish_all=True)
    result = RUNNER.invoke(app, ["study", "report", str(tmp_path), "--resamples", "50"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("report: ") and "unfinished" not in result.stdout
    page = (tmp_path / "report" / "report.html").read_text()
    assert "study unfinished" not in page and "id='unfinished'" not in page
    scaling = _csv(tmp_path, "scaling")
    assert scaling[["batch size", "done", "best steps", "share reached"]].values.tolist() == [
        ["16", "3/3", "200", "67%"], ["64", "3/3", "70", "67%"]]
    assert not any("*" in v for v in _csv(tmp_path, "hyperparameters")["batch size"])


def _status_columns(folder):
    result = RUNNER.invoke(app, ["study", "status", str(folder)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.strip().startswith("optimizer"))
    row = next(line for line in lines if re.match(r"\s*sgd\s+64\s", line))
    return dict(zip(header.split(), row.split()))


def test_status_shows_a_running_trial_without_a_runner_as_interrupted(tmp_path):
    _study(tmp_path)
    assert not runner_active(tmp_path)
    assert _status_columns(tmp_path) == {"optimizer": "sgd", "B": "64", "done": "1/3", "reached": "1", "pruned": "0",
                                         "diverged": "0", "budget": "0", "interrupted": "1", "best": "90"}
    (tmp_path / LOCK_NAME).touch()  # a lock file that nobody holds (the runner was killed)
    assert not runner_active(tmp_path) and "interrupted" in _status_columns(tmp_path)


def test_status_shows_running_while_a_runner_holds_the_lock(tmp_path):
    _study(tmp_path)
    with open(tmp_path / LOCK_NAME, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the runner does
        assert runner_active(tmp_path)
        columns = _status_columns(tmp_path)
        assert columns["running"] == "1" and "interrupted" not in columns
        from batchlab.analysis import analyze

        assert analyze(tmp_path, resamples=5, critical_resamples=5).trials["status"].value_counts()["running"] == 1
    assert not runner_active(tmp_path)  # released with the handle, as on kill -9


@pytest.mark.parametrize("held", [False, True])
def test_the_runner_still_starts_after_a_status_probe(tmp_path, held):
    from batchlab.errors import InputError
    from batchlab.study.runner import _exclusive

    handle = open(tmp_path / LOCK_NAME, "a+")
    if held:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        runner_active(tmp_path)
        if held:
            with pytest.raises(InputError, match="another `batchlab study run` is writing"):
                with _exclusive(tmp_path):
                    pass
        else:
            with _exclusive(tmp_path):
                assert runner_active(tmp_path)
    finally:
        handle.close()
