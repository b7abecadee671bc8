"""Schedules against hand formulas; the EMA wrapper against a NumPy recursion; K-FAC limits."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.optim import bind, get_optimizer, learning_rate_factor, prepare
from toys import ToyClassifier, ToyQuadratic


def _hyper(**values):
    base = dict(horizon=100.0, warmup_fraction=0.0, decay_fraction=1.0, end_factor=0.0)
    return {k: jnp.float32(v) for k, v in (base | values).items()}


@pytest.mark.parametrize("t", [0, 1, 25, 50, 99, 100, 150])
def test_schedule_values(t):
    factor = lambda schedule, **kw: float(learning_rate_factor(jnp.int32(t), _hyper(**kw), schedule=schedule))
    assert factor("constant") == 1.0
    p = min(t / 100, 1.0)
    assert factor("linear_decay", end_factor=0.1) == pytest.approx(1 - 0.9 * p, abs=1e-6)
    assert factor("cosine", end_factor=0.1) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * p)), abs=1e-6)
    # decay over the first half of the budget, then flat at end_factor
    assert factor("linear_decay", decay_fraction=0.5, end_factor=0.2) == pytest.approx(
        1 - 0.8 * min(t / 50, 1.0), abs=1e-6)
    # 10 warmup steps: (t+1)/10 up to 1, then the decay runs from step 10 to 100
    warm = min(1.0, (t + 1) / 10)
    decay = 1 - min(max(t - 10, 0) / 90, 1.0)
    assert factor("linear_decay", warmup_fraction=0.1) == pytest.approx(warm * decay, abs=1e-6)
    assert factor("constant", warmup_fraction=0.1) == pytest.approx(warm, abs=1e-6)


@pytest.mark.parametrize("name", ["sgd+ema", "adam+ema"])
def test_ema_wrapper_matches_numpy_recursion_for_several_decays(name):
    workload = ToyClassifier()
    workload.load()
    prepared = prepare(get_optimizer(name), {"learning_rate": 0.05, "ema_decay": 0.5},
                       extra_ema_decays=(0.9, 0.0))
    assert prepared.ema_decays == (0.5, 0.9, 0.0)
    stepper = bind(prepared, workload)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    state = stepper.init(params, prepared.arrays(max_steps=10))
    averages = [jax.tree.map(np.asarray, params) for _ in range(3)]  # θ̃(0) = θ(0)
    step = jax.jit(stepper.step)
    for t in range(4):
        params, state, _ = step(params, state, workload.sample_batch(key=jax.random.PRNGKey(t), batch_size=8))
        for k, gamma in enumerate(prepared.ema_decays):
            averages[k] = jax.tree.map(lambda a, p: gamma * a + (1 - gamma) * np.asarray(p), averages[k], params)
    for k in range(3):
        got = jax.tree.map(lambda a: a[k], state.averages)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(averages[k])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(jax.tree.leaves(stepper.evaluation_params(params, state))[0],
                                  jax.tree.leaves(state.averages)[0][0])
    # decay 0 is the raw parameters
    for a, p in zip(jax.tree.leaves(jax.tree.map(lambda a: a[2], state.averages)), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, p, rtol=1e-6, atol=1e-7)


def test_kfac_with_huge_damping_is_a_gradient_step():
    """Δ = −α (F̂ + λI)^{-1} g → −(α/λ) g as λ → ∞ (momentum 0); here α = λ."""
    workload = ToyClassifier()
    workload.load()
    damping = 1e9  # the damping is split as √λ per Kronecker factor: error ~ |A| / √λ
    prepared = prepare(get_optimizer("kfac"), {"learning_rate": damping, "momentum": 0.0, "damping": damping})
    stepper = bind(prepared, workload)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=64)
    state = stepper.init(params, prepared.arrays(max_steps=10), batch=batch, key=jax.random.PRNGKey(2))
    new, _, loss = jax.jit(stepper.step)(params, state, batch, key=jax.random.PRNGKey(3))
    value, grads = jax.value_and_grad(workload.loss)(params, batch)
    assert float(loss) == pytest.approx(float(value), rel=1e-5)
    for n, p, g in zip(jax.tree.leaves(new), jax.tree.leaves(params), jax.tree.leaves(grads)):
        np.testing.assert_allclose(n - p, -g, rtol=2e-3, atol=2e-5)


def test_kfac_rejects_quadratic_workloads():
    workload = ToyQuadratic()
    prepared = prepare(get_optimizer("kfac"), {})
    with pytest.raises(InputError, match="kfac needs a network workload .* got loss_kind 'quadratic'"):
        bind(prepared, workload)


def test_kfac_adaptive_mode_trains():
    workload = ToyClassifier()
    workload.load()
    prepared = prepare(get_optimizer("kfac"), {"adaptive": "on", "damping": 1e-2})
    assert prepared.static == (("adaptive", "on"), ("lr_schedule", "constant"))
    stepper = bind(prepared, workload)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=64)
    state = stepper.init(params, prepared.arrays(max_steps=10), batch=batch, key=jax.random.PRNGKey(2))
    assert float(state.inner.damping) == pytest.approx(1e-2)  # the initial damping is the hyperparameter
    step = jax.jit(stepper.step)
    losses = []
    for t in range(15):
        params, state, loss = step(params, state, workload.sample_batch(key=jax.random.PRNGKey(t), batch_size=64),
                                   key=jax.random.PRNGKey(t))
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.5 * losses[0]
    assert float(state.inner.damping) != pytest.approx(1e-2)  # adapted
