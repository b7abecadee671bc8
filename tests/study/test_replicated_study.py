"""A study with the full tuning protocol (explore in rounds, refine, replicate) on ``nqm-sampled``:
what each phase designs, that the answer does not depend on interruptions or the executor, and the
analysis, verdicts and CLI on its store."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from batchlab.analysis import analyze
from batchlab.cli import _register, app
from batchlab.study import load_spec, run_study
from batchlab.study.design import unit_of
from batchlab.study.executors import DaskExecutor, LocalExecutor
from batchlab.store.frames import trials_frame

from .conftest import nqm_data, to_toml

pytestmark = pytest.mark.slow
_register()
TUNING = {"explore": 6, "rounds": 2, "refine": 4, "refine_width": 0.15, "candidates": 2, "seeds": 3}
COMPARED = ["phase", "round", "origin", "seed", "status", "steps_to_target", "steps_run", "prune_at_step",
            "hp_learning_rate"]


def _data():
    data = nqm_data(name="replicated", batch_sizes=[16, 64, 256], prune=True, tuning=TUNING,
                    optimizers={"sgd": {"search": {"learning_rate": [0.05, 3.0]}},
                                "momentum": {"search": {"learning_rate": [0.01, 1.0], "momentum": [0.5, 0.95]}}})
    data.pop("trials")
    return data


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "replicated.toml"
    path.write_text(to_toml(_data()))
    return path


@pytest.fixture(scope="module")
def reference(spec_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    summary = run_study(load_spec(spec_path), folder, source=spec_path.read_text())
    return folder, summary, trials_frame(folder).set_index("id")


def test_each_phase_designs_what_the_protocol_says(spec_path, reference):
    folder, summary, trials = reference
    spec = load_spec(spec_path)
    assert summary.failed == 0 and trials["status"].isin(["reached", "budget", "diverged", "pruned"]).all()
    for entry in spec.optimizers:
        for size in spec.batch_sizes:
            cell = trials[(trials["optimizer"] == entry.name) & (trials["batch_size"] == size)]
            explore, refine = cell[cell["phase"] == "explore"], cell[cell["phase"] == "refine"]
            replicas = cell[cell["phase"] == "replicate"]
            assert sorted(explore["round"]) == [0, 0, 0, 1, 1, 1]
            reached = explore[explore["status"] == "reached"]
            assert len(refine) == (4 if len(reached) else 0) and (refine["round"] == 2).all()
            if len(reached):  # the first refinement centre is the best explore trial
                best = reached.sort_values(["steps_to_target", "round", "trial_index"]).iloc[0]
                centre = np.array(unit_of(entry, {d.name: best[f"hp_{d.name}"] for d in entry.search}))
                first = refine.sort_values("trial_index").iloc[0]
                unit = np.array(unit_of(entry, {d.name: first[f"hp_{d.name}"] for d in entry.search}))
                assert np.all(np.abs(unit - centre) <= 0.15 + 1e-9)
            # candidates: the two best distinct reached search trials, each rerun with 3 fresh seeds
            search = cell[cell["phase"] != "replicate"]
            ranked = search[search["status"] == "reached"].sort_values(["steps_to_target", "round", "trial_index"])
            assert list(dict.fromkeys(replicas.sort_values("trial_index")["origin"])) == list(ranked.index[:2])
            for origin, runs in replicas.groupby("origin"):
                assert len(runs) == 3 and (runs["round"] == 3).all() and runs["prune_at_step"].isna().all()
                assert (runs["hp_learning_rate"] == search.loc[origin, "hp_learning_rate"]).all()
                assert len(set(runs["seed"]) | {search.loc[origin, "seed"]}) == 4


def test_pruning_bounds_come_from_earlier_rounds(reference):
    trials = reference[2]
    search = trials[trials["phase"] != "replicate"]
    for _, row in search.iterrows():
        cell = search[(search["optimizer"] == row["optimizer"]) & (search["batch_size"] == row["batch_size"])]
        earlier = cell[(cell["round"] < row["round"]) & (cell["status"] == "reached")]
        expected = earlier["steps_to_target"].min() if len(earlier) else math.nan
        assert (row["prune_at_step"] == expected) or (math.isnan(expected) and math.isnan(row["prune_at_step"]))


class _Killed(Exception):
    pass


class _KilledAfter(LocalExecutor):
    """The local executor, stopped dead after ``count`` recorded trials (as a kill would)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def run(self, next_task, on_done):
        def recorded(result):
            on_done(result)
            self.count -= 1
            if self.count == 0:
                raise _Killed

        super().run(next_task, recorded)


@pytest.mark.parametrize("kill_after", [20, 45, 70])  # in explore, in refine, in replicate
def test_an_interrupted_study_resumes_to_the_same_answer(spec_path, reference, tmp_path, kill_after):
    spec = load_spec(spec_path)
    with pytest.raises(_Killed):
        run_study(spec, tmp_path, executor=_KilledAfter(kill_after))
    interrupted = trials_frame(tmp_path)
    assert interrupted["status"].isin(["reached", "budget", "diverged", "pruned"]).sum() == kill_after
    run_study(spec, tmp_path)
    resumed = trials_frame(tmp_path).set_index("id")
    expected = reference[2]
    assert sorted(resumed.index) == sorted(expected.index)
    assert resumed.loc[expected.index, COMPARED].equals(expected[COMPARED])


