"""The shared layers are in the forms kfac-jax registers automatically (no generic/orphan parameters)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from batchlab.workloads import layers

kfac_jax = pytest.importorskip("kfac_jax")
from kfac_jax._src import tag_graph_matcher  # noqa: E402  (private, but the only way to list registrations)


def _tiny_model_params(key):
    keys = jax.random.split(key, 5)
    return {
        "conv_square": layers.init_conv(keys[0], (3, 3), 1, 4),
        "conv_row": layers.init_conv(keys[1], (1, 3), 4, 4),
        "norm": layers.init_layer_norm(4),
        "dense_3d": layers.init_dense(keys[2], 4, 4),
        "output": layers.init_dense(keys[3], 4 * 4 * 4, 3),
    }


def _tiny_model(params, inputs):
    hidden = jax.nn.relu(layers.conv2d(params["conv_square"], inputs, stride=2))  # 8x8 -> 4x4
    hidden = jax.nn.relu(layers.conv2d(params["conv_row"], hidden, stride=(1, 1)))
    sequence = hidden.reshape(hidden.shape[0], 16, 4)
    sequence = layers.dense(params["dense_3d"], layers.layer_norm(params["norm"], sequence))
    return layers.dense(params["output"], sequence.reshape(sequence.shape[0], -1))


def test_every_parameter_is_registered_by_kfac_pattern_matching():
    params = _tiny_model_params(jax.random.key(0))
    inputs = jnp.ones((2, 8, 8, 1), jnp.float32)
    labels = jnp.zeros((2,), jnp.int32)

    def loss(params, inputs):
        logits = _tiny_model(params, inputs)
        kfac_jax.register_softmax_cross_entropy_loss(logits, labels)
        return jnp.mean(layers.softmax_cross_entropy(logits, labels))

    # kfac-jax's own example patterns broadcast implicitly, so its matcher needs rank promotion allowed.
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        tagged = tag_graph_matcher.auto_register_tags(loss, (params, inputs))
    labels_by_parameter = ["|".join(tagged._param_labels.get(p, ["Orphan"])) for p in tagged._func_graph.params_vars]
    assert labels_by_parameter and all("match_type=" in label for label in labels_by_parameter), labels_by_parameter


def test_conv_output_size_matches_conv2d():
    params = layers.init_conv(jax.random.key(0), (3, 3), 1, 2)
    for size, stride in [(28, 2), (14, 2), (8, 1), (7, 2)]:
        output = jax.eval_shape(lambda x: layers.conv2d(params, x, stride=stride), jnp.ones((1, size, size, 1)))
        assert output.shape[1] == layers.conv_output_size(size, 3, stride)


def test_initialisation_scales():
    dense = layers.init_dense(jax.random.key(0), 400, 300)
    assert float(jnp.std(dense["w"])) == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert not np.any(np.asarray(dense["b"]))
    assert float(jnp.max(jnp.abs(dense["w"]))) <= 2 * np.sqrt(2 / 400) / 0.8796 + 1e-6
