"""The study store's database: one SQLite file (WAL mode) in the study's folder.  Never imports JAX.

Tables:

* ``meta(key, value)``: the spec (canonical JSON and source), creation time, schema version.
* ``trials``: one row per designed trial: configuration (JSON), status, steps to target, steps run,
  pruning bound, best EMA decay, final metrics (JSON), wall and evaluation time, host and worker,
  attempts, error text.  Status is ``pending`` → ``running`` → one of
  :data:`~batchlab.store.outcome.FINISHED` (``reached``, ``budget``, ``diverged``, ``pruned``) or
  ``failed`` (an exception; rerun).
* ``tracks``: one row per evaluated parameter set of a finished trial: ``main``, or ``ema=γ`` for
  each decay of a ``+ema`` optimizer (status, steps to target, final metrics).
* ``curves``: ``(trial_id, track, step, metric, value)``: every evaluation of every track.

One process writes (the study runner); workers return results.  A finished trial is written in
one transaction (row, tracks and curves together), so a ``kill -9`` at any moment loses at most the
trials in flight; ids are primary keys, so a trial can never appear twice.  The runner holds an
advisory lock on ``.study.lock`` (:data:`LOCK_NAME`) while it runs; a trial stored as ``running``
while nobody holds it was interrupted (:func:`runner_active`).

A store that cannot be read (not SQLite, damaged, a foreign database, missing tables or columns,
bad JSON in a row, a directory in its place) raises :class:`~batchlab.errors.InputError` naming
the file and the reason; nothing is ever written into such a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import pathlib
import sqlite3
import time
from typing import Any, Iterable, Iterator, Mapping

from batchlab.errors import InputError
from batchlab.jsonsafe import dumps, finite_or_none
from batchlab.store.outcome import TrialOutcome

__all__ = ["DB_NAME", "LOCK_NAME", "StudyStore", "check_output_folder", "open_store", "runner_active"]

DB_NAME = "study.sqlite"
LOCK_NAME = ".study.lock"
SCHEMA_VERSION = "2"
# Columns schema 1 lacked (added by the tuning protocol); a schema-1 store is read as all-explore
# and upgraded in place by the next `study run`.
_V1_MISSING = ("phase", "round", "origin")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY,
    optimizer TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    trial_index INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    max_steps INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    steps_to_target INTEGER,
    steps_run INTEGER,
    prune_at_step INTEGER,
    best_ema_decay REAL,
    final_metrics TEXT,
    wall_time REAL,
    eval_time REAL,
    host TEXT,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    started_at REAL,
    finished_at REAL,
    phase TEXT NOT NULL DEFAULT 'explore',
    round INTEGER NOT NULL DEFAULT 0,
    origin TEXT
);
CREATE INDEX IF NOT EXISTS trials_cell ON trials (optimizer, batch_size, trial_index);
CREATE TABLE IF NOT EXISTS tracks (
    trial_id TEXT NOT NULL REFERENCES trials (id),
    track TEXT NOT NULL,
    ema_decay REAL,
    status TEXT NOT NULL,
    steps_to_target INTEGER,
    final_metrics TEXT,
    PRIMARY KEY (trial_id, track)
);
CREATE TABLE IF NOT EXISTS curves (
    trial_id TEXT NOT NULL,
    track TEXT NOT NULL,
    step INTEGER NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (trial_id, track, step, metric)
) WITHOUT ROWID;
"""


def _json(value: Any) -> str:
    """Stored JSON: canonical (sorted keys), non-finite floats as null."""
    return dumps(value, sort_keys=True)


