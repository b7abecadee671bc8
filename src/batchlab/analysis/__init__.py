"""Analysis of a study's store: steps per (optimizer, batch size) with intervals (the median over
seeds of the best configuration for replicated studies, :mod:`batchlab.analysis.replicated`; the
best trial otherwise), winning hyperparameters, critical batch sizes with intervals, pairwise
verdicts, EMA decays, NQM predictions.

Reads the store through :mod:`batchlab.store.frames`; never imports JAX or trains.

Example::

    from batchlab.analysis import analyze
    result = analyze("runs/quick")
    result.best[["optimizer", "batch_size", "best_steps", "steps_low", "steps_high"]]
    result.critical[["optimizer", "b_noise", "overhead"]]
"""

from batchlab.analysis.prediction import Prediction, compare_critical, compare_hyperparameters, load_prediction
from batchlab.analysis.scaling import (
    DEFAULT_RESAMPLES,
    MAX_RESAMPLES,
    best_per_cell,
    bootstrap_minimum,
    check_resamples,
    critical_batch_sizes,
    effective_rate,
    ema_decay_table,
)
from batchlab.analysis.replicated import is_replicated, replicated_cells, replicated_critical, verdicts
from batchlab.analysis.study import StudyAnalysis, analyze

__all__ = [
    "DEFAULT_RESAMPLES",
    "MAX_RESAMPLES",
    "Prediction",
    "StudyAnalysis",
    "analyze",
    "best_per_cell",
    "bootstrap_minimum",
    "check_resamples",
    "compare_critical",
    "compare_hyperparameters",
    "critical_batch_sizes",
    "effective_rate",
    "ema_decay_table",
    "is_replicated",
    "load_prediction",
    "replicated_cells",
    "replicated_critical",
    "verdicts",
]
