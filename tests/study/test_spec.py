"""Spec validation: every bad spec is one line naming the problem, exit 2, and the store untouched."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from batchlab.cli import _register, app
from batchlab.errors import InputError
from batchlab.study import load_spec, parse_spec
from batchlab.study.design import make_design
from batchlab.store import DB_NAME, open_store

from .conftest import QUICK, tiny_data, to_toml

_register()
RUNNER = CliRunner()


def _with(path_edit=None, **overrides):
    data = {k: v for k, v in tiny_data(**overrides).items() if v is not None}  # None: leave the key out
    if path_edit:
        path_edit(data)
    return to_toml(data)


def _set_optimizer(name, body=None):
    return lambda d: d.__setitem__("optimizers", {name: body or {}})


BAD_SPECS = {
    "unknown optimizer": (_with(_set_optimizer("adagrad")), "adagrad"),
    "unknown workload": (_with(workload="cifar-resnet"), "cifar-resnet"),
    "unknown hyperparameter": (_with(_set_optimizer("sgd", {"search": {"learnin_rate": [0.1, 1.0]}})), "learnin_rate"),
    "unknown fixed hyperparameter": (_with(_set_optimizer("adam", {"fixed": {"beta3": 0.9}})), "beta3"),
    "negative batch size": (_with(batch_sizes=[32, -8]), "-8"),
    "empty batch list": (_with(batch_sizes=[]), "batch_sizes"),
    "malformed TOML": ('name = "x"\nbatch_sizes = [16, 32\n', "malformed TOML"),
    "unknown key": (_with(trails=3), "trails"),
    "out-of-range value": (_with(_set_optimizer("momentum", {"fixed": {"momentum": 1.5}})), "momentum"),
    "inverted search range": (_with(_set_optimizer("sgd", {"search": {"learning_rate": [1.0, 0.1]}})), "low"),
    "unknown workload option": (_with(workload_options={"width": 3}), "width"),
    "zero trials": (_with(trials=0), "trials"),
    "ema decays on a plain optimizer": (_with(_set_optimizer("sgd", {"ema_decays": [0.9]})), "ema_decays"),
    "target nan": (_with(target=float("nan")), "target must be a finite number, got nan"),
    "negative target": (_with(target=-1.0), "target"),
    "error target above 1": (_with(target=1.5), "target"),
    "huge batch size": (_with(batch_sizes=[32, 2**21]), "2097152"),
    "huge design": (_with(trials=30_000, batch_sizes=[16, 32]), "120,000 trials"),
    "huge tuned design": (_with(tuning={"explore": 100, "refine": 100, "candidates": 100, "seeds": 1000},
                                batch_sizes=[16, 32], trials=None), "up to 400,800 trials"),
    "example budget beyond 10^9 steps": (_with(budget={"examples": 1e15}), "budget"),
    "name '..'": (_with(name=".."), "cannot name a folder"),
    "tuning: explore zero": (_with(trials=None, tuning={"explore": 0}), "tuning.explore must be in [1, 100000], got 0"),
    "tuning: refine zero": (_with(trials=None, tuning={"explore": 4, "refine": 0}), "tuning.refine must be in [1, 100000], got 0"),
    "tuning: one seed": (_with(trials=None, tuning={"explore": 4, "candidates": 2, "seeds": 1}),
                         "tuning.seeds must be in [3, 1000], got 1"),
    "tuning: candidates zero": (_with(trials=None, tuning={"explore": 4, "candidates": 0}), "tuning.candidates"),
    "tuning: seeds without candidates": (_with(trials=None, tuning={"explore": 4, "seeds": 5}), "tuning.seeds needs"),
    "tuning: width without refine": (_with(trials=None, tuning={"explore": 4, "refine_width": 0.1}), "tuning.refine_width needs"),
    "tuning: width beyond half the box": (_with(trials=None, tuning={"explore": 4, "refine": 2, "refine_width": 0.7}),
                                          "tuning.refine_width must be in (0, 0.5]"),
    "tuning: more rounds than trials": (_with(trials=None, tuning={"explore": 2, "rounds": 3}), "tuning.rounds"),
    "tuning: unknown key": (_with(trials=None, tuning={"explore": 4, "replicas": 3}), "replicas"),
    "tuning: prune slack below 1": (_with(trials=None, tuning={"explore": 4, "prune_slack": 0.5}),
                                    "tuning.prune_slack must be in [1, 10], got 0.5"),
    "tuning: prune slack not a number": (_with(trials=None, tuning={"explore": 4, "prune_slack": "x"}),
                                         "tuning.prune_slack"),
    "tuning with trials": (_with(tuning={"explore": 4}, trials=4), "either trials or [tuning] explore"),
    "tuning: fallback without candidates": (_with(trials=None, tuning={"explore": 4, "fallback": 1}),
                                            "tuning.fallback needs tuning.candidates"),
    "tuning: fallback too large": (_with(trials=None, tuning={"explore": 4, "candidates": 1, "fallback": 11}),
                                   "tuning.fallback"),
    "tuning: fallback negative": (_with(trials=None, tuning={"explore": 4, "candidates": 1, "fallback": -1}),
                                  "tuning.fallback"),
    "optimizer budget: empty": (_with(_set_optimizer("sgd", {"budget": {}})),
                                "optimizers.sgd.budget must be a non-empty table"),
    "optimizer budget: unknown key": (_with(_set_optimizer("sgd", {"budget": {"min_step": 9}})), "min_step"),
    "optimizer budget: min_steps over fixed steps": (_with(_set_optimizer("sgd", {"budget": {"min_steps": 200}})),
                                                     "optimizers.sgd.budget: min_steps/max_steps need examples"),
    "optimizer budget: zero steps": (_with(_set_optimizer("sgd", {"budget": {"steps": 0}})),
                                     "optimizers.sgd.budget.steps must be in [1, 1000000000], got 0"),
    "optimizer budget: max below min": (_with(_set_optimizer("sgd", {"budget": {"min_steps": 900}}),
                                              budget={"examples": 6400, "max_steps": 500}),
                                        "optimizers.sgd.budget.max_steps (500) must be >= optimizers.sgd.budget.min_steps (900)"),
    "unknown target metric": (_with(target_metric="accuracy"),
                              "target_metric: digits-cnn offers error, loss, train_set_loss, got 'accuracy'"),
    "target metric without a target": (_with(target_metric="train_set_loss", target=None),
                                        "target_metric train_set_loss needs a target"),
    "loss target below 0": (_with(target_metric="loss", target=-0.1), "target: loss must be a finite number > 0"),
    "optimizer budget beyond 10^9 steps": (_with(_set_optimizer("sgd", {"budget": {"examples": 1e15}})),
                                           "set optimizers.sgd.budget.max_steps"),
}

# exact messages of the range checks (the target's range is the target metric's: error rate in [0, 1])
EXACT = {
    "negative target": "target: error is a fraction, must be in [0, 1], got -1.0",
    "error target above 1": "target: error is a fraction, must be in [0, 1], got 1.5",
    "huge batch size": "batch size must be in [1, 1048576], got 2097152",
    "huge design": "the design has up to 120,000 trials (per cell × optimizers × batch sizes = 30000 × 2 × 2); "
                   "at most 100,000",
    "example budget beyond 10^9 steps": "budget: 3.12e+13 steps at batch size 32 (examples / B); at most "
                                        "1,000,000,000; set budget.max_steps",
}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def existing_study(tmp_path_factory):
    """A folder holding a study's store (design recorded, nothing trained)."""
    folder = tmp_path_factory.mktemp("existing")
    spec = parse_spec(tiny_data())
    with open_store(folder, create=True) as store:
        store.initialize(spec.to_dict(), "", make_design(spec))
    return folder


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_is_one_line_exit_2_and_touches_nothing(case, tmp_path, existing_study):
    text, needle = BAD_SPECS[case]
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    fresh = tmp_path / "fresh"
    result = RUNNER.invoke(app, ["study", "run", str(spec), "--out", str(fresh)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not fresh.exists()  # no folder, no store
    before = {p.name: _digest(p) for p in existing_study.iterdir() if p.is_file()}
    result = RUNNER.invoke(app, ["study", "run", str(spec), "--out", str(existing_study)])
    assert result.exit_code == 2
    assert {p.name: _digest(p) for p in existing_study.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("case", sorted(EXACT))
def test_range_errors_are_exact(case, tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(BAD_SPECS[case][0])
    result = RUNNER.invoke(app, ["study", "run", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {EXACT[case]}"


def test_targets_inside_the_metric_range_are_kept():
    assert parse_spec(tiny_data(target=0.0)).target == 0.0 and parse_spec(tiny_data(target=1)).target == 1.0
    assert parse_spec(tiny_data(batch_sizes=[2**20])).batch_sizes == (2**20,)
    assert parse_spec(tiny_data(budget={"examples": 1e15, "max_steps": 500})).budget.steps_for(32) == 500
    data = tiny_data(workload="nqm-sampled", workload_options={}, target=5.0)  # relative risk: any value > 0
    assert parse_spec(data).target == 5.0
    for bad in (-0.5, 0.0):
        with pytest.raises(InputError, match=f"target: relative_risk must be a finite number > 0, got {bad}"):
            parse_spec(tiny_data(workload="nqm-sampled", workload_options={}, target=bad))


def test_a_different_study_in_the_folder_is_rejected_untouched(tmp_path, existing_study):
    spec = tmp_path / "other.toml"
    spec.write_text(to_toml(tiny_data(trials=3)))
    before = _digest(existing_study / DB_NAME)
    result = RUNNER.invoke(app, ["study", "run", str(spec), "--out", str(existing_study)])
    assert result.exit_code == 2
    assert "different study" in result.stderr and "trials" in result.stderr
    assert _digest(existing_study / DB_NAME) == before


def test_missing_spec_file_and_unknown_preset(tmp_path):
    for argument, needle in ((str(tmp_path / "none.toml"), "not found"), ("no-such-preset", "unknown preset")):
        result = RUNNER.invoke(app, ["study", "run", argument])
        assert result.exit_code == 2 and needle in result.stderr


def test_quick_preset_parses_with_its_documented_shape():
    spec = load_spec(QUICK)
    assert spec.workload == "digits-cnn" and spec.batch_sizes == (16, 64, 256, 1024)
    assert [o.name for o in spec.optimizers] == ["sgd", "momentum", "adam"]
    assert len(make_design(spec)) == 3 * 4 * spec.trials
    assert (spec.protocol.explore, spec.protocol.rounds, spec.protocol.refine, spec.protocol.candidates,
            spec.protocol.seeds) == (6, 2, 4, 2, 3)
    assert spec.budget.steps_for(16) == 1000 and spec.budget.steps_for(1024) == 150


def test_search_overrides_keep_the_declared_scaling_and_fixed_values_leave_the_search():
    spec = parse_spec(tiny_data(optimizers={
        "momentum": {"search": {"learning_rate": [0.01, 0.5]}, "fixed": {"momentum": 0.9}},
        "adam": {"search": {"beta2": {"low": 0.9, "high": 0.999, "scaling": "one_minus_log"}}},
    }))
    momentum, adam = spec.optimizers
    assert [(d.name, d.low, d.high, d.scaling) for d in momentum.search] == [("learning_rate", 0.01, 0.5, "log")]
    assert dict(momentum.fixed) == {"momentum": 0.9}
    assert [d.name for d in adam.search] == ["learning_rate", "beta1", "epsilon", "beta2"]
    with pytest.raises(InputError, match="lr_schedule"):
        parse_spec(tiny_data(optimizers={"sgd": {"search": {"lr_schedule": [0, 1]}}}))
    with pytest.raises(InputError, match="ema_decays"):
        parse_spec(tiny_data(optimizers={"sgd+ema": {"fixed": {"ema_decay": 0.9}}}))


@pytest.mark.parametrize("flags,needle", [
    (["--executor", "ray"], "unknown executor"),
    (["--executor", "local", "--workers", "2"], "--executor dask"),
    (["--workers", "0"], "--workers"),
    (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "cannot be combined"),
])
def test_bad_run_options_are_one_line_and_create_nothing(flags, needle, tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(to_toml(tiny_data()))
    result = RUNNER.invoke(app, ["study", "run", str(spec), "--out", str(tmp_path / "out"), *flags])
    assert result.exit_code == 2 and needle in result.stderr, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", sorted((QUICK.parent).glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_preset_is_valid(path):
    spec = load_spec(path)
    assert spec.name == path.stem and len(make_design(spec)) == len(spec.optimizers) * len(spec.batch_sizes) * spec.trials


def test_an_optimizer_budget_overrides_the_study_budget_for_its_trials_only():
    """``budget = {...}`` in an optimizer's table: its keys over the study's ``[budget]`` (``steps``
    alone replaces it); the other optimizers' trials, ids included, do not change, and a spec without
    the key keeps its stored form."""
    study_budget = {"examples": 6400, "min_steps": 50, "max_steps": 300}
    plain = parse_spec(tiny_data(budget=study_budget))
    data = tiny_data(budget=study_budget)
    data["optimizers"]["sgd"] = dict(data["optimizers"]["sgd"], budget={"min_steps": 120})
    own = parse_spec(data)
    expected = {32: 200, 128: 120}  # ceil(6400 / B) clipped to [120, 300] for sgd ...
    study = {32: 200, 128: 50}  # ... and to [50, 300] for the others
    by_id = {t.id: t for t in make_design(plain)}
    for trial in make_design(own):
        if trial.optimizer == "sgd":
            assert trial.max_steps == expected[trial.batch_size]
            assert (trial.id in by_id) == (expected[trial.batch_size] == study[trial.batch_size])
        else:
            assert trial.max_steps == study[trial.batch_size] and trial.id in by_id
    assert "budget" not in plain.to_dict()["optimizers"][0]
    assert own.to_dict()["optimizers"][0]["budget"] == {"steps": None, "examples": 6400.0, "min_steps": 120,
                                                        "max_steps": 300}
    data["optimizers"]["sgd"]["budget"] = {"steps": 77}
    assert {t.max_steps for t in make_design(parse_spec(data)) if t.optimizer == "sgd"} == {77}



def test_a_target_metric_changes_only_the_trials_target_and_keeps_old_specs_stored_form():
    """``target_metric``: recorded in every trial's configuration (so its ids differ from the default
    metric's), absent from the stored form of specs without it (their ids are unchanged)."""
    plain = parse_spec(tiny_data())
    assert plain.target_metric is None and "target_metric" not in plain.to_dict()
    assert {t.config["target_metric"] for t in make_design(plain)} == {"error"}
    loss = parse_spec(tiny_data(target_metric="train_set_loss", target=0.07))
    assert loss.to_dict()["target_metric"] == "train_set_loss"
    design = make_design(loss)
    assert {(t.config["target_metric"], t.config["target"]) for t in design} == {("train_set_loss", 0.07)}
    assert not {t.id for t in design} & {t.id for t in make_design(plain)}
    same = parse_spec(tiny_data(target_metric="error"))  # the default metric named: the same study
    assert same.to_dict() == plain.to_dict() and [t.id for t in make_design(same)] == [t.id for t in make_design(plain)]
