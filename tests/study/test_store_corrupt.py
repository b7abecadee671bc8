"""A damaged or foreign ``study.sqlite``: every study command says so in one line, exit 2, file untouched."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3

import pytest
from typer.testing import CliRunner

from batchlab.cli import _register, app
from batchlab.errors import InputError
from batchlab.study import parse_spec
from batchlab.study.design import make_design
from batchlab.store import DB_NAME, LOCK_NAME, TrackOutcome, TrialOutcome, open_store

from .conftest import tiny_data, to_toml

_register()
RUNNER = CliRunner()
COMMANDS = ("status", "report", "export", "run")


def _outcome(trial, steps):
    curve = ((0, {"error": 0.9}), (steps, {"error": 0.02}))
    return TrialOutcome(trial.id, "reached", steps, steps, None, None, {"error": 0.02}, 1.0, 0.1, "host", "local:1",
                        (TrackOutcome("main", None, "reached", steps, {"error": 0.02}, curve),))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A readable store (3 of 4 trials finished) with its spec file, and facts about it from SQLite itself."""
    root = tmp_path_factory.mktemp("good")
    data = tiny_data(optimizers={"sgd": {}})
    spec = parse_spec(data)
    trials = make_design(spec)
    folder = root / "study"
    with open_store(folder, create=True) as store:
        store.initialize(spec.to_dict(), "", trials)
        for trial, steps in zip(trials[:3], (40, 60, 80)):
            store.record(_outcome(trial, steps))
    assert sorted(p.name for p in folder.iterdir()) == [DB_NAME]  # WAL checkpointed and removed on close
    with sqlite3.connect(folder / DB_NAME) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    (root / "tiny.toml").write_text(to_toml(data))
    best = {}
    for trial, steps in zip(trials[:3], (40, 60, 80)):
        best[(trial.optimizer, trial.batch_size)] = min(best.get((trial.optimizer, trial.batch_size), steps), steps)
    return {"folder": folder, "spec": root / "tiny.toml", "trial": trials[0].id, "page_size": page_size,
            "pages": pages, "best": best}


def _sql(statement):
    def corrupt(path, good):
        db = sqlite3.connect(path)
        db.execute(statement.replace("{trial}", good["trial"]))
        db.commit()
        db.close()
    return corrupt


def _truncate(path, good):
    path.write_bytes(path.read_bytes()[:good["page_size"]])  # only page 1 (the schema) is left


def _foreign(path, good):
    path.unlink()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    db.commit()
    db.close()


def _no_tables(path, good):
    path.unlink()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 7")  # writes the header: a valid SQLite file without tables
    db.close()


def _directory(path, good):
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")


