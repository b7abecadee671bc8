"""A study's store as pandas data frames, and export to CSV and Parquet.  Never imports JAX.

* :func:`trials_frame`: one row per trial: id, optimizer, batch size, index, seed, budget, status,
  steps to target (``NaN`` unless reached), steps run, pruning bound, best EMA decay, wall and
  evaluation time, host, worker, attempts, error, every hyperparameter as ``hp_<name>`` and every
  final metric as ``final_<name>``.
* :func:`tracks_frame`: one row per (trial, track): ``main`` or ``ema=γ``, with its status and steps.
* :func:`curves_frame`: long format ``(trial_id, track, step, metric, value)``.
"""

from __future__ import annotations

import json
import pathlib

import pandas as pd

from batchlab.study.store import StudyStore, open_store

__all__ = ["trials_frame", "tracks_frame", "curves_frame", "study_spec", "export_study"]


def _frame(store: StudyStore, table: str) -> pd.DataFrame:
    columns, rows = store.rows(table)
    return pd.DataFrame.from_records(rows, columns=columns)


def _store(source: StudyStore | str | pathlib.Path) -> tuple[StudyStore, bool]:
    if isinstance(source, StudyStore):
        return source, False
    return open_store(source), True


def study_spec(source: StudyStore | str | pathlib.Path) -> dict:
    """The canonical spec stored with the study."""
    store, owned = _store(source)
    try:
        return store.spec() or {}
    finally:
        if owned:
            store.close()


def trials_frame(source: StudyStore | str | pathlib.Path) -> pd.DataFrame:
    """Every trial as a row (see the module docstring); sorted by optimizer, batch size, index."""
    store, owned = _store(source)
    try:
        raw = _frame(store, "trials")
    finally:
        if owned:
            store.close()
    configs = [json.loads(text) for text in raw.pop("config")]
    finals = [json.loads(text) if isinstance(text, str) else {} for text in raw.pop("final_metrics")]
    hyper = pd.DataFrame([{f"hp_{k}": v for k, v in c["hyperparameters"].items()} for c in configs],
                         index=raw.index)
    final = pd.DataFrame([{f"final_{k}": v for k, v in f.items()} for f in finals], index=raw.index)
    frame = pd.concat([raw, hyper, final], axis=1)
    frame["steps_to_target"] = frame["steps_to_target"].astype("float64")
    frame["target"] = [c["target"] for c in configs]
    frame["target_metric"] = [c["target_metric"] for c in configs]
    return frame.sort_values(["optimizer", "batch_size", "trial_index"], kind="stable").reset_index(drop=True)


def tracks_frame(source: StudyStore | str | pathlib.Path) -> pd.DataFrame:
    """Every (trial, track) with optimizer and batch size joined in."""
    store, owned = _store(source)
    try:
        tracks = _frame(store, "tracks")
        trials = _frame(store, "trials")[["id", "optimizer", "batch_size", "trial_index"]]
    finally:
        if owned:
            store.close()
    tracks["steps_to_target"] = tracks["steps_to_target"].astype("float64")
    finals = [json.loads(text) if isinstance(text, str) else {} for text in tracks.pop("final_metrics")]
    final = pd.DataFrame([{f"final_{k}": v for k, v in f.items()} for f in finals], index=tracks.index)
    merged = trials.rename(columns={"id": "trial_id"}).merge(pd.concat([tracks, final], axis=1), on="trial_id")
    return merged.sort_values(["optimizer", "batch_size", "trial_index", "track"]).reset_index(drop=True)


def curves_frame(source: StudyStore | str | pathlib.Path) -> pd.DataFrame:
    """Every evaluation of every track, long format."""
    store, owned = _store(source)
    try:
        return _frame(store, "curves")
    finally:
        if owned:
            store.close()


def export_study(folder: str | pathlib.Path, out: str | pathlib.Path | None = None,
                 formats: tuple[str, ...] = ("csv", "parquet")) -> list[pathlib.Path]:
    """Write ``trials``, ``tracks`` and ``curves`` as CSV and/or Parquet into ``out`` (default
    ``folder/export``).

    Returns:
        The files written.
    """
    out_dir = pathlib.Path(out) if out is not None else pathlib.Path(folder) / "export"
    with open_store(folder) as store:
        frames = {"trials": trials_frame(store), "tracks": tracks_frame(store), "curves": curves_frame(store)}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in frames.items():
        if "csv" in formats:
            written.append(out_dir / f"{name}.csv")
            frame.to_csv(written[-1], index=False)
        if "parquet" in formats:
            written.append(out_dir / f"{name}.parquet")
            frame.to_parquet(written[-1], index=False)
    return written
