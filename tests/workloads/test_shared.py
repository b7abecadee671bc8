"""Checks every registered workload passes, run over the whole registry."""

from __future__ import annotations

import math
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from batchlab.workloads import WORKLOADS, Workload, get_workload, list_workloads
from tests.workloads.numpy_reference import REFERENCES

NAMES = list_workloads()

# Options giving a small training split, for drawing batches larger than the data set.
SMALL_TRAIN_OPTIONS = {
    "fashion-mnist-cnn": {"train_examples": 50},
    "fashion-mnist-mlp": {"train_examples": 50},
    "mnist1d-cnn": {"num_samples": 100},
}


@pytest.fixture(scope="module", params=NAMES)
def workload(request) -> Workload:
    loaded = get_workload(request.param)
    loaded.load()
    return loaded


def _keys(count: int) -> list[jax.Array]:
    return list(jax.random.split(jax.random.key(1234), count))


def test_registry_entry_is_complete(workload):
    cls = type(workload)
    assert WORKLOADS[cls.name] is cls
    assert isinstance(cls.version, str) and cls.version
    assert isinstance(cls.target_metric, str) and isinstance(cls.target_value, float)
    assert isinstance(cls.default_max_steps, int) and cls.default_max_steps > 0
    assert isinstance(cls.default_eval_every, int) and 0 < cls.default_eval_every <= cls.default_max_steps
    assert cls.loss_kind in ("softmax_cross_entropy", "squared_error", "quadratic")
    assert isinstance(cls.install_hint, str) and cls.description
    assert cls.__doc__ and cls.__doc__.strip()


def test_batches_have_declared_shapes_and_dtypes(workload):
    params = workload.init_params(key=jax.random.key(0))
    batch = workload.sample_batch(key=jax.random.key(1), batch_size=5)
    assert isinstance(batch, dict) and "inputs" in batch
    for leaf in jax.tree.leaves(batch):
        assert leaf.shape[0] == 5
        assert leaf.dtype in (jnp.float32, jnp.int32)
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == jnp.float32
    outputs = jax.eval_shape(workload.apply, params, batch["inputs"])
    assert outputs.shape[0] == 5 and outputs.dtype == jnp.float32
    if workload.loss_kind == "softmax_cross_entropy":
        assert outputs.shape[:-1] == batch["targets"].shape
    assert jax.eval_shape(workload.per_example_loss, params, batch).shape == (5,)
    assert jax.eval_shape(workload.loss, params, batch).shape == ()


def test_sampling_and_init_are_deterministic_in_the_key(workload):
    first, second = _keys(2)
    same = [workload.sample_batch(key=first, batch_size=8) for _ in range(2)]
    jax.tree.map(np.testing.assert_array_equal, *same)
    other = workload.sample_batch(key=second, batch_size=8)
    assert not np.array_equal(np.asarray(same[0]["inputs"]), np.asarray(other["inputs"]))
    jax.tree.map(np.testing.assert_array_equal, workload.init_params(key=first), workload.init_params(key=first))


def test_sampling_is_jittable_and_reads_train_data(workload):
    key = jax.random.key(7)
    eager = workload.sample_batch(key=key, batch_size=6)
    # Traceable as is (compiling it would embed the data set as a constant: slow, and checked below).
    abstract = jax.eval_shape(lambda k: workload.sample_batch(key=k, batch_size=6), key)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), abstract) == jax.tree.map(lambda a: (a.shape, a.dtype), eager)
    from_data = jax.jit(lambda data, k: workload.sample_batch_from(data, key=k, batch_size=6))(workload.train_data(), key)
    # Same draws; float values may differ in the last bit (XLA fuses the standardisation in jit).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), eager, from_data)


def test_any_batch_size_including_larger_than_the_data(workload):
    count = workload.num_train_examples
    big = count + 3 if 0 < count <= 5_000 else 5_003
    shapes = jax.eval_shape(lambda k: workload.sample_batch(key=k, batch_size=big), jax.random.key(0))
    assert all(leaf.shape[0] == big for leaf in jax.tree.leaves(shapes))
    small = get_workload(workload.name, **SMALL_TRAIN_OPTIONS.get(workload.name, {}))
    count = small.num_train_examples
    if count == 0 or count > 5_000:
        pytest.skip("infinite or large training stream; shape checked abstractly")
    batch = small.sample_batch(key=jax.random.key(3), batch_size=3 * count)
    assert batch["targets"].shape[0] == 3 * count
    rows = np.asarray(batch["inputs"]).reshape(3 * count, -1)
    assert len(np.unique(rows, axis=0)) <= count  # with replacement: repeats are unavoidable


def test_loss_matches_independent_numpy_computation(workload):
    assert workload.name in REFERENCES, f"add a NumPy reference for {workload.name} to numpy_reference.py"
    params = workload.init_params(key=jax.random.key(5))
    batch = workload.sample_batch(key=jax.random.key(6), batch_size=3)
    expected = REFERENCES[workload.name](workload, params, batch)
    per_example, mean = jax.jit(lambda p, b: (workload.per_example_loss(p, b), workload.loss(p, b)))(params, batch)
    per_example = np.asarray(per_example, np.float64)
    assert np.all(np.isfinite(per_example))
    np.testing.assert_allclose(per_example, expected, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(float(mean), expected.mean(), rtol=2e-5, atol=2e-5)


def test_evaluate_reports_the_target_metric(workload):
    params = workload.init_params(key=jax.random.key(0))
    metrics = workload.evaluate(params)
    assert workload.target_metric in metrics
    assert all(isinstance(value, float) and math.isfinite(value) for value in metrics.values())
    assert workload.evaluate(params) == metrics
    assert not workload.reached(metrics)  # an untrained model is not at the target


def test_pickles_without_its_data(workload):
    payload = pickle.dumps(workload)
    assert len(payload) < 100_000
    assert pickle.loads(payload) == workload


def test_a_few_hundred_sgd_steps_decrease_the_loss(workload):
    optimizer = optax.sgd(0.05, momentum=0.9)
    batch_size, steps = 16, 200

    @jax.jit
    def step(params, state, data, key):
        batch = workload.sample_batch_from(data, key=key, batch_size=batch_size)
        grads = jax.grad(workload.loss)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = workload.init_params(key=jax.random.key(0))
    held_out = workload.sample_batch(key=jax.random.key(10**6), batch_size=128)
    loss = jax.jit(workload.loss)
    before = float(loss(params, held_out))
    metric_before = workload.evaluate(params)[workload.target_metric]
    state, data = optimizer.init(params), workload.train_data()
    for t in range(steps):
        params, state = step(params, state, data, jax.random.fold_in(jax.random.key(1), t))
    after = float(loss(params, held_out))
    assert math.isfinite(after) and after < 0.8 * before
    assert workload.evaluate(params)[workload.target_metric] < metric_before
