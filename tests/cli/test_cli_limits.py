"""The `batchlab nqm` and `batchlab demo` commands at and beyond their limits: exact error lines (exit 2),
output folders checked before any computation, and strict JSON with ``null`` for non-finite values."""

from __future__ import annotations

import json
import os
from unittest import mock

import numpy as np
import pytest
from typer.testing import CliRunner

from batchlab.cli import _register, app
from batchlab.nqm import expected_risk, nesterov, power_law

_register()
RUNNER = CliRunner()


def _run(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


def _strict_json(text):
    def reject(token):
        raise AssertionError(f"invalid JSON token {token}")
    return json.loads(text, parse_constant=reject)


RISK = ("nqm", "risk", "--batch-size", "4", "--dim", "10")
SCALING = ("nqm", "scaling", "--optimizer", "sgd", "--dim", "10")


@pytest.mark.parametrize("args, line", [
    ((*RISK, "--steps", "inf"), "--steps: 'inf' is not a finite integer"),
    ((*RISK, "--steps", "0,nan"), "--steps: 'nan' is not a finite integer"),
    ((*RISK, "--steps", "1e20"), "--steps: '1e20' is above the maximum 1e15"),
    ((*RISK, "--steps", "1000000000000001"), "--steps: '1000000000000001' is above the maximum 1e15"),
    ((*RISK, "--steps", "-1"), "--steps: '-1' is below the minimum 0"),
    ((*RISK, "--steps", "1.5"), "--steps: '1.5' is not an integer"),
    ((*RISK, "--steps", "2^-1"), "--steps: '2^-1' is not an integer"),
    ((*RISK, "--steps", ",".join(["1"] * 1001)), "--steps: at most 1,000 values, got 1,001"),
    ((*SCALING, "--batch-sizes", "inf"), "--batch-sizes: 'inf' is not a finite integer"),
    ((*SCALING, "--batch-sizes", "2^64"), "--batch-sizes: '2^64' is above the maximum 2^50"),
    ((*SCALING, "--batch-sizes", "18446744073709551616"),
     "--batch-sizes: '18446744073709551616' is above the maximum 2^50"),
    ((*SCALING, "--batch-sizes", "2^99999999999"), "--batch-sizes: '2^99999999999' is too large"),
    ((*SCALING, "--batch-sizes", "0"), "--batch-sizes: '0' is below the minimum 1"),
    ((*SCALING, "--batch-sizes", "4", "--pieces", "0"), "--pieces must be in [1, 100], got 0"),
    ((*SCALING, "--batch-sizes", "4", "--pieces", "101"), "--pieces must be in [1, 100], got 101"),
    ((*SCALING, "--batch-sizes", "4", "--target", "nan"), "--target must be > 0, got nan"),
    (("nqm", "risk", "--batch-size", "1e308", "--steps", "1"), "--batch-size must be in [1, 2^50], got 1e+308"),
    (("nqm", "risk", "--batch-size", "inf", "--steps", "1"), "--batch-size must be in [1, 2^50], got inf"),
    (("nqm", "risk", "--batch-size", "4", "--steps", "1", "--dim", "2000000000"),
     "--dim must be in [1, 1e7], got 2000000000"),
    (("nqm", "risk", "--batch-size", "4", "--steps", "1", "--dim", "10", "--binned", "99999999999"),
     "--binned must be in [2, 1e7], got 99999999999"),
    (("nqm", "figures", "--out", "unused", "--dim", "10000001"), "--dim must be in [1, 1e7], got 10000001"),
    (("nqm", "figures", "--out", "unused", "--dim", "10", "--jobs", "0"), "--jobs must be in [1, 256], got 0"),
])
def test_out_of_range_input_is_one_exact_line_exit_2(args, line):
    with mock.patch("batchlab.plots.nqm_figures.write_nqm_figures", side_effect=AssertionError("computed")):
        result = _run(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {line}"


def _figures_out(out):
    with mock.patch("batchlab.plots.nqm_figures.write_nqm_figures", side_effect=AssertionError("computed")):
        return _run("nqm", "figures", "--out", out, "--dim", "10", "--quick")


def test_figures_out_must_be_a_folder_checked_before_computing(tmp_path):
    file = tmp_path / "a_file"
    file.write_text("keep me")
    for out in (file, file / "sub" / "deeper"):
        result = _figures_out(out)
        assert result.exit_code == 2
        assert result.stderr.strip() == f"error: --out: '{file}' exists and is not a folder"
    assert file.read_text() == "keep me"
    result = _figures_out("")
    assert (result.exit_code, result.stderr.strip()) == (2, "error: --out: empty path")
    result = _figures_out("/proc/self/no/such")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --out: cannot create folder '/proc/self/no/such': No such file or directory"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_figures_out_in_a_read_only_folder(tmp_path):
    tmp_path.chmod(0o555)
    try:
        result = _figures_out(tmp_path / "new")
        assert result.exit_code == 2
        assert result.stderr.strip() == (f"error: --out: cannot create folder '{tmp_path / 'new'}': "
                                          "Permission denied")
        result = _figures_out(tmp_path)
        assert result.stderr.strip() == f"error: --out: folder '{tmp_path}' is not writable"
    finally:
        tmp_path.chmod(0o755)


def test_figures_out_refused_by_the_system(tmp_path):
    """The same checks where the system refuses (simulated: root may write into read-only folders)."""
    denied = PermissionError(13, "Permission denied")
    with mock.patch("pathlib.Path.mkdir", side_effect=denied):
        result = _figures_out(tmp_path / "new")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --out: cannot create folder '{tmp_path / 'new'}': Permission denied"
    with mock.patch("os.access", return_value=False):
        result = _figures_out(tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --out: folder '{tmp_path}' is not writable"


def test_figures_reach_the_library_with_a_created_folder(tmp_path):
    calls = []

    def record(out, spec, *, workers, progress):
        calls.append((out, spec.dim, spec.bins, workers, out.is_dir()))
        return [out / "fig2.png"]

    with mock.patch("batchlab.plots.nqm_figures.write_nqm_figures", record):
        result = _run("nqm", "figures", "--out", tmp_path / "a" / "b", "--dim", "10", "--binned", "3", "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path / "a" / "b", 10, 3, 2, True)]
    assert result.stdout.strip() == str(tmp_path / "a" / "b" / "fig2.png")


def test_demo_checks_its_folder_before_computing(tmp_path):
    file = tmp_path / "a_file"
    file.write_text("")
    with mock.patch("batchlab.nqm.scaling.scaling_curve", side_effect=AssertionError("computed")):
        result = _run("demo", "--out", file / "demo", "--skip-study")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --out: '{file}' exists and is not a folder"


def test_unstable_nesterov_reports_inf_not_an_exception():
    """Was LinAlgError (singular matrix); the README promises inf (JSON null) for unstable settings."""
    result = _run("nqm", "risk", "--batch-size", "64", "--steps", "0,10,1000", "--nesterov", "--lr", "100",
                  "--dim", "1000", "--json")
    assert result.exit_code == 0, result.output
    data = _strict_json(result.stdout)
    expected = expected_risk(power_law(1000), nesterov(100.0, 0.0), batch_size=64, steps=[0, 10])
    np.testing.assert_allclose(data["risk"][:2], expected, rtol=1e-12)
    assert data["risk"][0] == pytest.approx(power_law(1000).initial_risk(), rel=1e-14)
    assert data["risk"][2] is None and data["steady_state_risk"] is None and data["stable"] is False
    table = _run("nqm", "risk", "--batch-size", "64", "--steps", "10", "--nesterov", "--lr", "100", "--dim", "1000")
    assert table.exit_code == 0
    assert "steady-state risk: inf  (UNSTABLE: risk diverges)" in table.stdout


def test_unreachable_target_gives_strict_json_with_nulls():
    """--target 1e-300 printed NaN (invalid JSON) for the critical batch size; the README promises null."""
    result = _run("nqm", "scaling", "--optimizer", "sgd", "--batch-sizes", "4,64", "--dim", "10", "--target", "1e-300",
                  "--json")
    assert result.exit_code == 0, result.output
    data = _strict_json(result.stdout)
    assert [row["steps"] for row in data["rows"]] == [None, None]
    crit = data["critical_batch_size"]
    assert crit["b_noise"] is None and crit["overhead"] is None and crit["overhead_interpolated"] is None


@pytest.mark.parametrize("argv, line", [
    (["nqm", "risk", "--batch-size", "64", "--steps", "10", "--dim", "abc"],
     "error: batchlab nqm risk: Invalid value for '--dim': Input should be a valid integer, unable to parse string "
     "as an integer"),
    (["nqm", "risk", "--nosuchflag"], "error: batchlab nqm risk: No such option: --nosuchflag"),
    (["nosuch"], "error: batchlab: No such command 'nosuch'."),
])
def test_usage_errors_from_the_entry_point_are_one_line(argv, line, capsys):
    from batchlab.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    captured = capsys.readouterr()
    assert stop.value.code == 2 and captured.err == line + "\n" and captured.out == ""


def test_the_entry_point_prints_a_group_s_help_and_exits_0(capsys):
    from batchlab.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["nqm"])
    assert stop.value.code == 0 and "Usage: batchlab nqm" in capsys.readouterr().out
