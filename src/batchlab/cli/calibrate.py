"""``batchlab calibrate``: measure a workload's spectra, build an NQM, predict its batch-size scaling.

The calibration stack (JAX) is imported inside the command (see :mod:`batchlab.cli.train`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from batchlab.cli._app import app, guarded, parse_float_list
from batchlab.cli.train import parse_assignments
from batchlab.errors import InputError

__all__ = ["calibrate_command", "calibrate_combine_command"]


def _stages(bar: Progress | None, prefix: str = "") -> Callable[[str, int], Callable[[], None]]:
    def stage(name: str, total: int) -> Callable[[], None]:
        if bar is None:
            return lambda: None
        task = bar.add_task(prefix + name, total=total)
        return lambda: bar.advance(task)

    return stage


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise InputError("--optimizers: empty list")
    return names


def _drift_names(text: str) -> tuple[str, ...] | None:
    words = text.strip().lower()
    if words == "auto":
        return None
    if words in ("none", ""):
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


@app.command("calibrate")
@guarded
def calibrate_command(
    workload: str = typer.Option(..., "--workload", help="workload name (see `batchlab list`)"),
    out: Path = typer.Option(..., "--out", help="output folder (e.g. STUDY_DIR/calibration)"),
    at_step: Optional[int] = typer.Option(None, "--at-step",
                                          help="measure after N reference steps (default: where the target is met)"),
    top_k: int = typer.Option(16, "--top-k", help="top eigenpairs measured exactly"),
    seed: int = typer.Option(0, "--seed", help="seed of the calibration (with --seeds: the first)"),
    seeds: int = typer.Option(1, "--seeds",
                              help="calibrations with seeds seed … seed+N-1 (in OUT/seed-S), combined into "
                                   "OUT/prediction.json: median steps per batch size, each seed's spread"),
    batch_sizes: str = typer.Option("4,16,64,256,1024,4096,16384", "--batch-sizes",
                                    help="batch sizes of the predicted curves"),
    optimizers: str = typer.Option("sgd,momentum,adam,kfac", "--optimizers", help="study optimizers to predict"),
    curvature: str = typer.Option("ggn", "--curvature", help="ggn (Gauss-Newton / Fisher) or hessian"),
    reference_optimizer: str = typer.Option("sgd", "--reference-optimizer", help="optimizer of the reference run"),
    reference_batch_size: int = typer.Option(128, "--reference-batch-size"),
    reference_hp: list[str] = typer.Option([], "--reference-hp", help="reference hyperparameter NAME=VALUE"),
    reference_steps: Optional[int] = typer.Option(None, "--reference-steps", help="reference step budget"),
    reference_tune: int = typer.Option(13, "--reference-tune",
                                       help="learning rates tried for the reference run (0: as given)"),
    reference_seeds: int = typer.Option(3, "--reference-seeds",
                                        help="seeds per reference rate; the anchor takes the median steps"),
    target_loss: Optional[float] = typer.Option(None, "--target-loss",
                                                help="loss at the target (skips running to it; needs --at-step)"),
    target: Optional[float] = typer.Option(None, "--target", help="the reference runs' target value (default: "
                                           "the workload's); give a study's target to calibrate for it"),
    target_metric: Optional[str] = typer.Option(None, "--target-metric",
                                                help="the metric --target is on (default: the workload's; "
                                                     "classifiers: error, loss, train_set_loss)"),
    initial: str = typer.Option("fit", "--initial", help="initial state: fit, isotropic or equal-risk"),
    bulk_noise: str = typer.Option("curvature-weighted", "--bulk-noise",
                                   help="bulk noise c = r h, r from: curvature-weighted, total or top-k"),
    loss_floor: float = typer.Option(0.0, "--loss-floor", help="the loss the NQM's zero risk stands for"),
    delay: str = typer.Option(
        "fit", "--delay",
        help="start-up delay: fit (the updates before the NQM's run begins, fitted with the initial state to each "
             "reference run's loss curve and added to every predicted count) or none"),
    slq_probes: int = typer.Option(6, "--slq-probes"),
    slq_steps: int = typer.Option(64, "--slq-steps"),
    curvature_examples: int = typer.Option(2048, "--curvature-examples"),
    noise_examples: int = typer.Option(1024, "--noise-examples"),
    chunk_size: int = typer.Option(256, "--chunk-size", help="examples per jitted call (bounds memory)"),
    option: list[str] = typer.Option([], "--option", help="workload option NAME=VALUE (repeatable)"),
    preconditioner: str = typer.Option(
        "measured", "--preconditioner",
        help="adam and kfac: measured (their own tuned reference run; the NQM in their preconditioned "
             "coordinates P^-1/2 H P^-1/2, P read from the optimizer state) or proxy (the reference NQM with "
             "P = H^-p, p = 0.5 adam, 0.75 kfac)"),
    adam_hp: list[str] = typer.Option([], "--adam-hp",
                                      help="hyperparameter NAME=VALUE of the measured adam reference run"),
    kfac_hp: list[str] = typer.Option([], "--kfac-hp",
                                      help="hyperparameter NAME=VALUE of the measured kfac reference run"),
    first_hit_every: Optional[int] = typer.Option(
        None, "--first-hit-every",
        help="predict one run's median first hit of the target checked every N steps, what a study with "
             "eval_every N measures (default: the reference's evaluation cadence; 0: the expected risk's crossing)"),
    first_hit_runs: int = typer.Option(400, "--first-hit-runs", help="Monte Carlo runs per learning rate"),
    drift: str = typer.Option(
        "auto", "--drift",
        help="measured optimizers whose NQM follows the preconditioner their reference run applied before the "
             "checkpoint (K-FAC's inverses as it refreshed them) for those first updates: comma-separated names, "
             "none, or auto (kfac where measured); the prediction without it is kept under drift.fresh"),
    search_space: list[Path] = typer.Option(
        [], "--search-space",
        help="a study spec (TOML; repeatable, each optimizer from one spec): tune each predicted curve inside that "
             "study's search box (learning rate; momentum or Adam's beta1, at its fixed or default value where not "
             "searched), what that study's tuning can find (default: every value)"),
    as_json: bool = typer.Option(False, "--json", help="print prediction.json on stdout"),
) -> None:
    """Measure curvature and gradient-noise spectra at a checkpoint, build an NQM and predict steps vs batch size.

    With measured preconditioners (the default) adam and kfac each get their own tuned reference run (same
    batch size, budget, checkpoint rule, tuning and seeds as the reference run) and are measured in their own
    preconditioned coordinates; the fitted power p of H^-p that matches their spectrum is reported."""
    from batchlab.calibrate import (
        CalibrationConfig, MeasureConfig, ModelConfig, ReferenceConfig, calibrate, check_output_dir, write_calibration,
    )
    from batchlab.calibrate.ensemble import finished_member, mark_finished, member_folder, member_settings, write_ensemble
    from batchlab.workloads.registry import get_workload

    config = CalibrationConfig(
        reference=ReferenceConfig(optimizer=reference_optimizer,
                                  hyperparameters=parse_assignments(reference_hp, flag="--reference-hp"),
                                  batch_size=reference_batch_size, checkpoint_step=at_step,
                                  max_steps=reference_steps, target_loss=target_loss, target=target,
                                  target_metric=target_metric, tune_points=reference_tune,
                                  seeds=reference_seeds),
        measure=MeasureConfig(top_k=top_k, curvature=curvature, slq_probes=slq_probes, slq_steps=slq_steps,
                              curvature_examples=curvature_examples, noise_examples=noise_examples,
                              chunk_size=chunk_size),
        model=ModelConfig(initial=initial, bulk_noise=bulk_noise, loss_floor=loss_floor, delay=delay),
        batch_sizes=tuple(parse_float_list(batch_sizes, name="--batch-sizes")),
        optimizers=_names(optimizers),
        preconditioner=preconditioner,
        optimizer_hyperparameters={name: values for name, values in (
            ("adam", parse_assignments(adam_hp, flag="--adam-hp")),
            ("kfac", parse_assignments(kfac_hp, flag="--kfac-hp"))) if values},
        first_hit_every=first_hit_every,
        first_hit_runs=first_hit_runs,
        drift=_drift_names(drift),
        search_space=_search_boxes(search_space, _names(optimizers)),
    )
    config.check()
    if isinstance(seeds, bool) or seeds < 1:
        raise InputError(f"--seeds must be an integer >= 1, got {seeds}")
    members = [out] if seeds == 1 else [member_folder(out, s) for s in range(seed, seed + seeds)]
    for folder in dict.fromkeys([out, *members]):  # a result that cannot be written fails now, not after training
        check_output_dir(folder)
    options = parse_assignments(option, flag="--option")
    task = get_workload(workload, **options)
    task.load()  # a missing data set fails here, before any progress bar
    for s in range(seed, seed + seeds):
        config.check_workload(task, seed=s)  # every member's seed, before the first one trains
    console = Console(stderr=True)
    results = []
    for s, folder in zip(range(seed, seed + seeds), members):
        prefix = f"seed {s} ({s - seed + 1}/{seeds}): " if seeds > 1 else ""
        settings = member_settings(config, workload, options, s) if seeds > 1 else None
        if settings is not None and finished_member(folder, settings):  # a rerun resumes: this member is done
            console.print(f"{prefix}reusing {folder} (finished with the same settings)")
            continue
        if console.is_terminal:
            columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console, transient=True) as bar:
                result = calibrate(task, config, seed=s, stages=_stages(bar, prefix))
        else:
            result = calibrate(task, config, seed=s)
        results.append((result, write_calibration(result, folder)))
        if settings is not None:
            mark_finished(folder, settings)
    files = results[0][1] if seeds == 1 else write_ensemble(out, members)
    if as_json:
        print(json.dumps(json.loads(files["prediction"].read_text())))
        return
    if seeds == 1:
        _render(Console(), *results[0])
        return
    _render_ensemble(Console(), json.loads(files["prediction"].read_text()), files)


_MOMENTA = ("momentum", "beta1")  # the heavy ball's β in each optimizer's own words


def _search_boxes(paths: list[Path], names: tuple[str, ...]) -> dict[str, Any]:
    """Each calibrated optimizer's search box in the study specs at ``paths`` (those the specs have)."""
    from batchlab.study.spec import load_spec

    boxes, where = {}, {}
    for path in paths:
        found = _spec_boxes(load_spec(path), names)
        if not found:
            raise InputError(f"--search-space {path}: the study has none of the optimizers {', '.join(names)}")
        for name in found:
            if name in where:
                raise InputError(f"--search-space: {name} is in both {where[name]} and {path} (give each once)")
            where[name] = path
        boxes |= found
    return boxes


