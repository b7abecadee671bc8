"""Independent float64 NumPy forward passes of every registered workload's per-example loss.

Written from the models' documented definitions (not by calling the JAX code), for tiny batches.
A new workload adds its reference to :data:`REFERENCES`; the shared test fails until it does.
"""

from __future__ import annotations

import math

import numpy as np


def _np(tree):
    if isinstance(tree, dict):
        return {key: _np(value) for key, value in tree.items()}
    return np.asarray(tree, dtype=np.float64)


def dense(p, x):
    return x @ p["w"] + p["b"]


def relu(x):
    return np.maximum(x, 0.0)


def conv2d(p, x, stride):
    """NHWC/HWIO convolution with symmetric zero padding k // 2, by summing shifted slices."""
    kernel = p["w"]
    kh, kw = kernel.shape[:2]
    sh, sw = stride
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out_h = (padded.shape[1] - kh) // sh + 1
    out_w = (padded.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
    for a in range(kh):
        for b in range(kw):
            patch = padded[:, a : a + sh * (out_h - 1) + 1 : sh, b : b + sw * (out_w - 1) + 1 : sw, :]
            out += patch @ kernel[a, b]
    return out + p["b"]


def cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(log_probabilities, labels[..., None].astype(np.int64), axis=-1)[..., 0]


def fashion_cnn(workload, params, batch):
    p, x = _np(params), np.asarray(batch["inputs"], np.float64)
    h = relu(conv2d(p["conv1"], x, (2, 2)))
    h = relu(conv2d(p["conv2"], h, (2, 2)))
    h = relu(dense(p["dense1"], h.reshape(h.shape[0], -1)))
    return cross_entropy(dense(p["output"], h), np.asarray(batch["targets"]))


def fashion_mlp(workload, params, batch):
    p, x = _np(params), np.asarray(batch["inputs"], np.float64)
    h = x.reshape(x.shape[0], -1)
    for i in range(workload.hidden_layers):
        h = relu(dense(p[f"dense{i + 1}"], h))
    return cross_entropy(dense(p["output"], h), np.asarray(batch["targets"]))


def digits_cnn(workload, params, batch):
    p, x = _np(params), np.asarray(batch["inputs"], np.float64)
    h = relu(conv2d(p["conv1"], x, (1, 1)))
    h = relu(conv2d(p["conv2"], h, (2, 2)))
    h = relu(dense(p["dense1"], h.reshape(h.shape[0], -1)))
    return cross_entropy(dense(p["output"], h), np.asarray(batch["targets"]))


def mnist1d_cnn(workload, params, batch):
    p, x = _np(params), np.asarray(batch["inputs"], np.float64)
    h = x.reshape(x.shape[0], 1, x.shape[1], 1)
    h = relu(conv2d(p["conv1"], h, (1, 1)))
    h = relu(conv2d(p["conv2"], h, (1, 2)))
    h = relu(conv2d(p["conv3"], h, (1, 2)))
    return cross_entropy(dense(p["output"], h.reshape(h.shape[0], -1)), np.asarray(batch["targets"]))


def layer_norm(p, x, epsilon=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * p["scale"] + p["shift"]


def text_transformer(workload, params, batch):
    p = _np(params)
    tokens = np.asarray(batch["inputs"])
    batch_size, length = tokens.shape
    dim, heads = workload.model_dim, workload.heads
    head_dim = dim // heads
    position = np.zeros((length, dim))
    for t in range(length):
        for i in range(0, dim, 2):
            angle = t / 10_000.0 ** (i / dim)
            position[t, i], position[t, i + 1] = math.sin(angle), math.cos(angle)
    h = p["embedding"]["w"][tokens] + position
    mask = np.tril(np.ones((length, length), dtype=bool))
    for layer in range(workload.layers):
        block = p[f"block{layer}"]
        qkv = dense(block["qkv"], layer_norm(block["norm1"], h))
        mixed = np.zeros_like(h)
        for head in range(heads):
            columns = slice(head * head_dim, (head + 1) * head_dim)
            q = qkv[..., :dim][..., columns]
            k = qkv[..., dim : 2 * dim][..., columns]
            v = qkv[..., 2 * dim :][..., columns]
            scores = np.where(mask, q @ k.transpose(0, 2, 1) / math.sqrt(head_dim), -np.inf)
            weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
            weights /= weights.sum(axis=-1, keepdims=True)
            mixed[..., columns] = weights @ v
        h = h + dense(block["attention_out"], mixed)
        h = h + dense(block["fc2"], relu(dense(block["fc1"], layer_norm(block["norm2"], h))))
    logits = dense(p["output"], layer_norm(p["final_norm"], h))
    return cross_entropy(logits, np.asarray(batch["targets"])).mean(axis=-1)


def nqm_sampled(workload, params, batch):
    theta = np.asarray(params["theta"], np.float64)
    spectrum = workload.spectrum
    z = np.asarray(batch["inputs"], np.float64)
    return 0.5 * np.sum(spectrum.h * theta**2) + z @ (np.sqrt(spectrum.c) * theta)


REFERENCES = {
    "fashion-mnist-cnn": fashion_cnn,
    "fashion-mnist-mlp": fashion_mlp,
    "digits-cnn": digits_cnn,
    "mnist1d-cnn": mnist1d_cnn,
    "text-transformer": text_transformer,
    "nqm-sampled": nqm_sampled,
}
