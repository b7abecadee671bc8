"""Tiny workloads implementing the Workload interface, for fast tests of optimizers and training.

``ToyClassifier``: a 2-layer MLP on synthetic Gaussian blobs (softmax cross-entropy, target on error).
``ToyQuadratic``: a noisy quadratic ½θᵀHθ whose per-example gradient is ``Hθ + ε``, ``ε ~ N(0, C)``
(loss_kind ``quadratic``; evaluate gives the exact risk).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.workloads.base import Workload


@dataclasses.dataclass(frozen=True)
class ToyClassifier(Workload):
    num_train: int = 512
    num_eval: int = 256
    dim: int = 8
    hidden: int = 16
    classes: int = 4
    seed: int = 0

    name: ClassVar[str] = "toy-classifier"
    version: ClassVar[str] = "1"
    target_metric: ClassVar[str] = "error"
    target_value: ClassVar[float] = 0.1
    default_max_steps: ClassVar[int] = 300
    default_eval_every: ClassVar[int] = 20
    loss_kind: ClassVar[str] = "softmax_cross_entropy"

    @functools.cached_property
    def _data(self):
        rng = np.random.default_rng(self.seed)
        centers = rng.normal(size=(self.classes, self.dim)) * 1.5

        def draw(n):  # NumPy arrays: safe to create inside a trace
            y = rng.integers(0, self.classes, size=n)
            x = centers[y] + rng.normal(size=(n, self.dim))
            return x.astype(np.float32), y.astype(np.int32)

        return draw(self.num_train), draw(self.num_eval)

    def load(self) -> None:
        self._data

    @property
    def num_train_examples(self) -> int:
        return self.num_train

    def train_data(self):
        (x, y), _ = self._data
        return {"inputs": jnp.asarray(x), "targets": jnp.asarray(y)}

    def sample_batch_from(self, train_data, *, key, batch_size):
        idx = jax.random.randint(key, (batch_size,), 0, self.num_train)
        return {"inputs": train_data["inputs"][idx], "targets": train_data["targets"][idx]}

    def sample_batch(self, *, key, batch_size):
        (x, y), _ = self._data
        data = {"inputs": jnp.asarray(x), "targets": jnp.asarray(y)}
        return self.sample_batch_from(data, key=key, batch_size=batch_size)

    def init_params(self, *, key):
        k1, k2 = jax.random.split(key)
        return {
            "dense1": {"kernel": jax.random.normal(k1, (self.dim, self.hidden)) / np.sqrt(self.dim),
                       "bias": jnp.zeros(self.hidden)},
            "dense2": {"kernel": jax.random.normal(k2, (self.hidden, self.classes)) / np.sqrt(self.hidden),
                       "bias": jnp.zeros(self.classes)},
        }

    def apply(self, params, inputs):
        h = jnp.tanh(inputs @ params["dense1"]["kernel"] + params["dense1"]["bias"][None, :])
        return h @ params["dense2"]["kernel"] + params["dense2"]["bias"][None, :]

    def loss(self, params, batch):
        logits = self.apply(params, batch["inputs"])
        log_p = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(log_p, batch["targets"][:, None], axis=-1).mean()

    @functools.cached_property
    def _metrics(self):
        _, (x, y) = self._data
        x, y = jnp.asarray(x), jnp.asarray(y)

        @jax.jit
        def metrics(params):
            logits = self.apply(params, x)
            log_p = jax.nn.log_softmax(logits)
            loss = -jnp.take_along_axis(log_p, y[:, None], axis=-1).mean()
            return loss, jnp.mean(jnp.argmax(logits, -1) != y)

        return metrics

    def evaluate(self, params):
        loss, error = self._metrics(params)
        return {"loss": float(loss), "error": float(error)}


@dataclasses.dataclass(frozen=True)
class ToyQuadratic(Workload):
    """Loss ½θᵀHθ + θ·ε̄ with ε̄ the batch mean of ε ~ N(0, diag c); θ(0) ~ N(0, diag s0)."""

    h: tuple[float, ...] = (1.0, 0.5, 0.1, 0.02)
    c: tuple[float, ...] = (1.0, 0.5, 0.1, 0.02)
    s0: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)

    name: ClassVar[str] = "toy-quadratic"
    version: ClassVar[str] = "1"
    target_metric: ClassVar[str] = "risk"
    target_value: ClassVar[float] = 0.05
    default_max_steps: ClassVar[int] = 200
    default_eval_every: ClassVar[int] = 10
    loss_kind: ClassVar[str] = "quadratic"

    def load(self) -> None:
        pass

    @property
    def num_train_examples(self) -> int:
        return 0

    def sample_batch(self, *, key, batch_size):
        noise = jax.random.normal(key, (batch_size, len(self.h))) * jnp.sqrt(jnp.asarray(self.c))[None, :]
        return {"noise": noise}

    def init_params(self, *, key):
        return jax.random.normal(key, (len(self.h),)) * jnp.sqrt(jnp.asarray(self.s0))

    def apply(self, params, inputs):
        return inputs @ params

    def loss(self, params, batch):
        h = jnp.asarray(self.h)
        return 0.5 * jnp.sum(h * params**2) + params @ batch["noise"].mean(0)

    def evaluate(self, params):
        return {"risk": float(0.5 * jnp.sum(jnp.asarray(self.h) * params**2))}


@dataclasses.dataclass(frozen=True)
class ToyConvClassifier(ToyClassifier):
    """ToyClassifier's blobs reshaped to 1×side×side images, one 3×3 convolution + a dense layer."""

    side: int = 4
    dim: int = 16
    name: ClassVar[str] = "toy-conv-classifier"

    def init_params(self, *, key):
        k1, k2 = jax.random.split(key)
        return {
            "conv": {"w": jax.random.normal(k1, (3, 3, 1, 4)) / 3.0, "b": jnp.zeros(4)},
            "dense": {"kernel": jax.random.normal(k2, (self.side * self.side * 4, self.classes)) / 8.0,
                      "bias": jnp.zeros(self.classes)},
        }

    def apply(self, params, inputs):
        images = inputs.reshape(-1, self.side, self.side, 1)
        hidden = jax.lax.conv_general_dilated(images, params["conv"]["w"], (1, 1), ((1, 1), (1, 1)),
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
        hidden = jnp.tanh(hidden + params["conv"]["b"][None, None, None, :]).reshape(images.shape[0], -1)
        return hidden @ params["dense"]["kernel"] + params["dense"]["bias"][None, :]
