"""Incumbent pruning on a spec where it really prunes (nqm-sampled, see ``conftest.nqm_data``): run
through the CLI with ``--prune`` and ``--no-prune``, checked trial by trial against the unpruned run."""

from __future__ import annotations

import math
import re

import pytest
from typer.testing import CliRunner

from batchlab.cli import _register, app
from batchlab.store.frames import trials_frame

from .conftest import nqm_data, to_toml

pytestmark = pytest.mark.slow
_register()
CELL = ["optimizer", "batch_size"]
COMPARED = ["status", "steps_to_target", "steps_run", "final_relative_risk"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(trials frame, stdout) of the same spec run with --no-prune and with --prune."""
    root = tmp_path_factory.mktemp("pruning")
    spec = root / "nqm.toml"
    spec.write_text(to_toml(nqm_data()))
    out = {}
    for flag in ("--no-prune", "--prune"):
        result = CliRunner().invoke(app, ["study", "run", str(spec), "--out", str(root / flag[2:]), flag])
        assert result.exit_code == 0, result.output
        out[flag[2:]] = trials_frame(root / flag[2:]).set_index("id"), result.stdout
    return out


def _best(trials):
    return trials[trials["status"] == "reached"].groupby(CELL)["steps_to_target"].min()


def test_pruning_prunes_and_keeps_every_cells_best_steps(runs):
    (plain, plain_out), (pruned, pruned_out) = runs["no-prune"], runs["prune"]
    assert (plain["status"] != "pruned").all() and plain["prune_at_step"].isna().all()
    assert (pruned["status"] == "pruned").sum() >= 3
    assert _best(plain).equals(_best(pruned)) and len(_best(plain)) == 2
    steps = {name: int(re.search(r"([\d,]+) training steps", out).group(1).replace(",", ""))
             for name, out in (("plain", plain_out), ("pruned", pruned_out))}
    assert steps == {"plain": plain["steps_run"].sum(), "pruned": pruned["steps_run"].sum()}
    assert steps["pruned"] < steps["plain"]


def test_each_bound_is_the_best_steps_of_the_earlier_rounds(runs):
    """8 trials in min(3, 8) = 3 rounds (trial i in round 3i // 8): a trial's bound is the fewest
    steps of its cell's trials in earlier rounds, whatever finished first."""
    pruned = runs["prune"][0]
    assert list(pruned.sort_values(["batch_size", "trial_index"])["round"][:8]) == [0, 0, 0, 1, 1, 1, 2, 2]
    final_best = _best(pruned)
    for trial_id, row in pruned.iterrows():
        cell = pruned[(pruned["optimizer"] == row["optimizer"]) & (pruned["batch_size"] == row["batch_size"])]
        earlier = cell[(cell["status"] == "reached") & (cell["round"] < row["round"])]
        if earlier.empty:
            assert math.isnan(row["prune_at_step"]), trial_id
            continue
        assert row["prune_at_step"] == earlier["steps_to_target"].min(), trial_id
        assert row["prune_at_step"] >= final_best[(row["optimizer"], row["batch_size"])]
        if row["status"] == "pruned":
            assert row["steps_run"] == row["prune_at_step"] and math.isnan(row["steps_to_target"])


def test_each_pruned_record_follows_from_the_unpruned_run(runs):
    """The bound of a trial is the fewest steps any trial of an earlier round needed without pruning
    (a pruned trial never needed fewer); a trial is pruned exactly when it would not have reached the
    target by then, and otherwise reaches (or diverges) as it does unpruned."""
    plain, pruned = runs["no-prune"][0], runs["prune"][0]
    eval_every = nqm_data()["eval_every"]
    assert sorted(plain.index) == sorted(pruned.index)
    for _, cell in plain.sort_values("trial_index").groupby(CELL):
        for trial_id, unpruned in cell.iterrows():
            row = pruned.loc[trial_id]
            earlier = cell[(cell["status"] == "reached") & (cell["round"] < unpruned["round"])]
            bound = int(earlier["steps_to_target"].min()) if len(earlier) else None
            if bound is None:
                assert math.isnan(row["prune_at_step"]), trial_id
                assert row[COMPARED].equals(unpruned[COMPARED]), trial_id
            elif unpruned["status"] == "reached" and unpruned["steps_to_target"] <= bound:
                assert (row["prune_at_step"], row["status"], row["steps_to_target"]) == (
                    bound, "reached", unpruned["steps_to_target"]), trial_id
            elif unpruned["status"] == "diverged" and unpruned["steps_run"] - eval_every < bound:
                # diverged in the evaluation interval holding the bound: stopped as either
                assert row["status"] in ("diverged", "pruned") and row["steps_run"] <= bound, trial_id
            else:
                assert (row["prune_at_step"], row["status"], row["steps_run"]) == (bound, "pruned", bound), trial_id
