"""``batchlab study run | status | report | compare | export``: thin front ends over :mod:`batchlab.study`
(run) and the read side, :mod:`batchlab.store`, :mod:`batchlab.analysis` and :mod:`batchlab.report`
(status, report, compare, export: these never import JAX)."""

from __future__ import annotations

import pathlib
from typing import Optional

import typer
from rich.console import Console

from batchlab.cli._app import app, guarded
from batchlab.errors import InputError

__all__ = ["study_app"]

study_app = typer.Typer(help="Batch-size scaling studies: run a TOML spec, show status, write the report.",
                        no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("run")
@guarded
def run_command(
    spec: str = typer.Argument(..., help="study spec: a TOML file or a preset name (e.g. quick)"),
    out: Optional[str] = typer.Option(None, "--out", help="study folder (default: runs/<name>); holds study.sqlite"),
    executor: Optional[str] = typer.Option(
        None, "--executor", help="local (in-process; the default) or dask (the default with --scheduler/--workers)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address (executor dask)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="start a loopback Dask LocalCluster of N workers"),
    prune: Optional[bool] = typer.Option(None, "--prune/--no-prune", help="incumbent pruning (default: the spec's)"),
    report: bool = typer.Option(False, "--report", help="write the HTML report when done"),
) -> None:
    """Run (or resume) a study: finished trials are skipped, unfinished ones rerun."""
    from batchlab.report.console import RunDisplay, summary_line
    from batchlab.study import RunOptions, default_folder, load_spec, resolve_spec, run_study

    if out is not None and not out.strip():
        raise InputError("--out must not be empty (omit it for runs/<name>)")
    path = resolve_spec(spec)
    study = load_spec(path)
    folder = pathlib.Path(out) if out is not None else default_folder(study)
    if executor is None:
        executor = "dask" if scheduler is not None or workers is not None else "local"
    options = RunOptions(executor=executor, scheduler=scheduler, workers=workers, prune=prune)
    console = Console(stderr=True)
    with RunDisplay(console) as display:
        summary = run_study(study, folder, options=options, source=path.read_text(encoding="utf-8"),
                            progress=display.update)
    Console().print(summary_line(summary), highlight=False)
    if report:
        from batchlab.report import write_report

        Console().print(f"report: {write_report(folder).html}", highlight=False)


@study_app.command("status")
@guarded
def status_command(folder: str = typer.Argument(..., help="study folder")) -> None:
    """Trials done / pruned / diverged per (optimizer, batch size) and the best steps so far."""
    from batchlab.report.console import status_table

    _, table = status_table(folder)
    console = Console()
    if not console.is_terminal:  # logs and pipes: no 80-column truncation
        console = Console(width=160)
    console.print(table)


@study_app.command("report")
@guarded
def report_command(
    folder: str = typer.Argument(..., help="study folder"),
    resamples: int = typer.Option(2000, "--resamples", help="bootstrap resamples per batch size (1 to 100,000)"),
) -> None:
    """Figures, tables and one self-contained HTML report in FOLDER/report (plus CSV/Parquet exports)."""
    from batchlab.analysis import MAX_RESAMPLES
    from batchlab.report import write_report

    if not 1 <= resamples <= MAX_RESAMPLES:
        raise InputError(f"--resamples must be in [1, {MAX_RESAMPLES:,}], got {resamples:,}")
    files = write_report(folder, resamples=resamples)
    if files.unfinished:
        Console().print(files.unfinished, highlight=False, soft_wrap=True)
    Console().print(f"report: {files.html}\nfigures: {len(files.figures)}, tables: {len(files.tables)}, "
                    f"exports: {files.exports[0].parent if files.exports else '-'}", highlight=False)


@study_app.command("compare")
@guarded
def compare_command(
    folder: str = typer.Argument(..., help="study folder"),
    resamples: int = typer.Option(2000, "--resamples", help="bootstrap resamples (1 to 100,000)"),
    as_json: bool = typer.Option(False, "--json", help="print the verdicts as JSON"),
) -> None:
    """For each pair of optimizers: who needs fewer steps at each batch size, whose critical batch size
    is larger — supported, contradicted or inconclusive, with the evidence (replicated studies)."""
    from batchlab.analysis import MAX_RESAMPLES, analyze
    from batchlab.jsonsafe import dumps

    if not 1 <= resamples <= MAX_RESAMPLES:
        raise InputError(f"--resamples must be in [1, {MAX_RESAMPLES:,}], got {resamples:,}")
    analysis = analyze(folder, resamples=resamples)
    if not analysis.replicated:
        raise InputError(f"{folder}: no replicated cells to compare (the spec needs a [tuning] table with "
                         "candidates and seeds; the best of single-seed trials is the luckiest seed, not an answer)")
    verdicts = analysis.verdicts
    if as_json:
        rows = [{**row, "batch_size": None if row["batch_size"] != row["batch_size"] or row["batch_size"] is None
                 else int(row["batch_size"])} for row in verdicts.to_dict("records")]
        print(dumps({"folder": str(folder), "complete": analysis.complete, "verdicts": rows}, indent=1))
        return
    from rich.table import Table

    table = Table(title=f"{analysis.spec.get('name', folder)}: verdicts (95% intervals; overlap = inconclusive)")
    for column in ("claim", "verdict", "evidence"):
        table.add_column(column)
    style = {"supported": "green", "contradicted": "red", "inconclusive": "yellow"}
    for row in verdicts.itertuples():
        table.add_row(row.claim, f"[{style[row.verdict]}]{row.verdict}[/]", row.evidence)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    if not analysis.complete:
        console.print(f"study unfinished: {analysis.finished}/{len(analysis.trials)} trials done", highlight=False)
    console.print(table)


@study_app.command("export")
@guarded
def export_command(
    folder: str = typer.Argument(..., help="study folder"),
    out: Optional[str] = typer.Option(None, "--out", help="output folder (default: FOLDER/export)"),
    formats: str = typer.Option("csv,parquet", "--format", help="csv, parquet or both (comma-separated)"),
) -> None:
    """Export trials, tracks and curves to CSV and/or Parquet."""
    from batchlab.store.frames import export_study

    if out is not None and not out.strip():
        raise InputError("--out must not be empty (omit it for FOLDER/export)")
    chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
    bad = [f for f in chosen if f not in ("csv", "parquet")]
    if bad or not chosen:
        raise InputError(f"--format: expected csv and/or parquet, got {formats!r}")
    for path in export_study(folder, out, chosen):
        Console().print(str(path), highlight=False)
