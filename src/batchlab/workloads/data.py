"""Offline data helpers shared by the workloads: IDX files, the user cache and standardisation.

Nothing here downloads anything.  Arrays generated or extracted once (MNIST-1D, the Bible text) are
stored as ``.npz`` files in the user cache directory, written atomically so that a crash or a
concurrent writer never leaves a truncated file behind.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pathlib
import tempfile
from typing import Callable, Mapping

import numpy as np

from batchlab.errors import InputError

__all__ = ["read_idx", "cache_dir", "cached_arrays", "standardization", "CACHE_ENV"]

CACHE_ENV = "BATCHLAB_CACHE"

# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a native-endian numpy array.

    Format: two zero bytes, a type code, the number of dimensions ``n``, then ``n`` big-endian
    uint32 sizes, then the data in row-major order.

    Args:
        path: a ``.gz`` file (decompressed on the fly) or a plain IDX file.

    Returns:
        The array, shape given by the header, dtype native-endian (``uint8`` for image/label files).

    Raises:
        InputError: if the header is malformed or the payload size does not match the header.

    Example:
        >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape
        (10000, 28, 28)
    """
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        raw = stream.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InputError(f"{path}: not an IDX file (bad magic number)")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header_bytes = 4 + 4 * ndim
    if len(raw) < header_bytes:
        raise InputError(f"{path}: truncated IDX header")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_bytes != expected:
        raise InputError(f"{path}: IDX payload has {len(raw) - header_bytes} bytes, header says {expected}")
    data = np.frombuffer(raw, dtype=dtype, offset=header_bytes).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def cache_dir() -> pathlib.Path:
    """The user cache directory for generated and extracted arrays (created on demand).

    ``$BATCHLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/batchlab``, else ``~/.cache/batchlab``.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return pathlib.Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
    return base / "batchlab"


def _cache_path(name: str, recipe: Mapping[str, object]) -> pathlib.Path:
    digest = hashlib.sha256(json.dumps(dict(recipe), sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-{digest}.npz"


def cached_arrays(
    name: str, recipe: Mapping[str, object], build: Callable[[], Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Arrays from the cache, or ``build()`` them once and store them atomically.

    The cache file is ``<cache_dir>/<name>-<hash of recipe>.npz``: any change to the recipe (sizes,
    seeds, a format version) gives a new file, so stale arrays are never reused.

    Args:
        name: a short file-name stem, e.g. ``"mnist1d"``.
        recipe: JSON-serialisable description of how the arrays are made.
        build: called only on a cache miss; returns named numpy arrays.

    Returns:
        The named arrays (numpy, loaded fully into memory).
    """
    path = _cache_path(name, recipe)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {key: stored[key] for key in stored.files}
        except (OSError, ValueError):
            pass  # unreadable (e.g. written by an incompatible numpy): rebuild and overwrite
    arrays = {key: np.asarray(value) for key, value in build().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; the cache holds public data
        os.replace(temporary, path)  # atomic on POSIX: readers see the old file or the full new one
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    return arrays


def standardization(train_inputs: np.ndarray) -> tuple[float, float]:
    """Scalar mean and standard deviation of the training inputs (over every entry).

    Inputs are standardised as ``(x - mean) / std`` with these two scalars; a single scalar pair
    (rather than per-feature statistics) keeps constant border pixels finite.

    Returns:
        ``(mean, std)`` as Python floats; ``std`` is 1 when the inputs are constant.
    """
    values = np.asarray(train_inputs)
    if values.dtype == np.uint8:
        # Exact moments from the 256-bin histogram: no float64 copy of the whole array.
        counts = np.bincount(values.reshape(-1), minlength=256).astype(np.float64)
        levels = np.arange(256, dtype=np.float64)
        total = counts.sum()
        mean = float(counts @ levels / total)
        std = float(np.sqrt(counts @ np.square(levels - mean) / total))
    else:
        values = values.astype(np.float64)
        mean = float(values.mean())
        std = float(values.std())
    return mean, (std if std > 0 else 1.0)
