"""Settings a calibration can refuse before any training: against the workload, the seed, the output."""

from __future__ import annotations

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
])
def test_check_workload_refuses(config, workload, seed, message):
    with pytest.raises(InputError) as info:
        config.check_workload(workload, seed=seed)
    assert message in str(info.value)


def test_check_workload_accepts_what_the_workload_allows():
    CalibrationConfig(measure=MeasureConfig(top_k=11)).check_workload(_Stub(), seed=2**32 - 3)
    CalibrationConfig(measure=MeasureConfig(top_k=4, curvature="hessian")).check_workload(_Stub("hinge"))
    CalibrationConfig(measure=MeasureConfig(top_k=4)).check_workload(_Stub("quadratic"))  # GGN = Hessian there


def test_output_checks_create_nothing_and_writing_errors_are_one_line(tmp_path, monkeypatch):
    check_output_dir(tmp_path / "a" / "b")  # below a writable folder: fine, and not created
    check_output_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(pipeline, "check_output_dir", lambda out: None)  # a failure the check did not foresee
    with pytest.raises(InputError, match="^output folder .*file/sub: cannot write .*file/sub: Not a directory$"):
        pipeline.write_calibration(None, tmp_path / "file" / "sub")
