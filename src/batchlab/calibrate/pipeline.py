"""The whole calibration: reference run → measurement at the checkpoint → NQM → predicted curves → files.

With measured preconditioners (``preconditioner = "measured"``, the default) each of ``adam`` and
``kfac`` among the optimizers adds: its own tuned reference run (the reference settings with that
optimizer and its ``optimizer_hyperparameters``), its preconditioner at that run's checkpoint
(:mod:`batchlab.calibrate.precondition`), a measurement in its coordinates, its own NQM (anchored to
its own run) and the fitted power ``p`` (:mod:`batchlab.calibrate.exponent`).

Keys: the reference runs follow ``train``'s seed convention (see :mod:`batchlab.calibrate.reference`;
every reference run uses ``seed``); every measurement key derives from ``fold_in(PRNGKey(seed), 1)``: the
loss-measurement batch, then the curvature batch, noise batch, Lanczos start, SLQ probes and sketch
signs (see :func:`batchlab.calibrate.measure.measure`) — the same for every measurement, so the
preconditioned ones use the same batches, start and probes.  Equal arguments give identical files (up to
timings).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from batchlab.calibrate.exponent import ExponentFit, fitted_exponent
from batchlab.calibrate.figures import exponent_figure, prediction_figure, spectrum_figure
from batchlab.calibrate.measure import MeasureConfig, Spectra, measure
from batchlab.calibrate.model import CalibratedProblem, ModelConfig, build_problem, kept_top
from batchlab.calibrate.operators import chunk_batch, output_loss
from batchlab.calibrate.precondition import (BIAS_CORRECTED, DRIFTING, MEASURED, Preconditioner, applied_updates,
                                             check_drifting, drift_multipliers, extract_preconditioner)
from batchlab.calibrate.predict import PROXIES, Proxy, SearchBox, critical_entry, optimizer_entry, predict
from batchlab.calibrate.progress import Stages, no_progress
from batchlab.calibrate.reference import ReferenceConfig, ReferenceRun, reference_anchor, run_reference
from batchlab.checks import check_at_least, check_integer, finite_or_none
from batchlab.critical import critical_batch_size
from batchlab.jsonsafe import dumps
from batchlab.errors import InputError
from batchlab.nqm.drift import Drift, tuned_drifted, tuned_drifted_first_hit, tuned_in_box
from batchlab.nqm.first_hit import MULTIPLIERS, FirstHit, tuned_first_hit
from batchlab.nqm.scaling import ScalingCurve, check_batch_sizes
from batchlab.nqm.spectrum import Problem

__all__ = ["CalibrationConfig", "Calibration", "MeasuredOptimizer", "calibrate", "write_calibration", "read_nqm",
           "check_output_dir", "DEFAULT_BATCH_SIZES", "OUTPUT_FILES", "PRECONDITIONERS"]

DEFAULT_BATCH_SIZES = tuple(float(2**k) for k in range(2, 15, 2))  # 4, 16, …, 16384
OUTPUT_FILES = ("spectra.json", "nqm_problem.json", "prediction.json", "spectrum.png", "prediction.png",
                "preconditioned.png")
PRECONDITIONERS = ("measured", "proxy")


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """Everything a calibration needs besides the workload and the seed.

    Attributes:
        reference: the reference run (checkpoint and loss at the target).
        measure: what to measure at the checkpoint.
        model: how measurements become an NQM.
        batch_sizes: batch sizes of the predicted curves (examples per step).
        optimizers: study optimizer names to predict (keys of :data:`~batchlab.calibrate.predict.PROXIES`).
        loss_examples: size of the batch on which losses are measured.
        preconditioner: ``"measured"`` (default): ``adam`` and ``kfac`` get their own reference run and
            an NQM in their preconditioned coordinates; ``"proxy"``: the reference NQM with ``P = H^-p``
            (:mod:`batchlab.calibrate.predict`).
        optimizer_hyperparameters: measured optimizer name → hyperparameters of its reference run
            (defaults fill the rest; its learning rate is tuned like the reference's).
        first_hit_every: predict what a study measures: the median over runs of one run's first hit
            of the target, checked every this many steps (:mod:`batchlab.nqm.first_hit`; a study's
            ``eval_every``); ``None`` (default): the reference run's ``eval_every`` (the workload's
            default unless set); ``0``: predict the expected risk's crossing only.
        first_hit_runs: Monte Carlo runs per learning rate for the first hit.
        drift: measured optimizers (of :data:`~batchlab.calibrate.precondition.DRIFTING`) whose NQM follows the preconditioner their reference run applied
            before its checkpoint, as gradient multipliers along the NQM's directions for those first
            updates (:mod:`batchlab.nqm.drift`), instead of the checkpoint's preconditioner from update 0;
            ``None`` (default): every measured one whose drift is modelled (:attr:`drifting`).  Their predictions
            without it are kept under ``drift.fresh`` in ``prediction.json``.  K-FAC: the inverses as it
            refreshed them (every ``inverse_update_period`` updates); Adam's early ``√v̂ + ε`` is built
            from the very gradients it divides, which a linear model does not describe (module docs).
        search_space: optimizer name → :class:`~batchlab.calibrate.predict.SearchBox`: tune that optimizer's
            predicted curve inside the box, as a study with that search space tunes it (default: every
            value the NQM allows).  For sgd, momentum and measured adam/kfac (not the H^-p proxies).
    """

    reference: ReferenceConfig = ReferenceConfig()
    measure: MeasureConfig = MeasureConfig()
    model: ModelConfig = ModelConfig()
    batch_sizes: tuple[float, ...] = DEFAULT_BATCH_SIZES
    optimizers: tuple[str, ...] = tuple(PROXIES)
    loss_examples: int = 4096
    preconditioner: str = "measured"
    optimizer_hyperparameters: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    first_hit_every: int | None = None
    first_hit_runs: int = 400
    drift: tuple[str, ...] | None = None
    search_space: Mapping[str, SearchBox] = dataclasses.field(default_factory=dict)

    def first_hit_cadence(self, workload: Any) -> int:
        """The evaluation cadence of the first-hit prediction (0: off)."""
        if self.first_hit_every is not None:
            return int(self.first_hit_every)
        return int(self.reference.eval_every or workload.default_eval_every)

    @property
    def measured(self) -> tuple[str, ...]:
        """The optimizers calibrated in their own preconditioned coordinates (in ``optimizers`` order)."""
        return tuple(name for name in self.optimizers if name in MEASURED) if self.preconditioner == "measured" else ()

    @property
    def drifting(self) -> tuple[str, ...]:
        """The measured optimizers whose preconditioner's drift is modelled (see ``drift``)."""
        names = DRIFTING if self.drift is None else self.drift
        return tuple(name for name in self.measured if name in names)

    def optimizer_reference(self, name: str) -> ReferenceConfig:
        """The reference run of measured optimizer ``name``: the reference settings with that optimizer."""
        return dataclasses.replace(self.reference, optimizer=name,
                                   hyperparameters=dict(self.optimizer_hyperparameters.get(name, {})))

    def check(self) -> None:
        """Raise :class:`InputError` on the first invalid setting (before any work is done)."""
        unknown = [name for name in self.optimizers if name not in PROXIES]
        if unknown or not self.optimizers:
            raise InputError(f"unknown optimizer(s) {', '.join(unknown) or '(none given)'}; "
                             f"valid: {', '.join(PROXIES)}")
        check_batch_sizes(self.batch_sizes)
        check_at_least(self.loss_examples, "loss_examples", 1)
        if self.first_hit_every is not None:
            check_integer(self.first_hit_every, "first_hit_every", 0)
        check_integer(self.first_hit_runs, "first_hit_runs", 2)
        for name in self.drift or ():
            if name in MEASURED:
                check_drifting(name)
            if name not in self.measured:
                raise InputError(f"drift asked for {name}, but {name} is not measured "
                                 f"(measured: {', '.join(self.measured) or 'none'})")
        for name, box in self.search_space.items():
            if name not in self.optimizers:
                raise InputError(f"a search box is given for {name}, which is not among the optimizers "
                                 f"({', '.join(self.optimizers)})")
            box.check(name)
            if PROXIES[name].precond and name not in self.measured:
                raise InputError(f"a search box for {name} needs its measured preconditioner (its H^-p proxy's "
                                 "learning rate is not the optimizer's)")
            if (box.momentum is None) != (PROXIES[name].kind == "sgd"):
                raise InputError(f"{name}'s search box: {'give' if box.momentum is None else 'no'} momentum range "
                                 f"for a{'' if box.momentum is None else 'n'} {PROXIES[name].kind} optimizer")
        if self.preconditioner not in PRECONDITIONERS:
            raise InputError(f"preconditioner must be {' or '.join(PRECONDITIONERS)}, got {self.preconditioner!r}")
        self.reference.check()
        for name in self.optimizer_hyperparameters:
            if name not in self.measured:
                raise InputError(f"hyperparameters given for the {name} reference run, but {name} is not measured "
                                 f"(measured: {', '.join(self.measured) or 'none'})")
        for name in self.measured:
            self.optimizer_reference(name).check()
        if self.measured and self.reference.checkpoint_step == 0:
            raise InputError(f"measured preconditioners ({', '.join(self.measured)}) need a checkpoint after at "
                             "least one update (--at-step >= 1), or --preconditioner proxy")
        self.measure.check()
        self.model.check()

    def check_workload(self, workload: Any, *, seed: int = 0) -> None:
        """Raise :class:`InputError` on settings that ``workload`` (or ``seed``) rules out: everything
        that can be known before the reference run (cheap: parameter shapes only, trains nothing);
        :meth:`check` first."""
        ref = self.reference
        check_integer(seed, "seed", 0, 2**32 - ref.seeds,
                      expected=f"an integer in [0, {2**32 - ref.seeds}] (the reference runs use seeds seed … "
                               f"seed + {ref.seeds - 1})")
        budget = ref.max_steps or workload.default_max_steps
        if ref.checkpoint_step is not None and ref.checkpoint_step > budget:
            raise InputError(f"checkpoint step {ref.checkpoint_step} exceeds the reference budget {budget}")
        if ref.target is not None or ref.target_metric is not None:  # the target as a study gives it
            from batchlab.train import check_arguments

            check_arguments(workload, ref.optimizer, ref.hyperparameters, ref.batch_size, budget,
                            target=ref.target, target_metric=ref.target_metric)
        if ref.target_loss is not None and not self.model.loss_floor < ref.target_loss:
            raise InputError(f"the loss floor ({self.model.loss_floor:g}) must be below the loss at the target "
                             f"({ref.target_loss:g})")
        if self.measure.curvature == "ggn" and workload.loss_kind != "quadratic":
            output_loss(workload.loss_kind)  # raises for a loss without an output-space (Gauss-Newton) form
        if "kfac" in self.measured:
            from batchlab.optim.kfac import SUPPORTED_LOSSES  # kfac-jax loads only when needed

            if workload.loss_kind not in SUPPORTED_LOSSES:
                raise InputError(f"a measured kfac preconditioner needs a {' or '.join(SUPPORTED_LOSSES)} loss, "
                                 f"not loss kind {workload.loss_kind!r} (leave kfac out or use the proxy "
                                 "preconditioner)")
        dim = parameter_count(workload)
        if self.measure.top_k >= dim:
            raise InputError(f"top_k must be < the number of parameters ({dim}), got {self.measure.top_k}")


