"""A study's store as pandas data frames, and export to CSV and Parquet.  Never imports JAX.

* :func:`trials_frame`: one row per trial: id, optimizer, batch size, index, seed, budget, status,
  steps to target (``NaN`` unless reached), steps run, pruning bound, best EMA decay, wall and
  evaluation time, host, worker, attempts, error, the tuning ``phase`` (explore, refine, replicate),
  its pruning ``round`` and a replicate's ``origin`` trial, every hyperparameter as ``hp_<name>`` and
  every final metric as ``final_<name>``.
* :func:`tracks_frame`: one row per (trial, track): ``main`` or ``ema=γ``, with its status and steps.
* :func:`curves_frame`: long format ``(trial_id, track, step, metric, value)``.

A row whose JSON cannot be read raises :class:`~batchlab.errors.InputError` naming the trial.
"""

from __future__ import annotations

import pathlib

import pandas as pd

from batchlab.errors import InputError
from batchlab.store.database import StudyStore, check_output_folder, open_store, runner_active

__all__ = ["trials_frame", "tracks_frame", "curves_frame", "study_spec", "export_study", "mark_interrupted"]


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
    configs = [store.decode_config(text, trial_id) for trial_id, text in zip(raw["id"], raw.pop("config"))]
    finals = [store.decode(text, where=f"trial {trial_id}", column="final_metrics")
              for trial_id, text in zip(raw["id"], raw.pop("final_metrics"))]
    hyper = pd.DataFrame([{f"hp_{k}": v for k, v in c["hyperparameters"].items()} for c in configs],
                         index=raw.index)
    final = pd.DataFrame([{f"final_{k}": v for k, v in f.items()} for f in finals], index=raw.index)
    frame = pd.concat([raw, hyper, final], axis=1)
    frame["steps_to_target"] = frame["steps_to_target"].astype("float64")
    frame["target"] = [c["target"] for c in configs]
    frame["target_metric"] = [c["target_metric"] for c in configs]
    for column, default in (("phase", "explore"), ("round", 0), ("origin", None)):  # schema-1 stores
        if column not in frame.columns:
            frame[column] = default
    return frame.sort_values(["optimizer", "batch_size", "round", "trial_index"], kind="stable").reset_index(drop=True)


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
    finals = [store.decode(text, where=f"trial {trial_id} track {track}", column="final_metrics")
              for trial_id, track, text in zip(tracks["trial_id"], tracks["track"], tracks.pop("final_metrics"))]
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


def mark_interrupted(trials: pd.DataFrame, folder: str | pathlib.Path) -> pd.DataFrame:
    """``trials`` with status ``running`` shown as ``interrupted`` when no runner holds the lock of
    ``folder`` (the run that started them died; they run again on resume)."""
    running = trials["status"] == "running"
    if not running.any() or runner_active(folder):
        return trials
    return trials.assign(status=trials["status"].where(~running, "interrupted"))


def export_study(folder: str | pathlib.Path, out: str | pathlib.Path | None = None,
                 formats: tuple[str, ...] = ("csv", "parquet")) -> list[pathlib.Path]:
    """Write ``trials``, ``tracks`` and ``curves`` as CSV and/or Parquet into ``out`` (default
    ``folder/export``).

    Returns:
        The files written.

    Raises:
        InputError: no readable study in ``folder``; ``out`` is a file, lies under one or is not writable.
    """
    out_dir = pathlib.Path(out) if out is not None else pathlib.Path(folder) / "export"
    with open_store(folder) as store:
        check_output_folder(out_dir, "export folder")
        frames = {"trials": trials_frame(store), "tracks": tracks_frame(store), "curves": curves_frame(store)}
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in frames.items():
            if "csv" in formats:
                written.append(out_dir / f"{name}.csv")
                frame.to_csv(written[-1], index=False)
            if "parquet" in formats:
                written.append(out_dir / f"{name}.parquet")
                frame.to_parquet(written[-1], index=False)
    except OSError as error:
        raise InputError(f"cannot write the export in {out_dir}: {error.strerror or error}") from None
    return written
