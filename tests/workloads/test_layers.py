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
    params = layers.init_kernels(key, {
        "conv_square": layers.Kernel((3, 3, 1, 4)),
        "conv_row": layers.Kernel((1, 3, 4, 4)),
        "dense_3d": layers.Kernel((4, 4)),
        "output": layers.Kernel((4 * 4 * 4, 3), gain=1.0),
    })
    params["norm"] = layers.init_layer_norm(4)
    return params


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
    params = layers.init_kernels(jax.random.key(0), {"conv": layers.Kernel((3, 3, 1, 2))})["conv"]
    for size, stride in [(28, 2), (14, 2), (8, 1), (7, 2)]:
        output = jax.eval_shape(lambda x: layers.conv2d(params, x, stride=stride), jnp.ones((1, size, size, 1)))
        assert output.shape[1] == layers.conv_output_size(size, 3, stride)


def test_initialisation_scales_and_independence():
    params = layers.init_kernels(
        jax.random.key(0), {"a": layers.Kernel((400, 300)), "b": layers.Kernel((3, 3, 20, 300), gain=1.0)}
    )
    assert float(jnp.std(params["a"]["w"])) == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert float(jnp.std(params["b"]["w"])) == pytest.approx(np.sqrt(1 / 180), rel=0.02)
    assert not np.any(np.asarray(params["a"]["b"])) and params["b"]["b"].shape == (300,)
    correlation = np.corrcoef(np.asarray(params["a"]["w"]).ravel()[:50_000], np.asarray(params["b"]["w"]).ravel()[:50_000])
    assert abs(correlation[0, 1]) < 0.02
