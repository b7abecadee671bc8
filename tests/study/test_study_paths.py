"""Output paths and resample counts of `study run | report | export`: checked before any work, one line, exit 2."""

from __future__ import annotations

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from batchlab.analysis import MAX_RESAMPLES, bootstrap_minimum
from batchlab.cli import _register, app
from batchlab.errors import InputError
from batchlab.report import write_report
from batchlab.study import parse_spec
from batchlab.study.design import make_design
from batchlab.study.spec import StudySpec
from batchlab.store import open_store

from .conftest import tiny_data, to_toml

_register()
RUNNER = CliRunner()


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(to_toml(tiny_data()))
    return path


@pytest.fixture
def study(tmp_path):
    """A study folder whose design is recorded (nothing trained)."""
    folder = tmp_path / "study"
    spec = parse_spec(tiny_data())
    with open_store(folder, create=True) as store:
        store.initialize(spec.to_dict(), "", make_design(spec))
    return folder


@pytest.fixture
def no_work(monkeypatch):
    """Any training set-up or analysis fails the test: the checks must come first."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(StudySpec, "make_workload", forbidden)
    monkeypatch.setattr("batchlab.report.html.analyze", forbidden)


def _error(result):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def _read_only(monkeypatch, *paths):
    """Root ignores permission bits: make os.access report these folders as not writable."""
    real = os.access
    blocked = {os.fspath(p) for p in paths}
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) in blocked and mode & os.W_OK
                        else real(p, mode, **kw))


def test_run_with_an_empty_out_is_an_error_not_runs_name(spec_file, tmp_path, monkeypatch, no_work):
    monkeypatch.chdir(tmp_path)
    assert _error(RUNNER.invoke(app, ["study", "run", str(spec_file), "--out", ""])) == \
        "error: --out must not be empty (omit it for runs/<name>)"
    assert not (tmp_path / "runs").exists()


def test_run_out_is_a_file_under_a_file_or_read_only(spec_file, tmp_path, monkeypatch, no_work):
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    run = lambda out: _error(RUNNER.invoke(app, ["study", "run", str(spec_file), "--out", str(out)]))  # noqa: E731
    assert run(file) == f"error: study folder {file} is a file, not a folder"
    nested = file / "sub" / "study"
    assert run(nested) == f"error: study folder {nested} cannot be created: {file} is a file"
    assert file.read_text() == "keep me"
    locked = tmp_path / "locked"
    locked.mkdir()
    _read_only(monkeypatch, locked)
    assert run(locked) == f"error: study folder {locked} is not writable"
    assert run(locked / "new") == f"error: study folder {locked / 'new'} cannot be created: {locked} is not writable"
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("blocker", ["report", "export"])
def test_report_into_a_file_stops_before_computing(study, blocker, no_work):
    (study / blocker).write_text("a file in the way")
    line = _error(RUNNER.invoke(app, ["study", "report", str(study)]))
    assert line == f"error: {blocker} folder {study / blocker} is a file, not a folder"
    assert sorted(p.name for p in study.iterdir()) == sorted(["study.sqlite", blocker])
    assert (study / blocker).read_text() == "a file in the way"


def test_report_in_a_read_only_study_folder_stops_before_computing(study, monkeypatch, no_work):
    _read_only(monkeypatch, study)
    line = _error(RUNNER.invoke(app, ["study", "report", str(study)]))
    assert line == f"error: report folder {study / 'report'} cannot be created: {study} is not writable"


def test_export_out_is_checked(study, tmp_path):
    file = tmp_path / "out.csv"
    file.write_text("x")
    assert _error(RUNNER.invoke(app, ["study", "export", str(study), "--out", ""])) == \
        "error: --out must not be empty (omit it for FOLDER/export)"
    assert _error(RUNNER.invoke(app, ["study", "export", str(study), "--out", str(file / "x")])) == \
        f"error: export folder {file / 'x'} cannot be created: {file} is a file"
    assert not (study / "export").exists() and file.read_text() == "x"


@pytest.mark.parametrize("value", ["0", "-5", str(MAX_RESAMPLES + 1), "1000000000"])
def test_resamples_outside_the_documented_range(study, value, no_work):
    line = _error(RUNNER.invoke(app, ["study", "report", str(study), "--resamples", value]))
    assert line == f"error: --resamples must be in [1, 100,000], got {int(value):,}"
    assert not (study / "report").exists()


def test_the_library_enforces_the_same_limit(study):
    assert MAX_RESAMPLES == 100_000
    with pytest.raises(InputError, match=r"^resamples must be an integer in \[1, 100,000\], got 1000000000$"):
        write_report(study, resamples=10**9)
    with pytest.raises(InputError, match="critical_resamples"):
        write_report(study, critical_resamples=0)
    assert not (study / "report").exists()


def test_bootstrap_in_blocks_draws_exactly_what_one_call_draws():
    steps = np.random.default_rng(3).integers(10, 1000, size=3001).astype(float)
    steps[::7] = np.inf
    resamples = 1500  # 4.5 M indices: more than one block
    index = np.random.default_rng(11).integers(0, steps.size, size=(resamples, steps.size))
    expected = steps[index].min(axis=1)
    got = bootstrap_minimum(steps, resamples=resamples, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(got, expected)
