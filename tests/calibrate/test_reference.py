"""The reference run: same parameters as ``train``, exact first hit, tuning, anchors and errors."""

import dataclasses

import jax
import numpy as np
import pytest

from batchlab.calibrate.model import Anchor
from batchlab.calibrate.operators import chunk_batch
from batchlab.calibrate.predict import Proxy
from batchlab.calibrate.reference import ReferenceConfig, reference_anchor, run_reference, tuning_rates
from batchlab.errors import InputError
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
    # the run's momentum as it ran: the NQM's anchor tunes the rate alone, at that momentum
    assert reference_anchor(config, run) == Anchor("momentum", 0.0, 32.0, run.median_steps, momentum=0.9)


def test_checkpoint_defaults_to_the_first_hit(toy):
    workload, chunks = toy
    config = ReferenceConfig(hyperparameters={"learning_rate": 0.5}, batch_size=32, tune_points=0)
    run = run_reference(workload, config, seed=0, loss_chunks=chunks)
    assert run.checkpoint_step == run.target_step
    assert workload.reached(workload.evaluate(run.checkpoint))
    assert reference_anchor(config, run) == Anchor("sgd", 0.0, 32.0, run.median_steps)


def test_tuning_picks_the_fastest_rate(toy):
    workload, chunks = toy
    config = ReferenceConfig(batch_size=32, tune_points=5, max_steps=300, seeds=1)
    run = run_reference(workload, config, seed=0, loss_chunks=chunks)
    rates = tuning_rates("sgd", 5)
    assert [rate for rate, _ in run.trials] == pytest.approx(rates.tolist())
    assert np.all(np.diff(rates) < 0)
    finished = [steps for _, steps in run.trials if np.isfinite(steps)]
    assert run.target_step == min(finished) == run.median_steps
    chosen = [rate for rate, steps in run.trials if steps == run.target_step][0]
    assert run.hyperparameters["learning_rate"] == pytest.approx(chosen)


def test_anchors_use_the_study_proxies_and_averaging_has_none(toy):
    workload, chunks = toy
    config = ReferenceConfig(optimizer="adam", hyperparameters={"learning_rate": 0.01}, batch_size=32,
                             tune_points=0)
    run = run_reference(workload, config, seed=0, loss_chunks=chunks)
    assert reference_anchor(config, run) == Anchor("momentum", 0.5, 32.0, run.median_steps)
    # measured in its own coordinates (plain heavy ball): Adam's beta1 as it ran, the default 0.9 or a given one
    assert reference_anchor(config, run, Proxy("momentum", 0.0)) == Anchor("momentum", 0.0, 32.0, run.median_steps,
                                                                           momentum=0.9)
    given = dataclasses.replace(config, hyperparameters={"learning_rate": 0.01, "beta1": 0.8})
    assert reference_anchor(given, run_reference(workload, given, seed=0, loss_chunks=chunks),
                            Proxy("momentum", 0.0)).momentum == 0.8
    averaged = ReferenceConfig(optimizer="sgd+ema", hyperparameters={"learning_rate": 0.5}, batch_size=32,
                               tune_points=0)
    assert reference_anchor(averaged, run_reference(workload, averaged, seed=0, loss_chunks=chunks)) is None


def test_reference_errors_are_one_line_input_errors(toy):
    workload, chunks = toy
    with pytest.raises(InputError, match="did not reach"):
        run_reference(workload, ReferenceConfig(hyperparameters={"learning_rate": 1e-3}, batch_size=8,
                                                max_steps=20, tune_points=0), seed=0, loss_chunks=chunks)
    with pytest.raises(InputError, match="diverged"):
        run_reference(workload, ReferenceConfig(hyperparameters={"learning_rate": 1e4}, batch_size=8,
                                                tune_points=0), seed=0, loss_chunks=chunks)
    for bad in (ReferenceConfig(batch_size=0), ReferenceConfig(checkpoint_step=-1),
                ReferenceConfig(optimizer="adagrad"), ReferenceConfig(hyperparameters={"lr": 0.1}),
                ReferenceConfig(target_loss=0.1), ReferenceConfig(tune_points=-1), ReferenceConfig(seeds=0)):
        with pytest.raises(InputError):
            bad.check()


def test_seeds_give_the_median_steps_of_the_chosen_rate(toy):
    workload, chunks = toy
    hp = {"learning_rate": 0.3}
    config = ReferenceConfig(hyperparameters=hp, batch_size=16, tune_points=0, seeds=3)
    run = run_reference(workload, config, seed=4, loss_chunks=chunks)
    steps = sorted(train(workload, "sgd", hp, 16, 300, seed, eval_every=20).steps_to_target for seed in (4, 5, 6))
    assert run.median_steps == steps[1]
    assert run.target_step == train(workload, "sgd", hp, 16, 300, 4, eval_every=20).steps_to_target
    assert reference_anchor(config, run).steps == steps[1]
