"""The quasi-random design of a study: trial configurations and their stable ids.

For each (optimizer, batch size) cell, trial ``i`` takes point ``i`` of a scrambled Sobol (or Halton)
sequence over the optimizer's searched dimensions (with ``[tuning] centre``, over the cell's box centred
on the calibrated prediction: :mod:`batchlab.study.centre`); the sequence is seeded from
``(seed, optimizer, batch size)`` alone, so trial ``i`` is the same whatever the number of trials,
workers or the order of execution, and raising ``trials`` keeps the existing trials.  A trial's
training seed is derived the same way from ``(seed, optimizer, batch size, i)``.

A trial's id is the first 16 hex digits of the SHA-256 of its full configuration in canonical JSON:
workload name, ``version`` and every option (defaults included), optimizer, every hyperparameter
(defaults included), tracked EMA decays, batch size, step budget, training seed, target metric and
value, and evaluation cadence.  Equal configurations get equal ids across runs and machines.  A
workload or optimizer given as a reference to user code (:mod:`batchlab.userref`) adds
``workload_code`` / ``optimizer_code``, the SHA-256 (12 hex digits) of its file, so changed code is a
new trial; built-in names add nothing (their ids are unchanged).

**EMA in studies.**  A ``"<name>+ema"`` optimizer trains one run per trial and evaluates the weight
average for every decay in its ``ema_decays`` (one training run answers "which decay" for all of
them; ``ema_decay`` itself is not searched).  Each decay is recorded as its own track of the trial;
the trial's result is its best track (fewest steps to target), whose decay is recorded as
``best_ema_decay``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from typing import Any, Mapping

import numpy as np
from scipy.stats import qmc

from batchlab.optim import Prepared, get_optimizer, prepare
from batchlab.optim.registry import optimizer_code
from batchlab.study.protocol import explore_round, refine_round, refine_units, replicate_round
from batchlab.study.spec import OptimizerEntry, SearchDim, StudySpec

__all__ = ["Trial", "derived_seed", "design_base", "make_design", "refine_trials", "replicate_trials", "trial_id",
           "unit_of", "unit_points"]


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial of the design.

    Attributes:
        id: stable id (hash of :attr:`config`).
        optimizer: registry name.
        batch_size: minibatch size.
        index: position ``i`` in its cell's sequence of its phase.
        config: the full configuration (JSON-ready): everything that determines the run.
        phase: ``explore``, ``refine`` or ``replicate`` (:mod:`batchlab.study.protocol`).
        round: its pruning round (explore rounds, refine, then replicate).
        origin: for a replicate, the id of the trial whose configuration it reruns.
        prepared: its hyperparameters as validated when the trial was made (the design's
            :func:`~batchlab.optim.prepare`; ``config["hyperparameters"]`` is their ``values``):
            training uses them as they are, without validating again.
    """

    id: str
    optimizer: str
    batch_size: int
    index: int
    config: Mapping[str, Any]
    phase: str = "explore"
    round: int = 0
    origin: str | None = None
    prepared: Prepared | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def hyperparameters(self) -> dict[str, float | str]:
        return dict(self.config["hyperparameters"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def max_steps(self) -> int:
        return int(self.config["max_steps"])


def derived_seed(*parts: Any) -> int:
    """A 63-bit seed from the SHA-256 of ``parts`` (stable across runs, platforms and versions)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def trial_id(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of ``config`` as canonical JSON (sorted keys).

    A reference to user code (``path/to/file.py:Name``, which the config holds as an absolute path so
    that any worker can load it) enters the id as its file name and object name only: its identity is
    that and its code hash (``workload_code`` / ``optimizer_code``), so moving the files keeps the ids.
    """
    identity = dict(config)
    for key in ("workload", "optimizer"):
        if f"{key}_code" in identity and isinstance(identity[key], str):
            identity[key] = _reference_identity(identity[key])
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _reference_identity(reference: str) -> str:
    """``file.py:Name`` for a file reference ``/any/folder/file.py:Name`` (a module reference as it is)."""
    target, colon, name = reference.rpartition(":")
    if colon and (target.endswith(".py") or "/" in target or "\\" in target):
        return f"{target.replace(chr(92), '/').rsplit('/', 1)[-1]}:{name}"
    return reference


def unit_points(kind: str, dim: int, count: int, seed: int) -> np.ndarray:
    """The first ``count`` points of a scrambled ``kind`` ("sobol" | "halton") sequence in ``[0, 1)^dim``.

    The first ``n`` points do not depend on ``count`` (prefix-stable).

    Example:
        >>> a = unit_points("sobol", 2, 3, seed=1)
        >>> b = unit_points("sobol", 2, 8, seed=1)
        >>> bool((a == b[:3]).all())
        True
    """
    if dim == 0:
        return np.zeros((count, 0))
    engine = qmc.Sobol(dim, scramble=True, rng=seed) if kind == "sobol" else qmc.Halton(dim, scramble=True, rng=seed)
    with warnings.catch_warnings():  # Sobol warns about balance when count is not a power of 2
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(count)


def _prepare(optimizer: str, hyperparameters: Mapping[str, Any], ema_decays: Any) -> Prepared:
    """Validate a trial's hyperparameters (defaults filled in) and tracked EMA decays, once."""
    return prepare(get_optimizer(optimizer), hyperparameters, extra_ema_decays=tuple(map(float, ema_decays[1:])))


def _config(spec: StudySpec, entry: OptimizerEntry, batch_size: int, base: Mapping[str, Any], unit: Any,
            seed: int, search: tuple[SearchDim, ...] | None = None) -> tuple[dict[str, Any], Prepared]:
    """A trial's configuration at ``unit`` of ``search`` (default: the optimizer's search box)."""
    fixed = dict(entry.fixed) | ({"ema_decay": entry.ema_decays[0]} if entry.ema_decays else {})
    dims = entry.search if search is None else search
    values = fixed | {dim.name: dim.from_unit(x) for dim, x in zip(dims, unit)}
    prepared = _prepare(entry.name, values, entry.ema_decays)
    code = optimizer_code(entry.name)
    return dict(base) | ({} if code is None else {"optimizer_code": code}) | {
        "optimizer": entry.name,
        "hyperparameters": dict(prepared.values),
        "ema_decays": list(entry.ema_decays),
        "batch_size": batch_size,
        "max_steps": (spec.budget if entry.budget is None else entry.budget).steps_for(batch_size),
        "seed": seed,
    }, prepared


def _cell(spec: StudySpec, entry: OptimizerEntry, batch_size: int, base: Mapping[str, Any]) -> list[Trial]:
    tuning = spec.protocol
    identity = _reference_identity(entry.name)  # the seeds, like the ids, do not depend on where user code lies
    search = spec.explore_search(entry, batch_size)  # the search box, or the box centred on a prediction
    points = unit_points(spec.design, len(search), tuning.explore,
                         derived_seed("design", spec.seed, identity, batch_size))
    trials = []
    for i, u in enumerate(points):
        config, prepared = _config(spec, entry, batch_size, base, u,
                                   derived_seed("train", spec.seed, identity, batch_size, i) % 2**31, search)
        trials.append(Trial(trial_id(config), entry.name, batch_size, i, config, "explore",
                            explore_round(tuning, i), prepared=prepared))
    return trials


def unit_of(entry: OptimizerEntry, hyperparameters: Mapping[str, Any]) -> tuple[float, ...]:
    """A configuration's unit coordinates in ``entry``'s search box."""
    return tuple(dim.to_unit(float(hyperparameters[dim.name])) for dim in entry.search)


def design_base(spec: StudySpec, workload: Any | None = None) -> dict[str, Any]:
    """What every trial's configuration shares: the workload's identity, target and cadence."""
    from batchlab.workloads.registry import workload_code

    workload = spec.make_workload() if workload is None else workload
    code = workload_code(spec.workload)
    return ({} if code is None else {"workload_code": code}) | {
        "workload": spec.workload,
        "workload_version": str(workload.version),
        "workload_options": {f.name: getattr(workload, f.name) for f in dataclasses.fields(workload)},
        "target_metric": workload.target_metric if spec.target_metric is None else spec.target_metric,
        "target": float(workload.target_value if spec.target is None else spec.target),
        "eval_every": int(workload.default_eval_every if spec.eval_every is None else spec.eval_every),
    }


def refine_trials(spec: StudySpec, entry: OptimizerEntry, batch_size: int, base: Mapping[str, Any],
                  centres: list[tuple[float, ...]]) -> list[Trial]:
    """The refinement trials of a cell: quasi-random points in boxes around ``centres`` (unit
    coordinates; see :func:`batchlab.study.protocol.refine_units`)."""
    tuning = spec.protocol
    identity = _reference_identity(entry.name)
    points = unit_points(spec.design, len(entry.search), tuning.refine,
                         derived_seed("refine", spec.seed, identity, batch_size))
    units = refine_units(centres, points, tuning.refine_width)
    trials = []
    for i, u in enumerate(units):
        config, prepared = _config(spec, entry, batch_size, base, u,
                                   derived_seed("train-refine", spec.seed, identity, batch_size, i) % 2**31)
        trials.append(Trial(trial_id(config), entry.name, batch_size, i, config, "refine", refine_round(tuning),
                            prepared=prepared))
    return trials


def replicate_trials(spec: StudySpec, origins: list[tuple[str, Mapping[str, Any], float | None]], *,
                     fallback: int = 0) -> list[Trial]:
    """``seeds`` reruns of each origin ``(trial id, configuration, best EMA decay)`` with fresh
    training seeds.  A ``+ema`` origin is rerun tracking only the decay it won with.  The origins'
    configurations come from the store, so their hyperparameters are validated here.  ``fallback``:
    the fallback round they belong to (0: the replicate round); its candidates are numbered after
    the ``candidates`` of each earlier round."""
    tuning = spec.protocol
    trials = []
    for i, (origin, config, decay) in enumerate(origins):
        k = fallback * tuning.candidates + i
        shared = dict(config)
        if config["ema_decays"] and decay is not None:
            shared["ema_decays"] = [float(decay)]
            shared["hyperparameters"] = dict(config["hyperparameters"]) | {"ema_decay": float(decay)}
        prepared = _prepare(str(shared["optimizer"]), shared["hyperparameters"], shared["ema_decays"])
        for j in range(tuning.seeds):
            rerun = shared | {"seed": derived_seed("replicate", origin, j) % 2**31}
            trials.append(Trial(trial_id(rerun), str(config["optimizer"]), int(config["batch_size"]),
                                k * tuning.seeds + j, rerun, "replicate", replicate_round(tuning, fallback), origin,
                                prepared=prepared))
    return trials


def make_design(spec: StudySpec, workload: Any | None = None) -> list[Trial]:
    """Every explore trial of ``spec``, ordered by optimizer, batch size, then index (later phases
    depend on results: :func:`refine_trials`, :func:`replicate_trials`).

    Args:
        spec: the validated study.
        workload: its workload instance (default: ``spec.make_workload()``); supplies the version,
            options with defaults, target and cadence that enter every id.

    Returns:
        ``len(optimizers) · len(batch_sizes) · explore`` trials.
    """
    base = design_base(spec, workload)
    return [trial for entry in spec.optimizers for batch_size in spec.batch_sizes
            for trial in _cell(spec, entry, batch_size, base)]
