"""Reading an NQM prediction file (``prediction.json``, as ``batchlab calibrate`` writes it): JAX-free.

One reader for everyone who needs the file: the study report (:mod:`batchlab.analysis.prediction`,
which reads ``<study>/calibration/prediction.json``) and the study spec's ``[tuning] centre =
"calibration"`` (:mod:`batchlab.study.centre`, which centres each cell's explore box on the predicted
hyperparameters).  The format is described in :mod:`batchlab.calibrate`; what this reader needs::

    {"source": "free text (optional)",
     "optimizers": {
        "sgd": {"batch_sizes": [16, 64, 256], "steps": [4100.0, 1050.0, null],
                "learning_rates": [0.09, 0.14, null],      # optional, > 0 (null: none)
                "momenta": [null, null, null],             # optional, in [0, 1) (null: none)
                "precond": 0.0,                            # optional, >= 0
                "units": "optimizer",                      # optional
                "critical_batch_size": 180.0,              # optional: a number or {"b_noise": ...}
                "members": {"b_noise_range": [120.0, 260.0]}},  # optional (an ensemble's seeds)
        ...}}

**Units of the predicted learning rates.**  The NQM stands in for some optimizers with a
preconditioned proxy (``P = H^-p``, ``p = precond``), whose learning rate is in the proxy's units and
not comparable with the optimizer's.  An entry's rates are in the optimizer's own units
(:attr:`PredictedOptimizer.optimizer_units`) when its ``"units"`` field is ``"optimizer"``; without a
``"units"`` field, when ``precond`` is absent or ``0``.  Any other ``"units"`` value, or ``precond > 0``
without one, means proxy units: such rates are never plotted against, compared with or used to
centre the optimizer's search.

Interpolation (:func:`interpolate`) is log–log: ``log η`` (or ``log(1 − β)`` for a momentum) linear in
``log B`` between the nearest predicted batch sizes with a value; outside them it is undefined (``nan``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
from typing import Any, Mapping

import numpy as np

from batchlab.errors import InputError

__all__ = ["PREDICTION_PATH", "PredictedOptimizer", "PredictionFile", "interpolate", "read_prediction"]

PREDICTION_PATH = pathlib.Path("calibration") / "prediction.json"
OPTIMIZER_UNITS = "optimizer"
_EMA = "+ema"


def interpolate(batch_sizes: Any, values: Any, at: float, *, one_minus: bool = False) -> float:
    """``values`` at batch size ``at``, log–log: ``log v`` (``one_minus``: ``log(1 − v)``) linear in ``log B``.

    Points whose value is missing (``nan``) or outside the transform's domain are skipped; ``at``
    outside the remaining points' batch sizes gives ``nan``.

    Example:
        >>> round(interpolate([16, 64], [0.1, 0.4], 32), 12)   # sqrt(0.1 * 0.4)
        0.2
        >>> round(interpolate([16, 64], [0.9, 0.99], 32, one_minus=True), 6)   # 1 - sqrt(0.1 * 0.01)
        0.968377
    """
    sizes = np.asarray(batch_sizes, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    base = 1.0 - values if one_minus else values
    ok = np.isfinite(sizes) & (sizes > 0) & np.isfinite(base) & (base > 0)
    if not ok.any() or not at > 0:
        return math.nan
    order = np.argsort(sizes[ok])
    x, y = np.log(sizes[ok][order]), np.log(base[ok][order])
    point = math.log(at)
    if point < x[0] - 1e-12 or point > x[-1] + 1e-12:
        return math.nan
    value = float(np.exp(np.interp(point, x, y)))
    return 1.0 - value if one_minus else value


@dataclasses.dataclass(frozen=True, eq=False)
class PredictedOptimizer:
    """One optimizer's entry of a prediction file.

    Attributes:
        name: its key in the file (a study optimizer's name).
        batch_sizes: predicted batch sizes (examples per step), distinct, > 0.
        steps: predicted steps to target (``nan``: unreachable).
        learning_rates: the NQM's tuned learning rate per batch size (``nan``: none; all ``nan`` when
            the file gives none).
        momenta: the NQM's tuned momentum per batch size (``nan``: none or not a momentum method).
        precond: the proxy's preconditioner power ``p`` (``0``: none).
        units: the entry's ``"units"`` field, if any.
        critical_batch_size: the file's ``critical_batch_size`` (its ``b_noise`` when an object;
            ``None`` when absent or null).
        critical_range: an ensemble calibration's range of its members' critical batch sizes
            (``members.b_noise_range``, :mod:`batchlab.calibrate.ensemble`); ``None`` otherwise.
    """

    name: str
    batch_sizes: np.ndarray
    steps: np.ndarray
    learning_rates: np.ndarray
    momenta: np.ndarray
    precond: float = 0.0
    units: str | None = None
    critical_batch_size: float | None = None
    critical_range: tuple[float, float] | None = None

    @property
    def optimizer_units(self) -> bool:
        """Whether the learning rates are in the optimizer's own units (see the module docstring)."""
        return self.units == OPTIMIZER_UNITS if self.units is not None else self.precond == 0.0

    def units_note(self) -> str:
        """Why the rates are (not) in the optimizer's units, for messages."""
        if self.units is not None:
            return f'"units": "{self.units}"'
        return f"precond = {self.precond:g}"

    def learning_rate_at(self, batch_size: float) -> float:
        """The predicted learning rate at ``batch_size`` (log–log interpolation; ``nan`` outside)."""
        return interpolate(self.batch_sizes, self.learning_rates, batch_size)

    def momentum_at(self, batch_size: float) -> float:
        """The predicted momentum at ``batch_size`` (``log(1 − β)`` vs ``log B``; ``nan`` outside or none)."""
        return interpolate(self.batch_sizes, self.momenta, batch_size, one_minus=True)


