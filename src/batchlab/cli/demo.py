"""``batchlab demo``: a quick tour on embedded defaults (runs on a laptop in a few minutes)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from batchlab.cli._app import app, guarded, output_folder


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
        _quick_study(out_dir, console)


def _quick_study(out_dir: Path, console) -> None:
    """Run the quick study preset if the study layer is available."""
    try:
        from batchlab.study.demo import run_quick_study
    except ModuleNotFoundError:
        console.print("(studies are not part of this build yet)")
        return
    run_quick_study(out_dir / "quick-study", console)
