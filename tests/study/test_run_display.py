"""The run's console display: a terminal bar whose total ends at the trials the design turned out to
have, and one line per trial elsewhere (no line for the final snapshot: the summary follows)."""

from __future__ import annotations

import io

from rich.console import Console

from batchlab.report.console import RunDisplay
from batchlab.study import RunProgress


def _state(total: int, done: int, *, final: bool = False) -> RunProgress:
    return RunProgress(total=total, done=done, skipped=0, reached=done, pruned=0, diverged=0, budget=0, failed=0,
                       elapsed=1.0, final=final)


def test_the_bar_ends_at_the_designed_total():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with RunDisplay(console) as display:
        display.update(_state(264, 0))            # later rounds counted at their most
        display.update(_state(264, 191))
        display.update(_state(192, 192, final=True))
        task = display._bar.tasks[0]
        assert (task.completed, task.total) == (192, 192)


def test_a_log_gets_a_header_and_no_line_for_the_final_snapshot():
    out = io.StringIO()
    display = RunDisplay(Console(file=out, force_terminal=False, width=120))
    display.update(_state(264, 0))
    display.update(_state(192, 192, final=True))
    assert out.getvalue().splitlines() == ["264 trials, 0 already finished"]
