"""``batchlab train`` and ``batchlab list`` through the real entry point (in-process)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from batchlab.cli import _register, app

_register()
RUNNER = CliRunner()


def _run(*args):
    return RUNNER.invoke(app, list(args))


def test_train_json_reports_status_steps_and_final_metrics():
    result = _run("train", "--workload", "nqm-sampled", "--optimizer", "momentum", "--batch-size", "16",
                  "--lr", "0.3", "--momentum", "0.5", "--max-steps", "400", "--seed", "1",
                  "--option", "dim=20", "--target", "0.05", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "reached" and isinstance(out["steps_to_target"], int)
    assert out["final_metrics"]["relative_risk"] <= 0.05
    assert out["hyperparameters"]["momentum"] == 0.5


def test_train_budget_gives_null_steps_and_ema_flag_selects_the_ema_variant():
    result = _run("train", "--workload", "nqm-sampled", "--optimizer", "sgd", "--batch-size", "4",
                  "--lr", "0.1", "--ema", "0.9", "--max-steps", "5", "--eval-every", "5",
                  "--ema-decays", "0.5", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["status"], out["steps_to_target"], out["optimizer"]) == ("budget", None, "sgd+ema")
    assert set(out["ema_results"]) == {"0.9", "0.5"}


@pytest.mark.parametrize(
    "args,message",
    [
        (("--optimizer", "sgd", "--hp", "lr=3"), "unknown hyperparameter 'lr' for optimizer 'sgd'; valid: learning_rate"),
        (("--optimizer", "rmsprop",), "unknown optimizer 'rmsprop'"),
        (("--optimizer", "sgd", "--lr", "-1"), "learning_rate must be in (0, inf), got -1"),
        (("--optimizer", "sgd", "--momentum", "0.9"), "has no momentum"),
        (("--optimizer", "adam", "--hp", "lr_schedule=step"), "lr_schedule must be one of"),
        (("--optimizer", "sgd", "--hp", "learning_rate"), "expected NAME=VALUE"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    result = _run("train", "--workload", "nqm-sampled", "--batch-size", "4", *args)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_bad_batch_size_and_workload_are_one_line_errors():
    for args, message in ((("--workload", "nqm-sampled", "--batch-size", "0"), "batch_size"),
                          (("--workload", "digitz", "--batch-size", "8"), "unknown workload 'digitz'")):
        result = _run("train", "--optimizer", "sgd", *args)
        assert result.exit_code == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_list_shows_workloads_optimizers_hyperparameters_and_search_spaces():
    result = _run("list", "--json")
    assert result.exit_code == 0
    listing = json.loads(result.stdout)
    assert {"digits-cnn", "nqm-sampled"} <= set(listing["workloads"])
    assert listing["workloads"]["digits-cnn"]["target_metric"] == "error"
    adam = {hp["name"]: hp for hp in listing["optimizers"]["adam"]["hyperparameters"]}
    assert adam["epsilon"]["search_space"] == "log [1e-10, 1]" and adam["learning_rate"]["default"] == 0.001
    assert "ema_decay" in {hp["name"] for hp in listing["optimizers"]["kfac+ema"]["hyperparameters"]}
    table = _run("list")
    assert table.exit_code == 0 and "momentum" in table.stdout and "one_minus_log" in table.stdout
