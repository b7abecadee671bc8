"""``batchlab calibrate`` end to end on a real workload (digits-cnn), and its one-line input errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from batchlab.cli import _register, app
from batchlab.workloads.registry import get_workload

_register()
RUNNER = CliRunner()
SMALL = ("--top-k", "4", "--slq-probes", "2", "--slq-steps", "12", "--curvature-examples", "256",
         "--noise-examples", "256", "--chunk-size", "128", "--reference-tune", "3", "--reference-seeds", "1")


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-finite number {name} in JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("calibration")
    result = RUNNER.invoke(app, ["calibrate", "--workload", "digits-cnn", "--out", str(out), "--seed", "0",
                                 "--batch-sizes", "16,64,256", "--optimizers", "sgd,momentum", *SMALL, "--json"])
    return result, out


def test_calibrate_writes_valid_prediction_and_spectra(digits_run):
    result, out = digits_run
    assert result.exit_code == 0, result.output
    prediction = _strict((out / "prediction.json").read_text())
    assert _strict(result.stdout) == prediction
    assert prediction["workload"] == "digits-cnn"
    assert isinstance(prediction["checkpoint_step"], int) and prediction["checkpoint_step"] > 0
    target = prediction["target"]
    assert target["metric"] == "error" and target["value"] == get_workload("digits-cnn").target_value
    assert 0 < target["nqm_target"] < target["initial_loss"]
    assert set(prediction["optimizers"]) == {"sgd", "momentum"}
    for name, kind in (("sgd", "sgd"), ("momentum", "momentum")):
        entry = prediction["optimizers"][name]
        assert entry["nqm_kind"] == kind and entry["precond"] == 0.0
        assert entry["batch_sizes"] == [16.0, 64.0, 256.0]
        assert len(entry["steps"]) == 3 and all(s is None or isinstance(s, int) for s in entry["steps"])
        assert set(entry["critical_batch_size"]) == {"b_noise", "overhead"}
    spectra = _strict((out / "spectra.json").read_text())
    eigenvalues = spectra["eigenvalues"]
    assert len(eigenvalues) == 4 and eigenvalues == sorted(eigenvalues, reverse=True)
    assert len(spectra["noise"]) == 4 and all(c >= 0 for c in spectra["noise"])
    density = spectra["bulk_density"]
    assert density["dim"] == spectra["dim"] - 4 and len(density["grid"]) == len(density["density"])
    assert "b_simple" in spectra and "b_noise" in spectra
    problem = _strict((out / "nqm_problem.json").read_text())
    assert len(problem["h"]) == len(problem["c"]) == len(problem["s0"]) == len(problem["weights"])
    for figure in ("spectrum.png", "prediction.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (("--workload", "no-such"), "unknown workload"),
    (("--workload", "digits-cnn", "--top-k", "0"), "top_k"),
    (("--workload", "digits-cnn", "--batch-sizes", "0,16"), "batch sizes"),
    (("--workload", "digits-cnn", "--optimizers", "sgd,lion"), "unknown optimizer"),
    (("--workload", "digits-cnn", "--curvature", "fisher"), "curvature"),
    (("--workload", "digits-cnn", "--reference-hp", "lr=0.1"), "unknown hyperparameter"),
    (("--workload", "digits-cnn", "--target-loss", "0.1"), "checkpoint step"),
    (("--workload", "digits-cnn", "--initial", "random"), "initial"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = RUNNER.invoke(app, ["calibrate", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not (tmp_path / "out").exists()
