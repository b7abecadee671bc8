"""MNIST-1D (Greydanus 2020) generated offline by the ``mnist1d`` package, with a small 1-D CNN.

Data: ``mnist1d.data.make_dataset`` with the package's default arguments except ``num_samples`` and
``seed`` (never its download helper), cached in the user cache.  The package's own 80/20 split gives
the training and evaluation sets (4,000 / 1,000 at the default 5,000 samples); inputs are 40 floats,
already standardised by the generator.  Generation takes ~3 s per 5,000 samples, once.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.errors import DataMissingError
from batchlab.workloads.base import Params
from batchlab.workloads.classification import ClassificationArrays, ClassificationWorkload
from batchlab.workloads.data import cached_arrays
from batchlab.workloads.layers import Kernel, conv2d, conv_output_size, dense, init_kernels
from batchlab.workloads.options import check_int

__all__ = ["Mnist1dCnn", "generate_mnist1d", "load_mnist1d"]

INSTALL_HINT = "pip install mnist1d"
SEQUENCE_LENGTH = 40


def generate_mnist1d(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """Run the ``mnist1d`` generator (no network access) and return its train/test arrays.

    The generator seeds NumPy's and Python's global random state; both are restored afterwards so
    that loading a workload never changes global RNG state.

    Raises:
        DataMissingError: the ``mnist1d`` package is not installed.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise DataMissingError(f"the mnist1d package is not installed; install it with: {INSTALL_HINT}") from error
    arguments = get_dataset_args()
    arguments.num_samples = num_samples
    arguments.seed = seed
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        dataset = make_dataset(arguments)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {
        "train_inputs": dataset["x"].astype(np.float32),
        "train_labels": dataset["y"].astype(np.int32),
        "eval_inputs": dataset["x_test"].astype(np.float32),
        "eval_labels": dataset["y_test"].astype(np.int32),
    }


@functools.lru_cache(maxsize=4)
def load_mnist1d(num_samples: int, seed: int) -> ClassificationArrays:
    """MNIST-1D on device, generated once per ``(num_samples, seed)`` and cached on disk (memoised)."""
    recipe = {"generator": "mnist1d.make_dataset", "num_samples": num_samples, "seed": seed, "format": 1}
    stored = cached_arrays("mnist1d", recipe, lambda: generate_mnist1d(num_samples, seed))
    return ClassificationArrays(
        train_inputs=jnp.asarray(stored["train_inputs"]),
        train_labels=jnp.asarray(stored["train_labels"]),
        eval_inputs=jnp.asarray(stored["eval_inputs"]),
        eval_labels=jnp.asarray(stored["eval_labels"]),
    )


@dataclasses.dataclass(frozen=True)
class Mnist1dCnn(ClassificationWorkload):
    """MNIST-1D, 1-D CNN: conv 5/1 (32) → conv 5/2 (32) → conv 5/2 (32) → dense 10 (ReLU).

    Convolutions are 2-D convolutions over a height-1 image (NHWC ``(batch, 1, 40, 1)``), the form
    kfac-jax registers.  40 → 40 → 20 → 10 positions; 13,706 parameters.

    Options:
        num_samples: examples generated (80 % train, 20 % eval), 100 … 100,000 (default 5,000).
        seed: generator seed (default 42, the package's).

    Target: evaluation error ≤ 0.05.  Heavy-ball SGD (momentum 0.9) at B = 128 first reached it after
    350 steps (rate 0.1; best error ≈ 0.031, then overfitting); rate 0.03 plateaued near 0.08 and
    rate 0.3 diverged.
    """

    num_samples: int = 5_000
    seed: int = 42

    name: ClassVar[str] = "mnist1d-cnn"
    version: ClassVar[str] = "1"
    target_value: ClassVar[float] = 0.05
    default_max_steps: ClassVar[int] = 10_000
    default_eval_every: ClassVar[int] = 25
    install_hint: ClassVar[str] = INSTALL_HINT
    description: ClassVar[str] = "MNIST-1D (generated offline), 1-D CNN 3x conv32 + dense"

    channels: ClassVar[int] = 32

    def __post_init__(self) -> None:
        check_int(self.name, "num_samples", self.num_samples, 100, 100_000)
        check_int(self.name, "seed", self.seed, 0, 2**31 - 1)

    def load_arrays(self) -> ClassificationArrays:
        return load_mnist1d(self.num_samples, self.seed)

    def init_params(self, *, key: jax.Array) -> Params:
        width = conv_output_size(conv_output_size(SEQUENCE_LENGTH, 5, 2), 5, 2)
        channels = self.channels
        return init_kernels(key, {
            "conv1": Kernel((1, 5, 1, channels)),
            "conv2": Kernel((1, 5, channels, channels)),
            "conv3": Kernel((1, 5, channels, channels)),
            "output": Kernel((width * channels, 10), gain=1.0),
        })

    def apply(self, params: Params, inputs: jax.Array) -> jax.Array:
        """Logits, shape ``(batch, 10)``, for inputs ``(batch, 40)``."""
        hidden = inputs.reshape(inputs.shape[0], 1, SEQUENCE_LENGTH, 1)
        hidden = jax.nn.relu(conv2d(params["conv1"], hidden, stride=1))
        hidden = jax.nn.relu(conv2d(params["conv2"], hidden, stride=(1, 2)))
        hidden = jax.nn.relu(conv2d(params["conv3"], hidden, stride=(1, 2)))
        return dense(params["output"], hidden.reshape(hidden.shape[0], -1))
