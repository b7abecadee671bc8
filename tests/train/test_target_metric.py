"""A run's target on another metric than the workload's default: classifiers' ``loss`` and ``train_set_loss``.

``train_set_loss`` is checked against an independent float64 NumPy forward pass over the training
split; the first hit a run reports is checked against the every-step curve of the same run (brute
force); bad metrics are one-line input errors.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.train import check_arguments, train
from batchlab.workloads.digits import DigitsCnn
from batchlab.workloads.registry import get_workload
from tests.workloads.numpy_reference import REFERENCES


@pytest.fixture(scope="module")
def digits():
    workload = get_workload("digits-cnn")
    workload.load()
    return workload


def _numpy_train_loss(workload, params, index=None) -> float:
    arrays = workload.arrays
    inputs = np.asarray(arrays.train_inputs, np.float64) * arrays.input_scale + arrays.input_shift
    labels = np.asarray(arrays.train_labels)
    if index is not None:
        inputs, labels = inputs[index], labels[index]
    params = jax.tree.map(np.asarray, params)
    return float(np.mean(REFERENCES["digits-cnn"](workload, params, {"inputs": inputs, "targets": labels})))


def test_train_set_loss_is_the_mean_cross_entropy_over_the_training_split(digits):
    params = digits.init_params(key=jax.random.PRNGKey(3))
    metrics = digits.evaluate_for(params, "train_set_loss")
    assert set(metrics) == {"loss", "error", "train_set_loss"}
    assert metrics["train_set_loss"] == pytest.approx(_numpy_train_loss(digits, params), rel=1e-5)
    assert "train_set_loss" not in digits.evaluate_for(params, "error")  # computed only when targeted


@dataclasses.dataclass(frozen=True)
class _SmallSubset(DigitsCnn):
    train_set_examples = 100


def test_train_set_loss_uses_a_fixed_subset_of_large_training_splits(digits):
    small = _SmallSubset()
    params = small.init_params(key=jax.random.PRNGKey(4))
    count = digits.num_train_examples
    index = np.sort(np.random.default_rng(0).choice(count, 100, replace=False))
    value = small.evaluate_for(params, "train_set_loss")["train_set_loss"]
    assert value == pytest.approx(_numpy_train_loss(small, params, index), rel=1e-5)
    assert value == small.evaluate_for(params, "train_set_loss")["train_set_loss"]  # the same subset every time


@pytest.mark.parametrize("metric, target", [("train_set_loss", 0.3), ("loss", 0.35)])
def test_first_hit_on_another_metric_equals_the_every_step_curve(digits, metric, target):
    hp = {"learning_rate": 0.3}
    full = train(digits, "sgd", hp, 64, 60, 1, target=-1.0, eval_every=1, target_metric=metric)
    steps = np.array([p.step for p in full.curve])
    values = np.array([p.metrics[metric] for p in full.curve])
    met = values <= target
    # the loop's rule (batchlab.train.loop): the first cadence evaluation meeting the target, then the
    # first step meeting it since the evaluation before that one
    cadence = int(np.flatnonzero(met & (steps % 7 == 0))[0])
    hit = steps[cadence]
    expected = int(steps[np.flatnonzero(met & (steps > hit - 7) & (steps <= hit))[0]])
    assert 0 < expected < 60
    result = train(digits, "sgd", hp, 64, 60, 1, target=target, eval_every=7, target_metric=metric)
    assert (result.status, result.steps_to_target, result.target_metric) == ("reached", expected, metric)
    assert result.final_metrics[metric] <= target
    default = train(digits, "sgd", hp, 64, 60, 1, eval_every=7)
    assert default.target_metric == "error" and "train_set_loss" not in default.final_metrics


@pytest.mark.parametrize("kwargs, message", [
    ({"target_metric": "accuracy", "target": 0.1}, "target_metric: digits-cnn offers error, loss, train_set_loss"),
    ({"target_metric": "train_set_loss"}, "target_metric train_set_loss needs a target"),
    ({"target_metric": "loss", "target": -0.5}, "target: loss must be a finite number > 0"),
    ({"target_metric": "error", "target": 1.5}, "target: error is a fraction"),
])
def test_bad_target_metrics_are_one_line_input_errors(digits, kwargs, message):
    with pytest.raises(InputError, match=message) as error:
        check_arguments(digits, "sgd", {"learning_rate": 0.1}, 64, 10, **kwargs)
    assert "\n" not in str(error.value)


def test_every_workload_offers_its_default_metric_first():
    from batchlab.workloads import list_workloads
    from batchlab.workloads.registry import workload_class

    for name in list_workloads():
        cls = workload_class(name)
        assert cls.target_metrics()[0] == cls.target_metric
        assert len(set(cls.target_metrics())) == len(cls.target_metrics())


def test_a_study_trial_on_train_set_loss_runs_the_same_locally_and_as_a_dask_task(digits):
    """A spec's ``target_metric`` reaches training on both executors' paths: the local ``run_task``
    and the Dask worker's ``execute`` (which rebuilds the workload from the configuration)."""
    from batchlab.study import parse_spec
    from batchlab.study.design import make_design
    from batchlab.study.trial import TrialTask, execute, run_task
    from tests.study.conftest import tiny_data

    spec = parse_spec(tiny_data(target_metric="train_set_loss", target=0.5, budget={"steps": 60},
                                optimizers={"sgd": {"search": {"learning_rate": [0.2, 0.4]}}}))
    trial = make_design(spec)[0]
    local = run_task(TrialTask(trial, digits))
    remote = execute(TrialTask(trial, digits).to_dict())
    assert local.status == remote["status"] == "reached"
    assert local.steps_to_target == remote["steps_to_target"] > 0
    assert local.tracks[0].final_metrics["train_set_loss"] <= 0.5


OLD_STYLE = """
import dataclasses
from batchlab.errors import InputError
from tests.toys import ToyQuadratic


@dataclasses.dataclass(frozen=True)
class OldStyle(ToyQuadratic):
    def check_target(self, target):
        if not 0 < target < 1:
            raise InputError(f"target: risk must be in (0, 1), got {target!r}")
        return float(target)

    def reached(self, metrics, target=None):
        return metrics["risk"] <= (self.target_value if target is None else target)
"""


def test_workloads_written_against_the_one_metric_interface_still_train_and_parse(tmp_path):
    """A user workload overriding ``check_target(self, target)`` and ``reached(self, metrics, target)``
    with the old signatures: its default target still works in ``train``, ``check_arguments`` and a
    spec (the metric argument is passed only when another metric is asked for)."""
    from batchlab.study import load_spec
    from batchlab.workloads.registry import get_workload

    (tmp_path / "old_style.py").write_text(OLD_STYLE)
    (tmp_path / "spec.toml").write_text('workload = "old_style.py:OldStyle"\nbatch_sizes = [8]\ntrials = 1\n'
                                        'target = 0.2\n[budget]\nsteps = 20\n[optimizers.sgd]\n')
    assert load_spec(tmp_path / "spec.toml").target == 0.2
    workload = get_workload(str(tmp_path / "old_style.py") + ":OldStyle")
    check_arguments(workload, "sgd", {"learning_rate": 0.5}, 8, 50, target=0.2)
    with pytest.raises(InputError, match="risk must be in"):
        check_arguments(workload, "sgd", {"learning_rate": 0.5}, 8, 50, target=2.0)
    result = train(workload, "sgd", {"learning_rate": 0.5}, 8, 200, 0, target=0.2, eval_every=1)
    risks = [p.metrics["risk"] for p in result.curve]
    assert result.status == "reached" and risks[-1] <= 0.2 and min(risks[:-1]) > 0.2