@dataclasses.dataclass(frozen=True, eq=False)
class PredictionFile:
    """A parsed prediction file.

    Attributes:
        path: where it was read.
        source: how the prediction was made (the ``source`` field, or built from ``batchlab
            calibrate``'s fields).
        optimizers: name → entry, in the file's order.
        sha256: the SHA-256 of the file's bytes (hex).
    """

    path: pathlib.Path
    source: str
    optimizers: Mapping[str, PredictedOptimizer]
    sha256: str

    def entry_for(self, optimizer: str) -> PredictedOptimizer | None:
        """The entry of study optimizer ``optimizer``: its own, else (for ``X+ema``) ``X``'s; None if neither."""
        if optimizer in self.optimizers:
            return self.optimizers[optimizer]
        return self.optimizers.get(optimizer.removesuffix(_EMA)) if optimizer.endswith(_EMA) else None


def _numbers(body: Mapping[str, Any], key: str, where: str, size: int | None) -> np.ndarray:
    values = body[key]
    if not isinstance(values, list) or any(isinstance(v, bool) or not (v is None or isinstance(v, (int, float)))
                                           for v in values):
        raise InputError(f"{where}: {key} must be a list of numbers (null for none)")
    out = np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    if size is not None and out.size != size:
        raise InputError(f"{where}: {key} has {out.size} entries, batch_sizes {size}")
    return out


def _entry(name: str, body: Any, path: pathlib.Path) -> PredictedOptimizer:
    where = f"{path}: optimizers.{name}"
    if not isinstance(body, Mapping) or "batch_sizes" not in body or "steps" not in body:
        raise InputError(f"{where} needs batch_sizes and steps")
    try:
        sizes = np.asarray(body["batch_sizes"], dtype=np.float64)
        steps = np.asarray([math.nan if s is None else s for s in body["steps"]], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: batch_sizes and steps must be lists of numbers") from None
    if sizes.ndim != 1 or sizes.shape != steps.shape or sizes.size == 0:
        raise InputError(f"{where}: batch_sizes and steps must be non-empty lists of equal length")
    if not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise InputError(f"{where}: batch sizes must be > 0")
    if np.unique(sizes).size != sizes.size:
        raise InputError(f"{where}: batch sizes must be distinct")
    nan = np.full(sizes.shape, math.nan)
    rates = _numbers(body, "learning_rates", where, sizes.size) if body.get("learning_rates") is not None else nan
    if np.any(rates <= 0):
        raise InputError(f"{where}: learning rates must be > 0 (null for none)")
    momenta = _numbers(body, "momenta", where, sizes.size) if body.get("momenta") is not None else nan
    if np.any((momenta < 0) | (momenta >= 1)):
        raise InputError(f"{where}: momenta must be in [0, 1) (null for none)")
    precond = body.get("precond", 0.0)
    if precond is None:
        precond = 0.0
    if isinstance(precond, bool) or not isinstance(precond, (int, float)) or not math.isfinite(precond) or precond < 0:
        raise InputError(f"{where}: precond must be a number >= 0")
    units = body.get("units")
    if units is not None and not isinstance(units, str):
        raise InputError(f"{where}: units must be a string")
    critical = body.get("critical_batch_size")
    if isinstance(critical, Mapping):
        critical = critical.get("b_noise")
    if critical is not None and (isinstance(critical, bool) or not isinstance(critical, (int, float))):
        raise InputError(f"{where}: critical_batch_size must be a number")
    members = body.get("members")
    spread = members.get("b_noise_range") if isinstance(members, Mapping) else None
    if spread is not None:
        if (not isinstance(spread, list) or len(spread) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                                    for v in spread) or not spread[0] <= spread[1]):
            raise InputError(f"{where}: members.b_noise_range must be [low, high] with low <= high")
        spread = (float(spread[0]), float(spread[1]))
    return PredictedOptimizer(name, sizes, steps, rates, momenta, float(precond), units,
                              None if critical is None else float(critical), spread)


def read_prediction(path: str | pathlib.Path) -> PredictionFile:
    """Read and check a prediction file.

    Raises:
        InputError: a missing, unreadable or malformed file (one line naming the problem).
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"prediction file not found: {path}") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("optimizers"), Mapping):
        raise InputError(f"{path}: expected an object with an 'optimizers' object")
    entries = {str(name): _entry(str(name), body, path) for name, body in data["optimizers"].items()}
    source = data.get("source")
    if not source and data.get("workload"):  # batchlab calibrate's own format
        source = (f"calibrated NQM of {data['workload']} ({data.get('curvature', 'curvature')} spectrum "
                  f"measured after {data.get('checkpoint_step', '?')} reference steps)")
    return PredictionFile(path, str(source or ""), entries, hashlib.sha256(raw).hexdigest())