def _spec_boxes(spec: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The search boxes of ``spec``'s optimizers among ``names``."""
    from batchlab.calibrate.predict import SearchBox

    boxes = {}
    for entry in spec.optimizers:
        if entry.name not in names:
            continue
        fixed, dims = dict(entry.fixed), {dim.name: (dim.low, dim.high) for dim in entry.search}
        defaults = {hp.name: hp.default for hp in entry.optimizer.hyperparameters}

        def box_of(key: str) -> tuple[float, float] | None:
            if key in dims:
                return (float(dims[key][0]), float(dims[key][1]))
            value = fixed.get(key, defaults.get(key))
            return None if value is None else (float(value), float(value))

        momentum = next((box_of(key) for key in _MOMENTA if key in defaults), None)
        boxes[entry.name] = SearchBox(box_of("learning_rate"), momentum)
    return boxes


@app.command("calibrate-combine")
@guarded
def calibrate_combine_command(
    members: list[Path] = typer.Argument(..., help="calibration folders (batchlab calibrate --out), distinct seeds"),
    out: Path = typer.Option(..., "--out", help="folder of the ensemble's prediction.json and prediction.png"),
    as_json: bool = typer.Option(False, "--json", help="print the ensemble's prediction.json on stdout"),
) -> None:
    """Combine calibrations of one workload made with different seeds: median predicted steps per batch size,
    the critical batch size of that median curve, and each seed's spread (what --seeds N writes)."""
    from batchlab.calibrate.ensemble import write_ensemble

    files = write_ensemble(out, members)
    if as_json:
        print(json.dumps(json.loads(files["prediction"].read_text())))
        return
    _render_ensemble(Console(), json.loads(files["prediction"].read_text()), files)


def _render_ensemble(console: Console, prediction: dict[str, Any], files: dict[str, Path]) -> None:
    entries = prediction["optimizers"]
    members = prediction["ensemble"]["members"]
    console.print(f"[bold]{prediction['workload']}[/]: {prediction['source']}; checkpoints at steps "
                  f"{', '.join(_num(m['checkpoint_step']) for m in members)}")
    table = Table(title="predicted steps to target: median over seeds (each seed's)")
    table.add_column("batch size", justify="right")
    for name in entries:
        table.add_column(name, justify="right")
    sizes = next(iter(entries.values()))["batch_sizes"]
    for i, size in enumerate(sizes):
        table.add_row(f"{size:g}", *[f"{_num(e['steps'][i])} ({', '.join(_num(m[i]) for m in e['members']['steps'])})"
                                     for e in entries.values()])
    table.add_row("critical (fit)", *[f"{_num(e['critical_batch_size']['b_noise'])} "
                                      f"({', '.join(_num(b) for b in e['members']['b_noise'])})"
                                      for e in entries.values()])
    console.print(table)
    console.print("wrote " + ", ".join(str(path) for path in files.values()))
    sys.stdout.flush()


def _render(console: Console, result: Any, files: dict[str, Path]) -> None:
    prediction = result.prediction_dict()
    target = prediction["target"]
    console.print(f"[bold]{prediction['workload']}[/]: measured at step {prediction['checkpoint_step']} "
                  f"({result.spectra.curvature}); loss {target['initial_loss']:.4g} → {target['target_loss']:.4g} "
                  f"at {target['metric']} <= {target['value']:g}; NQM target {target['nqm_target']:.4g}, "
                  f"initial shares ∝ h^{result.nqm.initial_exponent:.2f} ({result.nqm.initial_rule})")
    scales = prediction["noise_scales"]
    console.print(f"B_simple = {_num(scales['b_simple'])}, B_noise = {_num(scales['b_noise'])}, "
                  f"top eigenvalue {result.spectra.top.values[0]:.4g}, took {result.timings['total']:.1f} s")
    anchor = prediction["anchor"]
    if result.nqm.initial_rule == "fit (closest)":
        console.print(f"[yellow]warning:[/] the NQM could not reproduce the reference run ({anchor['steps']} steps "
                      f"at batch {anchor['batch_size']:g}); its closest takes {_num(anchor['nqm_steps'])}. "
                      "Try more --slq-steps and --curvature-examples, or another --at-step.")
    for name, measured in result.measured.items():
        entry, run = prediction["optimizers"][name], measured.reference
        fit = measured.exponent
        console.print(f"{name}: measured at step {run.checkpoint_step} of its own tuned run (learning rate "
                      f"{run.hyperparameters.get('learning_rate', float('nan')):.3g}, median "
                      f"{_num(entry['reference']['median_steps'])} steps to target); fitted p = {_num(fit.exponent)} "
                      f"(top-k {_num(fit.exponent_top_k)}, r² {_num(fit.r2)}); B_noise = "
                      f"{_num(entry['noise_scales']['b_noise'])} in its coordinates")
        if "drift" in entry:
            segments, fresh = entry["drift"]["segments"], entry["drift"]["fresh"]
            tops = [value for segment in segments for value in segment["top"]]
            console.print(f"{name}: follows the {len(segments)} preconditioner(s) its run applied before the "
                          f"checkpoint (from updates {', '.join(str(seg['update']) for seg in segments[:6])}"
                          f"{', …' if len(segments) > 6 else ''}; gradient multipliers {min(tops):.3g}–{max(tops):.3g} "
                          f"along its top directions); without that: B_noise "
                          f"{_num(fresh['critical_batch_size']['b_noise'])}, steps {_num(fresh['steps'][-1])} at "
                          f"batch {fresh['batch_sizes'][-1]:g}")
        if measured.nqm.initial_rule == "fit (closest)":
            console.print(f"[yellow]warning:[/] {name}'s NQM could not reproduce its reference run "
                          f"({entry['anchor']['steps']} steps); its closest takes "
                          f"{_num(entry['anchor']['nqm_steps'])}.")
    every = result.first_hit_every
    table = Table(title=f"predicted steps to target (median first hit, checked every {every} steps)" if every
                  else "predicted steps to target (expected risk)")
    table.add_column("batch size", justify="right")
    entries = prediction["optimizers"]
    for name, entry in entries.items():
        measured = entry.get("preconditioner") == "measured"
        extra = ", drift" if "drift" in entry else ", bias-corrected" if entry.get("bias_correction") else ""
        label = f"{name} (measured P{extra})" if measured else \
            f"{name} (p={entry['precond']:g})"
        table.add_column(label, justify="right")
    sizes = next(iter(entries.values()))["batch_sizes"]
    for i, size in enumerate(sizes):
        table.add_row(f"{size:g}", *[_num(entry["steps"][i]) for entry in entries.values()])
    table.add_row("critical (fit)", *[_num(e["critical_batch_size"]["b_noise"]) for e in entries.values()])
    table.add_row("critical (20%)", *[_num(e["critical_batch_size"]["overhead"]) for e in entries.values()])
    console.print(table)
    stages = [f"reference {result.timings['reference']:.1f}", f"measure {result.timings['measure']:.1f}"]
    for name, measured in result.measured.items():
        stages += [f"{name} {stage} {seconds:.1f}" for stage, seconds in measured.timings.items()]
    console.print(f"seconds: {', '.join(stages)}, predict {result.timings['predict']:.1f}")
    console.print("wrote " + ", ".join(str(path) for path in files.values()))
    sys.stdout.flush()


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"
