"""Registry lookup and option validation."""

from __future__ import annotations

import dataclasses

import pytest

from batchlab.errors import InputError
from batchlab.workloads import WORKLOADS, get_workload, list_workloads, workload_options


def test_list_matches_the_table_and_names_are_unique():
    assert list_workloads() == list(WORKLOADS)
    assert set(list_workloads()) >= {
        "fashion-mnist-cnn", "fashion-mnist-mlp", "digits-cnn", "mnist1d-cnn", "text-transformer", "nqm-sampled"
    }
    assert all(cls.name == name for name, cls in WORKLOADS.items())


def test_unknown_workload_lists_valid_names():
    with pytest.raises(InputError) as error:
        get_workload("cifar10-resnet")
    message = str(error.value)
    assert "\n" not in message and all(name in message for name in list_workloads())


def test_unknown_option_lists_valid_options():
    with pytest.raises(InputError) as error:
        get_workload("fashion-mnist-mlp", widht=3)
    message = str(error.value)
    assert "widht" in message and "hidden_units" in message and "\n" not in message


@pytest.mark.parametrize(
    "name, options",
    [
        ("fashion-mnist-mlp", {"hidden_units": 0}),
        ("fashion-mnist-mlp", {"hidden_layers": 2.5}),
        ("fashion-mnist-cnn", {"train_examples": 60_001}),
        ("fashion-mnist-cnn", {"eval_examples": True}),
        ("mnist1d-cnn", {"num_samples": 10}),
        ("text-transformer", {"model_dim": 30, "heads": 4}),
        ("text-transformer", {"context_length": 4}),
        ("nqm-sampled", {"exponent": 0.0}),
        ("nqm-sampled", {"dim": -1}),
        ("nqm-sampled", {"problem": "power-law"}),
    ],
)
def test_out_of_range_options_are_rejected(name, options):
    with pytest.raises(InputError):
        get_workload(name, **options)


def test_options_are_frozen_dataclass_fields_with_defaults():
    for name, cls in WORKLOADS.items():
        workload = get_workload(name)
        assert dataclasses.is_dataclass(workload)
        assert workload == cls()  # construction is cheap and loads nothing
        assert set(workload_options(name)) == {field.name for field in dataclasses.fields(cls)}
        with pytest.raises(dataclasses.FrozenInstanceError):
            workload.version = "changed"  # type: ignore[misc]
    assert workload_options("fashion-mnist-mlp")["hidden_units"] == 256
