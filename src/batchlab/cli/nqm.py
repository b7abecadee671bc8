"""``batchlab nqm …``: the noisy quadratic model from the command line."""

from __future__ import annotations

import math
from typing import Optional

import typer

from batchlab.cli._app import app, guarded, json_text, output_folder, parse_int_list, show_number
from batchlab.checks import check_positive, check_range
from batchlab.errors import InputError
from batchlab.nqm.optimize import SCALING_KINDS

# Limits of the flags (documented in their help): larger values would exhaust memory or time, or
# leave what the engine computes exactly (steps are exact integers in float64 up to 2^53).
MAX_DIM = 10**7  # --dim and --binned
MAX_STEPS = 10**15  # each --steps value
MAX_STEP_VALUES = 1000  # how many --steps values
MAX_BATCH_SIZE = 2**50  # --batch-size, each --batch-sizes value
MAX_BATCH_SIZES = 100  # how many --batch-sizes values
MAX_PIECES = 100  # --pieces
MAX_JOBS = 256  # --jobs

_DIM_HELP = "Dimension d of the power-law problem, 1 to 1e7."
_BINNED_HELP = "Use the authors' geometric binning with this many bins (2 to 1e7)."

nqm_app = typer.Typer(help="Exact noisy-quadratic-model computations (risk, scaling, figures).",
                      no_args_is_help=True)
app.add_typer(nqm_app, name="nqm")


def build_problem(dim: int, binned_bins: Optional[int]):
    """The power-law problem (h_i = 1/i, c = h, s0 = 1), optionally binned as in the authors' notebook."""
    from batchlab.nqm import binned, power_law

    if not 1 <= dim <= MAX_DIM:
        raise InputError(f"--dim must be in [1, {show_number(MAX_DIM)}], got {dim}")
    if binned_bins is not None and not 2 <= binned_bins <= MAX_DIM:
        raise InputError(f"--binned must be in [2, {show_number(MAX_DIM)}], got {binned_bins}")
    problem = power_law(dim)
    if binned_bins is not None:
        problem = binned(problem, binned_bins)
    return problem


def check_batch_size(batch_size: float) -> float:
    """``--batch-size`` as a float in ``[1, MAX_BATCH_SIZE]``, or InputError."""
    if not (math.isfinite(batch_size) and 1 <= batch_size <= MAX_BATCH_SIZE):
        raise InputError(f"--batch-size must be in [1, {show_number(MAX_BATCH_SIZE)}], got {batch_size}")
    return float(batch_size)


def build_dynamics(lr: float, momentum: float, nesterov: bool, ema: Optional[float], precond: float):
    """NQM dynamics from flag values (validated by the dynamics constructors)."""
    from batchlab.nqm import heavy_ball, nesterov as nesterov_dyn, sgd, with_ema

    if nesterov:
        dyn = nesterov_dyn(lr, momentum, precond=precond)
    elif momentum != 0.0:
        dyn = heavy_ball(lr, momentum, precond=precond)
    else:
        dyn = sgd(lr, precond=precond)
    return with_ema(dyn, ema) if ema is not None else dyn


@nqm_app.command("risk")
@guarded
def risk_command(
    batch_size: float = typer.Option(..., "--batch-size", help="Batch size B in [1, 2^50]."),
    steps: str = typer.Option(..., "--steps", help="Comma-separated steps in [0, 1e15] (at most 1000), "
                                                   "e.g. 0,10,1000,1e6 or 2^20."),
    dim: int = typer.Option(10_000, "--dim", help=_DIM_HELP),
    binned_bins: Optional[int] = typer.Option(None, "--binned", help=_BINNED_HELP),
    lr: float = typer.Option(0.5, "--lr", help="Learning rate α > 0."),
    momentum: float = typer.Option(0.0, "--momentum", help="Momentum β in [0, 1) (0: plain SGD)."),
    nesterov: bool = typer.Option(False, "--nesterov", help="Nesterov momentum (optax's form)."),
    ema: Optional[float] = typer.Option(None, "--ema", help="EMA decay γ in [0, 1) of the iterates."),
    precond: float = typer.Option(0.0, "--precond", help="Preconditioner power p in [0, 1] (P = H^-p)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table."),
) -> None:
    """Exact expected risk at the given steps on the power-law problem (inf where unstable)."""
    import numpy as np

    from batchlab.nqm import expected_risk, is_stable, steady_state_risk

    step_list = parse_int_list(steps, name="--steps", minimum=0, maximum=MAX_STEPS, max_count=MAX_STEP_VALUES)
    batch_size = check_batch_size(batch_size)
    problem = build_problem(dim, binned_bins)
    dyn = build_dynamics(lr, momentum, nesterov, ema, precond)
    risk = expected_risk(problem, dyn, batch_size=batch_size, steps=np.array(step_list))
    floor = float(steady_state_risk(problem, dyn, batch_size=batch_size))
    stable = bool(is_stable(problem, dyn))
    if as_json:
        print(json_text({
            "steps": step_list,
            "risk": list(risk),
            "steady_state_risk": floor,
            "stable": stable,
            "problem": problem.describe(),
            "optimizer": {"learning_rate": lr, "momentum": momentum, "nesterov": nesterov, "ema": ema,
                          "precond": precond, "batch_size": batch_size},
        }))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"NQM risk — {problem.name}, B={batch_size:g}")
    table.add_column("step", justify="right")
    table.add_column("risk", justify="right")
    for t, r in zip(step_list, risk):
        table.add_row(f"{t:,}", f"{r:.6g}")
    console = Console()
    console.print(table)
    console.print(f"steady-state risk: {floor:.6g}" + ("" if stable else "  (UNSTABLE: risk diverges)"))


