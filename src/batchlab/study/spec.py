"""Study specs: a TOML file describing one batch-size scaling study, parsed and validated.

A study tunes every (optimizer, batch size) cell of one workload independently: ``trials``
quasi-random trials, or the explore / refine / replicate protocol of a ``[tuning]`` table, whose
answer is the median over fresh seeds of the best configurations found.  Without ``[tuning]`` a
study explores ``trials`` points in ``min(3, trials)`` pruning rounds and answers the fewest steps
any trial needed (no replication).

Format (every key except ``workload``, ``batch_sizes`` and ``[optimizers.*]`` is optional)::

    name = "quick"                    # default: the file's stem
    description = "one line"
    workload = "digits-cnn"           # a registry name (see `batchlab list`), or a reference to
                                      # user code: "models.py:MyWorkload" or "package.module:Name"
    batch_sizes = [16, 64, 256]       # distinct integers in [1, 2^20]
    trials = 6                        # quasi-random trials per (optimizer, batch size)
    seed = 0                          # seeds the design and every trial's training seed
    design = "sobol"                  # or "halton" (both scrambled)
    target = 0.03                     # default: the workload's target value; within the target
                                      # metric's range (error: [0, 1]; loss, relative_risk: > 0)
    target_metric = "train_set_loss"  # default: the workload's; one of its target metrics
                                      # (classifiers: error, loss, train_set_loss); needs `target`
    eval_every = 5                    # default: the workload's evaluation cadence
    prune = true                      # incumbent pruning (see batchlab.study.runner)

    [tuning]                          # the tuning protocol of each cell (batchlab.study.protocol)
    explore = 6                       # quasi-random trials over the whole box (replaces `trials`)
    rounds = 2                        # explore rounds: pruning bounds come from earlier rounds only
    refine = 4                        # trials in a box around the incumbent (omit: no refinement)
    refine_width = 0.15               # its half-width in unit coordinates of the search box
    warm_start = true                 # ... and around the optimum predicted from neighbouring B
    candidates = 2                    # best configurations rerun with fresh seeds (omit: none)
    seeds = 3                         # seeds per candidate (>= 3); the cell's answer is their median
    prune_slack = 1.0                 # prune at this x the incumbent's steps (>= 1; default 1)
    fallback = 1                      # rounds replicating the next candidates of a cell whose
                                      # candidates all failed on half their seeds (0-10; default 0)
    centre = "calibration"            # explore around the calibrated NQM's prediction (omit: whole box)
    calibration = "cal/prediction.json"   # `batchlab calibrate`'s output, relative to the spec file
    centre_width = 0.5                # half-width of the centred box, decades (default 0.5)

    [workload_options]                # the workload's options (fields of its dataclass)
    hidden_units = 128

    [budget]                          # either a fixed step budget ...
    steps = 1500
    # ... or an example budget: steps = ceil(examples / B), clipped to [min_steps, max_steps]
    # examples = 64_000
    # min_steps = 100
    # max_steps = 2000

    [optimizers.sgd]                  # default search space of the optimizer

    [optimizers.momentum]
    search.learning_rate = [1e-3, 1.0]              # override a range, keep its scaling
    search.momentum = { low = 0.8, high = 0.999, scaling = "one_minus_log" }
    fixed = { lr_schedule = "constant" }            # fixed values leave the search

    [optimizers."momentum+ema"]
    ema_decays = [0.9, 0.99, 0.999]   # decays tracked in one run (see batchlab.study.design)
    budget = { min_steps = 2000 }     # its own step budget: these keys over the study's [budget]

    [optimizers."my_optim.py:my_optimizer+ema"]   # a reference to user code (see batchlab.userref)

A file reference (``path/to/file.py:Name``) in a spec file is relative to the spec file's folder;
:func:`load_spec` makes it absolute, so the study records (and its trial ids hash) the absolute path.

**Centred search** (``centre = "calibration"``, :mod:`batchlab.study.centre`): each cell's *explore*
box of ``learning_rate`` is ``[η 10^-w, η 10^w]`` around the NQM's tuned rate ``η`` interpolated
log–log at the cell's batch size, and of ``momentum`` ``1 − β ∈ [(1 − β) 10^-w, (1 − β) 10^w]``
around the predicted ``β`` (``w = centre_width``), each clipped to the spec's search box of that
hyperparameter; other hyperparameters keep the spec's box, and refinement, warm start and
replication work in the spec's box as without centring.  ``calibration`` is required with it and is
relative to the spec file's folder (to the working directory for a spec given as a dict); there is no
default (the study folder is not known when the spec is read).  The prediction's values enter every
explore trial's hyperparameters and so its id; specs without ``centre`` design exactly the trials
they designed before.  Errors (one line): the file missing, unreadable or malformed, an optimizer
without an entry (``X+ema`` may use ``X``'s), predicted rates in a preconditioned proxy's units
(``precond`` > 0 without ``"units": "optimizer"``: Adam's and K-FAC's from ``batchlab calibrate``), a
study batch size outside the predicted ones, a box that misses the search box, ``centre_width`` not
in (0, 10].

Validation rejects unknown keys and names and out-of-range values with one line naming the problem
(:class:`~batchlab.errors.InputError`), before anything is written.  Limits: at most 100,000 trials
per cell and in the whole design (trials × optimizers × batch sizes), budgets of at most 10^9 steps
at every batch size (an example budget needs ``max_steps`` when ``examples / B`` exceeds that).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import tomllib
from typing import Any, Mapping

from batchlab.checks import check_finite_number, check_integer, check_range
from batchlab.errors import InputError
from batchlab.optim import EMA_SUFFIX, get_optimizer
from batchlab.userref import absolute
from batchlab.optim.base import OptimizerSpec
from batchlab.optim.hyperparameters import SCALINGS, unit_to_value, value_to_unit
from batchlab.study.centre import CENTRE_SOURCES, DEFAULT_WIDTH, Centre, make_centre
from batchlab.study.protocol import Tuning

__all__ = [
    "Budget",
    "OptimizerEntry",
    "SearchDim",
    "StudySpec",
    "DEFAULT_EMA_DECAYS",
    "load_spec",
    "parse_spec",
]

DEFAULT_EMA_DECAYS = (0.9, 0.99, 0.999)
_TOP_KEYS = ("name", "description", "workload", "workload_options", "batch_sizes", "trials", "seed",
             "design", "target", "target_metric", "eval_every", "prune", "budget", "optimizers", "tuning")
_TUNING_KEYS = ("explore", "rounds", "refine", "refine_width", "warm_start", "candidates", "seeds", "prune_slack",
                "fallback", "centre", "calibration", "centre_width")
_CENTRE_KEYS = ("centre", "calibration", "centre_width")
_DESIGNS = ("sobol", "halton")
_MAX_TRIALS = 100_000  # per cell, and in the whole design
_MAX_BATCH_SIZE = 2**20  # a batch is drawn in one piece: larger ones exhaust memory, not the study
_MAX_STEPS = 10**9
# Values a target metric can take (every batchlab target metric is "lower is better" and >= 0);
# a target outside is never reached or reached at step 0.


@dataclasses.dataclass(frozen=True)
class SearchDim:
    """One searched hyperparameter: a unit value ``u ∈ [0, 1)`` maps into ``[low, high]``.

    ``log``: ``low (high/low)^u``; ``linear``: ``low + u (high − low)``; ``one_minus_log``:
    ``1 − (1 − low) ((1 − high)/(1 − low))^u`` (values close to 1, e.g. momentum).  The scaling is
    :func:`batchlab.optim.hyperparameters.unit_to_value`, the one optimizers' search spaces use.
    """

    name: str
    low: float
    high: float
    scaling: str

    def from_unit(self, u: float) -> float:
        """The value at unit coordinate ``u``, rounded to 12 significant digits (stable ids)."""
        return float(f"{unit_to_value(float(u), self.low, self.high, self.scaling):.12g}")

    def to_unit(self, value: float) -> float:
        """The unit coordinate of ``value`` (the inverse of :meth:`from_unit`), clipped to ``[0, 1]``.

        Example:
            >>> dim = SearchDim("learning_rate", 0.001, 1.0, "log")
            >>> round(dim.to_unit(dim.from_unit(0.25)), 9)
            0.25
        """
        u = value_to_unit(float(value), self.low, self.high, self.scaling)
        return min(max(u, 0.0), 1.0)


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """An optimizer of the study: its fixed values, searched dimensions and tracked EMA decays.

    Attributes:
        name: registry name, e.g. ``"adam"`` or ``"momentum+ema"``.
        fixed: ``(name, value)`` pairs set for every trial (sorted by name).
        search: the searched dimensions, in the optimizer's declaration order.
        ema_decays: for ``+ema`` optimizers, the decays every trial tracks (the first is the
            optimizer's own ``ema_decay``); empty otherwise.
        budget: the optimizer's own step budget (its ``budget`` key over the study's ``[budget]``), or
            ``None``: the study's.
    """

    name: str
    fixed: tuple[tuple[str, float | str], ...]
    search: tuple[SearchDim, ...]
    ema_decays: tuple[float, ...] = ()
    budget: "Budget | None" = None

    @property
    def optimizer(self) -> OptimizerSpec:
        return get_optimizer(self.name)


@dataclasses.dataclass(frozen=True)
class Budget:
    """The step budget of a trial at batch size ``B``.

    Either ``steps`` (fixed), or ``ceil(examples / B)`` clipped to ``[min_steps, max_steps]``.
    """

    steps: int | None = None
    examples: float | None = None
    min_steps: int = 1
    max_steps: int | None = None

    def steps_for(self, batch_size: int) -> int:
        """The step budget at ``batch_size``.

        Example:
            >>> Budget(examples=64_000, min_steps=100, max_steps=2000).steps_for(16)
            2000
            >>> Budget(examples=64_000, min_steps=100, max_steps=2000).steps_for(256)
            250
        """
        if self.steps is not None:
            return self.steps
        assert self.examples is not None
        steps = max(self.min_steps, math.ceil(self.examples / batch_size))
        return steps if self.max_steps is None else min(steps, self.max_steps)


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """A validated study (see the module docstring for the TOML format)."""

    name: str
    workload: str
    workload_options: tuple[tuple[str, Any], ...]
    batch_sizes: tuple[int, ...]
    optimizers: tuple[OptimizerEntry, ...]
    budget: Budget
    trials: int = 8
    seed: int = 0
    design: str = "sobol"
    target: float | None = None
    eval_every: int | None = None
    prune: bool = True
    target_metric: str | None = None
    description: str = ""
    tuning: Tuning | None = None
    centre: Centre | None = None

    @property
    def protocol(self) -> Tuning:
        """The cell's tuning protocol: the ``[tuning]`` table, or ``trials`` explored in
        ``min(3, trials)`` rounds without refinement or replication."""
        return self.tuning if self.tuning is not None else Tuning(explore=self.trials, rounds=min(3, self.trials))

    def to_dict(self) -> dict[str, Any]:
        """A canonical JSON-ready form (stored with the study; equal specs give equal dicts)."""
        out = dataclasses.asdict(self)
        out["workload_options"] = dict(self.workload_options)
        out["optimizers"] = [
            {"name": o.name, "fixed": dict(o.fixed), "ema_decays": list(o.ema_decays),
             "search": [dataclasses.asdict(d) for d in o.search]}
            | ({} if o.budget is None else {"budget": dataclasses.asdict(o.budget)})  # absent: the stored form before the key
            for o in self.optimizers
        ]
        out["batch_sizes"] = list(self.batch_sizes)
        if self.tuning is None:
            out.pop("tuning")  # legacy specs keep their stored form (and so their folders)
        else:
            if self.tuning.prune_slack == 1.0:
                out["tuning"].pop("prune_slack")  # the default keeps the stored form from before the key
            if self.tuning.fallback == 0:
                out["tuning"].pop("fallback")  # so does no fallback
        if self.target_metric is None:
            out.pop("target_metric")  # the workload's metric keeps the stored form from before the key
        if self.centre is None:
            out.pop("centre")  # so do specs without a centred search
        else:
            out["centre"] = self.centre.to_dict()
            out["calibration"] = self.centre.provenance()
        return out

    def explore_search(self, entry: OptimizerEntry, batch_size: int) -> tuple[SearchDim, ...]:
        """The dimensions a cell explores: the optimizer's search box, or with ``centre`` the box
        centred on the prediction at ``batch_size`` (:mod:`batchlab.study.centre`)."""
        centred = None if self.centre is None else self.centre.search(entry.name, batch_size)
        return entry.search if centred is None else centred

    def make_workload(self) -> Any:
        """The workload instance (validates its options; loads no data)."""
        from batchlab.workloads.registry import get_workload

        return get_workload(self.workload, **dict(self.workload_options))

    def identity(self) -> dict[str, Any]:
        """What must agree for two specs to share one study folder (:func:`identity_of` its dict)."""
        return identity_of(self.to_dict())


def load_spec(path: str | pathlib.Path) -> StudySpec:
    """Read and validate a study spec from a TOML file.

    Raises:
        InputError: missing file, malformed TOML, or an invalid spec (one line naming the problem).

    Example:
        >>> spec = load_spec("studies/quick.toml")  # doctest: +SKIP
        >>> spec.workload, spec.batch_sizes  # doctest: +SKIP
        ('digits-cnn', (16, 64, 256, 1024))
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"spec file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read spec file {path}: {error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"malformed TOML in {path}: {error}") from None
    return parse_spec(data, default_name=path.stem, base_dir=path.resolve().parent)


