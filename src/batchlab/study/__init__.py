"""Batch-size scaling studies: TOML spec, quasi-random design, SQLite store, executors.

Example::

    from batchlab.study import load_spec, run_study
    spec = load_spec("studies/quick.toml")
    summary = run_study(spec, "runs/quick")          # resumable; local executor
    summary.counts                                    # {'reached': ..., 'pruned': ..., ...}

Exports resolve lazily, so ``import batchlab.study.store`` (and the analysis and report layers, which
read the store) never import JAX; the spec, design and runner modules do.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Budget": "spec", "OptimizerEntry": "spec", "SearchDim": "spec", "StudySpec": "spec",
    "load_spec": "spec", "parse_spec": "spec",
    "Trial": "design", "make_design": "design", "trial_id": "design", "unit_points": "design",
    "RunOptions": "runner", "RunProgress": "runner", "RunSummary": "runner", "default_folder": "runner",
    "run_study": "runner",
    "DB_NAME": "store", "FINISHED": "store", "StudyStore": "store", "TrialOutcome": "store",
    "open_store": "store",
    "preset_path": "presets", "resolve_spec": "presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'batchlab.study' has no attribute {name!r}")
    return getattr(importlib.import_module(f"batchlab.study.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
