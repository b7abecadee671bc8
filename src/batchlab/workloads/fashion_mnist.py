"""Fashion-MNIST workloads: a small strided CNN and an MLP (data from Debian's ``dataset-fashion-mnist``).

Data: the 60,000 training images (or the first ``train_examples`` of them; the file is already in
random order) and the first ``eval_examples`` (default 5,000) images of the 10,000-image test split,
which serves as the validation set (its order is random too: class counts of the first 5,000 are
477 … 526).  Pixels are standardised with the training split's scalar mean and standard
deviation: ``x = (pixel - 72.94) / 90.02``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.errors import DataMissingError
from batchlab.workloads.base import Params
from batchlab.workloads.classification import ClassificationArrays, ClassificationWorkload
from batchlab.workloads.data import read_idx, standardization
from batchlab.workloads.layers import Kernel, conv2d, conv_output_size, dense, init_kernels
from batchlab.workloads.options import check_int, check_str

__all__ = ["FashionMnistCnn", "FashionMnistMlp", "load_fashion_mnist", "DATA_DIR_ENV", "DEFAULT_DATA_DIR"]

DATA_DIR_ENV = "BATCHLAB_FASHION_MNIST_DIR"
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "apt-get install -y dataset-fashion-mnist"
_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "eval_images": "t10k-images-idx3-ubyte.gz",
    "eval_labels": "t10k-labels-idx1-ubyte.gz",
}
TRAIN_SIZE = 60_000
TEST_SIZE = 10_000


def resolve_data_dir(data_dir: str) -> pathlib.Path:
    """``data_dir`` if given, else ``$BATCHLAB_FASHION_MNIST_DIR``, else the Debian package's folder."""
    return pathlib.Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


@functools.lru_cache(maxsize=4)
def load_fashion_mnist(directory: str, train_examples: int, eval_examples: int) -> ClassificationArrays:
    """Read the gzipped IDX files in ``directory`` onto the device (memoised per argument tuple).

    Training images stay uint8 (standardised per batch); evaluation images are stored standardised.

    Raises:
        DataMissingError: a file is missing; the message names the apt-get command.
    """
    folder = pathlib.Path(directory)
    paths = {name: folder / file for name, file in _FILES.items()}
    if not all(path.is_file() for path in paths.values()):
        raise DataMissingError(f"Fashion-MNIST not found in {folder}; install it with: {INSTALL_HINT}")
    train_images = read_idx(paths["train_images"])[:train_examples]
    train_labels = read_idx(paths["train_labels"])[:train_examples]
    eval_images = read_idx(paths["eval_images"])[:eval_examples]
    eval_labels = read_idx(paths["eval_labels"])[:eval_examples]
    mean, std = standardization(train_images)
    eval_inputs = ((eval_images.astype(np.float32) - np.float32(mean)) / np.float32(std))[..., None]
    return ClassificationArrays(
        train_inputs=jnp.asarray(train_images[..., None]),  # NHWC, uint8
        train_labels=jnp.asarray(train_labels.astype(np.int32)),
        eval_inputs=jnp.asarray(eval_inputs),
        eval_labels=jnp.asarray(eval_labels.astype(np.int32)),
        input_scale=1.0 / std,
        input_shift=-mean / std,
    )


@dataclasses.dataclass(frozen=True)
class _FashionMnist(ClassificationWorkload):
    """Options shared by the Fashion-MNIST workloads (abstract)."""

    train_examples: int = TRAIN_SIZE
    eval_examples: int = 5_000
    data_dir: str = ""

    install_hint: ClassVar[str] = INSTALL_HINT

    def __post_init__(self) -> None:
        check_int(self.name, "train_examples", self.train_examples, 1, TRAIN_SIZE)
        check_int(self.name, "eval_examples", self.eval_examples, 1, TEST_SIZE)
        check_str(self.name, "data_dir", self.data_dir)

    def load_arrays(self) -> ClassificationArrays:
        directory = str(resolve_data_dir(self.data_dir))
        return load_fashion_mnist(directory, self.train_examples, self.eval_examples)


