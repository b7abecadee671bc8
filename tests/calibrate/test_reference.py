"""The reference run: same parameters as ``train``, exact first hit, tuning, anchors and errors."""

import jax
import numpy as np
import pytest

from batchlab.calibrate.model import Anchor
from batchlab.calibrate.operators import chunk_batch
from batchlab.calibrate.reference import ReferenceConfig, reference_anchor, run_reference, tuning_rates
from batchlab.errors import InputError
from batchlab.nqm.dynamics import HeavyBall, SGD
from batchlab.train import train

from toys import ToyClassifier


@pytest.fixture(scope="module")
def toy():
    workload = ToyClassifier()
    chunks = chunk_batch(workload.sample_batch(key=jax.random.PRNGKey(9), batch_size=256), 128)
    return workload, chunks


def test_checkpoint_and_first_hit_agree_with_train(toy):
    workload, chunks = toy
    hp = {"learning_rate": 0.05, "momentum": 0.9}
    config = ReferenceConfig(optimizer="momentum", hyperparameters=hp, batch_size=32, checkpoint_step=7,
                             eval_every=20, tune_points=0)
    run = run_reference(workload, config, seed=3, loss_chunks=chunks)
    trained = train(workload, "momentum", hp, 32, 7, 3, eval_every=7, target=-1.0)
    assert trained.curve[-1].step == 7
    assert workload.evaluate(run.checkpoint)["loss"] == pytest.approx(trained.curve[-1].metrics["loss"], rel=1e-6)
    reached = train(workload, "momentum", hp, 32, 300, 3, eval_every=20)
    assert run.target_step == reached.steps_to_target  # exact first hit (replayed), as train reports it
    assert run.target_loss < run.initial_loss
    assert run.hyperparameters["learning_rate"] == 0.05 and run.trials == ()
    anchor = reference_anchor(config, run)
    assert isinstance(anchor, Anchor) and isinstance(anchor.dynamics, HeavyBall)
    assert anchor.steps == run.target_step and anchor.batch_size == 32.0


def test_checkpoint_defaults_to_the_first_hit(toy):
    workload, chunks = toy
    config = ReferenceConfig(hyperparameters={"learning_rate": 0.5}, batch_size=32, tune_points=0)
    run = run_reference(workload, config, seed=0, loss_chunks=chunks)
    assert run.checkpoint_step == run.target_step
    assert workload.reached(workload.evaluate(run.checkpoint))
    assert isinstance(reference_anchor(config, run).dynamics, SGD)


def test_tuning_picks_the_fastest_rate(toy):
    workload, chunks = toy
    config = ReferenceConfig(batch_size=32, tune_points=5, max_steps=300)
    run = run_reference(workload, config, seed=0, loss_chunks=chunks)
    rates = tuning_rates("sgd", 5)
    assert [rate for rate, _ in run.trials] == pytest.approx(rates.tolist())
    assert np.all(np.diff(rates) < 0)
    finished = [steps for _, steps in run.trials if steps is not None]
    assert run.target_step == min(finished)
    chosen = [rate for rate, steps in run.trials if steps == run.target_step][0]
    assert run.hyperparameters["learning_rate"] == pytest.approx(chosen)


def test_adaptive_references_have_no_anchor(toy):
    workload, chunks = toy
    config = ReferenceConfig(optimizer="adam", hyperparameters={"learning_rate": 0.01}, batch_size=32,
                             tune_points=0)
    run = run_reference(workload, config, seed=0, loss_chunks=chunks)
    assert reference_anchor(config, run) is None


def test_reference_errors_are_one_line_input_errors(toy):
    workload, chunks = toy
    with pytest.raises(InputError, match="did not reach"):
        run_reference(workload, ReferenceConfig(hyperparameters={"learning_rate": 1e-3}, batch_size=8,
                                                max_steps=20, tune_points=0), seed=0, loss_chunks=chunks)
    with pytest.raises(InputError, match="diverged"):
        run_reference(workload, ReferenceConfig(hyperparameters={"learning_rate": 1e4}, batch_size=8,
                                                tune_points=0), seed=0, loss_chunks=chunks)
    for bad in (ReferenceConfig(batch_size=0), ReferenceConfig(checkpoint_step=-1),
                ReferenceConfig(optimizer="adamw"), ReferenceConfig(hyperparameters={"lr": 0.1}),
                ReferenceConfig(target_loss=0.1), ReferenceConfig(tune_points=-1)):
        with pytest.raises(InputError):
            bad.check()
