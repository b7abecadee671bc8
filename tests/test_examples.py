"""The bring-your-own-code examples (``examples/``) through the command line (in-process), from the
repository root, as the README shows them: train, a tiny study and calibrate on a user workload and
optimizer given as file references, and the one-line errors of references that do not resolve."""

from __future__ import annotations

import json
import pathlib

import pytest
from typer.testing import CliRunner

from batchlab.cli import _register, app

_register()
RUNNER = CliRunner()
ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKLOAD = "examples/custom_workload.py:MyWorkload"
OPTIMIZER = "examples/custom_optimizer.py:my_optimizer"
SMALL = ("--top-k", "4", "--slq-probes", "2", "--slq-steps", "12", "--curvature-examples", "256",
         "--noise-examples", "256", "--chunk-size", "128", "--reference-tune", "3", "--reference-seeds", "1")

pytest.importorskip("sklearn")


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # command-line references are relative to the current directory


def _run(*args):
    return RUNNER.invoke(app, list(args))


def test_train_user_workload_with_user_optimizer_reaches_its_target():
    result = _run("train", "--workload", WORKLOAD, "--optimizer", OPTIMIZER, "--batch-size", "32", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "reached" and out["steps_to_target"] <= 50, out["curve"]
    assert (out["workload"], out["optimizer"]) == (WORKLOAD, OPTIMIZER)
    assert out["hyperparameters"]["clip_norm"] == 1.0


def test_train_user_optimizer_ema_variant():
    result = _run("train", "--workload", WORKLOAD, "--optimizer", OPTIMIZER + "+ema", "--batch-size", "32",
                  "--max-steps", "20", "--option", "hidden_units=8", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["optimizer"] == OPTIMIZER + "+ema" and "ema_decay" in out["hyperparameters"]


def test_custom_study_runs_and_reports(tmp_path):
    out = tmp_path / "study"
    result = _run("study", "run", "examples/custom_study.toml", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "8 trials run" in result.output and "reached" in result.output
    status = _run("study", "status", str(out))
    assert status.exit_code == 0, status.output


def test_calibrate_user_workload(tmp_path):
    result = _run("calibrate", "--workload", WORKLOAD, "--out", str(tmp_path), "--seed", "0",
                  "--batch-sizes", "16,64,256", "--optimizers", "sgd,momentum", "--reference-optimizer", OPTIMIZER,
                  *SMALL, "--json")
    assert result.exit_code == 0, result.output
    prediction = json.loads((tmp_path / "prediction.json").read_text())
    assert prediction["workload"] == "breast-cancer-mlp"  # the class's name
    assert prediction["reference"]["optimizer"] == OPTIMIZER
    assert set(prediction["optimizers"]) == {"sgd", "momentum"}


@pytest.mark.parametrize("args, message", [
    (("--workload", "examples/no_such.py:MyWorkload"), "cannot import 'examples/no_such.py:MyWorkload': cannot read"),
    (("--workload", "examples/custom_workload.py:Nope"), "has no attribute 'Nope'"),
    (("--workload", "examples/custom_optimizer.py:my_optimizer"), "is not a subclass of batchlab.workloads"),
    (("--workload", "no_such_package_xyz:Thing"), "ModuleNotFoundError"),
    (("--optimizer", "examples/custom_workload.py:MyWorkload"), "is not a batchlab.optim.OptimizerSpec"),
    (("--optimizer", "examples/custom_optimizer.py:missing+ema"), "has no attribute 'missing'"),
])
def test_bad_references_are_one_line_errors(args, message):
    given = dict(zip(args[::2], args[1::2]))
    full = {"--workload": WORKLOAD, "--optimizer": OPTIMIZER} | given
    result = _run("train", *[x for pair in full.items() for x in pair], "--batch-size", "8")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


def test_calibrate_bad_workload_reference_is_a_one_line_error(tmp_path):
    result = _run("calibrate", "--workload", "examples/custom_workload.py:Nope", "--out", str(tmp_path))
    assert result.exit_code == 2 and "has no attribute 'Nope'" in result.stderr, result.output


def test_readme_api_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- readme-api-example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block.replace('"runs/notebook"', repr(str(tmp_path / "notebook"))), "README.md", "exec"), namespace)
    study, again = namespace["study"], namespace["again"]
    user = f"{ROOT / 'examples/custom_optimizer.py'}:my_optimizer"  # a dict's references: made absolute
    assert len(study.trials) == 8 and set(study.trials["optimizer"]) == {user, "sgd"}
    assert set(study.best["optimizer"]) == {user, "sgd"} and len(study.critical) == 2
    assert "steps_vs_batch_size" in namespace["figures"]
    assert again.best.equals(study.best)
    import matplotlib.pyplot as plt

    plt.close("all")
