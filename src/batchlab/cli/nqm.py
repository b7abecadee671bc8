"""``batchlab nqm …``: the noisy quadratic model from the command line."""

from __future__ import annotations

import json
import math
from typing import Optional

import typer

from batchlab.cli._app import app, guarded, parse_int_list
from batchlab.errors import InputError

nqm_app = typer.Typer(help="Exact noisy-quadratic-model computations (risk, scaling, figures).",
                      no_args_is_help=True)
app.add_typer(nqm_app, name="nqm")


def build_problem(dim: int, binned_bins: Optional[int]):
    """The power-law problem (h_i = 1/i, c = h, s0 = 1), optionally binned as in the authors' notebook."""
    from batchlab.nqm import binned, power_law

    if dim < 1:
        raise InputError(f"--dim must be >= 1, got {dim}")
    problem = power_law(dim)
    if binned_bins is not None:
        if binned_bins < 2:
            raise InputError(f"--binned must be >= 2, got {binned_bins}")
        problem = binned(problem, binned_bins)
    return problem


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


def _finite_or_none(value: float):
    return float(value) if math.isfinite(value) else None


@nqm_app.command("risk")
@guarded
def risk_command(
    batch_size: float = typer.Option(..., "--batch-size", help="Batch size B >= 1."),
    steps: str = typer.Option(..., "--steps", help="Comma-separated steps, e.g. 0,10,1000,1e6."),
    dim: int = typer.Option(10_000, "--dim", help="Dimension d of the power-law problem."),
    binned_bins: Optional[int] = typer.Option(None, "--binned", help="Use the authors' geometric binning."),
    lr: float = typer.Option(0.5, "--lr", help="Learning rate α > 0."),
    momentum: float = typer.Option(0.0, "--momentum", help="Momentum β in [0, 1) (0: plain SGD)."),
    nesterov: bool = typer.Option(False, "--nesterov", help="Nesterov momentum (optax's form)."),
    ema: Optional[float] = typer.Option(None, "--ema", help="EMA decay γ in [0, 1) of the iterates."),
    precond: float = typer.Option(0.0, "--precond", help="Preconditioner power p in [0, 1] (P = H^-p)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table."),
) -> None:
    """Exact expected risk at the given steps on the power-law problem."""
    import numpy as np

    from batchlab.nqm import expected_risk, is_stable, steady_state_risk

    step_list = parse_int_list(steps, name="--steps")
    if any(t < 0 for t in step_list):
        raise InputError("--steps must be >= 0")
    if not math.isfinite(batch_size) or batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    problem = build_problem(dim, binned_bins)
    dyn = build_dynamics(lr, momentum, nesterov, ema, precond)
    risk = expected_risk(problem, dyn, batch_size=batch_size, steps=np.array(step_list))
    floor = float(steady_state_risk(problem, dyn, batch_size=batch_size))
    stable = bool(is_stable(problem, dyn))
    if as_json:
        print(json.dumps({
            "steps": step_list,
            "risk": [_finite_or_none(r) for r in risk],
            "steady_state_risk": _finite_or_none(floor),
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