@dataclasses.dataclass(frozen=True)
class FashionMnistCnn(_FashionMnist):
    """Fashion-MNIST, small CNN with strided convolutions (no pooling).

    Model: conv 3×3/2 (16) → ReLU → conv 3×3/2 (32) → ReLU → flatten (7·7·32) → dense 128 → ReLU →
    dense 10.  28×28 → 14×14 → 7×7; 206,922 parameters.

    Target: evaluation error ≤ 0.11.  Heavy-ball SGD (momentum 0.9, constant rate) at B = 128 first
    reached it after 1,800 steps (rate 0.03; 1,550 with an earlier truncated-normal initialisation)
    and 3,350 steps (rate 0.01, earlier initialisation); the best error within 4,000 steps was ≈ 0.102.

    Options:
        train_examples: training images used, 1 … 60,000 (default all).
        eval_examples: test images used for evaluation (the first ones), 1 … 10,000 (default 5,000:
            half the cost of all 10,000; standard error of an 11 % error rate ≈ 0.44 points).
        data_dir: folder with the gzipped IDX files ("" = ``$BATCHLAB_FASHION_MNIST_DIR`` or the
            Debian package's folder).
    """

    name: ClassVar[str] = "fashion-mnist-cnn"
    version: ClassVar[str] = "1"
    target_value: ClassVar[float] = 0.11
    default_max_steps: ClassVar[int] = 20_000
    default_eval_every: ClassVar[int] = 100
    description: ClassVar[str] = "Fashion-MNIST, CNN conv16/2-conv32/2-dense128 (strided, no pooling)"

    channels: ClassVar[tuple[int, int]] = (16, 32)
    hidden_units: ClassVar[int] = 128

    def init_params(self, *, key: jax.Array) -> Params:
        first, second = self.channels
        side = conv_output_size(conv_output_size(28, 3, 2), 3, 2)
        return init_kernels(key, {
            "conv1": Kernel((3, 3, 1, first)),
            "conv2": Kernel((3, 3, first, second)),
            "dense1": Kernel((side * side * second, self.hidden_units)),
            "output": Kernel((self.hidden_units, 10), gain=1.0),
        })

    def apply(self, params: Params, inputs: jax.Array) -> jax.Array:
        """Logits, shape ``(batch, 10)``, for NHWC inputs ``(batch, 28, 28, 1)``."""
        hidden = jax.nn.relu(conv2d(params["conv1"], inputs, stride=2))
        hidden = jax.nn.relu(conv2d(params["conv2"], hidden, stride=2))
        hidden = hidden.reshape(hidden.shape[0], -1)
        hidden = jax.nn.relu(dense(params["dense1"], hidden))
        return dense(params["output"], hidden)


@dataclasses.dataclass(frozen=True)
class FashionMnistMlp(_FashionMnist):
    """Fashion-MNIST, multilayer perceptron 784 → hidden_units × hidden_layers (ReLU) → 10.

    Options:
        hidden_units: width of each hidden layer, 1 … 4,096 (default 256).
        hidden_layers: number of hidden layers, 1 … 8 (default 2).
        train_examples, eval_examples, data_dir: as for ``fashion-mnist-cnn``.

    Target: evaluation error ≤ 0.12.  Heavy-ball SGD (momentum 0.9) at B = 128 first reached it after
    2,750 steps (rate 0.03; 2,850 with an earlier truncated-normal initialisation) and 2,950 steps
    (rate 0.01, earlier initialisation); the best error within 5,000 steps was ≈ 0.114.
    """

    hidden_units: int = 256
    hidden_layers: int = 2

    name: ClassVar[str] = "fashion-mnist-mlp"
    version: ClassVar[str] = "1"
    target_value: ClassVar[float] = 0.12
    default_max_steps: ClassVar[int] = 20_000
    default_eval_every: ClassVar[int] = 100
    description: ClassVar[str] = "Fashion-MNIST, MLP 784-256-256-10 (ReLU)"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.name, "hidden_units", self.hidden_units, 1, 4096)
        check_int(self.name, "hidden_layers", self.hidden_layers, 1, 8)

    def init_params(self, *, key: jax.Array) -> Params:
        widths = [28 * 28] + [self.hidden_units] * self.hidden_layers
        kernels = {f"dense{i + 1}": Kernel((widths[i], widths[i + 1])) for i in range(self.hidden_layers)}
        kernels["output"] = Kernel((widths[-1], 10), gain=1.0)
        return init_kernels(key, kernels)

    def apply(self, params: Params, inputs: jax.Array) -> jax.Array:
        """Logits, shape ``(batch, 10)``, for inputs ``(batch, 28, 28, 1)`` (flattened here)."""
        hidden = inputs.reshape(inputs.shape[0], -1)
        for i in range(self.hidden_layers):
            hidden = jax.nn.relu(dense(params[f"dense{i + 1}"], hidden))
        return dense(params["output"], hidden)
