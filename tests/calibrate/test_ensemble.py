"""Calibration ensembles (:mod:`batchlab.calibrate.ensemble`): the combination against brute-force medians,
its invariants, its one-line refusals, and ``batchlab calibrate --seeds`` / ``calibrate-combine`` end to end
on digits-cnn (members identical to single-seed calibrations, the study report reading the ensemble)."""

from __future__ import annotations

import copy
import json
import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from batchlab.calibrate.ensemble import combine, geometric_median, median_steps, read_member, write_ensemble
from batchlab.cli import _register, app
from batchlab.critical import critical_batch_size
from batchlab.errors import InputError
from batchlab.store.prediction import read_prediction

_register()
RUNNER = CliRunner()
SIZES = [4.0, 16.0, 64.0, 256.0, 1024.0]
SMALL = ("--top-k", "4", "--slq-probes", "2", "--slq-steps", "12", "--curvature-examples", "256",
         "--noise-examples", "256", "--chunk-size", "128", "--reference-tune", "3", "--reference-seeds", "1")


def _member(seed: int, steps: dict[str, list], rates: dict[str, list] | None = None, **top) -> dict:
    optimizers = {}
    for name, values in steps.items():
        fit = critical_batch_size(SIZES, [math.nan if s is None else s for s in values]).fit
        optimizers[name] = {
            "nqm_kind": "momentum" if name != "sgd" else "sgd", "precond": 0.0, "units": "optimizer",
            "batch_sizes": list(SIZES), "steps": list(values),
            "learning_rates": list((rates or {}).get(name, [0.1] * len(SIZES))),
            "momenta": [None if name == "sgd" else 0.9] * len(SIZES),
            "critical_batch_size": {"b_noise": None if fit is None else fit.b_noise, "overhead": None},
            "first_hit": {"every": 5}}
    return {"workload": "digits-cnn", "checkpoint_step": 40 + seed, "seed": seed,
            "target": {"metric": "train_set_loss", "value": 0.07, "nqm_target": 0.07 + seed / 100},
            "optimizers": optimizers, "noise_scales": {"b_simple": 100.0 + seed, "b_noise": 50.0 + seed},
            "reference": {"optimizer": "sgd", "batch_size": 128, "hyperparameters": {"learning_rate": 0.4},
                          "median_steps": 40}, **top}


def _brute_median(values):
    """The median as a sorted list's middle (mean of the middle two), ``None`` as infinity."""
    ordered = sorted(math.inf if v is None else v for v in values)
    n = len(ordered)
    mid = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return None if math.isinf(mid) else mid


steps_lists = st.lists(st.one_of(st.none(), st.integers(1, 5000)), min_size=len(SIZES), max_size=len(SIZES))


@settings(max_examples=60, deadline=None)
@given(st.lists(steps_lists, min_size=2, max_size=6), st.randoms(use_true_random=False))
def test_combined_steps_are_the_members_median_and_order_free(curves, rng):
    members = [_member(seed, {"sgd": curve}) for seed, curve in enumerate(curves)]
    combined = combine(members)["optimizers"]["sgd"]
    for i in range(len(SIZES)):
        assert combined["steps"][i] == _brute_median([c[i] for c in curves])
    shuffled = members[:]
    rng.shuffle(shuffled)
    again = combine(shuffled)["optimizers"]["sgd"]
    assert again["steps"] == combined["steps"]
    assert again["critical_batch_size"] == combined["critical_batch_size"]
    expected = critical_batch_size(SIZES, [math.nan if s is None else s for s in combined["steps"]]).fit
    assert combined["critical_batch_size"]["b_noise"] == (None if expected is None else pytest.approx(expected.b_noise))
    assert combined["members"]["steps"] == [m["optimizers"]["sgd"]["steps"] for m in members]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(1e-4, 10.0), min_size=len(SIZES), max_size=len(SIZES)), min_size=2, max_size=5))
