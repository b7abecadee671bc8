"""The study store: one SQLite database (WAL mode) in the study's folder.  Never imports JAX.

Tables:

* ``meta(key, value)``: the spec (canonical JSON and source), creation time, schema version.
* ``trials``: one row per designed trial: configuration (JSON), status, steps to target, steps run,
  pruning bound, best EMA decay, final metrics (JSON), wall and evaluation time, host and worker,
  attempts, error text.  Status is ``pending`` → ``running`` → one of :data:`FINISHED`
  (``reached``, ``budget``, ``diverged``, ``pruned``) or ``failed`` (an exception; rerun).
* ``tracks``: one row per evaluated parameter set of a finished trial: ``main``, or ``ema=γ`` for
  each decay of a ``+ema`` optimizer (status, steps to target, final metrics).
* ``curves``: ``(trial_id, track, step, metric, value)``: every evaluation of every track.

One process writes (the study runner); workers return results.  A finished trial is written in
one transaction (row, tracks and curves together), so a ``kill -9`` at any moment loses at most the
trials in flight; ids are primary keys, so a trial can never appear twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import sqlite3
import time
from typing import Any, Iterable, Iterator, Mapping, Sequence

from batchlab.errors import InputError

__all__ = ["DB_NAME", "FINISHED", "StudyStore", "TrialOutcome", "TrackOutcome", "open_store"]

DB_NAME = "study.sqlite"
SCHEMA_VERSION = "1"
FINISHED = ("reached", "budget", "diverged", "pruned")

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
    finished_at REAL
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
    """JSON with non-finite floats as null."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), sort_keys=True, allow_nan=False)


@dataclasses.dataclass(frozen=True)
class TrackOutcome:
    """One evaluated parameter set of a trial (``main`` or one EMA decay)."""

    track: str
    ema_decay: float | None
    status: str
    steps_to_target: int | None
    final_metrics: Mapping[str, float]
    curve: Sequence[tuple[int, Mapping[str, float]]]


@dataclasses.dataclass(frozen=True)
class TrialOutcome:
    """What a worker returns for one trial (plain data: crosses process boundaries as a dict)."""

    id: str
    status: str
    steps_to_target: int | None
    steps_run: int
    prune_at_step: int | None
    best_ema_decay: float | None
    final_metrics: Mapping[str, float]
    wall_time: float
    eval_time: float
    host: str
    worker: str
    tracks: Sequence[TrackOutcome] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrialOutcome":
        tracks = tuple(TrackOutcome(**{**t, "curve": tuple((int(s), dict(m)) for s, m in t["curve"])})
                       for t in data.get("tracks", ()))
        return cls(**{**data, "tracks": tracks})


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

    # --- metadata -----------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta"))

    def spec(self) -> dict[str, Any] | None:
        """The stored canonical spec (``StudySpec.to_dict()``), or None for an empty store."""
        text = self.meta().get("spec")
        return None if text is None else json.loads(text)

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
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO trials (id, optimizer, batch_size, trial_index, seed, max_steps, config)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(t.id, t.optimizer, t.batch_size, t.index, int(t.config["seed"]), int(t.config["max_steps"]),
                  _json(t.config)) for t in trials],
            )
            return db.total_changes - before

    # --- trials ---------------------------------------------------------------------------------------
    def statuses(self) -> dict[str, str]:
        """Trial id → status."""
        return dict(self._db.execute("SELECT id, status FROM trials"))

    def incumbents(self) -> dict[tuple[str, int], int]:
        """(optimizer, batch size) → fewest steps to target among reached trials."""
        rows = self._db.execute(
            "SELECT optimizer, batch_size, MIN(steps_to_target) FROM trials WHERE status = 'reached'"
            " GROUP BY optimizer, batch_size")
        return {(o, b): s for o, b, s in rows}

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
                [(outcome.id, t.track, int(step), name, _finite(value))
                 for t in outcome.tracks for step, metrics in t.curve for name, value in metrics.items()])

    def rows(self, table: str) -> tuple[list[str], list[tuple]]:
        """``(column names, rows)`` of ``trials``, ``tracks`` or ``curves`` (for data frames)."""
        if table not in ("trials", "tracks", "curves"):
            raise ValueError(table)
        cursor = self._db.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed table names)
        return [d[0] for d in cursor.description], cursor.fetchall()


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def open_store(folder: str | pathlib.Path, *, create: bool = False) -> StudyStore:
    """Open (or, with ``create``, create) the store in ``folder``.

    Raises:
        InputError: ``folder`` holds no study and ``create`` is false.
    """
    folder = pathlib.Path(folder)
    path = folder / DB_NAME
    if not path.is_file():
        if not create:
            raise InputError(f"no study in {folder} (missing {DB_NAME}); run `batchlab study run SPEC --out {folder}`")
        folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    if create:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)
    return StudyStore(db, path)
