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

__all__ = ["PREDICTION_PATH", "PredictedCurve", "Prediction", "load_prediction", "compare_critical"]

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


def compare_critical(prediction: Prediction, critical: pd.DataFrame) -> pd.DataFrame:
    """Predicted vs measured critical batch size (hyperbola fit ``B_noise``) per optimizer, with
    ``ratio = predicted / measured``; optimizers present in both."""
    measured = dict(zip(critical["optimizer"], critical["b_noise"])) if not critical.empty else {}
    overhead = dict(zip(critical["optimizer"], critical["overhead"])) if not critical.empty else {}
    rows = []
    for name, curve in prediction.curves.items():
        if name not in measured:
            continue
        value = float(measured[name])
        ratio = curve.critical_batch_size / value if value > 0 and math.isfinite(value) else math.nan
        rows.append({"optimizer": name, "predicted": curve.critical_batch_size, "measured_b_noise": value,
                     "measured_overhead": float(overhead[name]), "ratio": ratio})
    return pd.DataFrame(rows, columns=["optimizer", "predicted", "measured_b_noise", "measured_overhead", "ratio"])