# kind -> (corrupt(path, good), reason(good), commands that read the damaged part)
CASES = {
    "truncated": (_truncate, lambda g: f"truncated ({g['page_size']:,} of {g['page_size'] * g['pages']:,} bytes; "
                                       "database disk image is malformed)", COMMANDS),
    "garbage": (lambda p, g: p.write_bytes(b"\x00\x17garbage" * 512), lambda g: "not an SQLite database", COMMANDS),
    "text file": (lambda p, g: p.write_text("trials,steps\n1,2\n"), lambda g: "not an SQLite database", COMMANDS),
    "empty file": (lambda p, g: p.write_bytes(b""), lambda g: "empty file", COMMANDS),
    "foreign database": (_foreign, lambda g: "no batchlab tables (foreign database)", COMMANDS),
    "SQLite without tables": (_no_tables, lambda g: "no tables (an empty SQLite database)", COMMANDS),
    "missing table": (_sql("DROP TABLE curves"), lambda g: "missing table curves", COMMANDS),
    "missing column": (_sql("ALTER TABLE trials DROP COLUMN wall_time"),
                       lambda g: "table trials lacks column wall_time", COMMANDS),
    "other schema version": (_sql("UPDATE meta SET value = '99' WHERE key = 'schema'"),
                             lambda g: "schema version '99' (this batchlab reads '1' and '2')", COMMANDS),
    "bad JSON in spec": (_sql("UPDATE meta SET value = '{\"name\": ' WHERE key = 'spec'"),
                         lambda g: "meta: bad JSON in spec", COMMANDS),
    "bad JSON in config": (_sql("UPDATE trials SET config = '{oops' WHERE id = '{trial}'"),
                           lambda g: f"trial {g['trial']}: bad JSON in config", COMMANDS),
    "config not an object": (_sql("UPDATE trials SET config = '[1, 2]' WHERE id = '{trial}'"),
                             lambda g: f"trial {g['trial']}: config is not a JSON object", COMMANDS),
    "config without hyperparameters": (_sql("UPDATE trials SET config = '{\"target\": 0.1, \"target_metric\": "
                                            "\"error\"}' WHERE id = '{trial}'"),
                                       lambda g: f"trial {g['trial']}: config lacks 'hyperparameters'", COMMANDS),
    "bad JSON in final_metrics": (_sql("UPDATE trials SET final_metrics = '[[' WHERE id = '{trial}'"),
                                  lambda g: f"trial {g['trial']}: bad JSON in final_metrics", COMMANDS),
    # `status` reads no tracks: it still shows the trials; everything that reads tracks refuses
    "bad JSON in a track": (_sql("UPDATE tracks SET final_metrics = 'NaN]' WHERE trial_id = '{trial}'"),
                            lambda g: f"trial {g['trial']} track main: bad JSON in final_metrics",
                            ("report", "export", "run")),
    "a directory": (_directory, lambda g: "is a directory", COMMANDS),
}


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in folder.rglob("*")}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_damaged_store_is_one_line_exit_2_and_left_as_it_was(kind, good, tmp_path):
    corrupt, reason, commands = CASES[kind]
    folder = tmp_path / "study"
    shutil.copytree(good["folder"], folder)
    corrupt(folder / DB_NAME, good)
    before = _snapshot(folder)
    expected = f"error: {folder / DB_NAME} is not a readable batchlab study: {reason(good)}"
    for command in commands:
        args = ["run", str(good["spec"]), "--out", str(folder)] if command == "run" else [command, str(folder)]
        result = RUNNER.invoke(app, ["study", *args])
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.strip().splitlines() == [expected], command
        assert "Traceback" not in result.output and result.stdout == ""
        assert _snapshot(folder) == before, command  # not repaired, no tables, no lock, no report, no export
    assert LOCK_NAME not in before


def test_the_store_layer_names_the_problem(good, tmp_path):
    folder = tmp_path / "study"
    shutil.copytree(good["folder"], folder)
    _sql("UPDATE trials SET config = '{oops' WHERE id = '{trial}'")(folder / DB_NAME, good)
    with open_store(folder) as store:  # tables and meta are fine: the row fails where it is read
        assert store.spec()["name"] == "tiny"
    with pytest.raises(InputError, match=f"trial {good['trial']}: bad JSON in config$"):
        open_store(folder, verify=True)
    from batchlab.store.frames import trials_frame

    with pytest.raises(InputError, match="bad JSON in config"):
        trials_frame(folder)


def test_a_readable_store_still_opens_for_writing_and_keeps_its_rows(good, tmp_path):
    folder = tmp_path / "study"
    shutil.copytree(good["folder"], folder)
    with open_store(folder, create=True) as store:
        assert sorted(store.statuses().values()) == ["pending", "reached", "reached", "reached"]
        reached = [(name, row["batch_size"], row["steps_to_target"]) for name, _ in good["best"]
                   for row in store.results(name) if row["status"] == "reached"]
        best = {}
        for name, size, steps in reached:
            best[(name, size)] = min(best.get((name, size), steps), steps)
        assert best == good["best"]


def test_a_new_store_is_complete_or_absent(tmp_path):
    """The schema is built beside the store and renamed into place; a draft left by a kill is replaced."""
    (tmp_path / "study.sqlite.new").write_bytes(b"half-written draft of a killed run")
    with open_store(tmp_path, create=True) as store:
        assert store.statuses() == {} and store.spec() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"meta", "trials", "tracks", "curves"}
