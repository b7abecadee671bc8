"""IDX reader, user cache directory, atomic array cache, standardisation."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.workloads import data


def _write_idx(path, type_code: int, dims: tuple[int, ...], payload: bytes, *, compress: bool) -> None:
    header = bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    opener = gzip.open if compress else open
    with opener(path, "wb") as stream:
        stream.write(header + payload)


def test_read_idx_uint8_images_gzipped(tmp_path):
    path = tmp_path / "images-idx3-ubyte.gz"
    _write_idx(path, 0x08, (2, 2, 3), bytes(range(12)), compress=True)
    images = data.read_idx(path)
    assert images.dtype == np.uint8 and images.shape == (2, 2, 3)
    np.testing.assert_array_equal(images, np.arange(12, dtype=np.uint8).reshape(2, 2, 3))


def test_read_idx_big_endian_int32_plain(tmp_path):
    path = tmp_path / "values-idx1-int"
    _write_idx(path, 0x0C, (3,), struct.pack(">iii", 1, -2, 70_000), compress=False)
    values = data.read_idx(path)
    assert values.dtype == np.int32 and values.dtype.byteorder in ("=", "<", "|")
    np.testing.assert_array_equal(values, [1, -2, 70_000])


@pytest.mark.parametrize(
    "raw",
    [b"\x01\x00\x08\x01\x00\x00\x00\x02ab", b"\x00\x00\x08\x01\x00\x00\x00\x03ab", b"\x00\x00\x08\x02\x00"],
    ids=["bad-magic", "short-payload", "short-header"],
)
def test_read_idx_rejects_malformed_files(tmp_path, raw):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(InputError):
        data.read_idx(path)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("BATCHLAB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "batchlab"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "batchlab"
    monkeypatch.setenv("BATCHLAB_CACHE", str(tmp_path / "explicit"))
    assert data.cache_dir() == tmp_path / "explicit"


def test_cached_arrays_builds_once_and_writes_atomically(empty_cache):
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(5, dtype=np.float32), "y": np.array([3], dtype=np.int32)}

    first = data.cached_arrays("thing", {"n": 5}, build)
    second = data.cached_arrays("thing", {"n": 5}, build)
    assert len(calls) == 1
    for key in ("x", "y"):
        np.testing.assert_array_equal(first[key], second[key])
        assert first[key].dtype == second[key].dtype
    files = sorted(p.name for p in empty_cache.iterdir())
    assert len(files) == 1 and files[0].startswith("thing-") and files[0].endswith(".npz")  # no temporaries
    data.cached_arrays("thing", {"n": 6}, build)  # another recipe is another file
    assert len(calls) == 2


def test_cached_arrays_rebuilds_an_unreadable_file(empty_cache):
    data.cached_arrays("thing", {}, lambda: {"x": np.zeros(2)})
    (path,) = list(empty_cache.iterdir())
    path.write_bytes(b"truncated")
    again = data.cached_arrays("thing", {}, lambda: {"x": np.ones(2)})
    np.testing.assert_array_equal(again["x"], np.ones(2))


def test_standardization_of_uint8_matches_float_computation():
    values = np.random.default_rng(0).integers(0, 256, size=(50, 7, 3), dtype=np.uint8)
    mean, std = data.standardization(values)
    assert mean == pytest.approx(values.astype(np.float64).mean(), rel=1e-12)
    assert std == pytest.approx(values.astype(np.float64).std(), rel=1e-12)
    assert data.standardization(np.full(4, 3.0)) == (3.0, 1.0)