def test_combined_rates_are_geometric_medians(rate_lists):
    members = [_member(seed, {"sgd": [100, 50, 30, 20, 20]}, {"sgd": rates}) for seed, rates in enumerate(rate_lists)]
    combined = combine(members)["optimizers"]["sgd"]
    for i, rate in enumerate(combined["learning_rates"]):
        logs = [math.log(r[i]) for r in rate_lists]
        assert rate == pytest.approx(math.exp(statistics.median(logs)), rel=1e-12)
        assert min(r[i] for r in rate_lists) * (1 - 1e-12) <= rate <= max(r[i] for r in rate_lists) * (1 + 1e-12)


def test_identical_members_combine_to_themselves():
    curve = [400, 120, 50, 31, 28]
    members = [_member(seed, {"sgd": curve, "momentum": [390, 110, 35, 15, 10]}) for seed in (3, 7, 11)]
    combined = combine(members)
    for name in ("sgd", "momentum"):
        entry, original = combined["optimizers"][name], members[0]["optimizers"][name]
        assert entry["steps"] == original["steps"]
        assert entry["learning_rates"] == pytest.approx(original["learning_rates"])
        assert entry["momenta"][0] == (None if name == "sgd" else pytest.approx(0.9))
        assert entry["critical_batch_size"]["b_noise"] == pytest.approx(original["critical_batch_size"]["b_noise"])
        assert entry["members"]["b_noise_range"] == [pytest.approx(original["critical_batch_size"]["b_noise"])] * 2
        assert entry["members"]["b_noise_median"] == pytest.approx(original["critical_batch_size"]["b_noise"])
    assert combined["seeds"] == [3, 7, 11] and combined["checkpoint_step"] == 47
    assert combined["target"] == {"metric": "train_set_loss", "value": 0.07}
    assert [m["target"]["nqm_target"] for m in combined["ensemble"]["members"]] == [0.1, 0.14, 0.18]
    assert combined["noise_scales"]["b_noise"] == pytest.approx(57.0)


def test_medians_of_the_helpers():
    assert median_steps([40, None, 30]) == 40 and median_steps([None, None, 3]) is None
    assert median_steps([31, 40, 35, 30]) == 33 and median_steps([31, 40]) == 35.5
    assert geometric_median([None, None]) is None
    assert geometric_median([0.5, 0.9], one_minus=True) == pytest.approx(1 - math.sqrt(0.5 * 0.1))


def _changed(member: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(member)
    where = out
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    return out


@pytest.mark.parametrize("change, message", [
    (None, "at least 2 calibrations"),
    (("seed",), "have the same seed 0"),
    (("workload",), "calibrates workload x"),
    (("target", "value"), "target value"),
    (("optimizers", "sgd", "batch_sizes"), "batch sizes"),
    (("optimizers", "sgd", "first_hit", "every"), "checked every"),
    (("optimizers", "sgd", "bias_correction"), "bias_correction"),
])
def test_members_that_do_not_agree_are_refused(change, message):
    first = _member(0, {"sgd": [400, 120, 50, 31, 28]})
    if change is None:
        members = [first]
    else:
        second = _member(1, {"sgd": [400, 120, 50, 31, 28]})
        value = {("seed",): 0, ("workload",): "x", ("target", "value"): 0.1,
                 ("optimizers", "sgd", "batch_sizes"): [1.0, 2.0, 3.0, 4.0, 5.0],
                 ("optimizers", "sgd", "first_hit", "every"): 10,
                 ("optimizers", "sgd", "bias_correction"): True}[change]
        members = [first, _changed(second, change, value)]
    with pytest.raises(InputError, match=message) as raised:
        combine(members)
    assert "\n" not in str(raised.value)


def test_unreadable_members_are_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_member(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "prediction.json").write_text("{")
    with pytest.raises(InputError, match="cannot read"):
        read_member(tmp_path / "bad")
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "prediction.json").write_text(json.dumps({**_member(0, {"sgd": [1] * 5}), "ensemble": {}}))
    with pytest.raises(InputError, match="is itself an ensemble"):
        read_member(tmp_path / "ens")


# --- end to end on digits-cnn -----------------------------------------------------------------------------------

