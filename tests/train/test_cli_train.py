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


@pytest.mark.parametrize(
    "args,line",
    [
        (("--seed", "99999999999999999999"), "seed must be at most 2^32 - 1, got 99999999999999999999"),
        (("--seed", "4294967296"), "seed must be at most 2^32 - 1, got 4294967296"),  # JAX would wrap it to 0
        (("--seed", "-1"), "seed must be an integer >= 0, got -1"),
        (("--target", "nan"), "target: relative_risk must be a finite number > 0, got nan"),
        (("--target", "-1"), "target: relative_risk must be a finite number > 0, got -1.0"),
        (("--target", "inf"), "target: relative_risk must be a finite number > 0, got inf"),
        (("--lr", "0.1", "--hp", "learning_rate=0.2"),
         "--lr and --hp learning_rate=... both set learning_rate; give it once"),
        (("--ema", "0.9", "--hp", "ema_decay=0.5"), "--ema and --hp ema_decay=... both set ema_decay; give it once"),
        (("--hp", "learning_rate=0.1", "--hp", "learning_rate=0.2"), "--hp: learning_rate given twice"),
        (("--batch-size", "1099511627776"), "batch_size must be at most 2^20, got 1099511627776"),
        (("--max-steps", "2147483648"), "max_steps must be at most 2^31 - 1, got 2147483648"),
        (("--max-steps", "-1"), "max_steps must be an integer >= 0, got -1"),
        (("--eval-every", "2147483648"), "eval_every must be at most 2^31 - 1, got 2147483648"),
        (("--ema-decays", "nan"), "--ema-decays: 'nan' is not a finite number"),
        (("--ema-decays", "1.5"), "EMA decays must be in [0, 1), got 1.5"),
    ],
)
def test_out_of_range_flags_are_one_exact_line_exit_2(args, line):
    base = {"--batch-size": "4", "--max-steps": "3"}
    for flag in list(base):
        if flag in args:
            del base[flag]
    result = _run("train", "--workload", "nqm-sampled", "--optimizer", "sgd", "--option", "dim=4",
                  *[item for pair in base.items() for item in pair], *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {line}"


def test_classification_targets_are_error_rates_checked_before_loading_data():
    result = _run("train", "--workload", "digits-cnn", "--optimizer", "sgd", "--batch-size", "8", "--target", "1.5")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: target: error is a fraction, must be in [0, 1], got 1.5"


def test_check_arguments_validates_seed_and_target_for_the_library_too():
    from batchlab.errors import InputError
    from batchlab.train import check_arguments
    from batchlab.workloads.registry import get_workload

    task = get_workload("nqm-sampled", dim=4)
    check_arguments(task, "sgd", {}, 4, 10, seed=2**32 - 1, target=0.5)
    with pytest.raises(InputError, match=r"^seed must be at most 2\^32 - 1, got 4294967296$"):
        check_arguments(task, "sgd", {}, 4, 10, seed=2**32)
    with pytest.raises(InputError, match=r"^target: relative_risk must be a finite number > 0, got 0$"):
        check_arguments(task, "sgd", {}, 4, 10, target=0)


def test_a_diverged_run_prints_strict_json_with_null_for_inf():
    result = _run("train", "--workload", "nqm-sampled", "--optimizer", "sgd", "--batch-size", "4", "--lr", "1e39",
                  "--max-steps", "3", "--option", "dim=4", "--json")
    assert result.exit_code == 0, result.output

    def reject(token):
        raise AssertionError(f"invalid JSON token {token}")

    out = json.loads(result.stdout, parse_constant=reject)
    assert out["status"] == "diverged" and out["final_metrics"]["risk"] is None


def test_every_workloads_default_target_passes_its_own_check():
    from batchlab.workloads.registry import WORKLOADS, get_workload

    for name, cls in WORKLOADS.items():
        assert get_workload(name).check_target(cls.target_value) == cls.target_value, name


def test_target_metric_flag_puts_the_target_on_another_metric():
    base = ("train", "--workload", "digits-cnn", "--optimizer", "sgd", "--batch-size", "64", "--lr", "0.3",
            "--max-steps", "60", "--seed", "1")
    result = _run(*base, "--target-metric", "train_set_loss", "--target", "0.3", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["status"], out["target_metric"], out["target"]) == ("reached", "train_set_loss", 0.3)
    assert out["final_metrics"]["train_set_loss"] <= 0.3
    for extra, message in ((("--target-metric", "train_set_loss"), "needs a target value"),
                           (("--target-metric", "top5", "--target", "0.1"), "target_metric: digits-cnn offers")):
        bad = _run(*base, *extra)
        assert bad.exit_code == 2 and message in bad.stderr and bad.stderr.count("\n") == 1
