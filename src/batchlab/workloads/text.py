"""Character-level language modelling on the King James Bible with a small Transformer.

Data: the text printed by the ``bible`` program of Debian's ``bible-kjv`` (``bible -l0
gen1:1-rev22:21``), reduced to the verse texts, one verse per line (4.14 M characters, 73 distinct),
extracted once and cached as uint8 codes in the user cache.  The text is cut into 4,096-character
blocks; every 20th block (5 %) is held out for evaluation.  A training example is a window of
``context_length + 1`` consecutive characters starting at a uniformly random position (with
replacement): inputs are its first ``context_length`` characters, targets the next ones.
Evaluation uses ``eval_windows`` fixed windows evenly spaced over the held-out text.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import subprocess
from typing import Any, ClassVar, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.errors import DataMissingError, InputError
from batchlab.workloads.base import Batch, LossKind, Params, Workload
from batchlab.workloads.data import cached_arrays
from batchlab.workloads.layers import softmax_cross_entropy
from batchlab.workloads.options import check_int, check_str
from batchlab.workloads.transformer import TransformerConfig, apply_transformer, init_transformer

__all__ = ["TextTransformer", "extract_bible_text", "load_bible_codes", "DATA_DIR_ENV"]

INSTALL_HINT = "apt-get install -y bible-kjv"
DATA_DIR_ENV = "BATCHLAB_BIBLE_DIR"
BLOCK_SIZE = 4_096
EVAL_EVERY_BLOCK = 20
_VERSE = re.compile(r"^ *\d+ (.*)$", re.MULTILINE)


def extract_bible_text(data_dir: str = "") -> str:
    """The verse texts of the whole King James Bible, one verse per line, via the ``bible`` program.

    Args:
        data_dir: folder holding ``bible.data`` ("" = the program's default search path).

    Raises:
        DataMissingError: the program or its data file is missing.
    """
    command = ["bible", "-l0"] + (["-p", data_dir] if data_dir else []) + ["gen1:1-rev22:21"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError as error:
        raise DataMissingError(f"the bible program is not installed; install it with: {INSTALL_HINT}") from error
    verses = _VERSE.findall(result.stdout)
    if result.returncode != 0 or len(verses) < 30_000:
        where = f" in {data_dir}" if data_dir else ""
        raise DataMissingError(f"King James Bible text not found{where}; install it with: {INSTALL_HINT}")
    return "\n".join(verses) + "\n"


def _encode_bible(data_dir: str) -> dict[str, np.ndarray]:
    text = extract_bible_text(data_dir)
    vocabulary = sorted(set(text))
    lookup = {character: code for code, character in enumerate(vocabulary)}
    codes = np.fromiter((lookup[character] for character in text), dtype=np.uint8, count=len(text))
    return {"codes": codes, "vocabulary": np.array([ord(c) for c in vocabulary], dtype=np.int32)}


class TextArrays(NamedTuple):
    """Encoded text on device: training stream, evaluation stream, vocabulary (code points)."""

    train_codes: jax.Array
    eval_codes: np.ndarray
    vocabulary: np.ndarray


@functools.lru_cache(maxsize=2)
def load_bible_codes(data_dir: str) -> TextArrays:
    """The encoded text, split into training and held-out streams (cached on disk, memoised)."""
    stored = cached_arrays("bible-kjv", {"source": "bible -l0 gen1:1-rev22:21", "format": 1},
                           lambda: _encode_bible(data_dir))
    codes = stored["codes"]
    block = np.arange(codes.shape[0]) // BLOCK_SIZE
    held_out = block % EVAL_EVERY_BLOCK == EVAL_EVERY_BLOCK - 1
    return TextArrays(jnp.asarray(codes[~held_out]), codes[held_out], stored["vocabulary"])


@dataclasses.dataclass(frozen=True)
class TextTransformer(Workload):
    """Character-level Transformer LM on the King James Bible; target on validation cross-entropy.

    Metrics: ``loss`` (nats per character), ``bits_per_character`` (= loss / ln 2), ``error``
    (next-character top-1 error), over ``eval_windows × context_length`` held-out predictions.

    Options:
        context_length: characters per example, 8 … 512 (default 32).
        model_dim: width, 16 … 512, a multiple of ``heads`` (default 64).
        layers: Transformer blocks, 1 … 8 (default 2).
        heads: attention heads, 1 … 16 (default 4).
        eval_windows: evaluation windows, 16 … 8,192 (default 512).
        data_dir: folder holding ``bible.data`` ("" = ``$BATCHLAB_BIBLE_DIR`` or the program's default).

    Target: evaluation loss ≤ 1.4 nats per character (2.02 bits).  Heavy-ball SGD (momentum 0.9) at
    B = 128 first reached it after 1,500 steps (rate 0.3) and 1,800 (rate 0.1), ending at 1.31 and
    1.33 after 3,000 steps; rate 1.0 diverged.  Context 32 rather than 64: at the same batch size a
    step costs ~2.5× less on this CPU (half the characters; attention is quadratic in the context).
    """

    context_length: int = 32
    model_dim: int = 64
    layers: int = 2
    heads: int = 4
    eval_windows: int = 512
    data_dir: str = ""

    name: ClassVar[str] = "text-transformer"
    version: ClassVar[str] = "1"
    target_metric: ClassVar[str] = "loss"
    target_value: ClassVar[float] = 1.4
    default_max_steps: ClassVar[int] = 20_000
    default_eval_every: ClassVar[int] = 100
    loss_kind: ClassVar[LossKind] = "softmax_cross_entropy"
    install_hint: ClassVar[str] = INSTALL_HINT
    description: ClassVar[str] = "King James Bible, character-level Transformer LM (2 layers, d=64, context 32)"
    eval_chunk_size: ClassVar[int] = 256

    def __post_init__(self) -> None:
        check_int(self.name, "context_length", self.context_length, 8, 512)
        check_int(self.name, "model_dim", self.model_dim, 16, 512)
        check_int(self.name, "layers", self.layers, 1, 8)
        check_int(self.name, "heads", self.heads, 1, 16)
        check_int(self.name, "eval_windows", self.eval_windows, 16, 8_192)
        check_str(self.name, "data_dir", self.data_dir)
        if self.model_dim % self.heads or self.model_dim % 2:
            raise InputError(f"{self.name}: model_dim must be even and a multiple of heads, got "
                             f"model_dim={self.model_dim}, heads={self.heads}")

    # --- data ---------------------------------------------------------------------------------------
    @property
    def arrays(self) -> TextArrays:
        """The encoded text (loads on first use)."""
        return self._memo("arrays", lambda: load_bible_codes(self.data_dir or os.environ.get(DATA_DIR_ENV, "")))

    def load(self) -> None:
        self.arrays  # noqa: B018

    @property
    def config(self) -> TransformerConfig:
        """The model shape (vocabulary size from the loaded text)."""
        return TransformerConfig(int(self.arrays.vocabulary.shape[0]), self.context_length, self.model_dim,
                                 self.layers, self.heads)

    @property
    def vocabulary(self) -> str:
        """The characters, in code order."""
        return "".join(chr(point) for point in self.arrays.vocabulary)

    @property
    def num_train_examples(self) -> int:
        """Number of distinct training windows (start positions)."""
        return int(self.arrays.train_codes.shape[0]) - self.context_length

    def train_data(self) -> jax.Array:
        return self.arrays.train_codes

    def sample_batch_from(self, train_data: Any, *, key: jax.Array, batch_size: int) -> Batch:
        starts = jax.random.randint(key, (batch_size, 1), 0, train_data.shape[0] - self.context_length)
        windows = train_data[starts + jnp.arange(self.context_length + 1)[None, :]].astype(jnp.int32)
        return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}

    def sample_batch(self, *, key: jax.Array, batch_size: int) -> Batch:
        return self.sample_batch_from(self.train_data(), key=key, batch_size=batch_size)

    # --- model --------------------------------------------------------------------------------------
    def init_params(self, *, key: jax.Array) -> Params:
        return init_transformer(self.config, key=key)

    def apply(self, params: Params, inputs: jax.Array) -> jax.Array:
        """Next-character logits ``(batch, length, vocabulary)`` for int tokens ``(batch, length)``.

        The training loss is the mean cross-entropy over every position, so a curvature method
        registers it on ``logits.reshape(-1, vocabulary)`` against ``targets.reshape(-1)``.
        """
        return apply_transformer(self.config, params, inputs)

    def per_example_loss(self, params: Params, batch: Batch) -> jax.Array:
        """Mean next-character cross-entropy (nats) of each window, shape ``(batch,)``."""
        losses = softmax_cross_entropy(self.apply(params, batch["inputs"]), batch["targets"])
        return jnp.mean(losses, axis=-1)

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        """Mean next-character cross-entropy over all positions of the batch (nats per character)."""
        return jnp.mean(self.per_example_loss(params, batch))

    # --- evaluation ---------------------------------------------------------------------------------
    def _eval_chunks(self) -> list[tuple[jax.Array, jax.Array]]:
        codes = self.arrays.eval_codes
        span = self.context_length + 1
        starts = np.linspace(0, codes.shape[0] - span, self.eval_windows).astype(np.int64)
        windows = codes[starts[:, None] + np.arange(span)[None, :]].astype(np.int32)
        size = self.eval_chunk_size
        return [(jnp.asarray(windows[i : i + size, :-1]), jnp.asarray(windows[i : i + size, 1:]))
                for i in range(0, windows.shape[0], size)]

    def _eval_sums(self, params: Params, inputs: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = self.apply(params, inputs)
        loss_sum = jnp.sum(softmax_cross_entropy(logits, targets))
        errors = jnp.sum((jnp.argmax(logits, axis=-1) != targets).astype(jnp.float32))
        return loss_sum, errors

    def evaluate(self, params: Params) -> Mapping[str, float]:
        """``{"loss": nats/char, "bits_per_character": bits/char, "error": top-1 error}`` on held-out text."""
        sums = self._memo("eval_sums", lambda: jax.jit(self._eval_sums))
        chunks = self._memo("eval_chunks", self._eval_chunks)
        loss_total, error_total = jnp.float32(0.0), jnp.float32(0.0)
        for inputs, targets in chunks:
            loss_sum, errors = sums(params, inputs, targets)
            loss_total, error_total = loss_total + loss_sum, error_total + errors
        count = self.eval_windows * self.context_length
        loss = float(loss_total) / count
        return {"loss": loss, "bits_per_character": loss / math.log(2.0), "error": float(error_total) / count}