class StudyStore:
    """A study's SQLite database.  Use :func:`open_store`; close it (or use ``with``)."""

    def __init__(self, connection: sqlite3.Connection, path: pathlib.Path) -> None:
        self._db = connection
        self.path = path

    # --- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "StudyStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn SQLite's errors on reading (a file damaged after it was opened) into InputError."""
        try:
            yield
        except sqlite3.DatabaseError as error:
            raise _unreadable(self.path, _explain(self.path, error)) from None

    def decode(self, text: str | None, *, where: str, column: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
        """A JSON object stored in a row (missing: ``None`` or, from a data frame, ``NaN`` → ``{}``).

        Args:
            text: the stored text.
            where: the row, e.g. ``"trial sgd-b32-t0-…"``.
            column: the column (named in the error).
            keys: keys the object must have.

        Raises:
            InputError: not JSON, not an object, or a key missing (naming the file, row and column).
        """
        return _decode(self.path, text, where, column, keys)

    def decode_config(self, text: str, trial_id: str) -> dict[str, Any]:
        """A trial's stored configuration (see :meth:`decode`; it must hold a hyperparameter object,
        the target and the target metric)."""
        return _decode_config(self.path, text, trial_id)

    # --- metadata -----------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self._reading():
            return dict(self._db.execute("SELECT key, value FROM meta"))

    def spec(self) -> dict[str, Any] | None:
        """The stored canonical spec (``StudySpec.to_dict()``), or None for an empty store.

        Raises:
            InputError: the stored spec is not a JSON object.
        """
        text = self.meta().get("spec")
        return None if text is None else self.decode(text, where="meta", column="spec")

    def initialize(self, spec: Mapping[str, Any], source: str, trials: Iterable[Any]) -> int:
        """Record the spec (first run only) and insert designed trials not yet present, atomically.

        Args:
            spec: the canonical spec dict.
            source: the spec's TOML text (kept for reference).
            trials: :class:`~batchlab.study.design.Trial` objects (duck-typed: id, optimizer,
                batch_size, index, config).

        Returns:
            The number of trials inserted.
        """
        with self._transaction() as db:
            now = str(time.time())
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (now,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('spec', ?)", (_json(spec),))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('spec_source', ?)", (source,))
            return self._insert(db, list(trials))

    def add_trials(self, trials: Iterable[Any]) -> int:
        """Insert the trials of a later phase that are not yet present (one transaction); returns how many."""
        with self._transaction() as db:
            return self._insert(db, list(trials))

    @staticmethod
    def _insert(db: sqlite3.Connection, trials: list[Any]) -> int:
        before = db.total_changes
        db.executemany(
            "INSERT OR IGNORE INTO trials (id, optimizer, batch_size, trial_index, seed, max_steps, config,"
            " phase, round, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(t.id, t.optimizer, t.batch_size, t.index, int(t.config["seed"]), int(t.config["max_steps"]),
              _json(t.config), t.phase, t.round, t.origin) for t in trials],
        )
        inserted = db.total_changes - before
        # rows of an upgraded schema-1 store learn their phase and round
        db.executemany("UPDATE trials SET phase = ?, round = ?, origin = ? WHERE id = ? AND round != ?",
                       [(t.phase, t.round, t.origin, t.id, t.round) for t in trials])
        return inserted

    def results(self, optimizer: str) -> list[dict[str, Any]]:
        """The trials of ``optimizer`` as the tuning protocol reads them: id, batch size, phase, round,
        index, status, steps to target, best EMA decay, origin (a replicate's rerun trial) and
        configuration (decoded)."""
        with self._reading():
            rows = self._db.execute(
                "SELECT id, batch_size, phase, round, trial_index, status, steps_to_target, best_ema_decay, origin,"
                " config FROM trials WHERE optimizer = ?", (optimizer,)).fetchall()
        keys = ("id", "batch_size", "phase", "round", "index", "status", "steps_to_target", "best_ema_decay",
                "origin")
        return [dict(zip(keys, row[:-1]), config=self.decode_config(row[-1], row[0])) for row in rows]

    # --- trials ---------------------------------------------------------------------------------------
    def statuses(self) -> dict[str, str]:
        """Trial id → status."""
        with self._reading():
            return dict(self._db.execute("SELECT id, status FROM trials"))

    def mark_running(self, trial_id: str, host: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE trials SET status = 'running', attempts = attempts + 1, started_at = ?,"
                       " host = ? WHERE id = ?", (time.time(), host, trial_id))

    def record(self, outcome: TrialOutcome) -> None:
        """Write a finished (or failed) trial, its tracks and curves in one transaction."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE trials SET status = ?, steps_to_target = ?, steps_run = ?, prune_at_step = ?,"
                " best_ema_decay = ?, final_metrics = ?, wall_time = ?, eval_time = ?, host = ?, worker = ?,"
                " error = ?, finished_at = ? WHERE id = ?",
                (outcome.status, outcome.steps_to_target, outcome.steps_run, outcome.prune_at_step,
                 outcome.best_ema_decay, _json(outcome.final_metrics), outcome.wall_time, outcome.eval_time,
                 outcome.host, outcome.worker, outcome.error, time.time(), outcome.id),
            )
            if cursor.rowcount != 1:
                raise KeyError(f"trial {outcome.id} is not in the store")
            db.execute("DELETE FROM tracks WHERE trial_id = ?", (outcome.id,))
            db.execute("DELETE FROM curves WHERE trial_id = ?", (outcome.id,))
            db.executemany(
                "INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?)",
                [(outcome.id, t.track, t.ema_decay, t.status, t.steps_to_target, _json(t.final_metrics))
                 for t in outcome.tracks])
            db.executemany(
                "INSERT INTO curves VALUES (?, ?, ?, ?, ?)",
                [(outcome.id, t.track, int(step), name, finite_or_none(value))
                 for t in outcome.tracks for step, metrics in t.curve for name, value in metrics.items()])

    def rows(self, table: str) -> tuple[list[str], list[tuple]]:
        """``(column names, rows)`` of ``trials``, ``tracks`` or ``curves`` (for data frames)."""
        if table not in ("trials", "tracks", "curves"):
            raise ValueError(table)
        with self._reading():
            cursor = self._db.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed table names)
            return [d[0] for d in cursor.description], cursor.fetchall()


def _unreadable(path: pathlib.Path, why: str) -> InputError:
    return InputError(f"{path} is not a readable batchlab study: {why}")


def _decode(path: pathlib.Path, text: Any, where: str, column: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        if keys:
            raise _unreadable(path, f"{where}: no {column}")
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise _unreadable(path, f"{where}: bad JSON in {column}") from None
    if not isinstance(value, dict):
        raise _unreadable(path, f"{where}: {column} is not a JSON object")
    missing = [key for key in keys if key not in value]
    if missing:
        raise _unreadable(path, f"{where}: {column} lacks {missing[0]!r}")
    return value


def _decode_config(path: pathlib.Path, text: Any, trial_id: str) -> dict[str, Any]:
    config = _decode(path, text, f"trial {trial_id}", "config", ("hyperparameters", "target", "target_metric"))
    if not isinstance(config["hyperparameters"], dict):
        raise _unreadable(path, f"trial {trial_id}: config.hyperparameters is not a JSON object")
    return config


def _check_rows(db: sqlite3.Connection, path: pathlib.Path) -> None:
    """Every JSON value of every trial and track row decodes (as the read side will decode it)."""
    for trial_id, config, final in db.execute("SELECT id, config, final_metrics FROM trials"):
        _decode_config(path, config, trial_id)
        _decode(path, final, f"trial {trial_id}", "final_metrics")
    for trial_id, track, final in db.execute("SELECT trial_id, track, final_metrics FROM tracks"):
        _decode(path, final, f"trial {trial_id} track {track}", "final_metrics")


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _explain(path: pathlib.Path, error: sqlite3.DatabaseError) -> str:
    """SQLite's complaint, with the sizes when the file is shorter than its header says."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
        size = path.stat().st_size
    except OSError:
        return str(error)
    if len(header) == 100 and header.startswith(_SQLITE_MAGIC):
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        expected = page_size * int.from_bytes(header[28:32], "big")
        if size < expected:
            return f"truncated ({size:,} of {expected:,} bytes; {error})"
    return str(error)


