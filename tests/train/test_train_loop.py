"""The training loop: determinism, exact first hit by replay, divergence, pruning, EMA tracks, reuse."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.train import TrainOptions, cache_size, check_arguments, train
from batchlab.train.compiled import choose_loop
from toys import ToyClassifier, ToyConvClassifier, ToyQuadratic

TOY = ToyClassifier()
CONV = ToyConvClassifier()
SLOW_SGD = {"learning_rate": 0.03}


def _eval_only(metrics) -> dict:
    return {k: v for k, v in metrics.items() if k != "train_loss"}


def _brute_force_first_hit(result) -> int:
    return next(p.step for p in result.curve if p.metrics["error"] <= result.target)


def test_loop_choice_is_python_for_convolutions_only():
    assert choose_loop(TOY, 32) == "device"
    assert choose_loop(CONV, 32) == "python"


@pytest.mark.parametrize("workload,loop", [(TOY, "device"), (CONV, "python")])
def test_first_hit_replay_equals_evaluating_every_step(workload, loop):
    options = TrainOptions(loop=loop)
    dense = train(workload, "sgd", SLOW_SGD, 16, 400, 3, eval_every=1, options=options)
    sparse = train(workload, "sgd", SLOW_SGD, 16, 400, 3, eval_every=25, options=options)
    assert dense.status == sparse.status == "reached"
    assert dense.steps_to_target == _brute_force_first_hit(dense)
    assert sparse.steps_to_target == dense.steps_to_target
    assert sparse.steps_to_target % 25 != 0  # the hit was inside an interval: the replay found it
    assert _eval_only(sparse.final_metrics) == _eval_only(dense.final_metrics)
    # the replayed points are the very evaluations of the dense run
    dense_by_step = {p.step: p.metrics for p in dense.curve}
    assert sparse.curve[-1].step == sparse.steps_run  # the cadence evaluation that saw the hit
    for point in sparse.curve[:-1]:
        for name in ("error", "loss"):
            assert point.metrics[name] == dense_by_step[point.step][name]
    assert sparse.steps_run == 25 * math.ceil(sparse.steps_to_target / 25)


def test_device_and_python_loops_agree():
    device = train(TOY, "momentum", {"learning_rate": 0.02}, 16, 300, 1, eval_every=10,
                   options=TrainOptions(loop="device"))
    python = train(TOY, "momentum", {"learning_rate": 0.02}, 16, 300, 1, eval_every=10,
                   options=TrainOptions(loop="python"))
    assert device.steps_to_target == python.steps_to_target
    np.testing.assert_allclose([p.metrics["loss"] for p in device.curve],
                               [p.metrics["loss"] for p in python.curve], rtol=1e-5)


def test_exact_determinism_given_a_seed():
    runs = [train(TOY, "adam", {"learning_rate": 0.01}, 8, 120, seed, eval_every=7,
                  options=TrainOptions(ema_decays=(0.9,))) for seed in (5, 5, 6)]
    assert runs[0].curve == runs[1].curve
    assert runs[0].ema_results[0.9].curve == runs[1].ema_results[0.9].curve
    assert runs[0].curve != runs[2].curve


def test_divergence_is_recorded_not_raised():
    result = train(TOY, "sgd", {"learning_rate": 1e6}, 16, 200, 0, eval_every=20)
    assert result.status == "diverged"
    assert result.steps_to_target is None
    assert result.diverged_at is not None and result.diverged_at < 20
    assert result.steps_run == 20
    quadratic = train(ToyQuadratic(), "momentum", {"learning_rate": 5.0, "momentum": 0.9}, 4, 500, 0)  # x > 2(1 + β)
    assert quadratic.status == "diverged"


def test_reached_at_step_zero_and_budget():
    zero = train(TOY, "sgd", SLOW_SGD, 16, 50, 0, target=1.0)
    assert (zero.status, zero.steps_to_target, zero.steps_run) == ("reached", 0, 0)
    budget = train(TOY, "sgd", SLOW_SGD, 16, 30, 0, target=-1.0, eval_every=7)
    assert (budget.status, budget.steps_to_target, budget.steps_run) == ("budget", None, 30)
    assert [p.step for p in budget.curve] == [0, 7, 14, 21, 28, 30]
    assert all("train_loss" in p.metrics for p in budget.curve[1:])


def test_stop_callback_and_step_limit_prune():
    seen = []

    def stop(step, metrics):
        seen.append(step)
        return step >= 40

    pruned = train(TOY, "sgd", SLOW_SGD, 16, 400, 0, target=-1.0, eval_every=20, stop=stop)
    assert (pruned.status, pruned.steps_run, seen) == ("pruned", 40, [20, 40])
    limited = train(TOY, "sgd", SLOW_SGD, 16, 400, 0, target=-1.0, eval_every=20,
                    options=TrainOptions(prune_at_step=30))
    assert (limited.status, limited.steps_run) == ("pruned", 30)
    # a limit at the evaluation that saw the first hit does not change a reached run
    reached = train(TOY, "sgd", SLOW_SGD, 16, 400, 3, eval_every=25)
    capped = train(TOY, "sgd", SLOW_SGD, 16, 400, 3, eval_every=25,
                   options=TrainOptions(prune_at_step=reached.steps_run))
    assert (capped.status, capped.steps_to_target) == ("reached", reached.steps_to_target)


def test_ema_decays_tracked_together_equal_separate_runs():
    decays = (0.5, 0.9, 0.97)
    together = train(TOY, "sgd", SLOW_SGD, 16, 300, 2, eval_every=20, options=TrainOptions(ema_decays=decays))
    plain = train(TOY, "sgd", SLOW_SGD, 16, 300, 2, eval_every=20)
    assert plain.curve[: len(together.curve)] == together.curve[: len(plain.curve)][: len(plain.curve)]
    assert together.steps_to_target == plain.steps_to_target
    for decay in decays:
        alone = train(TOY, "sgd+ema", {**SLOW_SGD, "ema_decay": decay}, 16, 300, 2, eval_every=20)
        tracked = together.ema_results[decay]
        assert (tracked.status, tracked.steps_to_target) == (alone.status, alone.steps_to_target)
        assert _eval_only(tracked.final_metrics) == _eval_only(alone.final_metrics)
        assert alone.ema_results[decay].steps_to_target == alone.steps_to_target
    assert together.ema_results[0.5].steps_to_target != together.ema_results[0.97].steps_to_target


def test_one_compiled_step_serves_every_numeric_hyperparameter():
    workload = ToyClassifier(seed=11)  # a fresh cache key
    before = cache_size()
    results = [train(workload, "momentum", {"learning_rate": lr, "momentum": m}, 16, 40, 0, eval_every=10)
               for lr, m in ((0.01, 0.9), (0.05, 0.5), (0.1, 0.0))]
    assert cache_size() == before + 1
    assert len({r.final_metrics["loss"] for r in results}) == 3
    train(workload, "momentum", {"lr_schedule": "cosine"}, 16, 40, 0, eval_every=10)
    assert cache_size() == before + 2  # a static choice selects new code


def test_invalid_arguments_raise_input_error():
    with pytest.raises(InputError, match="unknown hyperparameter 'lr' for optimizer 'sgd'; valid: learning_rate"):
        train(TOY, "sgd", {"lr": 0.1}, 16, 10, 0)
    for kwargs, message in (({"batch_size": 0}, "batch_size"), ({"max_steps": -1}, "max_steps"),
                            ({"eval_every": 0}, "eval_every")):
        args = {"batch_size": 4, "max_steps": 10} | kwargs
        with pytest.raises(InputError, match=message):
            check_arguments(TOY, "sgd", {}, args["batch_size"], args["max_steps"],
                            eval_every=kwargs.get("eval_every"))
    with pytest.raises(InputError, match="EMA decays"):
        check_arguments(TOY, "sgd", {}, 4, 10, options=TrainOptions(ema_decays=(1.0,)))


def test_result_serialises_to_json_ready_dict():
    import json

    result = train(TOY, "sgd", {"learning_rate": 1e6}, 16, 40, 0, eval_every=20)
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert '"status": "diverged"' in text


def test_persistent_compilation_cache_is_explicit(tmp_path, monkeypatch):
    from batchlab.train import enable_compilation_cache

    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("BATCHLAB_CACHE", str(tmp_path))
    try:
        folder = enable_compilation_cache()
        assert folder == tmp_path / "jax" and folder.is_dir()
        assert jax.config.jax_compilation_cache_dir == str(folder)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
