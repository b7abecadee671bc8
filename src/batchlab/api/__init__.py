"""A Python API for notebooks: run a study from a dict, a spec object or a file; read it as data frames;
draw its figures.

It calls the same functions as ``batchlab study run`` and ``batchlab study report`` (this package is
the command line's peer, above the report layer).  Reading (:func:`load`) imports no JAX; running does.

Example (a notebook)::

    import batchlab.api as bl

    study = bl.run({
        "workload": "examples/custom_workload.py:MyWorkload",   # relative to the current directory
        "batch_sizes": [16, 64], "trials": 2, "budget": {"steps": 100},
        "optimizers": {"examples/custom_optimizer.py:my_optimizer": {}, "adam": {}},
    }, "runs/notebook")
    study.trials       # one row per trial (pandas)
    study.best         # the answer per (optimizer, batch size), with its interval
    study.critical     # critical batch size per optimizer
    study.verdicts     # pairwise comparisons (replicated studies)
    study.figures()    # {"steps_vs_batch_size": Figure, ...}
    bl.load("runs/notebook")   # the same, for a study run before (or by the command line)
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, Mapping

import pandas as pd

from batchlab.analysis import DEFAULT_RESAMPLES, StudyAnalysis, analyze

__all__ = ["Study", "load", "run"]


@dataclasses.dataclass(frozen=True)
class Study:
    """An analysed study folder: frames and figures (see :class:`~batchlab.analysis.StudyAnalysis`).

    Attributes:
        analysis: the full analysis (spec, prediction, EMA table, ...).
    """

    analysis: StudyAnalysis

    @property
    def folder(self) -> pathlib.Path:
        return self.analysis.folder

    @property
    def spec(self) -> dict[str, Any]:
        """The stored canonical spec."""
        return self.analysis.spec

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial: id, optimizer, batch size, phase, status, steps to target, hyperparameters."""
        return self.analysis.trials

    @property
    def best(self) -> pd.DataFrame:
        """One row per (optimizer, batch size): the cell's answer (steps to target) with its interval."""
        return self.analysis.best

    @property
    def critical(self) -> pd.DataFrame:
        """One row per optimizer: its critical batch size estimates with intervals."""
        return self.analysis.critical

    @property
    def verdicts(self) -> pd.DataFrame:
        """Pairwise comparisons (supported / contradicted / inconclusive); empty without replication."""
        return self.analysis.verdicts

    def figures(self) -> dict[str, Any]:
        """The study's matplotlib figures by name (``steps_vs_batch_size``, ``learning_rate_vs_batch_size``,
        and ``ema`` with ``+ema`` optimizers)."""
        from batchlab.plots.study_figures import figures

        analysis = self.analysis
        return dict(figures(analysis.best, analysis.critical, analysis.ema, prediction=analysis.prediction,
                            title=str(analysis.spec.get("name", ""))))


def load(folder: str | pathlib.Path, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Study:
    """Read and analyse the study in ``folder`` (no JAX).

    Raises:
        InputError: no readable study there.
    """
    return Study(analyze(folder, resamples=resamples, seed=seed))


def run(spec: Mapping[str, Any] | Any, folder: str | pathlib.Path | None = None, *, prune: bool | None = None,
        progress: Callable[[Any], None] | None = None) -> Study:
    """Run (or resume) a study, then :func:`load` it.

    Args:
        spec: a dict in the spec file's format (file references relative to the current
            directory), a :class:`~batchlab.study.StudySpec`, or a spec file's path / preset name.
        folder: the study folder (default ``runs/<name>``).
        prune: incumbent pruning (default: the spec's).
        progress: called with a :class:`~batchlab.study.RunProgress` after every trial.

    Raises:
        InputError: an invalid spec (one line), or a folder holding another study.
    """
    from batchlab.study import RunOptions, StudySpec, default_folder, load_spec, parse_spec, resolve_spec, run_study

    source = ""
    if isinstance(spec, StudySpec):
        study = spec
    elif isinstance(spec, Mapping):
        study = parse_spec(spec, base_dir=pathlib.Path.cwd())
    else:
        path = resolve_spec(str(spec))
        study, source = load_spec(path), path.read_text(encoding="utf-8")
    target = pathlib.Path(folder) if folder is not None else default_folder(study)
    run_study(study, target, options=RunOptions(prune=prune), source=source, progress=progress)
    return load(target)