def parse_spec(data: Mapping[str, Any], *, default_name: str = "study",
               base_dir: str | pathlib.Path | None = None) -> StudySpec:
    """Validate a spec given as a dict (the parsed TOML).

    Args:
        data: the spec.
        default_name: its name when ``data`` has none.
        base_dir: the folder relative file references (``file.py:Name``) and ``tuning.calibration``
            are resolved against (default: the current directory, where they are left relative).

    Raises:
        InputError: the first problem found, as one line.
    """
    if not isinstance(data, Mapping):
        raise InputError("spec must be a table")
    _unknown(data, _TOP_KEYS, "spec")
    for key in ("workload", "batch_sizes", "optimizers"):
        if key not in data:
            raise InputError(f"spec: missing required key {key!r}")
    name = _string(data.get("name", default_name), "name")
    if not name.strip():
        raise InputError("name must not be empty")
    if name.strip() in (".", "..") or "\x00" in name:
        raise InputError(f"name {name!r} cannot name a folder (runs/<name>)")
    workload_name = _string(data["workload"], "workload")
    if base_dir is not None:
        workload_name = absolute(workload_name, base_dir)
    options = data.get("workload_options", {})
    if not isinstance(options, Mapping):
        raise InputError("workload_options must be a table")
    workload = _workload(workload_name, dict(options))
    tuning = None if "tuning" not in data else _tuning(data["tuning"])
    if tuning is not None and "trials" in data:
        raise InputError("give either trials or [tuning] explore, not both")
    trials = tuning.explore if tuning is not None else _integer(data.get("trials", 8), "trials", 1, _MAX_TRIALS)
    batch_sizes = _batch_sizes(data["batch_sizes"])
    metric = _target_metric(data, workload)
    budget_table = data.get("budget", {})
    budget = _budget(budget_table, workload.default_max_steps)
    optimizers = _optimizers(data["optimizers"], base_dir, budget_table, workload.default_max_steps)
    spec = StudySpec(
        name=name,
        description=_string(data.get("description", ""), "description"),
        workload=workload_name,
        workload_options=tuple(sorted(options.items())),
        batch_sizes=batch_sizes,
        optimizers=optimizers,
        budget=budget,
        trials=trials,
        tuning=tuning,
        seed=_integer(data.get("seed", 0), "seed", 0, 2**63 - 1),
        design=_design(data.get("design", "sobol")),
        target=None if "target" not in data else _target(data["target"], workload, metric),
        target_metric=metric,
        eval_every=None if "eval_every" not in data else _integer(data["eval_every"], "eval_every", 1, 10**9),
        prune=_boolean(data.get("prune", True), "prune"),
        centre=None if tuning is None else _centre(data["tuning"], base_dir, optimizers, batch_sizes),
    )
    _check_size(spec)
    return spec