SCALING_OPTIMIZERS = SCALING_KINDS  # the NQM's one table of optimizer kinds


def _progress(total: int, description: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    task = progress.add_task(description, total=total)
    return progress, task


@nqm_app.command("scaling")
@guarded
def scaling_command(
    optimizer: str = typer.Option(..., "--optimizer", help=f"{', '.join(SCALING_KINDS[:-1])} or {SCALING_KINDS[-1]}."),
    batch_sizes: str = typer.Option(..., "--batch-sizes", help="Comma-separated batch sizes in [1, 2^50] (at most "
                                                               "100), e.g. 4,64,1024 or 2^10."),
    precond: float = typer.Option(0.0, "--precond", help="Preconditioner power p in [0, 1]."),
    target: float = typer.Option(0.01, "--target", help="Risk to reach (> 0)."),
    dim: int = typer.Option(10_000, "--dim", help=_DIM_HELP),
    binned_bins: Optional[int] = typer.Option(None, "--binned", help=_BINNED_HELP),
    pieces: int = typer.Option(10, "--pieces",
                               help="Pieces of the optimized schedule, 1 to 100 (--optimizer schedule)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table."),
) -> None:
    """Optimal steps to reach the target, and hyperparameters, at each batch size."""
    from batchlab.nqm.optimize import SearchConfig
    from batchlab.nqm.scaling import check_batch_sizes, scaling_curve

    if optimizer not in SCALING_OPTIMIZERS:
        raise InputError(f"--optimizer: unknown {optimizer!r}; valid: {', '.join(SCALING_OPTIMIZERS)}")
    check_range(precond, "--precond", 0, 1)
    check_positive(target, "--target")
    check_range(pieces, "--pieces", 1, MAX_PIECES)
    sizes = check_batch_sizes(parse_int_list(batch_sizes, name="--batch-sizes", minimum=1, maximum=MAX_BATCH_SIZE,
                                             max_count=MAX_BATCH_SIZES))
    problem = build_problem(dim, binned_bins)
    progress, task = _progress(len(sizes), f"{optimizer} p={precond:g}")
    with progress:
        curve = scaling_curve(problem, optimizer, sizes, target=target, precond=precond,
                              config=SearchConfig(pieces=pieces), progress=lambda n: progress.advance(task, n))
    result = curve.as_dict()
    result["problem"] = problem.describe()
    if as_json:
        print(json_text(result))
        return
    _print_scaling(result)


def _print_scaling(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"NQM scaling — {result['optimizer']}, p={result['precond']:g}, "
                        f"target {result['target']:g}, {result['problem']['name']}")
    for col in ("batch size", "steps", "lower bound", "learning rate", "momentum", "ema", "eff. lr"):
        table.add_column(col, justify="right")

    def fmt(v, spec=".4g"):
        return "—" if v is None else format(v, spec)

    for r in result["rows"]:
        table.add_row(f"{r['batch_size']:g}", "unreachable" if r["steps"] is None else f"{r['steps']:,}",
                      f"{r['lower_bound']:.4g}", fmt(r["learning_rate"]), fmt(r.get("momentum"), ".6f"),
                      fmt(r.get("ema"), ".6f"), fmt(r.get("effective_learning_rate")))
    console = Console()
    console.print(table)
    crit = result["critical_batch_size"]
    b_noise = crit["b_noise"]
    console.print(f"critical batch size: hyperbola fit B_noise = {fmt(b_noise, '.4g')}, "
                  f"20% overhead: {fmt(crit['overhead'], 'g')} (interpolated {fmt(crit['overhead_interpolated'], '.4g')})")


@nqm_app.command("figures")
@guarded
def figures_command(
    out: str = typer.Option(..., "--out", help="Folder for the PNG figures and their CSV/JSON data "
                                               "(created; checked before computing)."),
    dim: int = typer.Option(10_000, "--dim", help=_DIM_HELP),
    binned_bins: Optional[int] = typer.Option(None, "--binned", help=_BINNED_HELP),
    quick: bool = typer.Option(False, "--quick", help="Fewer batch sizes and targets (a demo-sized run)."),
    jobs: int = typer.Option(1, "--jobs", help="Worker processes, 1 to 256."),
) -> None:
    """Reproduce the paper's NQM figures (one PNG + CSV per figure, summary.json)."""
    from batchlab.plots.nqm_figures import FigureSpec, write_nqm_figures

    build_problem(dim, binned_bins)  # validates
    check_range(jobs, "--jobs", 1, MAX_JOBS)
    folder = output_folder(out, flag="--out")
    spec = (FigureSpec.quick if quick else FigureSpec)(dim=dim, bins=binned_bins)
    progress, task = _progress(1, "NQM figures")
    with progress:
        def tick(done, total):
            progress.update(task, total=total, completed=done)

        paths = write_nqm_figures(folder, spec, workers=jobs, progress=tick)
    for p in paths:
        print(p)
