"""Batch-size scaling studies: TOML spec, quasi-random design, tuning protocol, runner, executors.

The results go to :mod:`batchlab.store` (which never imports JAX; the analysis and report layers read
it there); this package builds and runs the trials, and imports JAX.

Example::

    from batchlab.study import load_spec, run_study
    spec = load_spec("studies/quick.toml")
    summary = run_study(spec, "runs/quick")          # resumable; local executor
    summary.counts                                    # {'reached': ..., 'pruned': ..., ...}
"""

from batchlab.study.design import Trial, make_design, trial_id, unit_points
from batchlab.study.presets import preset_path, resolve_spec
from batchlab.study.runner import RunOptions, RunProgress, RunSummary, default_folder, run_study
from batchlab.study.spec import Budget, OptimizerEntry, SearchDim, StudySpec, load_spec, parse_spec

__all__ = [
    "Budget",
    "OptimizerEntry",
    "RunOptions",
    "RunProgress",
    "RunSummary",
    "SearchDim",
    "StudySpec",
    "Trial",
    "default_folder",
    "load_spec",
    "make_design",
    "parse_spec",
    "preset_path",
    "resolve_spec",
    "run_study",
    "trial_id",
    "unit_points",
]
