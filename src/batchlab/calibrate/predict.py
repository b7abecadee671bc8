"""Predicted steps to target versus batch size for the study's optimizers, from a calibrated NQM.

Each study optimizer is an NQM optimizer kind on an NQM problem.  ``sgd`` and ``momentum`` run on the NQM
of the reference run (plain coordinates, ``p = 0``).  ``adam`` and ``kfac`` have two modes
(``CalibrationConfig.preconditioner``, ``batchlab calibrate --preconditioner``):

- ``measured`` (default): the NQM is built in the optimizer's own coordinates ``z = P^{1/2} θ`` from
  a tuned reference run of that optimizer — ``P`` is its actual preconditioner at the checkpoint
  (:mod:`batchlab.calibrate.precondition`), the curvature ``P^{-1/2} H P^{-1/2}`` and noise
  ``P^{-1/2} Σ P^{-1/2}`` are measured there — and predicted with the plain momentum kind (``p = 0``
  in those coordinates).  The NQM's learning rate is then in the optimizer's units: K-FAC's ``α``
  itself; for Adam, whose ``m`` is an average, ``α = lr (1 − β)``, i.e. Adam's rate is the NQM's
  effective rate ``α / (1 − β)``.  The power ``p`` of ``H^{-p}`` that best matches the measured
  spectrum is reported as a diagnostic (:mod:`batchlab.calibrate.exponent`).
- ``proxy``: the reference run's NQM preconditioned with a guessed power ``p`` (``P = H^-p``), the
  table below (:data:`PROXIES`; the only mode before measured preconditioners):

=========  ==========  =====  =============================================================================
study      NQM kind    p      why (proxy mode; in measured mode adam and kfac keep the kind, p = 0)
=========  ==========  =====  =============================================================================
sgd        sgd         0      exact: SGD on a quadratic is the NQM's SGD
momentum   momentum    0      exact: heavy ball in velocity form (``batchlab.optim.momentum``)
adam       momentum    0.5    Adam divides by ``√v``, ``v`` ≈ the diagonal of the gradient second moment ≈
                              Fisher ≈ H, so its preconditioner ≈ ``H^-1/2``; β₁ acts as momentum
kfac       momentum    0.75   K-FAC approximates ``(F + λI)^-1``: Newton-like (p → 1) where ``h ≫ λ``,
                              plain where ``h ≪ λ``; one power must cover both, and p = 1 would inflate
                              the noise ``∝ c/h²`` of every flat bulk direction — damping prevents that
                              in K-FAC, so we take the largest power the paper plots, 0.75
=========  ==========  =====  =============================================================================

Every curve is :func:`batchlab.nqm.scaling.scaling_curve` (tuned hyperparameters at each batch size,
exact certified steps) on its calibrated problem, so a prediction equals the engine's numbers.  Batch
sizes are in examples per step, the unit of the NQM's ``C / B`` and of studies.

A :class:`SearchBox` per optimizer (``batchlab calibrate --search-space STUDY.toml``) makes the
calibration tune that optimizer's curve inside the study's search box instead of over every value: the
curve is then what that study's tuning can find (:func:`batchlab.nqm.drift.tuned_in_box`, an exhaustive
grid on the exact expected risk, then the first hit at rate multiples inside the box).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

import numpy as np

from batchlab.checks import check_positive, finite_or_none
from batchlab.critical import CriticalBatchSize
from batchlab.errors import InputError
from batchlab.nqm.optimize import SearchConfig
from batchlab.nqm.scaling import ScalingCurve, scaling_curve
from batchlab.nqm.spectrum import Problem

__all__ = ["Proxy", "PROXIES", "SearchBox", "predict", "optimizer_entry", "critical_entry"]


@dataclasses.dataclass(frozen=True)
class Proxy:
    """An NQM stand-in for a study optimizer: a ``kind`` of :data:`~batchlab.nqm.optimize.KIND_TABLE`
    (``"sgd"`` or ``"momentum"`` here) and power ``precond``."""

    kind: str
    precond: float


PROXIES: Mapping[str, Proxy] = {
    "sgd": Proxy("sgd", 0.0),
    "momentum": Proxy("momentum", 0.0),
    "adam": Proxy("momentum", 0.5),
    "kfac": Proxy("momentum", 0.75),
}


@dataclasses.dataclass(frozen=True)
class SearchBox:
    """Where a study tunes an optimizer: its learning rate in ``learning_rate`` (the optimizer's own units:
    Adam's ``lr``) and its momentum (heavy ball's ``β``, Adam's ``β₁``, K-FAC's momentum) in ``momentum``
    (equal ends: fixed at that value; ``None``: the optimizer has none).  The calibration tunes its
    predicted curve inside it (:func:`batchlab.nqm.drift.tuned_in_box`) when given one."""

    learning_rate: tuple[float, float]
    momentum: tuple[float, float] | None = None

    def check(self, name: str) -> None:
        """Raise :class:`InputError` naming ``name`` unless ``0 < low <= high`` (finite) and momenta in [0, 1)."""
        low, high = self.learning_rate
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            raise InputError(f"{name}'s search box: learning rate needs 0 < low <= high, got [{low:g}, {high:g}]")
        if self.momentum is not None:
            low, high = self.momentum
            if not 0.0 <= low <= high < 1.0:
                raise InputError(f"{name}'s search box: momentum needs 0 <= low <= high < 1, got [{low:g}, {high:g}]")

    def momenta(self, points: int = 9) -> list[float]:
        """The momenta the box's grid tries: ``points`` values with ``1 − β`` log-spaced between the ends
        (one where fixed; ``[0.0]`` without a momentum)."""
        if self.momentum is None:
            return [0.0]
        low, high = self.momentum
        if low == high:
            return [float(low)]
        return [float(1.0 - v) for v in np.geomspace(1.0 - low, 1.0 - high, int(points))]

    def as_dict(self) -> dict:
        return {"learning_rate": list(self.learning_rate),
                "momentum": None if self.momentum is None else list(self.momentum)}


def predict(problem: Problem, *, target: float, batch_sizes: Sequence[float],
            optimizers: Mapping[str, Proxy] = PROXIES, config: SearchConfig = SearchConfig(),
            progress: Callable[[int], None] | None = None) -> dict[str, ScalingCurve]:
    """Tuned NQM scaling curves for each study optimizer.

    Args:
        problem: the (calibrated) NQM problem.
        target: the NQM target risk.
        batch_sizes: batch sizes (examples per step).
        optimizers: study name → :class:`Proxy` (default :data:`PROXIES`).
        config: the NQM hyperparameter search effort.
        progress: called with 1 after every (optimizer, batch size).

    Returns:
        Study optimizer name → :class:`~batchlab.nqm.scaling.ScalingCurve`.

    Raises:
        InputError: no optimizers, a non-positive target, bad batch sizes or powers.

    Example:
        >>> from batchlab.nqm import power_law
        >>> curves = predict(power_law(100), target=0.05, batch_sizes=[4, 64],
        ...                  optimizers={"sgd": PROXIES["sgd"]})
        >>> curves["sgd"].steps.tolist()                                  # doctest: +SKIP
    """
    if not optimizers:
        raise InputError("no optimizers to predict")
    check_positive(target, "the NQM target")
    return {name: scaling_curve(problem, proxy.kind, batch_sizes, target=target, precond=proxy.precond,
                                config=config, progress=progress)
            for name, proxy in optimizers.items()}


def optimizer_entry(curve: ScalingCurve) -> dict:
    """One optimizer's entry of ``prediction.json`` (see :mod:`batchlab.calibrate`)."""
    critical = curve.critical
    return {
        "nqm_kind": curve.kind,
        "precond": curve.precond,
        "batch_sizes": [float(b) for b in curve.batch_sizes],
        "steps": [None if finite_or_none(s) is None else int(s) for s in curve.steps],
        "learning_rates": [r.learning_rate for r in curve.rows],
        "momenta": [r.momentum for r in curve.rows],
        "critical_batch_size": critical_entry(critical),
    }


def critical_entry(critical: CriticalBatchSize) -> dict:
    """``{"b_noise", "overhead"}`` of a curve's critical batch size (``null`` where undefined)."""
    return {"b_noise": finite_or_none(None if critical.fit is None else critical.fit.b_noise),
            "overhead": finite_or_none(critical.overhead)}