@functools.cache
def _columns() -> dict[str, tuple[str, ...]]:
    """Table → column names, as :data:`_SCHEMA` creates them."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA)
        return {table: tuple(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
                for table in ("meta", "trials", "tracks", "curves")}
    finally:
        db.close()


def _check_file(path: pathlib.Path) -> None:
    """What can be told before SQLite opens the file: a directory, an empty file, not SQLite."""
    if path.is_dir():
        raise _unreadable(path, "is a directory")
    if not path.is_file():
        raise _unreadable(path, "not a regular file")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(_SQLITE_MAGIC))
    except OSError as error:
        raise _unreadable(path, error.strerror or str(error)) from None
    if not header:
        raise _unreadable(path, "empty file")
    if header != _SQLITE_MAGIC:
        raise _unreadable(path, "not an SQLite database")


def _check_schema(db: sqlite3.Connection, path: pathlib.Path, *, thorough: bool) -> None:
    """Tables, columns, schema version and spec of an existing store; with ``thorough`` also every
    page (``PRAGMA quick_check``) and every row's JSON: the writer never writes into a damaged file."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    expected = _columns()
    if not tables:
        raise _unreadable(path, "no tables (an empty SQLite database)")
    if not tables & set(expected):
        raise _unreadable(path, "no batchlab tables (foreign database)")
    missing = [table for table in expected if table not in tables]
    if missing:
        raise _unreadable(path, f"missing table {', '.join(missing)}")
    meta = dict(db.execute("SELECT key, value FROM meta"))
    version = meta.get("schema", SCHEMA_VERSION)
    if version not in ("1", SCHEMA_VERSION):
        raise _unreadable(path, f"schema version {meta['schema']!r} (this batchlab reads '1' and {SCHEMA_VERSION!r})")
    for table, columns in expected.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        lacking = [column for column in columns if column not in present
                   and not (version == "1" and table == "trials" and column in _V1_MISSING)]
        if lacking:
            raise _unreadable(path, f"table {table} lacks column {lacking[0]}")
    if "spec" in meta:
        try:
            spec = json.loads(meta["spec"])
        except (TypeError, ValueError):
            raise _unreadable(path, "meta: bad JSON in spec") from None
        if not isinstance(spec, dict):
            raise _unreadable(path, "meta: spec is not a JSON object")
    if thorough:
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _unreadable(path, f"damaged ({problems[0]})")
        _check_rows(db, path)


