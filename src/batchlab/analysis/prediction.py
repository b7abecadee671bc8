"""An optional NQM prediction to compare a study with: ``<study>/calibration/prediction.json``.

The calibration workflow (``batchlab calibrate``) writes it; the report overlays the predicted
curves on the measured ones and compares critical batch sizes.  Format::

    {
      "source": "free text: how the prediction was made",
      "optimizers": {
        "sgd": {"batch_sizes": [16, 64, 256], "steps": [4100.0, 1050.0, null],
                "critical_batch_size": 180.0},
        ...
      }
    }

Optimizer keys are matched to the study's optimizer names; ``steps`` may contain ``null`` for
unreachable batch sizes; ``critical_batch_size`` is optional: a number, or an object whose
``"b_noise"`` is used (as ``batchlab calibrate`` writes it); default: the hyperbola fit's ``B_noise``
of the predicted curve, :func:`batchlab.critical.critical_batch_size`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Mapping

import numpy as np
import pandas as pd

from batchlab.critical import critical_batch_size
from batchlab.errors import InputError

__all__ = ["PREDICTION_PATH", "PredictedCurve", "Prediction", "load_prediction", "compare_critical", "within_factor"]

PREDICTION_PATH = pathlib.Path("calibration") / "prediction.json"


@dataclasses.dataclass(frozen=True)
class PredictedCurve:
    """Predicted steps to target vs batch size for one optimizer (``nan``: unreachable)."""

    batch_sizes: np.ndarray
    steps: np.ndarray
    critical_batch_size: float


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The parsed prediction file."""

    source: str
    curves: Mapping[str, PredictedCurve]
    path: pathlib.Path


def _curve(name: str, body: Any, path: pathlib.Path) -> PredictedCurve:
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
    critical = body.get("critical_batch_size")
    if isinstance(critical, Mapping):
        critical = critical.get("b_noise")
    if critical is None:
        fit = critical_batch_size(sizes, steps).fit
        critical = math.nan if fit is None else fit.b_noise
    elif isinstance(critical, bool) or not isinstance(critical, (int, float)):
        raise InputError(f"{where}: critical_batch_size must be a number")
    return PredictedCurve(sizes, steps, float(critical))


def load_prediction(folder: str | pathlib.Path) -> Prediction | None:
    """The prediction stored with the study in ``folder``, or ``None`` if there is none.

    Raises:
        InputError: the file exists but is malformed (one line naming the problem).
    """
    path = pathlib.Path(folder) / PREDICTION_PATH
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("optimizers"), Mapping):
        raise InputError(f"{path}: expected an object with an 'optimizers' object")
    curves = {str(name): _curve(str(name), body, path) for name, body in data["optimizers"].items()}
    source = data.get("source")
    if not source and data.get("workload"):  # batchlab calibrate's own format
        source = (f"calibrated NQM of {data['workload']} ({data.get('curvature', 'curvature')} spectrum "
                  f"measured after {data.get('checkpoint_step', '?')} reference steps)")
    return Prediction(str(source or ""), curves, path)


def within_factor(predicted: float, low: float, high: float, factor: float = 2.0) -> str:
    """Is ``predicted`` within ``factor`` of a measured value known to lie in ``[low, high]``?
    ``supported`` if every value of the interval is (``predicted / high ≥ 1/factor`` and
    ``predicted / low ≤ factor``), ``contradicted`` if none is (the interval lies wholly more than
    ``factor`` above or below ``predicted``), else — or with an unknown end — ``inconclusive``."""
    if not all(math.isfinite(v) and v > 0 for v in (predicted, low, high)) or low > high:
        return "inconclusive"
    if predicted / high >= 1 / factor and predicted / low <= factor:
        return "supported"
    if predicted / low < 1 / factor or predicted / high > factor:
        return "contradicted"
    return "inconclusive"


def compare_critical(prediction: Prediction, critical: pd.DataFrame, *, factor: float = 2.0) -> pd.DataFrame:
    """Predicted vs measured critical batch size (hyperbola fit ``B_noise``) per optimizer, for the
    optimizers present in both: ``ratio = predicted / measured``, the ratio's interval from the
    measurement's (``ratio_low = predicted / measured_high``, ``ratio_high = predicted / measured_low``)
    and ``within`` — the verdict on "the prediction is within ``factor`` (2x) of the measurement"
    (:func:`within_factor`; ``inconclusive`` when the study has no interval)."""
    columns = ["optimizer", "predicted", "measured_b_noise", "measured_low", "measured_high",
               "measured_overhead", "ratio", "ratio_low", "ratio_high", "within"]
    rows = []
    for row in ([] if critical.empty else critical.to_dict("records")):
        name = row["optimizer"]
        if name not in prediction.curves:
            continue
        predicted = prediction.curves[name].critical_batch_size
        value = float(row["b_noise"])
        low, high = float(row.get("b_noise_low", math.nan)), float(row.get("b_noise_high", math.nan))
        ratio = predicted / value if value > 0 and math.isfinite(value) else math.nan
        rows.append({"optimizer": name, "predicted": predicted, "measured_b_noise": value,
                     "measured_low": low, "measured_high": high, "measured_overhead": float(row["overhead"]),
                     "ratio": ratio,
                     "ratio_low": predicted / high if high > 0 and math.isfinite(high) else math.nan,
                     "ratio_high": predicted / low if low > 0 and math.isfinite(low) else math.nan,
                     "within": within_factor(predicted, low, high, factor)})
    return pd.DataFrame(rows, columns=columns)