def parameter_count(workload: Any) -> int:
    """The number of parameters of ``workload``'s model, from shapes alone (no initialisation runs)."""
    shapes = jax.eval_shape(lambda: workload.init_params(key=jax.random.PRNGKey(0)))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


def check_output_dir(out: Path) -> None:
    """Raise :class:`InputError` unless :func:`write_calibration` can write into ``out``: an existing
    writable folder (its calibration files are replaced) or a path below a writable folder (created
    when writing).  Creates nothing.
    """
    out = Path(out)
    where = f"output folder {out}"
    if out.is_symlink() and not out.exists():
        raise InputError(f"{where}: is a broken symbolic link")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{where}: exists and is not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise InputError(f"{where}: is not writable")
        taken = [name for name in OUTPUT_FILES if (out / name).is_dir()]
        if taken:
            raise InputError(f"{where}: {taken[0]} there is a folder, not a file")
        return
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{where}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{where}: cannot be created, {ancestor} is not writable")


@dataclasses.dataclass(frozen=True)
class MeasuredOptimizer:
    """One optimizer calibrated in its own preconditioned coordinates (see :func:`calibrate`).

    Attributes:
        name: the study optimizer (``"adam"`` or ``"kfac"``).
        config: its reference run's settings.
        reference: its tuned reference run (checkpoint, optimizer state, losses, steps).
        spectra: the measurement in its coordinates (``P^{-1/2} H P^{-1/2}``, ``P^{-1/2} Σ P^{-1/2}``).
        nqm: its NQM (plain; anchored to its own reference run).
        exponent: the fitted power ``p`` of ``H^{-p}`` (:mod:`batchlab.calibrate.exponent`).
        timings: seconds of its reference run(s), extraction and measurement, and prediction.
        drift: the preconditioner it applied before the checkpoint, along its NQM's entries (``None``
            unless in ``CalibrationConfig.drifting``); ``drift_info`` describes it for ``prediction.json``:
            ``segments`` (per change: ``update``, the ``top``-k multipliers, the ``bulk`` mean) and
            ``replay_difference`` (relative L2 distance between the replay's checkpoint and the run's).
    """

    name: str
    config: ReferenceConfig
    reference: ReferenceRun
    spectra: Spectra
    nqm: CalibratedProblem
    exponent: ExponentFit
    timings: dict[str, float]
    drift: Drift | None = None
    drift_info: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _reference_dict(config: ReferenceConfig, run: ReferenceRun) -> dict[str, Any]:
    return {"optimizer": config.optimizer, "batch_size": config.batch_size,
            "hyperparameters": dict(run.hyperparameters), "median_steps": run.median_steps, "seeds": config.seeds,
            "tuning": [{"learning_rate": rate, "steps": steps} for rate, steps in run.trials],
            "loss_curve": [[start, stop, loss] for start, stop, loss in run.loss_curve]}