def _check_size(spec: StudySpec) -> None:
    """The design's size and the largest step budget, which only the whole spec determines."""
    per_cell = spec.protocol.trials_per_cell()
    size = per_cell * len(spec.optimizers) * len(spec.batch_sizes)
    if size > _MAX_TRIALS:
        raise InputError(f"the design has up to {size:,} trials (per cell × optimizers × batch sizes = {per_cell} × "
                         f"{len(spec.optimizers)} × {len(spec.batch_sizes)}); at most {_MAX_TRIALS:,}")
    smallest = min(spec.batch_sizes)
    for where, budget in [("budget", spec.budget)] + [(f"optimizers.{o.name}.budget", o.budget)
                                                      for o in spec.optimizers if o.budget is not None]:
        steps = budget.steps_for(smallest)
        if steps > _MAX_STEPS:
            raise InputError(f"{where}: {steps:.3g} steps at batch size {smallest} (examples / B); at most "
                             f"{_MAX_STEPS:,}; set {where}.max_steps")


# --- helpers -------------------------------------------------------------------------------------


def identity_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What must agree for two specs to share one study folder, from a spec's canonical dict
    (:meth:`StudySpec.to_dict`, or as a store keeps it): everything but the prose (``description``),
    pruning (``prune``, and the tuning's ``prune_slack``: they change the cost, not the trials), where
    a calibrated prediction lies (``calibration``: its values, in ``centre``, decide the trials) and the
    tuning's ``fallback`` (its rounds only add trials after the others, so a finished study can be
    extended by resuming with more of them)."""
    out = {k: v for k, v in spec.items() if k not in ("description", "prune", "calibration")}
    if isinstance(out.get("tuning"), Mapping):
        out["tuning"] = {k: v for k, v in out["tuning"].items() if k not in ("prune_slack", "fallback")}
    return out


def _tuning(table: Any) -> Tuning:
    """The ``[tuning]`` table.  A phase left out is skipped; a phase given must have a budget."""
    if not isinstance(table, Mapping):
        raise InputError("tuning must be a table")
    _unknown(table, _TUNING_KEYS, "tuning")
    if "explore" not in table:
        raise InputError("tuning: missing required key 'explore'")
    explore = _integer(table["explore"], "tuning.explore", 1, _MAX_TRIALS)
    refine = _integer(table["refine"], "tuning.refine", 1, _MAX_TRIALS) if "refine" in table else 0
    candidates = _integer(table["candidates"], "tuning.candidates", 1, 100) if "candidates" in table else 0
    for key in ("seeds", "fallback"):
        if key in table and not candidates:
            raise InputError(f"tuning.{key} needs tuning.candidates (the configurations to rerun)")
    for key in ("refine_width", "warm_start"):
        if key in table and not refine:
            raise InputError(f"tuning.{key} needs tuning.refine")
    return Tuning(
        explore=explore,
        rounds=_integer(table.get("rounds", min(2, explore)), "tuning.rounds", 1, explore),
        refine=refine,
        refine_width=check_finite_number(table.get("refine_width", 0.15), "tuning.refine_width"),
        warm_start=_boolean(table.get("warm_start", True), "tuning.warm_start"),
        candidates=candidates,
        seeds=_integer(table.get("seeds", 3), "tuning.seeds", 3, 1000) if candidates else 3,
        prune_slack=check_finite_number(table.get("prune_slack", 1.0), "tuning.prune_slack"),
        fallback=_integer(table.get("fallback", 0), "tuning.fallback", 0, 10),
    )


def _centre(table: Mapping[str, Any], base_dir: str | pathlib.Path | None,
            optimizers: tuple[OptimizerEntry, ...], batch_sizes: tuple[int, ...]) -> Centre | None:
    """The ``centre``, ``calibration`` and ``centre_width`` keys of ``[tuning]``: every cell's centred box."""
    if "centre" not in table:
        given = [key for key in _CENTRE_KEYS if key in table]
        if given:
            raise InputError(f'tuning.{given[0]} needs tuning.centre = "calibration"')
        return None
    source = table["centre"]
    if source not in CENTRE_SOURCES:
        raise InputError(f"tuning.centre must be one of {', '.join(map(repr, CENTRE_SOURCES))}, got {source!r}")
    if "calibration" not in table:
        raise InputError('tuning.centre = "calibration" needs tuning.calibration (the path of a prediction.json, '
                         "relative to the spec file)")
    text = _string(table["calibration"], "tuning.calibration")
    if not text.strip():
        raise InputError("tuning.calibration must not be empty")
    path = pathlib.Path(text)
    if base_dir is not None and not path.is_absolute():
        path = pathlib.Path(base_dir) / path
    width = check_finite_number(table.get("centre_width", DEFAULT_WIDTH), "tuning.centre_width")
    return make_centre(path.absolute(), width, [(o.name, o.search) for o in optimizers], batch_sizes)