def check_output_folder(folder: str | pathlib.Path, what: str) -> None:
    """Check, creating nothing, that ``folder`` is a writable folder or can be created as one.

    Raises:
        InputError: ``folder`` or one of its parents is a file, or the folder (or its nearest
            existing parent, where it would be created) is not writable.
    """
    folder = pathlib.Path(folder)
    probe = folder
    try:
        while not probe.exists():
            if probe.is_symlink():
                raise InputError(f"{what} {folder}: {probe} is a broken symbolic link")
            if probe.parent == probe:
                break
            probe = probe.parent
        is_dir = probe.is_dir()
    except OSError as error:
        raise InputError(f"{what} {folder}: cannot access {probe}: {error.strerror or error}") from None
    if not is_dir:
        if probe == folder:
            raise InputError(f"{what} {folder} is a file, not a folder")
        raise InputError(f"{what} {folder} cannot be created: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        if probe == folder:
            raise InputError(f"{what} {folder} is not writable")
        raise InputError(f"{what} {folder} cannot be created: {probe} is not writable")


def runner_active(folder: str | pathlib.Path) -> bool:
    """Whether a ``batchlab study run`` holds the lock of ``folder`` now (the OS drops it when the
    runner dies, ``kill -9`` included).  A folder whose lock cannot be probed counts as active."""
    try:
        handle = open(pathlib.Path(folder) / LOCK_NAME, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _create(folder: pathlib.Path, path: pathlib.Path) -> None:
    """An empty store at ``path``, built beside it and renamed into place: a kill at any moment
    leaves either no store or a complete one (one writer: the runner holds the folder's lock)."""
    draft = path.with_name(path.name + ".new")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in (draft, draft.with_name(draft.name + "-wal"), draft.with_name(draft.name + "-shm")):
            leftover.unlink(missing_ok=True)
        db = sqlite3.connect(draft, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(f"BEGIN;\n{_SCHEMA}\nCOMMIT;")
        finally:
            db.close()  # the last connection checkpoints: everything is in the main file
        os.replace(draft, path)
    except (OSError, sqlite3.Error) as error:
        raise InputError(f"cannot create the study in {folder}: {error.strerror or error}") from None


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a schema-1 store to the current schema (one transaction; its trials become explore trials)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(trials)")}
    if all(column in present for column in _V1_MISSING):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE trials ADD COLUMN phase TEXT NOT NULL DEFAULT 'explore'")
        db.execute("ALTER TABLE trials ADD COLUMN round INTEGER NOT NULL DEFAULT 0")
        db.execute("ALTER TABLE trials ADD COLUMN origin TEXT")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def open_store(folder: str | pathlib.Path, *, create: bool = False, verify: bool = False) -> StudyStore:
    """Open (or, with ``create``, create) the store in ``folder``.

    An existing file is checked first (SQLite, batchlab's tables and columns, schema version, the
    stored spec; with ``create`` or ``verify`` also every page and every row's JSON, which reads
    the whole file): a store that fails is never written to.

    Raises:
        InputError: ``folder`` holds no study and ``create`` is false; ``folder/study.sqlite`` is
            not a readable batchlab study (the message says why); the folder cannot be created.
    """
    folder = pathlib.Path(folder)
    path = folder / DB_NAME
    fresh = not (path.exists() or path.is_symlink())
    if fresh:
        if not create:
            raise InputError(f"no study in {folder} (missing {DB_NAME}); run `batchlab study run SPEC --out {folder}`")
        check_output_folder(folder, "study folder")
        _create(folder, path)
    _check_file(path)
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    except sqlite3.Error as error:
        raise _unreadable(path, str(error)) from None
    try:
        _check_schema(db, path, thorough=(create or verify) and not fresh)
        if create:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            _upgrade(db)
    except sqlite3.DatabaseError as error:
        db.close()
        raise _unreadable(path, _explain(path, error)) from None
    except BaseException:
        db.close()
        raise
    return StudyStore(db, path)
