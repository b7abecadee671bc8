"""Console rendering of studies (rich): live progress of a run and the status table of a folder."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from batchlab.report.tables import fmt_steps
from batchlab.store.frames import mark_interrupted, study_spec, trials_frame
from batchlab.store import FAILED, FINISHED, open_store

__all__ = ["RunDisplay", "status_table", "summary_line"]


class RunDisplay:
    """A live progress bar for :func:`batchlab.study.run_study` (use as ``progress=display.update``).

    On a terminal: a bar with trials done / total, reached / pruned / diverged / failed and an ETA
    (from this run's pace).  Elsewhere (logs, pipes): one line per finished trial.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> "RunDisplay":
        if self.live:
            self._bar = Progress(
                TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def update(self, state: Any) -> None:
        counts = (f"reached {state.reached} · pruned {state.pruned} · diverged {state.diverged} · "
                  f"budget {state.budget}" + (f" · failed {state.failed}" if state.failed else ""))
        if self._bar is not None:
            if self._task is None:
                # starts at the already finished trials: the ETA follows this run's pace only
                self._task = self._bar.add_task("trials", total=state.total, completed=state.skipped, counts=counts)
            self._bar.update(self._task, completed=state.done, total=state.total, counts=counts)
            return
        last = state.last
        if getattr(state, "final", False):
            return  # the run's summary line follows
        if last is None:
            self.console.print(f"{state.total} trials, {state.skipped} already finished")
            return
        steps = "" if last.steps_to_target is None else f" at step {last.steps_to_target}"
        error = f" ({last.error})" if last.error else ""
        self.console.print(f"[{state.done}/{state.total}] {last.id}: {last.status}{steps}, "
                           f"{last.steps_run} steps in {last.wall_time:.1f} s{error}", highlight=False)


def summary_line(summary: Any) -> str:
    """One line for the end of a run."""
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items() if v)
    return (f"{summary.ran} trials run ({summary.skipped} already finished) in {summary.wall_time:.1f} s, "
            f"{summary.steps_run:,} training steps; study: {counts or 'no finished trials'}")


def status_table(folder: str | pathlib.Path) -> tuple[dict, Table]:
    """The spec and a rich table: per (optimizer, batch size) trial counts by status and best steps.

    ``failed``, ``running`` and ``interrupted`` columns appear only when some trial has that
    status; a trial stored as running while no runner holds the folder's lock is ``interrupted``
    (its run died; it runs again on resume).
    """
    with open_store(folder) as store:
        spec = study_spec(store)
        trials = mark_interrupted(trials_frame(store), folder)
    statuses = ["reached", "pruned", "diverged", "budget"]
    statuses += [s for s in (FAILED, "running", "interrupted") if (trials["status"] == s).any()]
    finished = trials["status"].isin(FINISHED)
    wall = pd.to_numeric(trials["wall_time"]).sum()
    table = Table(title=f"study {spec.get('name', '')} ({spec.get('workload', '')}): {int(finished.sum())}/"
                        f"{len(trials)} trials finished, {wall:,.0f} s of training", box=box.SIMPLE_HEAD)
    for column in ["optimizer", "B", "done", *statuses, "best steps"]:
        table.add_column(column, justify="left" if column == "optimizer" else "right", no_wrap=True)
    order = [o["name"] for o in spec.get("optimizers", [])]
    for name in order or sorted(trials["optimizer"].unique()):
        for size, cell in trials[trials["optimizer"] == name].groupby("batch_size"):
            counts = cell["status"].value_counts()
            reached = cell.loc[cell["status"] == "reached", "steps_to_target"]
            best = reached.min() if not reached.empty else math.inf
            done = sum(int(counts.get(s, 0)) for s in FINISHED)
            table.add_row(name, f"{int(size):,}", f"{done}/{len(cell)}",
                          *(str(int(counts.get(s, 0))) for s in statuses), fmt_steps(best))
    return spec, table