def _delay_dict(nqm: CalibratedProblem) -> dict[str, Any]:
    return {"steps": nqm.delay, "rule": nqm.delay_rule, "residual": nqm.delay_residual}


def delayed_curve(curve: ScalingCurve, delay: int) -> ScalingCurve:
    """``curve`` with ``delay`` updates added to every count (its critical batch size recomputed)."""
    if not delay:
        return curve
    rows = tuple(dataclasses.replace(row, steps=row.steps + delay) for row in curve.rows)
    steps = [row.steps for row in rows]
    return dataclasses.replace(curve, rows=rows, lower_bounds=tuple(b + delay for b in curve.lower_bounds),
                               critical=critical_batch_size([row.batch_size for row in rows], steps))


def delayed_hit(hit: FirstHit, delay: int) -> FirstHit:
    """``hit`` with ``delay`` updates added to its counts."""
    return dataclasses.replace(hit, steps=hit.steps + delay, expected_steps=hit.expected_steps + delay)


def _target_dict(workload: Any, run: ReferenceRun, nqm: CalibratedProblem, config: ReferenceConfig) -> dict[str, Any]:
    metric = config.target_metric or workload.target_metric
    value = workload.target_value if config.target is None else config.target
    return {"metric": metric, "value": float(value), "nqm_target": nqm.target,
            "relative": nqm.relative_target, "initial_loss": run.initial_loss, "target_loss": run.target_loss,
            "target_step": run.target_step}


