"""The `batchlab nqm` commands: JSON forms scripts rely on, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from batchlab.nqm import expected_risk, heavy_ball, power_law


def _run(*args):
    return subprocess.run([sys.executable, "-c", "from batchlab.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=600)


def test_risk_json_matches_the_library():
    out = _run("nqm", "risk", "--batch-size", "32", "--steps", "0,10,1000", "--lr", "0.3", "--momentum", "0.9",
               "--dim", "500", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    expected = expected_risk(power_law(500), heavy_ball(0.3, 0.9), batch_size=32, steps=[0, 10, 1000])
    assert data["steps"] == [0, 10, 1000]
    np.testing.assert_allclose(data["risk"], expected, rtol=1e-12)


def test_scaling_json_has_the_documented_keys():
    out = _run("nqm", "scaling", "--optimizer", "momentum", "--batch-sizes", "4,256,2^14", "--dim", "300", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [r["batch_size"] for r in data["rows"]] == [4, 256, 16384]
    for row in data["rows"]:
        assert {"steps", "learning_rate", "momentum", "ema", "lower_bound", "effective_learning_rate"} <= set(row)
        assert row["steps"] >= row["lower_bound"]
    assert {"b_noise", "overhead"} <= set(data["critical_batch_size"])


@pytest.mark.parametrize("args, message", [
    (["nqm", "risk", "--batch-size", "4", "--steps", "1", "--lr", "0"], "learning_rate"),
    (["nqm", "risk", "--batch-size", "4", "--steps", "1", "--momentum", "1.2"], "momentum"),
    (["nqm", "risk", "--batch-size", "4", "--steps", "1", "--ema", "-0.1"], "ema"),
    (["nqm", "risk", "--batch-size", "0.5", "--steps", "1"], "batch-size"),
    (["nqm", "risk", "--batch-size", "4", "--steps", "1", "--dim", "0"], "dim"),
    (["nqm", "risk", "--batch-size", "4", "--steps", "1", "--binned", "1"], "binned"),
    (["nqm", "scaling", "--optimizer", "rmsprop", "--batch-sizes", "4"], "optimizer"),
    (["nqm", "scaling", "--optimizer", "sgd", "--batch-sizes", ""], "batch-sizes"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    out = _run(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
