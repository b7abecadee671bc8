"""``batchlab calibrate`` end to end on a real workload (digits-cnn), and its one-line input errors."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from batchlab.calibrate import pipeline
from batchlab.cli import _register, app
from batchlab.nqm import Problem, expected_risk
from batchlab.nqm.first_hit import first_hits
from batchlab.nqm.optimize import make_dynamics
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


def test_calibrate_predicts_real_curves_on_the_measured_problem(digits_run):
    """The prediction has content: finite steps that do not grow with the batch size (the NQM's risk at
    fixed hyperparameters only falls as the noise ``∝ 1/B`` falls, so the tuned steps cannot grow), each
    the exact first hit of its tuned hyperparameters on the NQM of nqm_problem.json, a finite critical
    batch size; and that NQM carries the measured top-k eigenvalues and noise of spectra.json."""
    result, out = digits_run
    assert result.exit_code == 0, result.output
    prediction = _strict((out / "prediction.json").read_text())
    spectra = _strict((out / "spectra.json").read_text())
    stored = _strict((out / "nqm_problem.json").read_text())

    k = len(spectra["eigenvalues"])
    assert all(v > 0 for v in spectra["eigenvalues"])  # GGN: positive semi-definite, and kept (> 1e-5 λ₁)
    np.testing.assert_array_equal(stored["h"][:k], spectra["eigenvalues"])
    np.testing.assert_array_equal(stored["c"][:k], np.maximum(spectra["noise"], 0.0))
    np.testing.assert_array_equal(stored["weights"][:k], np.ones(k))
    assert len(stored["h"]) > k and all(h > 0 for h in stored["h"][k:])  # then the compressed bulk
    problem = Problem(h=np.array(stored["h"]), c=np.array(stored["c"]), s0=np.array(stored["s0"]),
                      weights=np.array(stored["weights"]))
    target = prediction["target"]
    assert stored["target"] == target["nqm_target"]
    for name in (None, "sgd", "momentum"):  # read back: the reference's NQM for every optimizer here
        read, read_target = pipeline.read_nqm(out, name)
        for key in ("h", "c", "s0", "weights"):
            np.testing.assert_array_equal(getattr(read, key), getattr(problem, key))
        assert read_target == target["nqm_target"]
    # the NQM starts at the measured initial loss (loss floor 0) and its target is the measured target loss
    assert problem.initial_risk() == pytest.approx(target["initial_loss"], rel=1e-9)
    assert target["nqm_target"] == pytest.approx(target["target_loss"], rel=1e-9)

    # every count is the NQM's plus the start-up delay fitted to the reference's loss curve (recorded)
    delay = prediction["delay"]["steps"]
    assert prediction["delay"]["rule"] == "fit" and 0 <= delay < prediction["anchor"]["steps"]
    assert prediction["anchor"]["nqm_steps"] == prediction["anchor"]["steps"]
    assert stored["delay"] == delay and len(prediction["reference"]["loss_curve"]) >= 2
    every = get_workload("digits-cnn").default_eval_every
    for name, entry in prediction["optimizers"].items():
        expected = [s - delay for s in entry["expected_steps"]]
        assert all(s is not None and s > 0 for s in expected), (name, expected)
        assert expected == sorted(expected, reverse=True), (name, expected)
        for b, s, rate, momentum in zip(entry["batch_sizes"], expected, entry["expected_learning_rates"],
                                        entry["momenta"]):
            dyn = make_dynamics(entry["nqm_kind"], learning_rate=rate, momentum=momentum)
            risk = expected_risk(problem, dyn, batch_size=b, steps=np.arange(s + 1))
            assert risk[s] <= target["nqm_target"] * (1 + 1e-9) and np.all(risk[:s] > target["nqm_target"]), (name, b)
        # steps: one run's median first hit as the training loop reports it (evaluations every `every`
        # steps, then a replay), at a multiple of the expected optimum's rate, reproduced from the stored
        # NQM with the stored seed and runs
        first = entry["first_hit"]
        assert first["every"] == every and first["runs"] == 400 and first["seed"] == 0
        for b, s, rate, momentum, low in zip(entry["batch_sizes"], [s - delay for s in entry["steps"]],
                                             entry["learning_rates"], entry["momenta"], expected):
            # a run's loss is a right-skewed fluctuation around the expected risk: its median path, and
            # so the median first hit, lies below the expected crossing (and the scan includes rate x1)
            assert s <= low, (name, b, s, low)
            dyn = make_dynamics(entry["nqm_kind"], learning_rate=rate, momentum=momentum)
            hits = first_hits(problem, dyn, batch_size=b, target=target["nqm_target"], eval_every=every,
                              horizon=every * math.ceil(4 * low / every), runs=400, seed=0)
            assert float(np.median(hits)) == s, (name, b)
        for key in ("critical_batch_size", "expected_critical_batch_size"):
            critical = entry[key]
            assert critical["overhead"] is not None and entry["batch_sizes"][0] <= critical["overhead"] <= 256
            assert critical["b_noise"] is not None and math.isfinite(critical["b_noise"]) and critical["b_noise"] > 0


@pytest.fixture
def no_training(monkeypatch):
    """Make any training or measurement an error: a check that passes must fail before either runs."""
    def refuse(*args, **kwargs):
        raise AssertionError("calibrate computed something before failing")

    monkeypatch.setattr(pipeline, "run_reference", refuse)
    monkeypatch.setattr(pipeline, "measure", refuse)


def _one_line_error(result, message: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


@pytest.mark.parametrize("args, message", [
    (("--workload", "no-such"), "unknown workload"),
    (("--workload", "digits-cnn", "--option", "no_such=1"), "no_such"),
    (("--workload", "digits-cnn", "--top-k", "0"), "top_k"),
    (("--workload", "digits-cnn", "--top-k", "38282"), "top_k must be < the number of parameters (38282)"),
    (("--workload", "digits-cnn", "--batch-sizes", "0,16"), "batch sizes"),
    (("--workload", "digits-cnn", "--batch-sizes", "16,x"), "--batch-sizes: 'x' is not a number"),
    (("--workload", "digits-cnn", "--optimizers", "sgd,lion"), "unknown optimizer"),
    (("--workload", "digits-cnn", "--optimizers", ","), "--optimizers: empty list"),
    (("--workload", "digits-cnn", "--curvature", "fisher"), "curvature"),
    (("--workload", "digits-cnn", "--reference-optimizer", "adagrad"), "adagrad"),
    (("--workload", "digits-cnn", "--reference-hp", "lr=0.1"), "unknown hyperparameter"),
    (("--workload", "digits-cnn", "--reference-batch-size", "0"), "reference batch_size must be an integer >= 1"),
    (("--workload", "digits-cnn", "--reference-steps", "0"), "reference max_steps must be an integer >= 1"),
    (("--workload", "digits-cnn", "--reference-tune", "-1"), "reference tune_points must be an integer >= 0"),
    (("--workload", "digits-cnn", "--reference-seeds", "0"), "reference seeds must be an integer >= 1"),
    (("--workload", "digits-cnn", "--at-step", "-1"), "reference checkpoint_step must be an integer >= 0"),
    (("--workload", "digits-cnn", "--at-step", "3001"), "checkpoint step 3001 exceeds the reference budget 3000"),
    (("--workload", "digits-cnn", "--at-step", "50", "--reference-steps", "40"), "exceeds the reference budget 40"),
    (("--workload", "digits-cnn", "--target-loss", "0.1"), "checkpoint step"),
    (("--workload", "digits-cnn", "--target-loss", "nan", "--at-step", "3"), "loss at the target must be finite"),
    (("--workload", "digits-cnn", "--target-loss", "0.1", "--at-step", "3", "--loss-floor", "0.2"),
     "the loss floor (0.2) must be below the loss at the target (0.1)"),
    (("--workload", "digits-cnn", "--loss-floor", "inf"), "loss_floor must be finite"),
    (("--workload", "digits-cnn", "--target-metric", "accuracy", "--target", "0.1"),
     "target_metric: digits-cnn offers error, loss, train_set_loss, got 'accuracy'"),
    (("--workload", "digits-cnn", "--target-metric", "train_set_loss"), "target_metric train_set_loss needs a target"),
    (("--workload", "digits-cnn", "--target", "1.5"), "target: error is a fraction"),
    (("--workload", "digits-cnn", "--target-metric", "loss", "--target", "-1"), "target: loss must be a finite number > 0"),
    (("--workload", "digits-cnn", "--initial", "random"), "initial"),
    (("--workload", "digits-cnn", "--bulk-noise", "some"), "bulk_noise"),
    (("--workload", "digits-cnn", "--delay", "later"), "delay must be fit or none"),
    (("--workload", "digits-cnn", "--slq-probes", "0"), "slq_probes"),
    (("--workload", "digits-cnn", "--slq-steps", "0"), "slq_steps"),
    (("--workload", "digits-cnn", "--curvature-examples", "0"), "curvature_examples"),
    (("--workload", "digits-cnn", "--noise-examples", "3"), "noise_examples must be >= 4"),
    (("--workload", "digits-cnn", "--chunk-size", "0"), "chunk_size"),
    (("--workload", "digits-cnn", "--seed", "-1"), "seed must be an integer in [0, 4294967293]"),
    (("--workload", "digits-cnn", "--seed", "4294967295", "--reference-seeds", "2"), "4294967294"),
    (("--workload", "digits-cnn", "--preconditioner", "exact"), "preconditioner must be measured or proxy"),
    (("--workload", "digits-cnn", "--adam-hp", "beta1=1.5"), "beta1"),
    (("--workload", "digits-cnn", "--kfac-hp", "x"), "--kfac-hp"),
    (("--workload", "digits-cnn", "--optimizers", "sgd,adam", "--kfac-hp", "damping=0.1"), "kfac is not measured"),
    (("--workload", "digits-cnn", "--at-step", "0"), "need a checkpoint after at least one update"),
    (("--workload", "nqm-sampled", "--option", "dim=8"), "a measured kfac preconditioner needs"),
    (("--workload", "digits-cnn", "--preconditioner", "proxy", "--drift", "kfac"), "drift asked for kfac"),
    (("--workload", "digits-cnn", "--optimizers", "sgd,adam", "--drift", "kfac"), "drift asked for kfac"),
    (("--workload", "digits-cnn", "--drift", "lion"), "drift asked for lion, but lion is not measured"),
    (("--workload", "digits-cnn", "--drift", "adam,kfac"), "modelled for kfac only, not 'adam'"),
    (("--workload", "digits-cnn", "--seeds", "0"), "--seeds must be an integer >= 1"),
    (("--workload", "digits-cnn", "--seed", "4294967293", "--seeds", "2"), "seed must be an integer in [0, 4294967293]"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_training(tmp_path, no_training, args, message):
    result = RUNNER.invoke(app, ["calibrate", "--out", str(tmp_path / "out"), *args])
    _one_line_error(result, message)
    assert not (tmp_path / "out").exists()


def _read_only(monkeypatch, folder: Path) -> None:
    """``folder`` reads as not writable (``chmod`` alone does not stop root, who runs some CI)."""
    folder.chmod(0o555)
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (Path(path) != folder or not mode & os.W_OK)
                        and real(path, mode, **kw))


@pytest.mark.parametrize("case", ["existing file", "under a file", "read-only", "under read-only",
                                  "result name is a folder", "broken link"])
def test_unwritable_output_fails_fast(tmp_path, monkeypatch, no_training, case):
    """An output that cannot be written is refused before the reference run, and nothing is touched."""
    blocker = tmp_path / "taken.txt"
    blocker.write_text("keep me\n")
    out, message = {
        "existing file": (blocker, f"output folder {blocker}: exists and is not a folder"),
        "under a file": (blocker / "run" / "calibration", f"{blocker} is a file, not a folder"),
        "read-only": (tmp_path / "ro", f"output folder {tmp_path / 'ro'}: is not writable"),
        "under read-only": (tmp_path / "ro" / "new", f"cannot be created, {tmp_path / 'ro'} is not writable"),
        "result name is a folder": (tmp_path / "old", "prediction.json there is a folder, not a file"),
        "broken link": (tmp_path / "link", "is a broken symbolic link"),
    }[case]
    if "read-only" in case:
        (tmp_path / "ro").mkdir()
        _read_only(monkeypatch, tmp_path / "ro")
    if case == "result name is a folder":
        (out / "prediction.json").mkdir(parents=True)
    if case == "broken link":
        out.symlink_to(tmp_path / "nowhere")
    result = RUNNER.invoke(app, ["calibrate", "--workload", "digits-cnn", "--out", str(out), *SMALL])
    _one_line_error(result, message)
    assert blocker.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["taken.txt"] + {"read-only": ["ro"], "under read-only": ["ro"], "broken link": ["link"],
                         "result name is a folder": ["old", "prediction.json"]}.get(case, []))


def test_real_calibrate_output_feeds_the_study_report(digits_run, tmp_path):
    """The study report reads what ``batchlab calibrate`` really wrote (not a hand-written file): the
    predicted critical batch sizes it shows are prediction.json's ``b_noise``, compared with the study's."""
    from batchlab.analysis import analyze

    result, out = digits_run
    assert result.exit_code == 0, result.output
    spec = tmp_path / "tiny.toml"
    spec.write_text('name = "tiny"\nworkload = "digits-cnn"\nbatch_sizes = [16, 64]\ntrials = 2\nseed = 0\n'
                    'eval_every = 5\n[budget]\nexamples = 4000\nmin_steps = 60\nmax_steps = 200\n'
                    '[optimizers.sgd]\nsearch.learning_rate = [0.1, 1.0]\n'
                    '[optimizers.momentum]\nsearch.learning_rate = [0.03, 0.3]\nsearch.momentum = [0.8, 0.9]\n')
    study = tmp_path / "study"
    ran = RUNNER.invoke(app, ["study", "run", str(spec), "--out", str(study)])
    assert ran.exit_code == 0, ran.output
    (study / "calibration").mkdir()
    (study / "calibration" / "prediction.json").write_bytes((out / "prediction.json").read_bytes())
    written = _strict((out / "prediction.json").read_text())
    versus = analyze(study).prediction_vs_measured
    assert set(versus["optimizer"]) <= {"sgd", "momentum"}
    for row in versus.itertuples():
        assert row.predicted == pytest.approx(written["optimizers"][row.optimizer]["critical_batch_size"]["b_noise"])
        if math.isfinite(row.measured_b_noise) and row.measured_b_noise > 0:
            assert row.ratio == pytest.approx(row.predicted / row.measured_b_noise)
    reported = RUNNER.invoke(app, ["study", "report", str(study)])
    assert reported.exit_code == 0, reported.output
    page = (study / "report" / "report.html").read_text()
    assert "NQM prediction from" in page and "prediction.json" in page


def test_calibrating_for_a_training_loss_target_runs_the_reference_to_it(tmp_path):
    """``--target-metric train_set_loss --target T`` (a study's target): the reference run stops at the
    first step whose training-split loss is <= T, so the measured training loss there (on the
    calibration's own measurement batch, an independent sample of the training split) is close to T,
    and prediction.json records the study's target."""
    out = tmp_path / "cal"
    result = RUNNER.invoke(app, ["calibrate", "--workload", "digits-cnn", "--out", str(out), "--optimizers", "sgd",
                                 "--batch-sizes", "16,256", "--target-metric", "train_set_loss", "--target", "0.2",
                                 *SMALL])
    assert result.exit_code == 0, result.output
    target = _strict((out / "prediction.json").read_text())["target"]
    assert (target["metric"], target["value"]) == ("train_set_loss", 0.2)
    assert target["target_step"] > 0 and abs(target["target_loss"] / 0.2 - 1) < 0.25
