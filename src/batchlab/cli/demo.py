"""``batchlab demo``: a quick tour on embedded defaults (runs on a laptop in a few minutes)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from batchlab.cli._app import app, guarded, output_folder

__all__ = ["demo_command", "run_quick_study"]


@app.command("demo")
@guarded
def demo_command(
    out: str = typer.Option("runs/demo", "--out", help="Folder for the demo's figures, data and report "
                                                       "(created; checked before computing)."),
    skip_study: bool = typer.Option(False, "--skip-study", help="Only the NQM part."),
) -> None:
    """NQM scaling table + the paper's NQM figures (authors' binned spectrum), then the quick study."""
    from rich.console import Console
    from rich.table import Table

    from batchlab.nqm import binned, power_law
    from batchlab.nqm.scaling import scaling_curve
    from batchlab.plots.nqm_figures import FigureSpec, write_nqm_figures

    out_dir = output_folder(out, flag="--out")
    console = Console()
    problem = binned(power_law(10_000), 100)
    sizes = [4.0, 64.0, 1024.0, 16384.0, 262144.0]
    console.print(f"[bold]NQM[/] {problem.name}: steps to reach risk 0.01 with tuned hyperparameters")
    curves = {k: scaling_curve(problem, k, sizes, target=0.01) for k in ("sgd", "momentum", "ema")}
    table = Table()
    table.add_column("batch size", justify="right")
    for k in curves:
        table.add_column(f"{k} steps", justify="right")
    table.add_column("lower bound", justify="right")
    for i, B in enumerate(sizes):
        cells = [f"{int(curves[k].rows[i].steps):,}" if math.isfinite(curves[k].rows[i].steps) else "—" for k in curves]
        table.add_row(f"{int(B):,}", *cells, f"{problem.lower_bound_steps(B, 0.01):,.0f}")
    console.print(table)
    for k, c in curves.items():
        fit = c.critical.fit
        console.print(f"  critical batch size {k}: B_noise ≈ {fit.b_noise:,.0f} (fit), "
                      f"{c.critical.overhead:,.0f} (20% overhead)")
    fig_dir = out_dir / "nqm-figures"
    console.print(f"writing the paper's NQM figures (quick, binned) to {fig_dir} …")
    paths = write_nqm_figures(fig_dir, FigureSpec.quick(bins=100), workers=1)
    console.print(f"  {sum(p.suffix == '.png' for p in paths)} figures written")
    if not skip_study:
        run_quick_study(out_dir / "quick-study", console)


def run_quick_study(out_dir: str | Path, console: Any) -> Path:
    """Run ``studies/quick.toml`` into ``out_dir`` (finished trials are kept) and write its report.

    Args:
        out_dir: the study folder.
        console: a ``rich.console.Console`` for progress and messages.

    Returns:
        The HTML report's path.
    """
    from batchlab.report import write_report
    from batchlab.report.console import RunDisplay, summary_line
    from batchlab.study import load_spec, preset_path, run_study

    path = preset_path("quick")
    spec = load_spec(path)
    out_dir = Path(out_dir)
    console.print(f"[bold]quick study[/] {spec.description} → {out_dir}")
    with RunDisplay(console) as display:
        summary = run_study(spec, out_dir, source=path.read_text(encoding="utf-8"), progress=display.update)
    console.print(summary_line(summary), highlight=False)
    report = write_report(out_dir).html
    console.print(f"HTML report: {report}", highlight=False)
    return report
