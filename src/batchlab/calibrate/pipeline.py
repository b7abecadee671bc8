"""The whole calibration: reference run → measurement at the checkpoint → NQM → predicted curves → files.

Keys: the reference run follows ``train``'s seed convention (see :mod:`batchlab.calibrate.reference`);
every measurement key derives from ``fold_in(PRNGKey(seed), 1)``: the loss-measurement batch, then the
curvature batch, noise batch, Lanczos start, SLQ probes and sketch signs (see
:func:`batchlab.calibrate.measure.measure`).  Equal arguments give identical files (up to timings).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import jax

from batchlab.calibrate.figures import prediction_figure, spectrum_figure
from batchlab.calibrate.measure import MeasureConfig, Spectra, measure
from batchlab.calibrate.model import CalibratedProblem, ModelConfig, build_problem
from batchlab.calibrate.operators import chunk_batch, output_loss
from batchlab.calibrate.predict import PROXIES, optimizer_entry, predict
from batchlab.calibrate.progress import Stages, no_progress
from batchlab.calibrate.reference import ReferenceConfig, ReferenceRun, reference_anchor, run_reference
from batchlab.checks import check_at_least, check_integer
from batchlab.jsonsafe import dumps
from batchlab.errors import InputError
from batchlab.nqm.scaling import ScalingCurve, check_batch_sizes

__all__ = ["CalibrationConfig", "Calibration", "calibrate", "write_calibration", "check_output_dir",
           "DEFAULT_BATCH_SIZES", "OUTPUT_FILES"]

DEFAULT_BATCH_SIZES = tuple(float(2**k) for k in range(2, 15, 2))  # 4, 16, …, 16384
OUTPUT_FILES = ("spectra.json", "nqm_problem.json", "prediction.json", "spectrum.png", "prediction.png")


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
    """

    reference: ReferenceConfig = ReferenceConfig()
    measure: MeasureConfig = MeasureConfig()
    model: ModelConfig = ModelConfig()
    batch_sizes: tuple[float, ...] = DEFAULT_BATCH_SIZES
    optimizers: tuple[str, ...] = tuple(PROXIES)
    loss_examples: int = 4096

    def check(self) -> None:
        """Raise :class:`InputError` on the first invalid setting (before any work is done)."""
        unknown = [name for name in self.optimizers if name not in PROXIES]
        if unknown or not self.optimizers:
            raise InputError(f"unknown optimizer(s) {', '.join(unknown) or '(none given)'}; "
                             f"valid: {', '.join(PROXIES)}")
        check_batch_sizes(self.batch_sizes)
        check_at_least(self.loss_examples, "loss_examples", 1)
        self.reference.check()
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
        if ref.target_loss is not None and not self.model.loss_floor < ref.target_loss:
            raise InputError(f"the loss floor ({self.model.loss_floor:g}) must be below the loss at the target "
                             f"({ref.target_loss:g})")
        if self.measure.curvature == "ggn" and workload.loss_kind != "quadratic":
            output_loss(workload.loss_kind)  # raises for a loss without an output-space (Gauss-Newton) form
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
class Calibration:
    """A finished calibration (see :func:`calibrate`)."""

    workload: Any
    config: CalibrationConfig
    seed: int
    reference: ReferenceRun
    spectra: Spectra
    nqm: CalibratedProblem
    curves: dict[str, ScalingCurve]
    timings: dict[str, float]

    def prediction_dict(self) -> dict[str, Any]:
        """The ``prediction.json`` object (format in :mod:`batchlab.calibrate`)."""
        w, ref = self.workload, self.reference
        noise = self.spectra.noise
        return {
            "workload": w.name,
            "checkpoint_step": ref.checkpoint_step,
            "target": {"metric": w.target_metric, "value": float(w.target_value), "nqm_target": self.nqm.target,
                       "relative": self.nqm.relative_target, "initial_loss": ref.initial_loss,
                       "target_loss": ref.target_loss, "target_step": ref.target_step},
            "optimizers": {name: optimizer_entry(curve) for name, curve in self.curves.items()},
            "noise_scales": {"b_simple": noise.as_dict()["b_simple"], "b_noise": noise.as_dict()["b_noise"]},
            "reference": {"optimizer": self.config.reference.optimizer,
                          "batch_size": self.config.reference.batch_size,
                          "hyperparameters": dict(ref.hyperparameters), "median_steps": ref.median_steps,
                          "seeds": self.config.reference.seeds,
                          "tuning": [{"learning_rate": rate, "steps": steps} for rate, steps in ref.trials]},
            "initial_exponent": self.nqm.initial_exponent, "initial_rule": self.nqm.initial_rule,
            "anchor": {"batch_size": float(self.config.reference.batch_size), "steps": ref.median_steps,
                       "nqm_steps": self.nqm.as_dict()["anchor_steps"]},
            "curvature": self.spectra.curvature,
            "seed": self.seed,
        }

    def spectra_dict(self) -> dict[str, Any]:
        """The ``spectra.json`` object (format in :mod:`batchlab.calibrate`)."""
        return {"workload": self.workload.name, "checkpoint_step": self.reference.checkpoint_step,
                "seed": self.seed, **self.spectra.as_dict(), "timings": self.timings}


def calibrate(workload: Any, config: CalibrationConfig = CalibrationConfig(), *, seed: int = 0,
              stages: Stages = no_progress) -> Calibration:
    """Calibrate an NQM on ``workload`` and predict its batch-size scaling.

    Args:
        workload: a :class:`~batchlab.workloads.base.Workload`.
        config: the settings (validated first).
        seed: the seed of the reference run and of every measurement.
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
                        anchor=reference_anchor(config.reference, reference), config=config.model)
    tick = stages("NQM predictions", len(config.optimizers) * len(check_batch_sizes(config.batch_sizes)))
    curves = predict(nqm.problem, target=nqm.target, batch_sizes=config.batch_sizes,
                     optimizers={name: PROXIES[name] for name in config.optimizers}, progress=lambda _: tick())
    timings["predict"] = time.perf_counter() - start - timings["reference"] - timings["measure"]
    timings["total"] = time.perf_counter() - start
    return Calibration(workload, config, seed, reference, spectra, nqm, curves, timings)


def write_calibration(calibration: Calibration, out: Path) -> dict[str, Path]:
    """Write ``spectra.json``, ``nqm_problem.json``, ``prediction.json``, ``spectrum.png`` and
    ``prediction.png`` into ``out`` (created if needed).

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


def _write(calibration: Calibration, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for role, payload in (("spectra", calibration.spectra_dict()), ("nqm_problem", calibration.nqm.as_dict()),
                          ("prediction", calibration.prediction_dict())):
        path = out / f"{role}.json"
        path.write_text(dumps(payload, indent=1) + "\n")
        files[role] = path
    files["spectrum_figure"] = spectrum_figure(calibration.spectra, out / "spectrum.png",
                                               bulk_noise_ratio=calibration.nqm.bulk_noise_ratio)
    files["prediction_figure"] = prediction_figure(
        calibration.curves, out / "prediction.png",
        title=f"{calibration.workload.name}: calibrated NQM (checkpoint {calibration.reference.checkpoint_step})")
    return files
