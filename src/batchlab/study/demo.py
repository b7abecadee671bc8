"""The demo's study part: run the quick preset (resumable) and write its report."""

from __future__ import annotations

import pathlib
from typing import Any

__all__ = ["run_quick_study"]


def run_quick_study(out_dir: str | pathlib.Path, console: Any) -> pathlib.Path:
    """Run ``studies/quick.toml`` into ``out_dir`` (finished trials are kept) and write its report.

    Args:
        out_dir: the study folder.
        console: a ``rich.console.Console`` for progress and messages.

    Returns:
        The HTML report's path.
    """
    # Imported here: the report layer sits above the study layer.
    from batchlab.report import write_report
    from batchlab.report.console import RunDisplay, summary_line
    from batchlab.study.presets import preset_path
    from batchlab.study.runner import run_study
    from batchlab.study.spec import load_spec

    path = preset_path("quick")
    spec = load_spec(path)
    out_dir = pathlib.Path(out_dir)
    console.print(f"[bold]quick study[/] {spec.description} → {out_dir}")
    with RunDisplay(console) as display:
        summary = run_study(spec, out_dir, source=path.read_text(encoding="utf-8"), progress=display.update)
    console.print(summary_line(summary), highlight=False)
    report = write_report(out_dir).html
    console.print(f"HTML report: {report}", highlight=False)
    return report
