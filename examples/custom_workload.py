"""A user-defined workload: a small MLP on scikit-learn's bundled breast-cancer data (569 tumours).

Use it anywhere a workload name is accepted, e.g.::

    batchlab train --workload examples/custom_workload.py:MyWorkload --optimizer adam --batch-size 32

A workload is a frozen dataclass (its fields are its options) subclassing batchlab's ``Workload``;
``ClassificationWorkload`` already owns sampling, the cross-entropy loss and the error metric, so a
classifier only supplies its data (``load_arrays``) and its model (``init_params``, ``apply``).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_breast_cancer

from batchlab.workloads.classification import ClassificationArrays, ClassificationWorkload


@functools.lru_cache(maxsize=1)
def load_arrays() -> ClassificationArrays:
    """A fixed 80/20 split, features standardised with the training split's mean and deviation."""
    inputs, labels = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(labels))
    train, held_out = order[114:], order[:114]
    mean, std = inputs[train].mean(axis=0), inputs[train].std(axis=0)
    inputs = ((inputs - mean) / std).astype(np.float32)
    labels = labels.astype(np.int32)
    return ClassificationArrays(jnp.asarray(inputs[train]), jnp.asarray(labels[train]),
                                jnp.asarray(inputs[held_out]), jnp.asarray(labels[held_out]))


@dataclasses.dataclass(frozen=True)
class MyWorkload(ClassificationWorkload):
    """Breast cancer (30 features → 2 classes), MLP 30 → hidden_units → 2 (tanh)."""

    hidden_units: int = 32  # an option: `--option hidden_units=64`, or [workload_options] in a spec

    name = "breast-cancer-mlp"
    version = "1"  # bump when data, model, loss or metric change (it enters every trial id)
    target_value = 0.05  # held-out error rate; the default target
    default_max_steps = 500
    default_eval_every = 10
    description = "scikit-learn breast cancer, MLP 30-32-2"

    def load_arrays(self) -> ClassificationArrays:
        return load_arrays()

    def init_params(self, *, key: jax.Array) -> dict:
        first, second = jax.random.split(key)
        return {
            "hidden": {"w": jax.random.normal(first, (30, self.hidden_units)) / jnp.sqrt(30.0),
                       "b": jnp.zeros((self.hidden_units,))},
            "output": {"w": jax.random.normal(second, (self.hidden_units, 2)) / jnp.sqrt(self.hidden_units),
                       "b": jnp.zeros((2,))},
        }

    def apply(self, params: dict, inputs: jax.Array) -> jax.Array:
        """Logits, shape ``(batch, 2)``."""
        hidden = jnp.tanh(inputs @ params["hidden"]["w"] + params["hidden"]["b"][None, :])
        return hidden @ params["output"]["w"] + params["output"]["b"][None, :]
