"""Everything the report shows about one study, computed from its store."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pandas as pd

from batchlab.analysis.replicated import is_replicated, replicated_cells, replicated_critical, verdicts
from batchlab.analysis.prediction import Prediction, compare_critical, compare_hyperparameters, load_prediction
from batchlab.analysis.scaling import DEFAULT_RESAMPLES, best_per_cell, check_resamples, critical_batch_sizes, ema_decay_table
from batchlab.store.frames import mark_interrupted, study_spec, trials_frame, tracks_frame
from batchlab.store import FINISHED, open_store

__all__ = ["StudyAnalysis", "analyze"]


@dataclasses.dataclass(frozen=True)
class StudyAnalysis:
    """The analysed study.

    Attributes:
        folder: the study folder.
        spec: the stored canonical spec.
        trials: one row per trial (:func:`batchlab.store.frames.trials_frame`; ``running`` trials
            whose runner died show as ``interrupted``).
        best: one row per (optimizer, batch size) (:func:`batchlab.analysis.best_per_cell`).
        critical: one row per optimizer (:func:`batchlab.analysis.critical_batch_sizes`).
        ema: best steps per EMA decay (:func:`batchlab.analysis.ema_decay_table`).
        prediction: the NQM prediction stored with the study, if any.
        prediction_vs_measured: predicted vs measured critical batch sizes (empty without one).
        verdicts: pairwise claims with supported / contradicted / inconclusive
            (:func:`batchlab.analysis.replicated.verdicts`; replicated studies only, else empty).
        hyperparameters_vs_prediction: the NQM's predicted learning rate and momentum next to each
            cell's winning ones (:func:`batchlab.analysis.prediction.compare_hyperparameters`; empty
            without a prediction in the optimizers' own units).
    """

    folder: pathlib.Path
    spec: dict[str, Any]
    trials: pd.DataFrame
    best: pd.DataFrame
    critical: pd.DataFrame
    ema: pd.DataFrame
    prediction: Prediction | None
    prediction_vs_measured: pd.DataFrame
    verdicts: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    hyperparameters_vs_prediction: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    @property
    def replicated(self) -> bool:
        """Whether cells answer with the median over seeds (a replicate phase ran)."""
        return is_replicated(self.trials)

    @property
    def finished(self) -> int:
        """Trials finished (reached, budget, diverged or pruned); the rest run on resume."""
        return int(self.trials["status"].isin(FINISHED).sum())

    @property
    def complete(self) -> bool:
        """Whether every trial of the study has finished."""
        return self.finished == len(self.trials)

    @property
    def optimizers(self) -> list[str]:
        return [o["name"] for o in self.spec.get("optimizers", [])] or list(dict.fromkeys(self.trials["optimizer"]))


def analyze(folder: str | pathlib.Path, *, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
            critical_resamples: int = 200, tolerance: float = 0.2, seed: int = 0) -> StudyAnalysis:
    """Analyse the study in ``folder`` (see :mod:`batchlab.analysis.scaling` for definitions).

    Raises:
        InputError: no readable study in ``folder``, resamples outside ``[1, MAX_RESAMPLES]``, or a
            malformed prediction file.
    """
    check_resamples(resamples, "resamples")
    check_resamples(critical_resamples, "critical_resamples")
    folder = pathlib.Path(folder)
    with open_store(folder) as store:
        spec = study_spec(store)
        trials = mark_interrupted(trials_frame(store), folder)
        tracks = tracks_frame(store)
    order = [o["name"] for o in spec.get("optimizers", [])] or None
    if is_replicated(trials):
        best, estimates = replicated_cells(trials, confidence=confidence, resamples=resamples, seed=seed, order=order)
        critical = replicated_critical(best, estimates, confidence=confidence, tolerance=tolerance)
        judged = verdicts(best, critical, order=order)
    else:
        best = best_per_cell(trials, confidence=confidence, resamples=resamples, seed=seed, order=order)
        critical = critical_batch_sizes(trials, tolerance=tolerance, confidence=confidence,
                                        resamples=critical_resamples, seed=seed, order=order)
        judged = pd.DataFrame(columns=["a", "b", "batch_size", "claim", "verdict", "evidence"])
    prediction = load_prediction(folder)
    versus = compare_critical(prediction, critical) if prediction is not None else pd.DataFrame()
    rates = compare_hyperparameters(prediction, best) if prediction is not None else pd.DataFrame()
    search = trials[trials["phase"] != "replicate"] if "phase" in trials else trials
    return StudyAnalysis(folder, spec, trials, best, critical, ema_decay_table(tracks[tracks["trial_id"].isin(search["id"])]),
                         prediction, versus, judged, rates)
