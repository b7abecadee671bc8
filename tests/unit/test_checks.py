"""batchlab.checks: the shared argument checks keep the messages the CLI and the tests match."""

import math

import numpy as np
import pytest

from batchlab.checks import (
    check_at_least,
    check_finite,
    check_finite_number,
    check_integer,
    check_positive,
    check_range,
    finite_or_none,
    is_finite_number,
    is_integer,
)
from batchlab.errors import InputError


def test_predicates():
    assert is_integer(3) and not is_integer(True) and not is_integer(3.0) and not is_integer(np.int64(3))
    assert is_integer(np.int64(3), numpy=True) and not is_integer(np.bool_(True), numpy=True)
    assert is_finite_number(2) and is_finite_number(-0.5)
    assert not any(is_finite_number(v) for v in (True, "1", math.nan, math.inf, None))
    assert finite_or_none("2.5") == 2.5 and finite_or_none(np.float32(1)) == 1.0
    assert all(finite_or_none(v) is None for v in (True, "x", None, math.nan, -math.inf, 10**400))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: check_integer(True, "trials"), "trials must be an integer, got True"),
    (lambda: check_integer(0, "top_k", 1), "top_k must be an integer >= 1, got 0"),
    (lambda: check_integer(1.0, "reference seeds", 1), "reference seeds must be an integer >= 1, got 1.0"),
    (lambda: check_integer(9, "n", 1, 5), "n must be an integer in [1, 5], got 9"),
    (lambda: check_integer(np.int64(0), "n", 1, 5, numpy=True, expected="an integer in [1, 5] (five)"),
     "n must be an integer in [1, 5] (five), got np.int64(0)"),
    (lambda: check_range(0, "tuning.rounds", 1, 4), "tuning.rounds must be in [1, 4], got 0"),
    (lambda: check_range(math.nan, "--precond", 0, 1), "--precond must be in [0, 1], got nan"),
    (lambda: check_at_least(0, "SLQ probes", 1), "SLQ probes must be >= 1, got 0"),
    (lambda: check_positive(math.inf, "tolerance"), "tolerance must be > 0, got inf"),
    (lambda: check_positive(0.0, "tolerance"), "tolerance must be > 0, got 0.0"),
    (lambda: check_finite(math.nan, "loss_floor"), "loss_floor must be finite, got nan"),
    (lambda: check_finite_number("1", "target"), "target must be a finite number, got '1'"),
])
def test_messages(call, message):
    with pytest.raises(InputError) as info:
        call()
    assert str(info.value) == message


def test_values_pass_through_unconverted():
    assert check_integer(np.int64(3), "n", 1, numpy=True) == 3
    assert check_range(2.5, "x", 0, 3) == 2.5 and check_at_least(1, "x", 1) == 1
    assert check_positive(1e-9, "x") == 1e-9 and check_finite(-1.0, "x") == -1.0
    assert check_finite_number(2, "x") == 2.0 and isinstance(check_finite_number(2, "x"), float)
    assert check_at_least(math.nan, "x", 1) is not None  # as the code it replaced: only `value < low` fails