def _measured_entry(workload: Any, measured: MeasuredOptimizer) -> dict[str, Any]:
    """The extra fields of a measured optimizer's ``prediction.json`` entry."""
    run, noise = measured.reference, measured.spectra.noise.as_dict()
    return {"preconditioner": "measured", "fitted_exponent": finite_or_none(measured.exponent.exponent),
            "fitted_exponent_top_k": finite_or_none(measured.exponent.exponent_top_k),
            "checkpoint_step": run.checkpoint_step, "target": _target_dict(workload, run, measured.nqm, measured.config),
            "noise_scales": {"b_simple": noise["b_simple"], "b_noise": noise["b_noise"]},
            "reference": _reference_dict(measured.config, run),
            "initial_exponent": measured.nqm.initial_exponent, "initial_rule": measured.nqm.initial_rule,
            "anchor": {"batch_size": float(measured.config.batch_size), "steps": run.median_steps,
                       "nqm_steps": measured.nqm.as_dict()["anchor_steps"]},
            "delay": _delay_dict(measured.nqm),
            "bias_correction": measured.name in BIAS_CORRECTED}


def first_hit_entry(entry: dict[str, Any], hits: tuple[FirstHit, ...], every: int, runs: int,
                     seed: int) -> dict[str, Any]:
    """An optimizer's entry with ``steps``, ``learning_rates`` and ``critical_batch_size`` of the
    median first hit, the expected-risk ones kept under ``expected_*`` (format in :mod:`batchlab.calibrate`)."""
    steps = [h.steps for h in hits]
    out = dict(entry)
    out |= {"expected_steps": entry["steps"], "expected_learning_rates": entry["learning_rates"],
            "expected_critical_batch_size": entry["critical_batch_size"],
            "steps": [None if finite_or_none(s) is None else int(s) for s in steps],
            "learning_rates": [h.learning_rate for h in hits],
            "critical_batch_size": critical_entry(critical_batch_size(entry["batch_sizes"], steps)),
            "first_hit": {"every": every, "runs": runs, "seed": seed,
                          "multipliers": [h.multiplier for h in hits],
                          "hit_fractions": [h.hit_fraction for h in hits]}}
    return out


