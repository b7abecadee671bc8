"""The read side's own package: outcome records, strict JSON, and no JAX on import."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np

from batchlab.jsonsafe import dumps, finite_or_none, json_ready
from batchlab.store import FAILED, FINISHED, TrialOutcome, failed_outcome

from .conftest import REPO


def test_a_failed_outcome_is_a_failed_trial_without_steps():
    outcome = failed_outcome({"id": "t1", "prune_at_step": 40}, "ValueError:  bad\n shape", wall_time=1.5,
                             host="h", worker="w")
    assert outcome == TrialOutcome(id="t1", status=FAILED, steps_to_target=None, steps_run=0, prune_at_step=40,
                                   best_ema_decay=None, final_metrics={}, wall_time=1.5, eval_time=0.0, host="h",
                                   worker="w", error="ValueError: bad shape")
    assert FAILED not in FINISHED
    assert TrialOutcome.from_dict(outcome.to_dict()) == outcome


def test_a_failed_outcome_keeps_500_characters_and_never_an_empty_error():
    assert len(failed_outcome({"id": "t"}, "x" * 900).error) == 500
    assert failed_outcome({"id": "t"}, "  \n").error == "unknown error"
    assert failed_outcome({"id": "t"}, "lost").prune_at_step is None


def test_strict_json_writes_null_for_non_finite_numbers():
    value = {"a": [1.0, math.inf, -math.inf], "b": (np.float64("nan"), np.int64(3)), 4: {"c": np.float32(0.5)}}
    text = dumps(value, sort_keys=True)
    assert json.loads(text, parse_constant=lambda token: 1 / 0) == {
        "4": {"c": 0.5}, "a": [1.0, None, None], "b": [None, 3]}
    assert json_ready(np.float64(2.5)) == 2.5 and type(json_ready(np.float64(2.5))) is float
    assert finite_or_none("1e3") == 1000.0 and finite_or_none(np.nan) is None


def test_the_read_side_and_its_command_module_never_import_jax():
    code = ("import sys; import batchlab.store, batchlab.store.frames, batchlab.analysis, batchlab.report, "
            "batchlab.report.console, batchlab.cli.study, batchlab.cli.demo, batchlab.jsonsafe; "
            "bad = [m for m in sys.modules if m == 'jax' or m.startswith('jax.') or m.startswith('batchlab.study')]; "
            "print(bad); assert not bad")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120, capture_output=True)


def test_the_read_commands_never_load_jax(tmp_path):
    from batchlab.store import open_store

    study = tmp_path / "study"
    open_store(study, create=True).close()
    code = ("import sys; from batchlab.cli import main\n"
            "try: main(sys.argv[1:])\n"
            "except SystemExit as stop: assert stop.code == 0, stop.code\n"
            "bad = [m for m in sys.modules if m == 'jax' or m.startswith('jax.')]; print(bad); assert not bad")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    for argv in (["status", study], ["export", study, "--out", tmp_path / "export"]):
        subprocess.run([sys.executable, "-c", code, "study", *map(str, argv)], check=True, env=env, timeout=120,
                       capture_output=True)
