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
of the predicted curve, :func:`batchlab.critical.critical_batch_size`.  The file is parsed by
:func:`batchlab.store.prediction.read_prediction` (shared with the study spec's ``centre``), which
also reads the optional ``learning_rates``, ``momenta`` and the rule that says whether those are in
the optimizer's own units (``precond`` 0 or ``"units": "optimizer"``); only such entries are compared
with the winning hyperparameters (:func:`compare_hyperparameters`) and plotted against them.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Mapping

import numpy as np
import pandas as pd

from batchlab.critical import critical_batch_size
from batchlab.store.prediction import PREDICTION_PATH, PredictedOptimizer, PredictionFile, read_prediction

__all__ = ["PREDICTION_PATH", "PredictedCurve", "Prediction", "load_prediction", "compare_critical",
           "compare_hyperparameters", "within_factor"]


@dataclasses.dataclass(frozen=True)
class PredictedCurve:
    """Predicted steps to target vs batch size for one optimizer (``nan``: unreachable), and the NQM's
    tuned learning rate and momentum per batch size (``nan``: none); ``optimizer_units``: whether those
    learning rates are in the optimizer's own units (else a preconditioned proxy's: not comparable)."""

    batch_sizes: np.ndarray
    steps: np.ndarray
    critical_batch_size: float
    learning_rates: np.ndarray | None = None
    momenta: np.ndarray | None = None
    optimizer_units: bool = False
    critical_range: tuple[float, float] | None = None


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The parsed prediction file (``file``: as the shared reader parsed it)."""

    source: str
    curves: Mapping[str, PredictedCurve]
    path: pathlib.Path
    file: PredictionFile | None = None


def _curve(entry: PredictedOptimizer) -> PredictedCurve:
    critical = entry.critical_batch_size
    if critical is None:
        fit = critical_batch_size(entry.batch_sizes, entry.steps).fit
        critical = math.nan if fit is None else fit.b_noise
    return PredictedCurve(entry.batch_sizes, entry.steps, float(critical), entry.learning_rates, entry.momenta,
                          entry.optimizer_units, entry.critical_range)


def load_prediction(folder: str | pathlib.Path) -> Prediction | None:
    """The prediction stored with the study in ``folder``, or ``None`` if there is none.

    Raises:
        InputError: the file exists but is malformed (one line naming the problem).
    """
    path = pathlib.Path(folder) / PREDICTION_PATH
    if not path.is_file():
        return None
    file = read_prediction(path)
    return Prediction(file.source, {name: _curve(entry) for name, entry in file.optimizers.items()}, path, file)


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
    (:func:`within_factor`; ``inconclusive`` when the study has no interval).  ``predicted_low`` /
    ``predicted_high``: an ensemble calibration's range over its seeds (``nan`` for one calibration);
    the verdict is the ensemble's median curve's."""
    columns = ["optimizer", "predicted", "predicted_low", "predicted_high", "measured_b_noise", "measured_low",
               "measured_high", "measured_overhead", "ratio", "ratio_low", "ratio_high", "within"]
    rows = []
    for row in ([] if critical.empty else critical.to_dict("records")):
        name = row["optimizer"]
        if name not in prediction.curves:
            continue
        predicted = prediction.curves[name].critical_batch_size
        spread = prediction.curves[name].critical_range or (math.nan, math.nan)
        value = float(row["b_noise"])
        low, high = float(row.get("b_noise_low", math.nan)), float(row.get("b_noise_high", math.nan))
        ratio = predicted / value if value > 0 and math.isfinite(value) else math.nan
        rows.append({"optimizer": name, "predicted": predicted, "predicted_low": spread[0],
                     "predicted_high": spread[1], "measured_b_noise": value,
                     "measured_low": low, "measured_high": high, "measured_overhead": float(row["overhead"]),
                     "ratio": ratio,
                     "ratio_low": predicted / high if high > 0 and math.isfinite(high) else math.nan,
                     "ratio_high": predicted / low if low > 0 and math.isfinite(low) else math.nan,
                     "within": within_factor(predicted, low, high, factor)})
    return pd.DataFrame(rows, columns=columns)


def compare_hyperparameters(prediction: Prediction, best: pd.DataFrame) -> pd.DataFrame:
    """The NQM's predicted learning rate and momentum (log–log interpolated at each batch size,
    :func:`batchlab.store.prediction.interpolate`) next to each cell's winning ones.

    Rows: the cells of ``best`` whose optimizer has a prediction entry (its own, or ``X``'s for ``X+ema``)
    with learning rates in the optimizer's own units; ``ratio = winning / predicted`` learning rate;
    momentum columns are ``nan`` where the optimizer has none or the prediction gives none.
    """
    columns = ["optimizer", "batch_size", "winning_learning_rate", "predicted_learning_rate", "ratio",
               "winning_momentum", "predicted_momentum"]
    rows = []
    file = prediction.file
    if file is None or best.empty:
        return pd.DataFrame(rows, columns=columns)
    for row in best.to_dict("records"):
        entry = file.entry_for(str(row["optimizer"]))
        if entry is None or not entry.optimizer_units:
            continue
        size = float(row["batch_size"])
        winning = float(row.get("hp_learning_rate", math.nan))
        predicted = entry.learning_rate_at(size)
        momentum = row.get("hp_momentum", math.nan)
        momentum = math.nan if momentum is None else float(momentum)
        rows.append({"optimizer": row["optimizer"], "batch_size": int(row["batch_size"]),
                     "winning_learning_rate": winning, "predicted_learning_rate": predicted,
                     "ratio": winning / predicted if predicted > 0 else math.nan,
                     "winning_momentum": momentum,
                     "predicted_momentum": entry.momentum_at(size) if math.isfinite(momentum) else math.nan})
    return pd.DataFrame(rows, columns=columns)
