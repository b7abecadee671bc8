"""Settings a calibration can refuse before any training: against the workload, the seed, the output."""

from __future__ import annotations

import json

import jax.numpy as jnp
import pytest

from batchlab.calibrate import CalibrationConfig, MeasureConfig, ReferenceConfig, check_output_dir, pipeline
from batchlab.errors import InputError


class _Stub:
    """Just what the checks read: 12 parameters, a loss kind, a step budget."""

    def __init__(self, loss_kind="softmax_cross_entropy"):
        self.loss_kind = loss_kind
        self.default_max_steps = 100

    def init_params(self, *, key):
        return {"w": jnp.zeros((3, 3)), "b": jnp.zeros(3)}


def test_parameter_count_from_shapes():
    assert pipeline.parameter_count(_Stub()) == 12


@pytest.mark.parametrize("config, workload, seed, message", [
    (CalibrationConfig(measure=MeasureConfig(top_k=12)), _Stub(), 0, "top_k must be < the number of parameters (12)"),
    (CalibrationConfig(measure=MeasureConfig(top_k=4)), _Stub("hinge"), 0, "loss kind 'hinge' has none"),
    (CalibrationConfig(reference=ReferenceConfig(checkpoint_step=101)), _Stub(), 0, "exceeds the reference budget 100"),
    (CalibrationConfig(reference=ReferenceConfig(seeds=3)), _Stub(), 2**32 - 2, "in [0, 4294967293]"),
    (CalibrationConfig(), _Stub(), True, "seed must be an integer"),
    (CalibrationConfig(measure=MeasureConfig(top_k=4)), _Stub("quadratic"), 0,
     "a measured kfac preconditioner needs a softmax_cross_entropy or squared_error loss, not loss kind 'quadratic'"),
])
def test_check_workload_refuses(config, workload, seed, message):
    with pytest.raises(InputError) as info:
        config.check_workload(workload, seed=seed)
    assert message in str(info.value)


def test_check_workload_accepts_what_the_workload_allows():
    CalibrationConfig(measure=MeasureConfig(top_k=11)).check_workload(_Stub(), seed=2**32 - 3)
    proxy = {"preconditioner": "proxy"}  # K-FAC cannot run on these losses: no measured kfac preconditioner
    CalibrationConfig(measure=MeasureConfig(top_k=4, curvature="hessian"), **proxy).check_workload(_Stub("hinge"))
    CalibrationConfig(measure=MeasureConfig(top_k=4), **proxy).check_workload(_Stub("quadratic"))  # GGN = Hessian
    CalibrationConfig(measure=MeasureConfig(top_k=4), optimizers=("sgd", "adam")).check_workload(_Stub("quadratic"))


@pytest.mark.parametrize("config, message", [
    (CalibrationConfig(preconditioner="exact"), "preconditioner must be measured or proxy, got 'exact'"),
    (CalibrationConfig(optimizer_hyperparameters={"adam": {"lr": 0.1}}), "unknown hyperparameter 'lr' for optimizer"),
    (CalibrationConfig(optimizer_hyperparameters={"kfac": {"damping": -1.0}}), "damping"),
    (CalibrationConfig(optimizers=("sgd", "kfac"), optimizer_hyperparameters={"adam": {"epsilon": 1e-3}}),
     "hyperparameters given for the adam reference run, but adam is not measured (measured: kfac)"),
    (CalibrationConfig(preconditioner="proxy", optimizer_hyperparameters={"adam": {"epsilon": 1e-3}}),
     "adam is not measured (measured: none)"),
    (CalibrationConfig(reference=ReferenceConfig(checkpoint_step=0)), "need a checkpoint after at least one update"),
])
def test_measured_preconditioner_settings_are_checked(config, message):
    with pytest.raises(InputError) as info:
        config.check()
    assert message in str(info.value)


def test_measured_optimizers_and_their_reference_runs():
    config = CalibrationConfig(reference=ReferenceConfig(batch_size=64, checkpoint_step=5, tune_points=4),
                               optimizer_hyperparameters={"kfac": {"damping": 0.1}})
    assert config.measured == ("adam", "kfac")
    kfac = config.optimizer_reference("kfac")
    assert (kfac.optimizer, dict(kfac.hyperparameters), kfac.batch_size, kfac.checkpoint_step, kfac.tune_points) == \
        ("kfac", {"damping": 0.1}, 64, 5, 4)
    assert dict(config.optimizer_reference("adam").hyperparameters) == {}
    assert CalibrationConfig(preconditioner="proxy").measured == ()
    assert CalibrationConfig(optimizers=("kfac", "sgd")).measured == ("kfac",)
    CalibrationConfig(preconditioner="proxy", reference=ReferenceConfig(checkpoint_step=0)).check()  # proxies: fine


def test_output_checks_create_nothing_and_writing_errors_are_one_line(tmp_path, monkeypatch):
    check_output_dir(tmp_path / "a" / "b")  # below a writable folder: fine, and not created
    check_output_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(pipeline, "check_output_dir", lambda out: None)  # a failure the check did not foresee
    with pytest.raises(InputError, match="^output folder .*file/sub: cannot write .*file/sub: Not a directory$"):
        pipeline.write_calibration(None, tmp_path / "file" / "sub")


@pytest.mark.parametrize("content, message", [
    (None, r"nqm_problem\.json: not found \(a `batchlab calibrate --out` folder\?\)$"),
    ("{", r"nqm_problem\.json: not a calibration's NQM \(JSONDecodeError: "),
    ('{"h": [1.0], "c": [1.0]}', r"nqm_problem\.json: not a calibration's NQM \(KeyError: 's0'\)$"),
    ('[1, 2]', r"nqm_problem\.json: not a calibration's NQM \(AttributeError: "),
])
def test_reading_an_nqm_back_refuses_what_is_not_one_in_one_line(tmp_path, content, message):
    if content is not None:
        (tmp_path / "nqm_problem.json").write_text(content)
    with pytest.raises(InputError, match=message) as info:
        pipeline.read_nqm(tmp_path, "adam")
    assert "\n" not in str(info.value)


def test_reading_an_nqm_back_picks_the_optimizers_own_or_the_reference(tmp_path):
    reference = {"h": [2.0, 1.0], "c": [0.5, 0.25], "s0": [1.0, 3.0], "weights": [1.0, 10.0], "target": 0.1}
    own = {"h": [4.0], "c": [1.0], "s0": [0.5], "weights": [1.0], "target": 0.2}
    (tmp_path / "nqm_problem.json").write_text(json.dumps({**reference, "preconditioned": {"adam": own}}))
    for name, body in ((None, reference), ("sgd", reference), ("adam", own), ("kfac", reference)):
        problem, target = pipeline.read_nqm(tmp_path, name)
        assert target == body["target"]
        for key in ("h", "c", "s0", "weights"):
            assert getattr(problem, key).tolist() == body[key]
