"""Shared logic of the image/sequence classifiers that train on in-memory arrays.

A concrete classifier supplies two hooks, :meth:`ClassificationWorkload.load_arrays` (its data) and
the model (:meth:`~batchlab.workloads.base.Workload.init_params`, :meth:`~batchlab.workloads.base.Workload.apply`);
this base owns sampling, the loss and evaluation.

Sampling: ``index ~ Uniform{0, …, n − 1}`` i.i.d. (with replacement, ``jax.random.randint``), then
``inputs = stored[index] · scale + shift``: Fashion-MNIST stays on device as uint8 (47 MB instead of
188 MB) and is standardised per batch.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.checks import finite_or_none
from batchlab.errors import InputError
from batchlab.workloads.base import Batch, LossKind, Params, Workload
from batchlab.workloads.layers import softmax_cross_entropy

__all__ = ["ClassificationArrays", "ClassificationWorkload"]


class ClassificationArrays(NamedTuple):
    """A classifier's data on device.

    Attributes:
        train_inputs: stored training inputs (any numeric dtype), leading axis = examples.
        train_labels: int32 labels, shape ``(n_train,)``.
        eval_inputs: standardised float32 evaluation inputs.
        eval_labels: int32 labels, shape ``(n_eval,)``.
        input_scale, input_shift: model inputs are ``train_inputs · scale + shift`` (float32).
    """

    train_inputs: jax.Array
    train_labels: jax.Array
    eval_inputs: jax.Array
    eval_labels: jax.Array
    input_scale: float = 1.0
    input_shift: float = 0.0


@dataclasses.dataclass(frozen=True)
class ClassificationWorkload(Workload, abc.ABC):
    """Abstract base: softmax classifiers on in-memory arrays; target on evaluation ``error``.

    Evaluation metrics: ``loss`` (mean cross-entropy, nats) and ``error`` (top-1 error rate) over
    the whole evaluation split, computed in chunks of :attr:`eval_chunk_size` examples.

    A study may instead target ``loss`` or ``train_set_loss``: the mean cross-entropy over a fixed
    subset of the training split (all of it up to :attr:`train_set_examples` examples, else that
    many drawn once without replacement with seed 0), computed only by runs that target it
    (:meth:`evaluate_for`).  It is the quantity the optimizer minimises and the NQM models, and its
    first hit is far less noisy than the error's: on digits-cnn the spread of one configuration's
    steps over training seeds falls from 0.25-0.36 to 0.10-0.20 in ``log`` steps
    (``benchmarks/bench_target_noise.py``, ``results/target-noise/``).
    """

    target_metric: ClassVar[str] = "error"
    extra_target_metrics: ClassVar[tuple[str, ...]] = ("loss", "train_set_loss")
    train_set_examples: ClassVar[int] = 4_096
    loss_kind: ClassVar[LossKind] = "softmax_cross_entropy"
    eval_chunk_size: ClassVar[int] = 2_000

    @abc.abstractmethod
    def load_arrays(self) -> ClassificationArrays:
        """Load (and memoise across instances) the data; raise ``DataMissingError`` if not installed."""

    def check_target(self, target: Any, metric: str | None = None) -> float:
        """An error rate: a finite number in ``[0, 1]``; a loss: a finite number ``> 0``."""
        if (self.target_metric if metric is None else metric) != "error":
            return super().check_target(target, metric)
        value = finite_or_none(target)
        if value is None or not 0.0 <= value <= 1.0:
            raise InputError(f"target: error is a fraction, must be in [0, 1], got {target!r}")
        return value

    # --- data ---------------------------------------------------------------------------------------
    def load(self) -> None:
        self.arrays  # noqa: B018  (loads and memoises)

    @property
    def arrays(self) -> ClassificationArrays:
        """The loaded data (loads on first use)."""
        return self._memo("arrays", self.load_arrays)

    @property
    def num_train_examples(self) -> int:
        return int(self.arrays.train_labels.shape[0])

    def train_data(self) -> dict[str, jax.Array]:
        return {"inputs": self.arrays.train_inputs, "targets": self.arrays.train_labels}

    def sample_batch_from(self, train_data: Any, *, key: jax.Array, batch_size: int) -> Batch:
        arrays = self.arrays
        count = train_data["targets"].shape[0]
        index = jax.random.randint(key, (batch_size,), 0, count)
        inputs = train_data["inputs"][index].astype(jnp.float32)
        if arrays.input_scale != 1.0 or arrays.input_shift != 0.0:
            inputs = inputs * jnp.float32(arrays.input_scale) + jnp.float32(arrays.input_shift)
        return {"inputs": inputs, "targets": train_data["targets"][index]}

    def sample_batch(self, *, key: jax.Array, batch_size: int) -> Batch:
        return self.sample_batch_from(self.train_data(), key=key, batch_size=batch_size)

    # --- loss ---------------------------------------------------------------------------------------
    def per_example_loss(self, params: Params, batch: Batch) -> jax.Array:
        """``-log softmax(apply(params, x))[y]`` per example."""
        return softmax_cross_entropy(self.apply(params, batch["inputs"]), batch["targets"])

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        """Mean softmax cross-entropy over the batch (nats)."""
        return jnp.mean(self.per_example_loss(params, batch))

    # --- evaluation ---------------------------------------------------------------------------------
    def _eval_sums(self, params: Params, inputs: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = self.apply(params, inputs)
        loss_sum = jnp.sum(softmax_cross_entropy(logits, labels))
        errors = jnp.sum((jnp.argmax(logits, axis=-1) != labels).astype(jnp.float32))
        return loss_sum, errors

    def _eval_chunks(self) -> list[tuple[jax.Array, jax.Array]]:
        arrays = self.arrays
        size = self.eval_chunk_size
        count = int(arrays.eval_labels.shape[0])
        return [
            (arrays.eval_inputs[start : start + size], arrays.eval_labels[start : start + size])
            for start in range(0, count, size)
        ]

    def _train_set_chunks(self) -> list[tuple[jax.Array, jax.Array]]:
        arrays = self.arrays
        count = int(arrays.train_labels.shape[0])
        index = np.arange(count) if count <= self.train_set_examples else \
            np.sort(np.random.default_rng(0).choice(count, self.train_set_examples, replace=False))
        size = self.eval_chunk_size
        chunks = []
        for start in range(0, index.size, size):
            rows = jnp.asarray(index[start:start + size])
            inputs = arrays.train_inputs[rows].astype(jnp.float32)  # as sample_batch_from prepares them
            if arrays.input_scale != 1.0 or arrays.input_shift != 0.0:
                inputs = inputs * jnp.float32(arrays.input_scale) + jnp.float32(arrays.input_shift)
            chunks.append((inputs, arrays.train_labels[rows]))
        return chunks

    def evaluate_for(self, params: Params, metric: str) -> Mapping[str, float]:
        """:meth:`evaluate`, plus ``train_set_loss`` when ``metric`` is it."""
        metrics = dict(self.evaluate(params))
        if metric == "train_set_loss":
            sums = self._memo("eval_sums", lambda: jax.jit(self._eval_sums))
            chunks = self._memo("train_set_chunks", self._train_set_chunks)
            total = jnp.float32(0.0)
            for inputs, labels in chunks:
                total = total + sums(params, inputs, labels)[0]
            metrics["train_set_loss"] = float(total) / sum(int(labels.shape[0]) for _, labels in chunks)
        return metrics

    def evaluate(self, params: Params) -> Mapping[str, float]:
        """``{"loss": mean cross-entropy, "error": top-1 error rate}`` on the evaluation split."""
        sums = self._memo("eval_sums", lambda: jax.jit(self._eval_sums))
        chunks = self._memo("eval_chunks", self._eval_chunks)
        loss_total = jnp.float32(0.0)
        error_total = jnp.float32(0.0)
        for inputs, labels in chunks:
            loss_sum, errors = sums(params, inputs, labels)
            loss_total = loss_total + loss_sum
            error_total = error_total + errors
        count = int(self.arrays.eval_labels.shape[0])
        return {"loss": float(loss_total) / count, "error": float(error_total) / count}