def _unknown(table: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    extra = [key for key in table if key not in valid]
    if extra:
        raise InputError(f"{where}: unknown key {extra[0]!r}; valid keys: {', '.join(valid)}")


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {value!r}")
    return value


def _boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {value!r}")
    return value


def _integer(value: Any, name: str, low: int, high: int) -> int:
    return check_range(check_integer(value, name), name, low, high)


def _target(value: Any, workload: Any, metric: str | None) -> float:
    """The spec's target, checked by the workload (the owner of its metric's range)."""
    check_finite_number(value, "target")
    return workload.check_target(value) if metric is None else workload.check_target(value, metric)


def _target_metric(data: Mapping[str, Any], workload: Any) -> str | None:
    """The spec's ``target_metric``, one of the workload's target metrics (None: the workload's
    default, also when named); another than the default needs a ``target``."""
    if "target_metric" not in data:
        return None
    metric = workload.check_target_metric(data["target_metric"])
    if "target" not in data and metric != workload.target_metric:
        raise InputError(f"target_metric {metric} needs a target (the workload's default "
                         f"{workload.target_value:g} is on {workload.target_metric})")
    return None if metric == workload.target_metric else metric  # naming the default changes nothing


def _design(value: Any) -> str:
    if value not in _DESIGNS:
        raise InputError(f"design must be one of {', '.join(_DESIGNS)}, got {value!r}")
    return value


def _workload(name: str, options: dict[str, Any]) -> Any:
    from batchlab.workloads.registry import get_workload  # imports JAX: only once a spec is read

    return get_workload(name, **options)


def _batch_sizes(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise InputError(f"batch_sizes must be a list of integers, got {value!r}")
    if not value:
        raise InputError("batch_sizes must not be empty")
    sizes = [_integer(b, "batch size", 1, _MAX_BATCH_SIZE) for b in value]
    duplicates = sorted({b for b in sizes if sizes.count(b) > 1})
    if duplicates:
        raise InputError(f"batch_sizes: {duplicates[0]} appears more than once")
    return tuple(sorted(sizes))


def _budget(value: Any, default_steps: int, where: str = "budget") -> Budget:
    if not isinstance(value, Mapping):
        raise InputError(f"{where} must be a table")
    _unknown(value, ("steps", "examples", "min_steps", "max_steps"), where)
    if "steps" in value:
        if len(value) > 1:
            raise InputError(f"{where}: give either steps or examples (with min_steps/max_steps), not both")
        return Budget(steps=_integer(value["steps"], f"{where}.steps", 1, 10**9))
    if "examples" not in value:
        if value:
            raise InputError(f"{where}: min_steps/max_steps need examples")
        return Budget(steps=default_steps)
    examples = check_finite_number(value["examples"], f"{where}.examples")
    if examples <= 0:
        raise InputError(f"{where}.examples must be > 0, got {examples:g}")
    min_steps = _integer(value.get("min_steps", 1), f"{where}.min_steps", 1, 10**9)
    max_steps = None if "max_steps" not in value else _integer(value["max_steps"], f"{where}.max_steps", 1, 10**9)
    if max_steps is not None and max_steps < min_steps:
        raise InputError(f"{where}.max_steps ({max_steps}) must be >= {where}.min_steps ({min_steps})")
    return Budget(examples=examples, min_steps=min_steps, max_steps=max_steps)


def _optimizer_budget(value: Any, study: Mapping[str, Any], default_steps: int, where: str) -> Budget:
    """An optimizer's ``budget``: its keys over the study's ``[budget]`` (``steps`` alone replaces an
    example budget; example keys replace a fixed ``steps``)."""
    if not isinstance(value, Mapping) or not value:
        raise InputError(f"{where} must be a non-empty table (e.g. {{ min_steps = 2000 }})")
    if "steps" in value:
        merged = dict(value)
    else:
        merged = {k: v for k, v in study.items() if k != "steps"} | dict(value)
    return _budget(merged, default_steps, where)


def _optimizers(value: Any, base_dir: str | pathlib.Path | None, budget: Mapping[str, Any],
                default_steps: int) -> tuple[OptimizerEntry, ...]:
    if not isinstance(value, Mapping):
        raise InputError("optimizers must be a table of [optimizers.NAME] tables")
    if not value:
        raise InputError("optimizers must not be empty")
    names = {name: name if base_dir is None else _absolute_optimizer(name, base_dir) for name in value}
    if len(set(names.values())) < len(names):
        raise InputError("optimizers: two keys name the same optimizer")
    return tuple(_optimizer(names[name], body, budget, default_steps) for name, body in value.items())


def _absolute_optimizer(name: str, base_dir: str | pathlib.Path) -> str:
    """``name`` with a relative file reference made absolute; the ``+ema`` suffix is split off first."""
    base = name[: -len(EMA_SUFFIX)] if name.endswith(EMA_SUFFIX) else name
    return absolute(base, base_dir) + name[len(base):]


def _optimizer(name: str, body: Any, study_budget: Mapping[str, Any], default_steps: int) -> OptimizerEntry:
    spec = get_optimizer(name)  # InputError naming the valid optimizers
    where = f"optimizers.{name}"
    if not isinstance(body, Mapping):
        raise InputError(f"{where} must be a table")
    _unknown(body, ("search", "fixed", "ema_decays", "budget"), where)
    fixed = body.get("fixed", {})
    search = body.get("search", {})
    for key, table in (("fixed", fixed), ("search", search)):
        if not isinstance(table, Mapping):
            raise InputError(f"{where}.{key} must be a table")
    ema_decays: tuple[float, ...] = ()
    if spec.ema:
        for table in (fixed, search):
            if "ema_decay" in table:
                raise InputError(f"{where}: set the tracked decays with ema_decays, not ema_decay")
        ema_decays = _ema_decays(body.get("ema_decays", list(DEFAULT_EMA_DECAYS)), where)
    elif "ema_decays" in body:
        raise InputError(f"{where}: ema_decays is only for '{EMA_SUFFIX}' optimizers (e.g. {name}{EMA_SUFFIX})")
    both = sorted(set(fixed) & set(search))
    if both:
        raise InputError(f"{where}: {both[0]!r} is both fixed and searched")
    values = dict(fixed) | ({"ema_decay": ema_decays[0]} if ema_decays else {})
    try:
        validated = spec.validate(values)  # unknown names and invalid values, one line each
    except InputError as error:
        raise InputError(f"{where}.fixed: {error}") from None
    fixed_pairs = tuple(sorted((k, validated[k]) for k in fixed))
    overrides = {key: _search_dim(spec, key, bounds, where) for key, bounds in search.items()}
    default_space = [hp for hp in spec.search_space(values) if hp.name != "ema_decay"]
    dims = [overrides.pop(hp.name, None) or SearchDim(hp.name, *hp.search, hp.scaling) for hp in default_space]
    dims += [overrides[hp.name] for hp in spec.hyperparameters if hp.name in overrides]
    budget = (None if "budget" not in body
              else _optimizer_budget(body["budget"], study_budget, default_steps, f"{where}.budget"))
    return OptimizerEntry(name=name, fixed=fixed_pairs, search=tuple(dims), ema_decays=ema_decays, budget=budget)


def _ema_decays(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}.ema_decays must be a non-empty list of decays in [0, 1)")
    decays = []
    for item in value:
        decay = check_finite_number(item, f"{where}.ema_decays")
        if not 0.0 <= decay < 1.0:
            raise InputError(f"{where}.ema_decays: decays must be in [0, 1), got {decay:g}")
        if decay in decays:
            raise InputError(f"{where}.ema_decays: {decay:g} appears more than once")
        decays.append(decay)
    return tuple(decays)


def _search_dim(spec: OptimizerSpec, name: str, bounds: Any, where: str) -> SearchDim:
    hp = spec.hyperparameter(name)  # InputError listing the valid names
    label = f"{where}.search.{name}"
    if hp.is_choice:
        raise InputError(f"{label}: {name} is a choice ({' | '.join(hp.valid)}); set it in fixed")
    scaling = hp.scaling
    if isinstance(bounds, Mapping):
        _unknown(bounds, ("low", "high", "scaling"), label)
        if "low" not in bounds or "high" not in bounds:
            raise InputError(f"{label} needs low and high")
        scaling = bounds.get("scaling", scaling)
        if scaling not in SCALINGS:
            raise InputError(f"{label}: scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
        low, high = bounds["low"], bounds["high"]
    elif isinstance(bounds, list) and len(bounds) == 2:
        low, high = bounds
    else:
        raise InputError(f"{label} must be [low, high] or {{ low, high, scaling }}, got {bounds!r}")
    low, high = check_finite_number(low, f"{label} low"), check_finite_number(high, f"{label} high")
    if not low < high:
        raise InputError(f"{label}: low ({low:g}) must be < high ({high:g}); use fixed for one value")
    for value in (low, high):
        try:
            hp.check(value)
        except InputError as error:
            raise InputError(f"{label}: {error}") from None
    if scaling == "log" and low <= 0:
        raise InputError(f"{label}: log scaling needs low > 0, got {low:g}")
    if scaling == "one_minus_log" and high >= 1:
        raise InputError(f"{label}: one_minus_log scaling needs high < 1, got {high:g}")
    return SearchDim(name, low, high, scaling)