def adam_optimizer_units(entry: dict[str, Any]) -> None:
    """Adam averages ``m = (1 − β)·Σ βᵏ g``, so its rate is the NQM's ``α / (1 − β)``: keep the NQM's
    rates in ``nqm_learning_rates`` and convert ``learning_rates`` (and ``expected_learning_rates``)."""
    entry["nqm_learning_rates"] = entry["learning_rates"]
    for key in ("learning_rates", "expected_learning_rates"):
        if key in entry:
            entry[key] = [None if a is None else a / (1.0 - (b or 0.0)) for a, b in zip(entry[key], entry["momenta"])]


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A finished calibration (see :func:`calibrate`).

    ``measured`` holds the optimizers calibrated in their own coordinates (empty in proxy mode or
    without ``adam``/``kfac``): their ``curves`` come from their own NQM.
    """

    workload: Any
    config: CalibrationConfig
    seed: int
    reference: ReferenceRun
    spectra: Spectra
    nqm: CalibratedProblem
    curves: dict[str, ScalingCurve]
    timings: dict[str, float]
    measured: Mapping[str, MeasuredOptimizer] = dataclasses.field(default_factory=dict)
    first_hits: Mapping[str, tuple[FirstHit, ...]] = dataclasses.field(default_factory=dict)
    first_hit_every: int = 0
    fresh: Mapping[str, tuple[ScalingCurve, tuple[FirstHit, ...]]] = dataclasses.field(default_factory=dict)

    def prediction_dict(self) -> dict[str, Any]:
        """The ``prediction.json`` object (format in :mod:`batchlab.calibrate`)."""
        w, ref = self.workload, self.reference
        noise = self.spectra.noise
        entries = {name: optimizer_entry(curve) for name, curve in self.curves.items()}
        for name, hits in self.first_hits.items():
            entries[name] = first_hit_entry(entries[name], hits, self.first_hit_every,
                                             self.config.first_hit_runs, self.seed)
        for name, measured in self.measured.items():
            entries[name] |= _measured_entry(w, measured)
            if name in self.fresh:
                entries[name]["drift"] = {**measured.drift_info, "fresh": self._fresh_entry(name)}
            if name == "adam":
                adam_optimizer_units(entries[name])
        for name, box in self.config.search_space.items():
            entries[name]["search_space"] = box.as_dict()
        for entry in entries.values():
            entry["units"] = "optimizer" if entry["precond"] == 0.0 else "proxy"
        return {
            "workload": w.name,
            "checkpoint_step": ref.checkpoint_step,
            "target": _target_dict(w, ref, self.nqm, self.config.reference),
            "optimizers": entries,
            "noise_scales": {"b_simple": noise.as_dict()["b_simple"], "b_noise": noise.as_dict()["b_noise"]},
            "reference": _reference_dict(self.config.reference, ref),
            "initial_exponent": self.nqm.initial_exponent, "initial_rule": self.nqm.initial_rule,
            "anchor": {"batch_size": float(self.config.reference.batch_size), "steps": ref.median_steps,
                       "nqm_steps": self.nqm.as_dict()["anchor_steps"]},
            "delay": _delay_dict(self.nqm),
            "curvature": self.spectra.curvature,
            "seed": self.seed,
        }

    def _fresh_entry(self, name: str) -> dict[str, Any]:
        """The prediction without drift (``drift.fresh`` of a measured optimizer's entry)."""
        curve, hits = self.fresh[name]
        entry = optimizer_entry(curve)
        if hits:
            entry = first_hit_entry(entry, hits, self.first_hit_every, self.config.first_hit_runs, self.seed)
            del entry["first_hit"]
        if name == "adam":
            adam_optimizer_units(entry)
        return entry

    def spectra_dict(self) -> dict[str, Any]:
        """The ``spectra.json`` object (format in :mod:`batchlab.calibrate`)."""
        out = {"workload": self.workload.name, "checkpoint_step": self.reference.checkpoint_step,
               "seed": self.seed, **self.spectra.as_dict(), "timings": self.timings}
        if self.measured:
            out["preconditioned"] = {
                name: {"optimizer": name, "checkpoint_step": m.reference.checkpoint_step, **m.spectra.as_dict(),
                       "exponent": m.exponent.as_dict(), "timings": m.timings}
                for name, m in self.measured.items()}
        return out

    def nqm_dict(self) -> dict[str, Any]:
        """The ``nqm_problem.json`` object (format in :mod:`batchlab.calibrate`)."""
        out = self.nqm.as_dict()
        if self.measured:
            out["preconditioned"] = {name: m.nqm.as_dict() for name, m in self.measured.items()}
        return out


def _prefixed(stages: Stages, prefix: str) -> Stages:
    return lambda name, total: stages(f"{prefix}: {name}", total)


def _measure_optimizer(workload: Any, config: CalibrationConfig, name: str, *, seed: int, loss_chunks: list[Any],
                       key: jax.Array, reference: Spectra, shared: tuple[ReferenceConfig, ReferenceRun],
                       stages: Stages) -> MeasuredOptimizer:
    """Reference run of ``name`` (reused if it is the calibration's own), its preconditioner, the
    measurement in its coordinates, its NQM and the fitted exponent."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    ref_config = config.optimizer_reference(name)
    stages = _prefixed(stages, name)
    if ref_config == shared[0]:
        run = shared[1]
    else:
        run = run_reference(workload, ref_config, seed=seed, loss_chunks=loss_chunks, stages=stages)
    timings["reference"] = time.perf_counter() - start
    start = time.perf_counter()
    batch = workload.sample_batch(key=jax.random.fold_in(jax.random.PRNGKey(seed), 2),
                                  batch_size=ref_config.batch_size)
    preconditioner = extract_preconditioner(name, workload, run.checkpoint, run.checkpoint_state,
                                            hyperparameters=run.hyperparameters, batch=batch)
    timings["preconditioner"] = time.perf_counter() - start
    start = time.perf_counter()
    spectra = measure(workload, run.checkpoint, config.measure, key=key, stages=stages,
                      preconditioner=preconditioner)
    timings["measure"] = time.perf_counter() - start
    anchor = reference_anchor(ref_config, run, Proxy(PROXIES[name].kind, 0.0))
    if anchor is not None and name in BIAS_CORRECTED:
        anchor = dataclasses.replace(anchor, bias_correction=True)
    nqm = build_problem(spectra, initial_loss=run.initial_loss, target_loss=run.target_loss, anchor=anchor,
                        config=config.model, loss_curve=run.loss_curve)
    exponent = fitted_exponent(reference, spectra, min_curvature=config.model.min_curvature)
    drift, info = None, {}
    if name in config.drifting:
        start = time.perf_counter()
        drift, info = _drift(workload, name, ref_config, run, preconditioner, spectra, nqm.problem, config.model,
                             batch, seed=seed, loss_chunks=loss_chunks, stages=stages)
        timings["drift"] = time.perf_counter() - start
    return MeasuredOptimizer(name, ref_config, run, spectra, nqm, exponent, timings, drift, info)


def _drift(workload: Any, name: str, config: ReferenceConfig, run: ReferenceRun, checkpoint: Preconditioner,
           spectra: Spectra, problem: Problem, model: ModelConfig, batch: Any, *, seed: int, loss_chunks: list[Any],
           stages: Stages) -> tuple[Drift, dict[str, Any]]:
    """The preconditioner ``name``'s reference run applied at each update before its checkpoint, as
    multipliers along the NQM's entries (:func:`~batchlab.calibrate.precondition.drift_multipliers`: the
    kept top-k directions, then the bulk's mean for every bulk entry), one segment per change.  The
    optimizer states are those of a replay of the reference run (its seed and hyperparameters) to its
    checkpoint: a run asked to keep a state trains on to it, and the first hit is not known in advance."""
    updates = list(applied_updates(name, run.checkpoint_step))
    replay_config = dataclasses.replace(config, hyperparameters=dict(run.hyperparameters), tune_points=0, seeds=1,
                                        checkpoint_step=run.checkpoint_step, target_loss=run.target_loss)
    replay = run_reference(workload, replay_config, seed=seed, loss_chunks=loss_chunks,
                           stages=_prefixed(stages, "drift"), keep=tuple(t + 1 for t in updates))
    keep = kept_top(spectra.top.values, model.min_curvature)
    rows, segments = [], []
    for t in updates:
        snap = replay.snapshots[t + 1]
        applied = extract_preconditioner(name, workload, snap.params, snap.state, hyperparameters=run.hyperparameters,
                                         batch=batch)
        top, bulk = drift_multipliers(checkpoint, applied, spectra.top.vectors)
        rows.append(np.concatenate([top[keep], np.full(problem.h.shape[0] - int(keep.sum()), bulk)]))
        segments.append({"update": t, "top": top.tolist(), "bulk": bulk})
    original, replayed = (np.asarray(ravel_pytree(p)[0], np.float64) for p in (run.checkpoint, replay.checkpoint))
    info = {"segments": segments,
            "replay_difference": float(np.linalg.norm(replayed - original) / max(np.linalg.norm(original), 1e-300))}
    return Drift.from_segments(updates, rows, end=run.checkpoint_step), info


def _drifted_curve(problem: Problem, target: float, curve: ScalingCurve, drift: Drift,
                   bias_correction: bool = False) -> ScalingCurve:
    """``curve`` (tuned without drift) retuned under ``drift`` (and Adam's ``bias_correction``) around each
    batch size's optimum (:func:`batchlab.nqm.drift.tuned_drifted`; expected-risk steps)."""
    rows = []
    for row in curve.rows:
        if not math.isfinite(row.steps):
            rows.append(row)
            continue
        horizon = int(max(4 * row.steps, 2 * drift.length, 50))
        best = tuned_drifted(problem, drift, curve.kind, batch_size=row.batch_size, target=target,
                             learning_rate=row.learning_rate, momentum=row.momentum, horizon=horizon,
                             bias_correction=bias_correction)
        rows.append(dataclasses.replace(row, steps=best.steps, learning_rate=best.learning_rate, momentum=best.momentum,
                                        reason="" if math.isfinite(best.steps) else "not within the drift's horizon"))
    steps = [r.steps for r in rows]
    return dataclasses.replace(curve, rows=tuple(rows),
                               critical=critical_batch_size([r.batch_size for r in rows], steps))


def _boxed_curve(problem: Problem, target: float, curve: ScalingCurve, drift: Drift, box: SearchBox, *,
                 averaged: bool, bias_correction: bool) -> ScalingCurve:
    """``curve`` retuned inside ``box`` at every batch size (:func:`batchlab.nqm.drift.tuned_in_box`; under
    ``drift`` and Adam's ``bias_correction``; ``averaged``: Adam's rate is ``α / (1 − β₁)``)."""
    rows = []
    for row in curve.rows:
        best = tuned_in_box(problem, drift, batch_size=row.batch_size, target=target, rates=box.learning_rate,
                            momenta=box.momenta(), averaged=averaged, bias_correction=bias_correction)
        rows.append(dataclasses.replace(row, steps=best.steps, learning_rate=best.learning_rate, momentum=best.momentum,
                                        reason="" if math.isfinite(best.steps) else "not reachable inside the box"))
    return dataclasses.replace(curve, rows=tuple(rows),
                               critical=critical_batch_size([r.batch_size for r in rows], [r.steps for r in rows]))


def box_multipliers(box: SearchBox, learning_rate: float, momentum: float | None, averaged: bool) -> tuple[float, ...]:
    """The first hit's rate multipliers (:data:`batchlab.nqm.first_hit.MULTIPLIERS`) that keep the NQM rate
    ``learning_rate`` inside ``box`` (in the optimizer's units); ``(1.0,)`` if none does."""
    rate = learning_rate / ((1.0 - (momentum or 0.0)) if averaged else 1.0)
    low, high = box.learning_rate
    inside = tuple(m for m in MULTIPLIERS if low * (1 - 1e-9) <= rate * m <= high * (1 + 1e-9))
    return inside or (1.0,)


def calibrate(workload: Any, config: CalibrationConfig = CalibrationConfig(), *, seed: int = 0,
              stages: Stages = no_progress) -> Calibration:
    """Calibrate an NQM on ``workload`` and predict its batch-size scaling.

    Args:
        workload: a :class:`~batchlab.workloads.base.Workload`.
        config: the settings (validated first).
        seed: the seed of the reference runs and of every measurement.
        stages: progress hook (see :mod:`batchlab.calibrate.progress`).

    Returns:
        :class:`Calibration`.

    Raises:
        InputError: invalid settings (checked before any training, :meth:`CalibrationConfig.check_workload`),
            missing data, a reference run that misses its target.

    Example:
        >>> from batchlab.workloads.registry import get_workload
        >>> result = calibrate(get_workload("digits-cnn"), seed=0)              # doctest: +SKIP
        >>> write_calibration(result, Path("runs/digits/calibration"))          # doctest: +SKIP
    """
    config.check()
    workload.load()
    config.check_workload(workload, seed=seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    k_loss, k_measure = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1))
    loss_n, loss_chunk = config.measure.rounded(config.loss_examples)
    loss_chunks = chunk_batch(workload.sample_batch(key=k_loss, batch_size=loss_n), loss_chunk)
    reference = run_reference(workload, config.reference, seed=seed, loss_chunks=loss_chunks, stages=stages)
    timings["reference"] = time.perf_counter() - start
    spectra = measure(workload, reference.checkpoint, config.measure, key=k_measure, stages=stages)
    timings["measure"] = time.perf_counter() - start - timings["reference"]
    nqm = build_problem(spectra, initial_loss=reference.initial_loss, target_loss=reference.target_loss,
                        anchor=reference_anchor(config.reference, reference), config=config.model,
                        loss_curve=reference.loss_curve)
    measured = {name: _measure_optimizer(workload, config, name, seed=seed, loss_chunks=loss_chunks, key=k_measure,
                                         reference=spectra, shared=(config.reference, reference), stages=stages)
                for name in config.measured}
    started = time.perf_counter()
    tick = stages("NQM predictions", len(config.optimizers) * len(check_batch_sizes(config.batch_sizes)))
    curves = {}
    def nqm_of(name: str) -> tuple[Any, float]:  # a measured optimizer's own NQM, else the reference's
        own = measured[name].nqm if name in measured else nqm
        return own.problem, own.target

    for name in config.optimizers:
        problem, target = nqm_of(name)
        proxy = Proxy(PROXIES[name].kind, 0.0) if name in measured else PROXIES[name]
        began = time.perf_counter()
        curves |= predict(problem, target=target, batch_sizes=config.batch_sizes, optimizers={name: proxy},
                          progress=lambda _: tick())
        if name in measured:
            measured[name].timings["predict"] = time.perf_counter() - began
    fresh = {}
    for name, m in measured.items():
        if m.drift is not None:
            fresh[name] = curves[name]
        if (m.drift is not None or name in BIAS_CORRECTED) and name not in config.search_space:  # else boxed below
            curves[name] = _drifted_curve(m.nqm.problem, m.nqm.target, curves[name],
                                          m.drift or Drift.none(m.nqm.problem.h.shape[0]),
                                          bias_correction=name in BIAS_CORRECTED)
    for name, box in config.search_space.items():  # what the study's tuning can find
        problem, target = nqm_of(name)
        drift = measured[name].drift if name in measured else None
        boxed = functools.partial(_boxed_curve, problem, target, box=box, averaged=name == "adam",
                                  bias_correction=name in BIAS_CORRECTED)
        curves[name] = boxed(curves[name], drift or Drift.none(problem.h.shape[0]))
        if name in fresh:
            fresh[name] = boxed(fresh[name], Drift.none(problem.h.shape[0]))
    every = config.first_hit_cadence(workload)
    first_hits, fresh_hits = {}, {}
    if every:
        began = time.perf_counter()
        tick = stages("NQM first hits (Monte Carlo)",
                      sum(len(curve.rows) for curve in (*curves.values(), *fresh.values())))

        def hits_of(name: str, curve: ScalingCurve, drift: Drift | None) -> tuple[FirstHit, ...]:
            problem, target = nqm_of(name)
            hits = []
            box = config.search_space.get(name)
            for row in curve.rows:
                if box is not None:
                    hits.append(tuned_drifted_first_hit(
                        problem, drift or Drift.none(problem.h.shape[0]), batch_size=row.batch_size, target=target,
                        eval_every=every, optimum=row, runs=config.first_hit_runs, seed=seed,
                        multipliers=box_multipliers(box, row.learning_rate, row.momentum, name == "adam"),
                        bias_correction=name in BIAS_CORRECTED))
                elif drift is None and name not in BIAS_CORRECTED:
                    hits.append(tuned_first_hit(problem, curve.kind, batch_size=row.batch_size, target=target,
                                                eval_every=every, precond=curve.precond,
                                                runs=config.first_hit_runs, seed=seed, optimum=row))
                else:
                    hits.append(tuned_drifted_first_hit(problem, drift or Drift.none(problem.h.shape[0]),
                                                        batch_size=row.batch_size, target=target, eval_every=every,
                                                        optimum=row, runs=config.first_hit_runs, seed=seed,
                                                        bias_correction=name in BIAS_CORRECTED))
                tick()
            return tuple(hits)

        for name, curve in curves.items():
            first_hits[name] = hits_of(name, curve, measured[name].drift if name in measured else None)
        for name, curve in fresh.items():  # the same without drift, for comparison
            fresh_hits[name] = hits_of(name, curve, None)
        timings["first_hit"] = time.perf_counter() - began
    for name in curves:  # every count starts after its NQM's start-up delay
        delay = (measured[name].nqm if name in measured else nqm).delay
        curves[name] = delayed_curve(curves[name], delay)
        first_hits[name] = tuple(delayed_hit(hit, delay) for hit in first_hits.get(name, ()))
        if name in fresh:
            fresh[name] = delayed_curve(fresh[name], delay)
            fresh_hits[name] = tuple(delayed_hit(hit, delay) for hit in fresh_hits.get(name, ()))
    first_hits = {name: hits for name, hits in first_hits.items() if hits}
    timings["predict"] = time.perf_counter() - started
    timings["total"] = time.perf_counter() - start
    return Calibration(workload, config, seed, reference, spectra, nqm, curves, timings, measured, first_hits, every,
                       {name: (curve, fresh_hits.get(name, ())) for name, curve in fresh.items()})


def write_calibration(calibration: Calibration, out: Path) -> dict[str, Path]:
    """Write ``spectra.json``, ``nqm_problem.json``, ``prediction.json``, ``spectrum.png`` and
    ``prediction.png`` (and ``preconditioned.png`` with measured preconditioners) into ``out``
    (created if needed).

    Returns:
        File role → path.

    Raises:
        InputError: ``out`` cannot be written (see :func:`check_output_dir`; check it before calibrating).
    """
    out = Path(out)
    check_output_dir(out)
    try:
        return _write(calibration, out)
    except OSError as exc:
        raise InputError(f"output folder {out}: cannot write {exc.filename or ''}: {exc.strerror or exc}") from None


def read_nqm(folder: Path, optimizer: str | None = None) -> tuple[Problem, float]:
    """The NQM problem and target risk of a calibration folder's ``nqm_problem.json``: ``optimizer``'s own
    NQM where it was calibrated in its preconditioned coordinates (measured Adam or K-FAC, the file's
    ``"preconditioned"`` entries), else the reference run's (``None``, sgd, momentum, proxies).

    Raises:
        InputError: the file is missing or is not a calibration's NQM (one line naming it).

    Example:
        >>> problem, target = read_nqm("results/calibration/digits/loss-target", "adam")  # doctest: +SKIP
    """
    path = Path(folder) / "nqm_problem.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        body = stored.get("preconditioned", {}).get(optimizer, stored)
        problem = Problem(h=np.array(body["h"], float), c=np.array(body["c"], float),
                          s0=np.array(body["s0"], float), weights=np.array(body["weights"], float))
        return problem, float(body["target"])
    except FileNotFoundError:
        raise InputError(f"{path}: not found (a `batchlab calibrate --out` folder?)") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not a calibration's NQM ({type(exc).__name__}: {exc})") from None


def _label(name: str, curve: ScalingCurve, measured: MeasuredOptimizer | None) -> str:
    if measured is None:
        return f"{name} (NQM {curve.kind}, p = {curve.precond:g})"
    fit = measured.exponent.exponent
    return f"{name} (NQM {curve.kind}, measured P, fit p = {fit:.2f})"


def _write(calibration: Calibration, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for role, payload in (("spectra", calibration.spectra_dict()), ("nqm_problem", calibration.nqm_dict()),
                          ("prediction", calibration.prediction_dict())):
        path = out / f"{role}.json"
        path.write_text(dumps(payload, indent=1) + "\n")
        files[role] = path
    files["spectrum_figure"] = spectrum_figure(calibration.spectra, out / "spectrum.png",
                                               bulk_noise_ratio=calibration.nqm.bulk_noise_ratio)
    labels = {name: _label(name, curve, calibration.measured.get(name)) for name, curve in calibration.curves.items()}
    files["prediction_figure"] = prediction_figure(
        calibration.curves, out / "prediction.png",
        title=f"{calibration.workload.name}: calibrated NQM (checkpoint {calibration.reference.checkpoint_step})",
        labels=labels)
    if calibration.measured:
        files["preconditioned_figure"] = exponent_figure(
            calibration.spectra, {name: (m.spectra, m.exponent) for name, m in calibration.measured.items()},
            out / "preconditioned.png", min_curvature=calibration.config.model.min_curvature)
    return files
