"""The quasi-random design: points in range, order- and size-independent trials, stable ids."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from batchlab.study import parse_spec
from batchlab.study.design import make_design, trial_id, unit_points

from .conftest import REPO, tiny_data

WIDE = {"sgd": {}, "momentum": {"search": {"momentum": [0.8, 0.999]}}, "adam": {},
        "kfac+ema": {"ema_decays": [0.99, 0.9]}}


def _ids(data):
    return {t.id: t for t in make_design(parse_spec(data))}


@pytest.mark.parametrize("kind", ["sobol", "halton"])
def test_points_lie_in_their_ranges_and_follow_the_scaling(kind):
    spec = parse_spec(tiny_data(design=kind, trials=64, batch_sizes=[8], optimizers=WIDE))
    trials = make_design(spec)
    assert len(trials) == 4 * 64
    for entry in spec.optimizers:
        cell = [t for t in trials if t.optimizer == entry.name]
        for dim in entry.search:
            values = np.array([t.hyperparameters[dim.name] for t in cell])
            assert np.all((values >= dim.low) & (values <= dim.high)), dim
            # the unit coordinate recovered from the value is uniform-ish: a quasi-random design
            # puts exactly 16 of 64 points in each quarter of [0, 1) (Sobol: per-dimension strata)
            if dim.scaling == "log":
                u = np.log(values / dim.low) / math.log(dim.high / dim.low)
            elif dim.scaling == "one_minus_log":
                u = np.log((1 - values) / (1 - dim.low)) / math.log((1 - dim.high) / (1 - dim.low))
            else:
                u = (values - dim.low) / (dim.high - dim.low)
            counts = np.histogram(u, bins=4, range=(0, 1))[0]
            assert (counts == 16).all() if kind == "sobol" else (abs(counts - 16) <= 3).all(), (dim, counts)


def test_fixed_values_and_defaults_enter_every_trial():
    trials = _ids(tiny_data(optimizers={"momentum": {"fixed": {"momentum": 0.95}}}))
    for trial in trials.values():
        hp = trial.hyperparameters
        assert hp["momentum"] == 0.95 and hp["lr_schedule"] == "constant"
        assert set(hp) == {"learning_rate", "momentum", "lr_schedule", "warmup_fraction", "decay_fraction",
                           "end_factor"}


def test_trials_do_not_depend_on_order_or_on_the_number_of_trials():
    base = _ids(tiny_data(batch_sizes=[32, 128, 512], trials=3, optimizers=WIDE))
    reordered = _ids(tiny_data(batch_sizes=[512, 32, 128], trials=3,
                               optimizers=dict(reversed(list(WIDE.items())))))
    assert set(base) == set(reordered)
    more = _ids(tiny_data(batch_sizes=[32, 128, 512], trials=5, optimizers=WIDE))
    assert set(base) < set(more)  # raising `trials` keeps the existing trials
    for trial_id_, trial in base.items():
        assert more[trial_id_].config == trial.config and more[trial_id_].index == trial.index
    assert unit_points("sobol", 3, 5, seed=7)[:3].tolist() == unit_points("sobol", 3, 3, seed=7).tolist()


def test_cells_get_independent_points_and_seeds():
    trials = make_design(parse_spec(tiny_data(trials=4, optimizers={"sgd": {}})))
    small = [t for t in trials if t.batch_size == 32]
    large = [t for t in trials if t.batch_size == 128]
    assert [t.hyperparameters for t in small] != [t.hyperparameters for t in large]
    assert len({t.seed for t in trials}) == len(trials)


def test_id_is_the_hash_of_the_full_configuration():
    trial = make_design(parse_spec(tiny_data()))[0]
    assert trial.id == trial_id(trial.config)
    config = trial.config
    assert config["workload_version"] and config["workload_options"] == {}
    for key, value in (("workload_version", config["workload_version"] + "x"), ("seed", config["seed"] + 1),
                       ("max_steps", config["max_steps"] + 1), ("target", config["target"] * 0.5),
                       ("hyperparameters", dict(config["hyperparameters"], learning_rate=0.123))):
        assert trial_id(dict(config, **{key: value})) != trial.id, key
    other = make_design(parse_spec(tiny_data(target=0.2)))[0]
    assert other.config["target"] == 0.2 and other.id != trial.id


def test_ids_are_stable_across_processes():
    data = tiny_data(optimizers=WIDE)
    here = sorted(t.id for t in make_design(parse_spec(data)))
    code = ("import json, sys; from batchlab.study import parse_spec, make_design; "
            "print(json.dumps(sorted(t.id for t in make_design(parse_spec(json.loads(sys.stdin.read()))))))")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(data), capture_output=True, text=True,
                         env=env, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here