ARGS = ("--workload", "digits-cnn", "--batch-sizes", "16,64,256", "--optimizers", "sgd,momentum", *SMALL)


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    single = RUNNER.invoke(app, ["calibrate", *ARGS, "--seed", "1", "--out", str(root / "single")])
    both = RUNNER.invoke(app, ["calibrate", *ARGS, "--seed", "1", "--seeds", "2", "--out", str(root / "ens"), "--json"])
    return root, single, both


def test_seeds_writes_members_equal_to_single_calibrations_and_their_median(ensemble_run):
    root, single, both = ensemble_run
    assert single.exit_code == 0, single.output
    assert both.exit_code == 0, both.output
    out = root / "ens"
    prediction = json.loads((out / "prediction.json").read_text())
    assert json.loads(both.stdout) == prediction
    # member seed-1 is exactly the single calibration with --seed 1 (the same files, timings aside)
    assert (out / "seed-1" / "prediction.json").read_text() == (root / "single" / "prediction.json").read_text()
    assert (out / "seed-1" / "nqm_problem.json").read_text() == (root / "single" / "nqm_problem.json").read_text()
    members = [json.loads((out / f"seed-{s}" / "prediction.json").read_text()) for s in (1, 2)]
    assert [m["seed"] for m in members] == [1, 2] == prediction["seeds"]
    assert members[0]["optimizers"]["sgd"]["steps"] != members[1]["optimizers"]["sgd"]["steps"] or \
        members[0]["checkpoint_step"] != members[1]["checkpoint_step"]  # another seed is another calibration
    for name in ("sgd", "momentum"):
        entry = prediction["optimizers"][name]
        rows = np.array([[math.inf if s is None else s for s in m["optimizers"][name]["steps"]] for m in members])
        median = np.median(rows, axis=0)
        assert [math.inf if s is None else s for s in entry["steps"]] == pytest.approx(median.tolist())
        assert entry["members"]["b_noise"] == [m["optimizers"][name]["critical_batch_size"]["b_noise"] for m in members]
        assert entry["members"]["b_noise_median"] == pytest.approx(float(np.median(entry["members"]["b_noise"])))
        fit = critical_batch_size(entry["batch_sizes"], np.where(np.isinf(median), np.nan, median)).fit
        assert entry["critical_batch_size"]["b_noise"] == pytest.approx(fit.b_noise)
    assert [m["folder"] for m in prediction["ensemble"]["members"]] == ["seed-1", "seed-2"]
    assert (out / "prediction.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what a study reads: the median curves and their critical batch sizes
    read = read_prediction(out / "prediction.json")
    assert "median of 2 calibrations (seeds 1, 2)" in read.source
    assert read.optimizers["sgd"].critical_batch_size == pytest.approx(
        prediction["optimizers"]["sgd"]["critical_batch_size"]["b_noise"])


def test_combine_command_reproduces_the_ensemble(ensemble_run, tmp_path):
    root, _, both = ensemble_run
    assert both.exit_code == 0, both.output
    out = tmp_path / "combined"
    result = RUNNER.invoke(app, ["calibrate-combine", str(root / "ens" / "seed-1"), str(root / "ens" / "seed-2"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "median over seeds" in result.stdout
    again, original = (json.loads((folder / "prediction.json").read_text()) for folder in (out, root / "ens"))
    assert again["optimizers"] == original["optimizers"]
    refused = RUNNER.invoke(app, ["calibrate-combine", str(root / "ens" / "seed-1"), str(root / "single"),
                                  "--out", str(tmp_path / "dup")])
    assert refused.exit_code == 2 and "the same seed 1" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "dup").exists()


def test_write_ensemble_refuses_an_unwritable_output(ensemble_run, tmp_path):
    root, _, _ = ensemble_run
    blocker = tmp_path / "file"
    blocker.write_text("keep me\n")
    with pytest.raises(InputError, match="exists and is not a folder"):
        write_ensemble(blocker, [root / "ens" / "seed-1", root / "ens" / "seed-2"])
    assert blocker.read_text() == "keep me\n"


def test_an_unwritable_member_folder_fails_before_any_training(tmp_path, monkeypatch):
    from batchlab.calibrate import pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("calibrate computed something before failing")

    monkeypatch.setattr(pipeline, "run_reference", refuse)
    monkeypatch.setattr(pipeline, "measure", refuse)
    out = tmp_path / "ens"
    out.mkdir()
    (out / "seed-1").write_text("keep me\n")
    result = RUNNER.invoke(app, ["calibrate", *ARGS, "--seeds", "2", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"output folder {out / 'seed-1'}: exists and is not a folder" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["seed-1"] and (out / "seed-1").read_text() == "keep me\n"


def test_the_study_report_shows_the_ensembles_seed_range(ensemble_run, tmp_path):
    """A study's report reads an ensemble's prediction.json: its predicted B_noise is the median curve's,
    shown with the seeds' range; the verdict is computed on the median."""
    import pandas as pd

    from batchlab.analysis.prediction import compare_critical, load_prediction
    from batchlab.report.tables import prediction_table

    root, _, both = ensemble_run
    assert both.exit_code == 0, both.output
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "prediction.json").write_bytes((root / "ens" / "prediction.json").read_bytes())
    written = json.loads((root / "ens" / "prediction.json").read_text())["optimizers"]["sgd"]
    prediction = load_prediction(tmp_path)
    measured = pd.DataFrame([{"optimizer": "sgd", "b_noise": 50.0, "b_noise_low": 40.0, "b_noise_high": 60.0,
                              "overhead": 64.0}])
    versus = compare_critical(prediction, measured)
    row = versus.iloc[0]
    assert row["predicted"] == pytest.approx(written["critical_batch_size"]["b_noise"])
    assert (row["predicted_low"], row["predicted_high"]) == pytest.approx(tuple(written["members"]["b_noise_range"]))
    assert row["ratio"] == pytest.approx(row["predicted"] / 50.0)
    shown = prediction_table(versus)["predicted B_crit (NQM)"].iloc[0]
    assert "[seeds " in shown


def test_a_rerun_resumes_from_the_finished_members(ensemble_run, monkeypatch):
    """Rerunning ``--seeds`` reuses every member whose settings.json matches (nothing is trained, the files
    are unchanged); a member without it (as if interrupted) is calibrated again, and only that one."""
    from batchlab.calibrate import pipeline
    from batchlab.calibrate.ensemble import SETTINGS_FILE

    root, _, both = ensemble_run
    assert both.exit_code == 0, both.output
    out = root / "ens"
    settings = json.loads((out / "seed-1" / SETTINGS_FILE).read_text())
    assert settings["seed"] == 1 and settings["workload"] == "digits-cnn" and len(settings["fingerprint"]) == 64
    before = {path: path.read_bytes() for path in out.rglob("*.json")}
    calls = []
    real = pipeline.run_reference

    def counted(*args, **kwargs):
        calls.append(kwargs.get("seed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run_reference", counted)
    again = RUNNER.invoke(app, ["calibrate", *ARGS, "--seed", "1", "--seeds", "2", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert calls == [] and again.stderr.count("reusing") == 2
    assert {path: path.read_bytes() for path in out.rglob("*.json")} == before
    (out / "seed-2" / SETTINGS_FILE).unlink()  # seed 2 never finished
    third = RUNNER.invoke(app, ["calibrate", *ARGS, "--seed", "1", "--seeds", "2", "--out", str(out)])
    assert third.exit_code == 0, third.output
    assert calls and set(calls) == {2} and third.stderr.count("reusing") == 1
    after = {path: path.read_bytes() for path in out.rglob("*.json")}
    same = [path for path in before if path.name != "spectra.json"]  # spectra.json holds timings
    assert {path: after[path] for path in same} == {path: before[path] for path in same}  # the same calibration
    other = json.loads(json.dumps(settings))
    from batchlab.calibrate.ensemble import finished_member

    other["fingerprint"] = "0" * 64
    assert not finished_member(out / "seed-1", other) and finished_member(out / "seed-1", settings)
