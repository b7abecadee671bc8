"""A small decoder-only (GPT-style, pre-layer-norm) Transformer in plain JAX.

``logits = W_out · LN(blocks(E · onehot(tokens) + P))``, each block
``x ← x + Attention(LN₁(x))``, ``x ← x + W₂ relu(W₁ LN₂(x))`` with causal multi-head attention
``softmax(q kᵀ / √d_head + mask) v``.  ``P`` is the fixed sinusoidal position encoding (no
parameters).  The token embedding is a bias-free dense layer applied to one-hot tokens, so every
parameter sits in a dense layer or a layer norm — the layers kfac-jax registers automatically.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.workloads.layers import Kernel, dense, init_kernels, init_layer_norm, layer_norm

__all__ = ["TransformerConfig", "init_transformer", "apply_transformer", "sinusoidal_positions"]

Params = dict


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Shape of the model: vocabulary, context length, width, depth, heads (MLP width = 4 · model_dim)."""

    vocabulary_size: int
    context_length: int = 64
    model_dim: int = 64
    layers: int = 2
    heads: int = 4


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """``P[t, 2i] = sin(t / 10000^(2i/dim))``, ``P[t, 2i+1] = cos(…)``; float32 (length, dim), ``dim`` even."""
    positions = np.arange(length, dtype=np.float64)[:, None]
    frequencies = np.exp(-math.log(10_000.0) * np.arange(0, dim, 2, dtype=np.float64) / dim)[None, :]
    table = np.zeros((length, dim), dtype=np.float64)
    table[:, 0::2] = np.sin(positions * frequencies)
    table[:, 1::2] = np.cos(positions * frequencies)
    return table.astype(np.float32)


def init_transformer(config: TransformerConfig, *, key: jax.Array) -> Params:
    """Parameters: embedding (no bias), per block LN₁, qkv, attention output, LN₂, MLP; final LN, output."""
    dim, vocabulary = config.model_dim, config.vocabulary_size
    # One-hot inputs have fan-in 1 in effect: gain = vocabulary gives embeddings of unit scale.
    kernels = {"embedding": Kernel((vocabulary, dim), gain=float(vocabulary))}
    for layer in range(config.layers):
        kernels[f"block{layer}.qkv"] = Kernel((dim, 3 * dim), gain=1.0)
        kernels[f"block{layer}.attention_out"] = Kernel((dim, dim), gain=1.0 / config.layers)
        kernels[f"block{layer}.fc1"] = Kernel((dim, 4 * dim), gain=2.0)
        kernels[f"block{layer}.fc2"] = Kernel((4 * dim, dim), gain=1.0 / config.layers)
    kernels["output"] = Kernel((dim, vocabulary), gain=1.0)
    drawn = init_kernels(key, kernels)
    params: Params = {"embedding": {"w": drawn["embedding"]["w"]}}  # no bias
    for layer in range(config.layers):
        params[f"block{layer}"] = {
            "norm1": init_layer_norm(dim),
            "qkv": drawn[f"block{layer}.qkv"],
            "attention_out": drawn[f"block{layer}.attention_out"],
            "norm2": init_layer_norm(dim),
            "fc1": drawn[f"block{layer}.fc1"],
            "fc2": drawn[f"block{layer}.fc2"],
        }
    params["final_norm"] = init_layer_norm(dim)
    params["output"] = drawn["output"]
    return params


def _attention(params: Params, inputs: jax.Array, heads: int) -> jax.Array:
    batch, length, dim = inputs.shape
    head_dim = dim // heads
    qkv = dense(params["qkv"], inputs).reshape(batch, length, 3, heads, head_dim)
    query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    scores = jnp.einsum("bqhd,bkhd->bhqk", query, key) * jnp.float32(1.0 / math.sqrt(head_dim))
    causal = np.tril(np.ones((length, length), dtype=bool))[None, None]
    scores = jnp.where(causal, scores, jnp.float32(-1e9))
    weights = jax.nn.softmax(scores, axis=-1)
    mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, value).reshape(batch, length, dim)
    return dense(params["attention_out"], mixed)


def apply_transformer(config: TransformerConfig, params: Params, tokens: jax.Array) -> jax.Array:
    """Next-token logits, shape ``(batch, length, vocabulary_size)``, for int tokens ``(batch, length)``.

    ``length`` may be at most ``config.context_length``.
    """
    length = tokens.shape[1]
    one_hot = jax.nn.one_hot(tokens, config.vocabulary_size, dtype=jnp.float32)
    hidden = jnp.tensordot(one_hot, params["embedding"]["w"], axes=1)
    hidden = hidden + jnp.asarray(sinusoidal_positions(length, config.model_dim))[None]
    for layer in range(config.layers):
        block = params[f"block{layer}"]
        hidden = hidden + _attention(block, layer_norm(block["norm1"], hidden), config.heads)
        expanded = jax.nn.relu(dense(block["fc1"], layer_norm(block["norm2"], hidden)))
        hidden = hidden + dense(block["fc2"], expanded)
    return dense(params["output"], layer_norm(params["final_norm"], hidden))
