"""Real optimizer code on nqm-sampled agrees with the exact NQM engine (batchlab.nqm).

The mean risk over many seeds of SGD, heavy-ball momentum, Nesterov and SGD + EMA, trained by :func:`batchlab.train.train`
on the ``nqm-sampled`` workload (θ(0) ~ N(0, I), gradient noise with covariance C / B), must match
``batchlab.nqm.expected_risk`` within 4 standard errors of the Monte Carlo mean at every checked step.
"""

from __future__ import annotations

import numpy as np
import pytest

from batchlab import nqm
from batchlab.train import train
from batchlab.workloads.registry import get_workload

SEEDS = 300
STEPS = (5, 20, 60)
BATCH = 4


@pytest.mark.parametrize(
    "optimizer,hyperparameters,dynamics",
    [
        ("sgd", {"learning_rate": 0.8}, nqm.sgd(0.8)),
        ("momentum", {"learning_rate": 0.3, "momentum": 0.6}, nqm.heavy_ball(0.3, 0.6)),
        ("nesterov", {"learning_rate": 0.3, "momentum": 0.6}, nqm.nesterov(0.3, 0.6)),
        # EMA evaluated at θ̃ with θ̃(0) = θ(0): the engine's convention
        ("sgd+ema", {"learning_rate": 0.8, "ema_decay": 0.8}, nqm.with_ema(nqm.sgd(0.8), 0.8)),
    ],
)
def test_mean_training_risk_matches_nqm_engine(optimizer, hyperparameters, dynamics):
    workload = get_workload("nqm-sampled", dim=50)
    risks = np.empty((SEEDS, len(STEPS)))
    for seed in range(SEEDS):
        result = train(workload, optimizer, hyperparameters, BATCH, max(STEPS), seed,
                       target=-1.0, eval_every=5)
        by_step = {p.step: p.metrics["risk"] for p in result.curve}
        risks[seed] = [by_step[t] for t in STEPS]
    expected = nqm.expected_risk(workload.spectrum, dynamics, batch_size=BATCH, steps=list(STEPS))
    mean = risks.mean(axis=0)
    standard_error = risks.std(axis=0, ddof=1) / np.sqrt(SEEDS)
    assert np.all(np.abs(mean - expected) < 4 * standard_error), (mean, expected, standard_error)
    # the check has power: the noise floor is well above zero and differs from the initial risk
    assert np.all(standard_error < 0.2 * expected)
