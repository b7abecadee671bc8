"""A trial's statuses and the outcome record a worker returns and the store writes.  Plain data.

A trial's status is ``pending`` → ``running`` → one of :data:`FINISHED` (``reached``, ``budget``,
``diverged``, ``pruned``) or :data:`FAILED` (an exception or a lost worker; the next run retries it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

__all__ = ["FAILED", "FINISHED", "TrackOutcome", "TrialOutcome", "failed_outcome"]

FINISHED = ("reached", "budget", "diverged", "pruned")
FAILED = "failed"

# An error message is kept to this many characters.
_ERROR_CHARS = 500


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


def failed_outcome(task: Mapping[str, Any], error: str, *, wall_time: float = 0.0, host: str = "",
                   worker: str = "") -> TrialOutcome:
    """The outcome of a trial that raised or whose worker was lost: status :data:`FAILED`, no steps,
    no tracks, and ``error`` (whitespace collapsed to single spaces, at most 500 characters).

    Args:
        task: the trial's task (its ``id`` and, if set, ``prune_at_step`` are kept).
        error: what went wrong, e.g. ``"ValueError: bad shape"``.
        wall_time: seconds spent before the failure.
        host, worker: where it ran (empty when unknown).

    Example::

        >>> failed_outcome({"id": "sgd-1", "prune_at_step": None}, "KilledWorker:  lost").error
        'KilledWorker: lost'
    """
    return TrialOutcome(
        id=task["id"], status=FAILED, steps_to_target=None, steps_run=0, prune_at_step=task.get("prune_at_step"),
        best_ema_decay=None, final_metrics={}, wall_time=wall_time, eval_time=0.0, host=host, worker=worker,
        error=" ".join(str(error).split())[:_ERROR_CHARS] or "unknown error",
    )