def test_a_dask_cluster_gives_the_same_trials(spec_path, reference, tmp_path):
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                           dashboard_address=None)
    try:
        run_study(load_spec(spec_path), tmp_path, executor=DaskExecutor(scheduler=cluster.scheduler_address))
    finally:
        cluster.close()
    dask, expected = trials_frame(tmp_path).set_index("id"), reference[2]
    assert sorted(dask.index) == sorted(expected.index)
    assert dask.loc[expected.index, COMPARED].equals(expected[COMPARED])


def test_analysis_answers_with_the_median_over_seeds_and_gives_verdicts(reference):
    folder, _, trials = reference
    analysis = analyze(folder, resamples=300)
    assert analysis.replicated and analysis.complete
    for row in analysis.best.itertuples():
        if row.best_trial is None:
            continue
        runs = trials[(trials["origin"] == row.best_trial)]
        steps = np.where(runs["status"] == "reached", runs["steps_to_target"], np.inf)
        assert row.steps == float(np.median(steps)) and row.seeds == 3
        assert row.steps_low <= row.steps <= row.steps_high
    claims = list(analysis.verdicts["claim"])
    assert claims == [f"sgd needs fewer steps than momentum at B = {b}" for b in (16, 64, 256)] + [
        "sgd's critical batch size is larger than momentum's"]
    assert set(analysis.verdicts["verdict"]) <= {"supported", "contradicted", "inconclusive"}


def test_compare_command_prints_the_verdicts(reference, tmp_path):
    folder = reference[0]
    result = CliRunner().invoke(app, ["study", "compare", str(folder), "--json", "--resamples", "300"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["complete"] and len(payload["verdicts"]) == 4
    assert payload["verdicts"][0]["batch_size"] == 16 and payload["verdicts"][3]["batch_size"] is None
    table = CliRunner().invoke(app, ["study", "compare", str(folder), "--resamples", "300"])
    assert table.exit_code == 0 and "sgd needs fewer steps than momentum at B = 16" in table.stdout
    report = CliRunner().invoke(app, ["study", "report", str(folder), "--resamples", "300"])
    assert report.exit_code == 0, report.output
    page = (folder / "report" / "report.html").read_text()
    assert "median over seeds" in page and "verdicts" in page.lower()


def test_fallback_reruns_the_next_configurations_of_a_cell_whose_candidates_all_failed(reference, tmp_path):
    """Resuming a finished study with ``fallback = 1`` and another pruning slack (neither changes its
    trials, so the folder is the same study) replicates the next best configurations of exactly the
    cells whose every candidate failed, and the analysis answers from them."""
    import shutil
    import sqlite3

    folder, _, before = reference
    shutil.copy(folder / "study.sqlite", tmp_path / "study.sqlite")
    with sqlite3.connect(tmp_path / "study.sqlite") as db:  # every replicate of one cell diverged
        db.execute("UPDATE trials SET status = 'diverged', steps_to_target = NULL WHERE phase = 'replicate' "
                   "AND optimizer = 'momentum' AND batch_size = 64")
    data = _data()
    data["tuning"] = TUNING | {"fallback": 1, "prune_slack": 1.5}
    path = tmp_path / "replicated.toml"
    path.write_text(to_toml(data))
    states = []
    run_study(load_spec(path), tmp_path, progress=states.append)
    trials = trials_frame(tmp_path).set_index("id")
    new = trials[~trials.index.isin(before.index)]
    # progress: the fallback round counted at its most (every cell) until designed, then as it turned out
    cells = 2 * 3
    assert states[0].total == len(before) + cells * 2 * 3 and not states[0].final
    assert states[-1].final and states[-1].last is None and states[-1].total == states[-1].done == len(trials)
    assert [s.final for s in states].count(True) == 1

    cell = before[(before["optimizer"] == "momentum") & (before["batch_size"] == 64)]
    search = cell[cell["phase"] != "replicate"]
    ranked = search[search["status"] == "reached"].sort_values(["steps_to_target", "round", "trial_index"])
    key = ["hp_learning_rate", "hp_momentum"]
    replicated = {tuple(search.loc[o, key]) for o in cell.loc[cell["phase"] == "replicate", "origin"]}
    expected = []
    for origin, row in ranked.iterrows():  # the next distinct reached configurations, best first
        if tuple(row[key]) not in replicated | {tuple(search.loc[e, key]) for e in expected}:
            expected.append(origin)
    expected = expected[:2]
    assert expected, "the cell needs a reached configuration that was not replicated"
    assert len(new) == 3 * len(expected)
    assert set(new["optimizer"]) == {"momentum"} and set(new["batch_size"]) == {64}
    assert (new["phase"] == "replicate").all() and (new["round"] == 4).all() and new["prune_at_step"].isna().all()
    assert list(dict.fromkeys(new.sort_values("trial_index")["origin"])) == expected
    assert sorted(new["trial_index"]) == list(range(6, 6 + 3 * len(expected)))

    row = analyze(tmp_path, resamples=200).best.set_index(["optimizer", "batch_size"]).loc[("momentum", 64)]
    assert row["best_trial"] in expected  # the failed candidates' medians are inf: a fallback one answers
    runs = new[new["origin"] == row["best_trial"]]
    assert row["steps"] == float(np.median(np.where(runs["status"] == "reached", runs["steps_to_target"], np.inf)))
    assert np.isfinite(row["steps"])
    # resuming again adds nothing (the stored spec now has a slack and a fallback: the same study)
    assert run_study(load_spec(path), tmp_path).ran == 0
