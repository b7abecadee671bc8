"""Shared checks over every optimizer registry entry (and its +ema variant)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.optim import bind, get_optimizer, optimizer_names, prepare
from tests.toys import ToyClassifier

NAMES = optimizer_names()
TOY = ToyClassifier()


def test_registry_lists_every_base_optimizer_and_its_ema_variant():
    base = ("sgd", "momentum", "nesterov", "adam", "kfac",
            "adamw", "lion", "lamb", "lars", "muon", "schedule-free-adamw")
    assert NAMES == base + tuple(f"{name}+ema" for name in base)
    with pytest.raises(InputError, match="valid: sgd, momentum"):
        get_optimizer("rmsprop")


@pytest.mark.parametrize("name", NAMES)
def test_unknown_hyperparameter_rejected_with_valid_list(name):
    spec = get_optimizer(name)
    with pytest.raises(InputError) as error:
        spec.validate({"lr": 0.1})
    message = str(error.value)
    assert "'lr'" in message and "\n" not in message
    for hp in spec.hyperparameters:
        assert hp.name in message


@pytest.mark.parametrize("name", NAMES)
def test_out_of_range_and_wrong_type_rejected(name):
    spec = get_optimizer(name)
    for bad in (-0.1, 0.0, float("nan"), "fast", True):
        with pytest.raises(InputError, match="learning_rate"):
            spec.validate({"learning_rate": bad})
    for hp in spec.hyperparameters:
        if hp.name in ("momentum", "ema_decay", "beta1"):
            with pytest.raises(InputError, match=r"\[0, 1\)"):
                spec.validate({hp.name: 1.0})
    with pytest.raises(InputError, match="lr_schedule must be one of"):
        spec.validate({"lr_schedule": "step"})


@pytest.mark.parametrize("name", NAMES)
def test_defaults_and_search_space_are_consistent(name):
    spec = get_optimizer(name)
    values = spec.validate({})
    for hp in spec.hyperparameters:
        assert values[hp.name] == hp.default
        if hp.is_choice:
            continue
        low, high = hp.search
        assert hp.valid.contains(low) and hp.valid.contains(high), hp.name
        assert math.isclose(hp.from_unit(0.0), low) and math.isclose(hp.from_unit(1.0), high)
        mid = hp.from_unit(0.5)
        if hp.scaling == "log":
            assert math.isclose(mid, math.sqrt(low * high))
        elif hp.scaling == "one_minus_log":
            assert math.isclose(1 - mid, math.sqrt((1 - low) * (1 - high)))
    space = {hp.name for hp in spec.search_space()}
    assert "learning_rate" in space and "lr_schedule" not in space
    assert "end_factor" not in space  # unused by the default constant schedule
    assert "end_factor" in {hp.name for hp in spec.search_space({"lr_schedule": "linear_decay"})}
    assert ("ema_decay" in space) == spec.ema


def _state_signature(state):
    return jax.tree.structure(state), [(a.shape, a.dtype) for a in jax.tree.leaves(state)]


@pytest.mark.parametrize("name", NAMES)
def test_step_is_jittable_keeps_state_shapes_and_traces_hyperparameters(name):
    TOY.load()
    spec = get_optimizer(name)
    params = TOY.init_params(key=jax.random.PRNGKey(0))
    batch = TOY.sample_batch(key=jax.random.PRNGKey(1), batch_size=16)
    first = prepare(spec, {"learning_rate": 0.01})
    stepper = bind(first, TOY)
    step = jax.jit(stepper.step)
    states = []
    for values in ({"learning_rate": 0.01}, {"learning_rate": 0.02}):
        hyper = prepare(spec, values).arrays(max_steps=10)
        state = stepper.init(params, hyper, batch=batch, key=jax.random.PRNGKey(2))
        signature = _state_signature(state)
        new_params, state, loss = step(params, state, batch, key=jax.random.PRNGKey(3))
        assert _state_signature(state) == signature
        assert jax.tree.structure(new_params) == jax.tree.structure(params)
        assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(new_params))
        assert loss.shape == () and np.isfinite(float(loss))
        states.append(new_params)
    assert step._cache_size() == 1  # a new learning rate did not recompile
    moved = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(params))]
    assert max(moved) > 0


@pytest.fixture(scope="module")
def tiny_text():
    from batchlab.workloads import get_workload

    workload = get_workload("text-transformer", model_dim=16, layers=1, heads=2, context_length=8, eval_windows=16)
    workload.load()
    return workload


@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_trains_the_text_transformer_with_defaults(tiny_text, name):
    """Sequence model (layer norms, one-hot embedding over (batch, time, ·)): K-FAC once failed here."""
    from batchlab.train import train

    result = train(tiny_text, name, {}, 4, 3, 0, eval_every=3)
    assert result.status == "budget", result.final_metrics
    first, last = result.curve[0].metrics["loss"], result.final_metrics["loss"]
    assert math.isfinite(last) and last < first, (first, last)
