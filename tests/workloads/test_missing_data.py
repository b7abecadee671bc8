"""Missing data gives one line naming the install command; generated data is cached and reused."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from batchlab.errors import DataMissingError
from batchlab.workloads import digits, get_workload, mnist1d, text


def _one_line_naming(error: pytest.ExceptionInfo, command: str) -> None:
    message = str(error.value)
    assert "\n" not in message and command in message


def test_fashion_mnist_missing_folder(tmp_path):
    with pytest.raises(DataMissingError) as error:
        get_workload("fashion-mnist-mlp", data_dir=str(tmp_path)).load()
    _one_line_naming(error, "apt-get install -y dataset-fashion-mnist")


def test_fashion_mnist_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHLAB_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataMissingError) as error:
        get_workload("fashion-mnist-cnn").load()
    _one_line_naming(error, "apt-get install -y dataset-fashion-mnist")


def test_bible_data_missing(tmp_path, empty_cache):
    with pytest.raises(DataMissingError) as error:
        get_workload("text-transformer", data_dir=str(tmp_path)).load()
    _one_line_naming(error, "apt-get install -y bible-kjv")


def test_bible_program_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataMissingError) as error:
        text.extract_bible_text()
    _one_line_naming(error, "apt-get install -y bible-kjv")


def test_python_data_packages_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)  # makes the import fail
    with pytest.raises(DataMissingError) as error:
        mnist1d.generate_mnist1d(100, 0)
    _one_line_naming(error, "pip install mnist1d")
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataMissingError) as error:
        digits._read_digits()
    _one_line_naming(error, "pip install scikit-learn")


def test_mnist1d_generation_is_cached_on_disk(empty_cache, monkeypatch):
    calls = []
    original = mnist1d.generate_mnist1d

    def counting(num_samples, seed):
        calls.append((num_samples, seed))
        return original(num_samples, seed)

    monkeypatch.setattr(mnist1d, "generate_mnist1d", counting)
    state = np.random.get_state()
    first = mnist1d.load_mnist1d(200, 11)
    assert calls == [(200, 11)] and any(empty_cache.iterdir())
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])  # global RNG untouched
    mnist1d.load_mnist1d.cache_clear()  # a new process: only the disk cache is left
    second = mnist1d.load_mnist1d(200, 11)
    assert calls == [(200, 11)]
    assert first.train_inputs.shape == (160, 40) and first.eval_labels.shape == (40,)
    np.testing.assert_array_equal(np.asarray(first.train_inputs), np.asarray(second.train_inputs))


def test_bible_extraction_is_cached_on_disk(empty_cache, monkeypatch):
    first = text._encode_bible("")
    calls = []
    monkeypatch.setattr(text, "_encode_bible", lambda data_dir: calls.append(data_dir) or first)
    text.load_bible_codes.cache_clear()
    text.load_bible_codes("")
    text.load_bible_codes.cache_clear()
    loaded = text.load_bible_codes("")
    assert len(calls) == 1
    assert loaded.vocabulary.shape[0] == 73 and loaded.train_codes.shape[0] + loaded.eval_codes.shape[0] > 4_000_000
    text.load_bible_codes.cache_clear()  # later tests reload from the real cache
