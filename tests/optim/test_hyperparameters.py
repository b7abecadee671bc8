"""optim.hyperparameters: one scaling implementation shared by optimizers' spaces and study specs."""

import pytest

from batchlab.optim import get_optimizer, optimizer_names
from batchlab.optim.hyperparameters import SCALINGS, unit_to_value, value_to_unit
from batchlab.study.spec import SearchDim

UNITS = [i / 16 for i in range(17)]


@pytest.mark.parametrize("name", optimizer_names())
def test_search_dims_map_like_the_declared_hyperparameters(name):
    for schedule in ("constant", "cosine"):
        for hp in get_optimizer(name).search_space({"lr_schedule": schedule}):
            dim = SearchDim(hp.name, *hp.search, hp.scaling)
            for u in UNITS:
                assert dim.from_unit(u) == float(f"{hp.from_unit(u):.12g}")
                assert dim.to_unit(dim.from_unit(u)) == pytest.approx(u, abs=1e-9)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_value_to_unit_inverts_unit_to_value(scaling):
    low, high = (0.5, 0.999) if scaling == "one_minus_log" else (1e-3, 10.0)
    assert unit_to_value(0.0, low, high, scaling) == pytest.approx(low)
    assert unit_to_value(1.0, low, high, scaling) == pytest.approx(high)
    for u in UNITS:
        assert value_to_unit(unit_to_value(u, low, high, scaling), low, high, scaling) == pytest.approx(u, abs=1e-12)
