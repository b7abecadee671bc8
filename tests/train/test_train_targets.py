"""Every optimizer registry entry reaches its workload's target on a small configuration.

digits-cnn (scikit-learn's real 8×8 digits, target 3 % error) at batch size 64, with settings found
by hand; each needs well under 200 steps, and the budget of 600 leaves room.
"""

from __future__ import annotations

import pytest

from batchlab.optim import optimizer_names
from batchlab.train import train
from batchlab.workloads.registry import get_workload

SETTINGS = {
    "sgd": {"learning_rate": 0.3},
    "momentum": {"learning_rate": 0.05, "momentum": 0.9},
    "nesterov": {"learning_rate": 0.05, "momentum": 0.9},
    "adam": {"learning_rate": 3e-3},
    "kfac": {"learning_rate": 0.1, "damping": 0.1},
    # the registry defaults (each module's docstring cites its measured steps to this target)
    "adamw": {},
    "lion": {},
    "lamb": {},
    "lars": {},
    "muon": {},
    "schedule-free-adamw": {},
}


@pytest.fixture(scope="module")
def digits():
    workload = get_workload("digits-cnn")
    workload.load()
    return workload


@pytest.mark.parametrize("name", optimizer_names())
def test_every_optimizer_reaches_the_digits_target(digits, name):
    base, _, ema = name.partition("+")
    hyperparameters = dict(SETTINGS[base], **({"ema_decay": 0.9} if ema else {}))
    result = train(digits, name, hyperparameters, 64, 600, 0, eval_every=25)
    assert result.status == "reached", (name, result.final_metrics)
    assert 0 < result.steps_to_target <= 200
    assert result.final_metrics["error"] <= digits.target_value
