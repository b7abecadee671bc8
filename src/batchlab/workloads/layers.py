"""Plain-JAX layers shared by the workload models (dense, 2-D convolution, layer norm, loss).

Parameters are nested dicts of float32 arrays.  Layers are written as ``jnp.dot`` /
``lax.conv_general_dilated`` followed by an explicit bias add (bias reshaped to the output rank), the
form kfac-jax's automatic layer registration pattern-matches; no implicit rank broadcasting is used,
so the models run under ``jax.numpy_rank_promotion("raise")``.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "Kernel",
    "init_kernels",
    "standard_normals",
    "init_layer_norm",
    "dense",
    "conv2d",
    "layer_norm",
    "softmax_cross_entropy",
    "conv_output_size",
]

Array = jax.Array


_NORMAL_BLOCK = 65_536


def standard_normals(key: Array, count: int) -> Array:
    """``count`` i.i.d. N(0, 1) float32 values: blocks ``normal(fold_in(key, i), (65,536,))``, concatenated.

    Every block has the same shape, so one compiled random program serves every model: on XLA:CPU
    each distinct random program costs 0.5–1.5 s to compile, which made drawing per layer shape
    (or per model size) dominate the first initialisation.
    """
    blocks = [
        jax.random.normal(jax.random.fold_in(key, index), (_NORMAL_BLOCK,), jnp.float32)
        for index in range(-(-count // _NORMAL_BLOCK))
    ]
    return jnp.concatenate(blocks)[:count]


class Kernel(NamedTuple):
    """A layer's weight shape (dense: ``(fan_in, fan_out)``; conv: HWIO) and initialisation gain."""

    shape: tuple[int, ...]
    gain: float = 2.0


def init_kernels(key: Array, kernels: Mapping[str, Kernel]) -> dict[str, dict[str, Array]]:
    """Dense/conv parameters ``{name: {"w", "b"}}``: ``w ~ N(0, gain / fan_in)``, ``b = 0``.

    ``fan_in`` is the product of all but the last kernel dimension; ``gain = 2`` is He
    initialisation (ReLU layers), ``gain = 1`` LeCun (linear outputs).  The weights are consecutive
    pieces of one standard-normal stream drawn in fixed-size blocks (see :func:`standard_normals`).

    Example:
        >>> params = init_kernels(jax.random.key(0), {"hidden": Kernel((784, 256)), "out": Kernel((256, 10), 1.0)})
        >>> params["out"]["w"].shape, params["out"]["b"].shape
        ((256, 10), (10,))
    """
    sizes = [math.prod(kernel.shape) for kernel in kernels.values()]
    normals = standard_normals(key, sum(sizes))
    params, offset = {}, 0
    for (name, kernel), size in zip(kernels.items(), sizes):
        scale = math.sqrt(kernel.gain / math.prod(kernel.shape[:-1]))
        weights = normals[offset : offset + size].reshape(kernel.shape) * jnp.float32(scale)
        params[name] = {"w": weights, "b": jnp.zeros((kernel.shape[-1],), jnp.float32)}
        offset += size
    return params


def init_layer_norm(features: int) -> dict[str, Array]:
    """Layer-norm parameters: ``scale = 1``, ``shift = 0``."""
    return {"scale": jnp.ones((features,), jnp.float32), "shift": jnp.zeros((features,), jnp.float32)}


def _add_bias(outputs: Array, bias: Array) -> Array:
    return outputs + bias.reshape((1,) * (outputs.ndim - 1) + bias.shape)


def dense(params: dict[str, Array], inputs: Array) -> Array:
    """``y = x W + b`` over the last axis of ``x`` (any number of leading axes).

    Leading axes are flattened into one around a 2-D ``jnp.dot``: on XLA:CPU the backward pass of
    a 3-D ``tensordot`` was 2.2× slower than that of the equivalent 2-D product.
    """
    if inputs.ndim == 2:
        return _add_bias(jnp.dot(inputs, params["w"]), params["b"])
    flat = inputs.reshape(-1, inputs.shape[-1])
    outputs = _add_bias(jnp.dot(flat, params["w"]), params["b"])
    return outputs.reshape(*inputs.shape[:-1], outputs.shape[-1])


def conv2d(params: dict[str, Array], inputs: Array, *, stride: int | tuple[int, int]) -> Array:
    """Strided 2-D convolution, NHWC inputs, HWIO kernel, symmetric zero padding ``k // 2``.

    Output size per spatial axis: ``floor((n + 2·(k // 2) - k) / stride) + 1``.
    """
    strides = (stride, stride) if isinstance(stride, int) else tuple(stride)
    kernel_height, kernel_width = params["w"].shape[:2]
    padding = ((kernel_height // 2, kernel_height // 2), (kernel_width // 2, kernel_width // 2))
    outputs = jax.lax.conv_general_dilated(
        inputs,
        params["w"],
        window_strides=strides,
        padding=padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return _add_bias(outputs, params["b"])


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    """Spatial output size of :func:`conv2d` along one axis."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def layer_norm(params: dict[str, Array], inputs: Array, *, epsilon: float = 1e-5) -> Array:
    """``(x - mean) / sqrt(var + eps) · scale + shift`` over the last axis."""
    mean = jnp.mean(inputs, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(inputs - mean), axis=-1, keepdims=True)
    normalized = (inputs - mean) * jax.lax.rsqrt(variance + epsilon)
    # broadcast_to (not a reshape) is the form kfac-jax matches as a scale-and-shift layer.
    scale = jnp.broadcast_to(params["scale"], normalized.shape)
    shift = jnp.broadcast_to(params["shift"], normalized.shape)
    return normalized * scale + shift


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """Per-example ``-log softmax(logits)[label]``; ``logits`` (..., K), integer ``labels`` (...)."""
    log_probabilities = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probabilities, labels[..., None].astype(jnp.int32), axis=-1)
    return -picked[..., 0]
