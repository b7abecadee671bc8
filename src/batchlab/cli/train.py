"""``batchlab train`` (one training run) and ``batchlab list`` (workloads and optimizers).

The training stack (JAX) is imported inside the commands: every ``batchlab`` command registers
this module, and ``batchlab study status | report | compare | export`` never load JAX."""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from batchlab.cli._app import app, guarded, json_text, parse_float_list
from batchlab.errors import InputError

__all__ = ["train_command", "list_command", "parse_assignments"]


def _scalar(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_assignments(items: list[str], *, flag: str) -> dict[str, Any]:
    """Parse ``["learning_rate=0.1", "lr_schedule=cosine"]`` into a dict (numbers where possible)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise InputError(f"{flag}: expected NAME=VALUE, got {item!r}")
        if name.strip() in out:
            raise InputError(f"{flag}: {name.strip()} given twice")
        out[name.strip()] = _scalar(value.strip())
    return out


def _hyperparameters(optimizer: str, lr: float | None, momentum: float | None,
                     ema: float | None, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Resolve the shortcut flags into ``(optimizer name, hyperparameters)``."""
    from batchlab.optim import EMA_SUFFIX, get_optimizer

    if ema is not None and not optimizer.endswith(EMA_SUFFIX):
        optimizer += EMA_SUFFIX  # --ema on a plain optimizer means its EMA variant
    names = {hp.name for hp in get_optimizer(optimizer).hyperparameters}
    values = dict(extra)

    def shortcut(flag: str, name: str, value: Any) -> None:
        if name in values:  # never silently prefer one of two values
            raise InputError(f"{flag} and --hp {name}=... both set {name}; give it once")
        values[name] = value

    if lr is not None:
        shortcut("--lr", "learning_rate", lr)
    if momentum is not None:
        if "momentum" not in names and "beta1" not in names:
            raise InputError(f"--momentum: optimizer {optimizer!r} has no momentum")
        shortcut("--momentum", "momentum" if "momentum" in names else "beta1", momentum)
    if ema is not None:
        shortcut("--ema", "ema_decay", ema)
    return optimizer, values


def _progress_bar(console: Console, total: int, metric: str):
    columns = (TextColumn("train"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[shown]}"), TimeElapsedColumn())
    bar = Progress(*columns, console=console, transient=True)
    task = bar.add_task("train", total=total, shown="")

    def update(step: int, metrics: Any) -> None:
        fields = {"shown": f"{metric}={metrics[metric]:.4g}"} if metrics and metric in metrics else {}
        bar.update(task, completed=step, **fields)

    return bar, update


@app.command("train")
@guarded
def train_command(
    workload: str = typer.Option(..., "--workload", help="workload name (see `batchlab list`)"),
    optimizer: str = typer.Option(..., "--optimizer", help="optimizer name (see `batchlab list`)"),
    batch_size: int = typer.Option(..., "--batch-size", help="minibatch size, 1 to 2^20"),
    lr: Optional[float] = typer.Option(None, "--lr", help="learning_rate (same as --hp learning_rate=...)"),
    momentum: Optional[float] = typer.Option(None, "--momentum", help="momentum (Adam: beta1)"),
    ema: Optional[float] = typer.Option(None, "--ema", help="evaluate an EMA of the weights with this decay, "
                                                            "in [0, 1)"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps",
                                            help="step budget, 0 to 2^31 - 1 (default: the workload's)"),
    seed: int = typer.Option(0, "--seed", help="training seed, 0 to 2^32 - 1"),
    target: Optional[float] = typer.Option(None, "--target", help="target value of the workload's metric "
                                           "(default: the workload's): an error rate in [0, 1], a loss > 0"),
    target_metric: Optional[str] = typer.Option(None, "--target-metric",
                                                help="the metric the target is on (default: the workload's; "
                                                     "classifiers: error, loss, train_set_loss; needs --target)"),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="evaluation cadence in steps, >= 1"),
    hp: list[str] = typer.Option([], "--hp", help="any hyperparameter, NAME=VALUE (repeatable)"),
    option: list[str] = typer.Option([], "--option", help="workload option, NAME=VALUE (repeatable)"),
    ema_decays: Optional[str] = typer.Option(None, "--ema-decays", help="extra EMA decays to track, e.g. 0.9,0.99"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
    compilation_cache: bool = typer.Option(
        False, "--compilation-cache/--no-compilation-cache",
        help="reuse compiled code across runs via JAX's persistent cache ($BATCHLAB_CACHE/jax or "
             "~/.cache/batchlab/jax); XLA:CPU logs harmless feature-mismatch lines when loading"),
) -> None:
    """Train one configuration until it reaches the target, diverges or exhausts its budget."""
    from batchlab.optim import get_optimizer
    from batchlab.train import TrainOptions, enable_compilation_cache, run, setup
    from batchlab.workloads.registry import get_workload

    name, values = _hyperparameters(optimizer, lr, momentum, ema, parse_assignments(hp, flag="--hp"))
    task = get_workload(workload, **parse_assignments(option, flag="--option"))
    extra = tuple(parse_float_list(ema_decays, name="--ema-decays")) if ema_decays else ()
    steps = task.default_max_steps if max_steps is None else max_steps
    options = TrainOptions(ema_decays=extra)
    checked = setup(task, name, values, batch_size, steps, seed, target=target, eval_every=eval_every,
                    options=options, check_target=True, target_metric=target_metric)  # validated once, here
    task.load()  # a missing data set fails here, before any progress bar is drawn
    if compilation_cache:
        enable_compilation_cache()
    console = Console(stderr=True)
    if not console.is_terminal:  # no bar in logs and pipes: stderr keeps one-line errors only
        result = run(checked)
    else:
        bar, update = _progress_bar(console, steps, checked.target_metric)
        with bar:
            result = run(checked, progress=update)
    if as_json:
        out = result.to_dict()
        out.update(workload=workload, optimizer=name, batch_size=batch_size, seed=seed,
                   hyperparameters=dict(checked.prepared.values))
        print(json_text(out))
        return
    _render(Console(), result, name)


def _render(console: Console, result: Any, optimizer: str) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("optimizer", optimizer)
    table.add_row("status", result.status)
    table.add_row("steps to target", "-" if result.steps_to_target is None else str(result.steps_to_target))
    table.add_row("target", f"{result.target_metric} <= {result.target:g}")
    for key, value in result.final_metrics.items():
        table.add_row(key, f"{value:.6g}")
    table.add_row("steps run", str(result.steps_run))
    table.add_row("wall time", f"{result.wall_time:.1f} s (evaluation {result.eval_time:.1f} s)")
    for decay, track in result.ema_results.items():
        table.add_row(f"ema {decay:g}", f"{track.status}, steps to target {track.steps_to_target}")
    console.print(table)


def _space(hp: Any) -> str:
    if hp.is_choice:
        return "choice (static)"
    if not hp.tunable:
        return "fixed"
    return f"{hp.scaling} [{hp.search[0]:g}, {hp.search[1]:g}]"


@app.command("list")
@guarded
def list_command(as_json: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
    """List workloads (targets, budgets) and optimizers (hyperparameters, defaults, search spaces)."""
    from batchlab.optim import EMA_SUFFIX, get_optimizer, optimizer_names
    from batchlab.workloads.registry import WORKLOADS, workload_options

    workloads = {
        name: dict(target_metric=cls.target_metric, target_value=cls.target_value,
                   target_metrics=list(cls.target_metrics()), default_max_steps=cls.default_max_steps, default_eval_every=cls.default_eval_every,
                   loss_kind=cls.loss_kind, description=cls.description, options=workload_options(name))
        for name, cls in WORKLOADS.items()
    }
    optimizers = {
        name: dict(description=get_optimizer(name).description, hyperparameters=[
            dict(name=hp.name, default=hp.default, valid=" | ".join(hp.valid) if hp.is_choice else str(hp.valid),
                 search_space=_space(hp), description=hp.description)
            for hp in get_optimizer(name).hyperparameters])
        for name in optimizer_names()
    }
    if as_json:
        print(json_text({"workloads": workloads, "optimizers": optimizers}))
        return
    console = Console()
    table = Table(title="workloads")
    for column in ("name", "target", "other targets", "max steps", "eval every", "description"):
        table.add_column(column, no_wrap=column != "description")
    for name, w in workloads.items():
        table.add_row(name, f"{w['target_metric']} <= {w['target_value']:g}", ", ".join(w["target_metrics"][1:]),
                      str(w["default_max_steps"]), str(w["default_eval_every"]), w["description"])
    console.print(table)
    table = Table(title="optimizers (every one also as NAME+ema, adding ema_decay)")
    for column in ("optimizer", "hyperparameter", "default", "valid", "search space"):
        table.add_column(column)
    for name, o in optimizers.items():
        base = not name.endswith(EMA_SUFFIX)
        rows = o["hyperparameters"] if base else [h for h in o["hyperparameters"] if h["name"] == "ema_decay"]
        if not base and name != optimizer_names()[0] + EMA_SUFFIX:
            continue
        for i, hp in enumerate(rows):
            label = name if base else "NAME" + EMA_SUFFIX
            table.add_row(label if i == 0 else "", hp["name"], str(hp["default"]), str(hp["valid"]),
                          hp["search_space"])
    console.print(table)
    sys.stdout.flush()
