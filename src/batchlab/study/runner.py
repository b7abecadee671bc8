"""Running a study: validate, design, store, execute (resumably), round by round, with pruning.

:func:`run_study` validates everything before it touches the study folder, records the design in
the store, then hands the unfinished trials to an executor; it is the store's only writer.
Rerunning the same spec resumes: finished trials are skipped, unfinished ones (pending, running
when a previous run was killed, failed) run again.  A folder holds one study: a spec that differs
(other than in its description or pruning) is rejected.

**Rounds** (:mod:`batchlab.study.protocol`): the explore trials run in ``rounds`` rounds, then the
refine trials, then the replicates, then up to ``fallback`` rounds of further replicates for cells
whose replicated candidates all failed.  A round starts when the previous one has finished, and the
trials of a later phase are designed from the finished results of the earlier ones, so every
trial — its configuration, its pruning bound and so its result — is the same whatever the order
of execution, the number of workers or an interruption.  A round with a failed trial (an exception,
or a worker lost for good) ends the run: rerunning retries it and carries on.

**Incumbent pruning** (``prune = true``, the default): a trial of round ``r`` stops as ``pruned``
once it has run as many steps as the best steps to target of its cell's trials in rounds ``< r``
without reaching the target — it can no longer beat them (reaching at exactly that step still
counts).  The best steps per cell are the same with and without pruning, and so are the
candidates replicated; replicates are never pruned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import pathlib
import socket
import time
from typing import Any, Callable, Iterator

from batchlab.errors import InputError
from batchlab.study.design import Trial, design_base, make_design, refine_trials, replicate_trials, unit_of
from batchlab.study.protocol import (Result, best, bound_for, distinct_centres, fallback_candidates, refine_round,
                                     replicate_candidates, replicate_round, warm_centre)
from batchlab.study.executors import DaskExecutor, Executor, LocalExecutor
from batchlab.study.spec import StudySpec, identity_of
from batchlab.store import (
    DB_NAME,
    FINISHED,
    LOCK_NAME,
    StudyStore,
    TrialOutcome,
    check_output_folder,
    open_store,
)
from batchlab.study.trial import DEFAULT_CACHE, TrialTask

__all__ = ["LOCK_NAME", "RunOptions", "RunProgress", "RunSummary", "default_folder", "make_executor", "prepare_run",
           "run_study"]

_LOCK_TRIES = 5  # `study status` probes the lock for microseconds: retry briefly before refusing


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run a study.

    Attributes:
        executor: ``"local"`` or ``"dask"``.
        scheduler: Dask scheduler address (``dask`` only; default: start a LocalCluster).
        workers: LocalCluster size (``dask`` only; default 2).
        prune: incumbent pruning; ``None`` uses the spec's ``prune``.
        compilation_cache: use JAX's persistent compilation cache (default folder).
    """

    executor: str = "local"
    scheduler: str | None = None
    workers: int | None = None
    prune: bool | None = None
    compilation_cache: bool = True


@dataclasses.dataclass(frozen=True)
class RunProgress:
    """A snapshot after each finished trial (and once at the start and once at the end).

    ``done`` counts finished trials of the whole design (earlier runs included); the status
    counts are over the same set.  ``last`` is the outcome just recorded (None at the start and
    end).  ``total`` counts the later rounds' trials before they are designed as their most (every
    cell replicating, every fallback round needed); ``final`` marks the snapshot when the run ends:
    after the last round its ``total`` is what the design turned out to be (after a round with a
    failed trial the rounds not designed yet stay counted at their most).
    """

    total: int
    done: int
    skipped: int
    reached: int
    pruned: int
    diverged: int
    budget: int
    failed: int
    elapsed: float
    last: TrialOutcome | None = None
    final: bool = False


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What :func:`run_study` did.

    Attributes:
        folder: the study folder.
        total: trials in the design; ``skipped``: already finished before this run.
        ran: trials executed now; ``failed``: of those, how many raised (rerun next time).
        counts: status → number of trials, over the whole design, after this run.
        steps_run: training steps executed by this run (replays excluded).
        wall_time: seconds for this run.
    """

    folder: pathlib.Path
    total: int
    skipped: int
    ran: int
    failed: int
    counts: dict[str, int]
    steps_run: int
    wall_time: float


def make_executor(options: RunOptions) -> Executor:
    """The executor named by ``options``.

    Raises:
        InputError: unknown executor, or Dask options given to the local executor.
    """
    if options.executor == "local":
        if options.scheduler is not None or options.workers is not None:
            raise InputError("--scheduler and --workers need --executor dask")
        return LocalExecutor()
    if options.executor == "dask":
        return DaskExecutor(scheduler=options.scheduler, workers=options.workers)
    raise InputError(f"unknown executor {options.executor!r}; valid: local, dask")


def prepare_run(spec: StudySpec, folder: str | pathlib.Path, *, load_data: bool = True) -> tuple[Any, list[Trial]]:
    """Everything :func:`run_study` checks before writing: the folder (writable, or creatable), a
    store already there (readable, every page, and the same study), then the workload, the design
    (which validates every trial's hyperparameters; the spec bounds sizes, budgets, cadence and
    target) and the workload's data (``load_data``).

    Returns:
        The study's workload instance (built once, here, after the folder checks) and the design.

    Raises:
        InputError: the first problem, as one line.
    """
    folder = pathlib.Path(folder)
    check_output_folder(folder, "study folder")
    path = folder / DB_NAME
    if path.exists() or path.is_symlink():
        with open_store(folder, verify=True) as store:
            stored = store.spec()
        if stored is not None:
            _check_same_study(stored, spec, folder)

    workload = spec.make_workload()  # the study's one instance: design, ids and local trials share it
    trials = make_design(spec, workload)
    if load_data:
        workload.load()
    return workload, trials


def _check_same_study(stored: dict[str, Any], spec: StudySpec, folder: pathlib.Path) -> None:
    wanted = json.loads(json.dumps(spec.identity()))  # tuples → lists, as stored
    for key, value in wanted.items():
        have = identity_of(stored).get(key)  # the stored spec, as its identity (a slack or fallback may differ)
        if have != value:
            raise InputError(
                f"{folder} holds a different study ({key} differs: stored {have!r}, spec {value!r}); "
                "use another --out folder")


@contextlib.contextmanager
def _exclusive(folder: pathlib.Path) -> Iterator[None]:
    """One runner per folder (an advisory lock the OS releases even on kill -9)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 (held for the whole run)
    except OSError as error:
        raise InputError(f"cannot write in the study folder {folder}: {error.strerror or error}") from None
    try:
        for attempt in range(_LOCK_TRIES):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _LOCK_TRIES - 1:
                    raise InputError(f"another `batchlab study run` is writing {folder}") from None
                time.sleep(0.02)
        yield
    finally:
        handle.close()


def _round_robin(trials: list[Trial], spec: StudySpec) -> list[Trial]:
    optimizer_rank = {o.name: i for i, o in enumerate(spec.optimizers)}
    return sorted(trials, key=lambda t: (t.round, t.index, optimizer_rank[t.optimizer], t.batch_size))


def _results(rows: list[dict[str, Any]], entry: Any, phases: tuple[str, ...]) -> dict[int, list[Result]]:
    """Batch size → the finished trials of ``phases`` as protocol results (``key`` = trial id)."""
    cells: dict[int, list[Result]] = {}
    for row in rows:
        if row["phase"] not in phases or row["status"] not in FINISHED:
            continue
        steps = float(row["steps_to_target"]) if row["status"] == "reached" else float("inf")
        unit = unit_of(entry, row["config"]["hyperparameters"])
        cells.setdefault(int(row["batch_size"]), []).append(Result(unit, steps, int(row["round"]), int(row["index"]),
                                                                   row["id"]))
    return cells


def _design_refine(spec: StudySpec, store: StudyStore, base: dict[str, Any]) -> list[Trial]:
    """Refinement trials of every cell, from the finished explore trials (see the protocol)."""
    tuning, trials = spec.protocol, []
    for entry in spec.optimizers:
        cells = _results(store.results(entry.name), entry, ("explore",))
        bests = [getattr(best(cells.get(size, [])), "unit", None) for size in spec.batch_sizes]
        axis = next((i for i, d in enumerate(entry.search) if d.name == "learning_rate" and d.scaling == "log"), None)
        span = math.log(entry.search[axis].high / entry.search[axis].low) if axis is not None else None
        for k, size in enumerate(spec.batch_sizes):
            if bests[k] is None:
                continue
            warm = warm_centre(spec.batch_sizes, bests, k, axis, span) if tuning.warm_start else None
            trials += refine_trials(spec, entry, size, base, distinct_centres([bests[k], warm], tuning.refine_width))
    return trials


def _design_replicates(spec: StudySpec, store: StudyStore, fallback: int = 0) -> list[Trial]:
    """Reruns of every cell's best configurations, from its finished explore and refine trials; for
    fallback round ``fallback > 0``, of the next best ones of every cell whose replicated candidates
    (of the earlier rounds) all failed (see the protocol)."""
    trials = []
    for entry in spec.optimizers:
        rows = store.results(entry.name)
        by_id = {row["id"]: row for row in rows}
        cells = _results(rows, entry, ("explore", "refine"))
        replicated: dict[int, dict[str, list[float]]] = {}
        for row in rows:
            if row["phase"] == "replicate" and row["status"] in FINISHED and row["round"] < replicate_round(
                    spec.protocol, fallback):
                steps = float(row["steps_to_target"]) if row["status"] == "reached" else float("inf")
                replicated.setdefault(int(row["batch_size"]), {}).setdefault(row["origin"], []).append(steps)
        for size in spec.batch_sizes:
            search = cells.get(size, [])
            chosen = replicate_candidates(search, spec.protocol.candidates) if fallback == 0 else \
                fallback_candidates(search, replicated.get(size, {}), spec.protocol.candidates)
            trials += replicate_trials(spec, [(c.key, by_id[c.key]["config"], by_id[c.key]["best_ema_decay"])
                                              for c in chosen], fallback=fallback)
    return trials


def _bounds(spec: StudySpec, store: StudyStore, round_: int) -> dict[tuple[str, int], int]:
    """Pruning bound of every cell for trials of ``round_``: the best of its earlier rounds."""
    bounds = {}
    for entry in spec.optimizers:
        for size, results in _results(store.results(entry.name), entry, ("explore", "refine")).items():
            bound = bound_for(results, round_, spec.protocol.prune_slack)
            if bound is not None:
                bounds[(entry.name, size)] = bound
    return bounds


class _Bookkeeper:
    """One run's state, used from the runner's thread only: the queue of the round's unfinished
    trials, the round's pruning bounds, status counts, and the store writes."""

    def __init__(self, store: StudyStore, workload: Any, *, planned: int, cache: str | None,
                 progress: Callable[[RunProgress], None] | None) -> None:
        self.store, self.workload, self.cache, self.progress = store, workload, cache, progress
        self.known: dict[str, Trial] = {}
        self.planned = planned  # trials of phases not designed yet (an upper bound)
        self.queue: Iterator[Trial] = iter(())
        self.bounds: dict[tuple[str, int], int] = {}
        self.counts = {s: 0 for s in FINISHED}
        self.counts["failed"] = 0  # of this run (failed trials are rerun)
        self.round_failed = 0
        self.skipped = self.done = 0
        self.ran = self.steps = 0
        self.host = socket.gethostname()
        self.started = time.perf_counter()

    @property
    def total(self) -> int:
        return len(self.known) + self.planned

    def add(self, trials: list[Trial], statuses: dict[str, str], *, replaces: int = 0) -> list[Trial]:
        """Know ``trials`` (their finished ones count as done and skipped); returns the unfinished ones."""
        self.planned = max(self.planned - replaces, 0)
        todo = []
        for trial in trials:
            if trial.id in self.known:
                continue
            self.known[trial.id] = trial
            status = statuses[trial.id]
            if status in FINISHED:
                self.counts[status] += 1
                self.skipped += 1
                self.done += 1
            else:
                todo.append(trial)
        return todo

    def start_round(self, todo: list[Trial], bounds: dict[tuple[str, int], int]) -> None:
        self.queue, self.bounds, self.round_failed = iter(todo), bounds, 0

    def snapshot(self, last: TrialOutcome | None = None, *, final: bool = False) -> RunProgress:
        c = self.counts
        return RunProgress(total=self.total, done=self.done, skipped=self.skipped, reached=c["reached"],
                           pruned=c["pruned"], diverged=c["diverged"], budget=c["budget"], failed=c["failed"],
                           elapsed=time.perf_counter() - self.started, last=last, final=final)

    def next_task(self) -> TrialTask | None:
        """The next trial's task, marked running, with its round's bound (none for replicates)."""
        trial = next(self.queue, None)
        if trial is None:
            return None
        self.store.mark_running(trial.id, self.host)
        bound = None if trial.phase == "replicate" else self.bounds.get((trial.optimizer, trial.batch_size))
        return TrialTask(trial, self.workload, prune_at_step=bound, compilation_cache=self.cache)

    def on_done(self, outcome: TrialOutcome) -> None:
        """Record an outcome (one transaction) and update the counts."""
        self.store.record(outcome)
        self.ran += 1
        self.steps += outcome.steps_run
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        self.done += outcome.status != "failed"
        self.round_failed += outcome.status == "failed"
        if self.progress is not None:
            self.progress(self.snapshot(outcome))


def run_study(
    spec: StudySpec,
    folder: str | pathlib.Path,
    *,
    options: RunOptions = RunOptions(),
    source: str = "",
    progress: Callable[[RunProgress], None] | None = None,
    executor: Executor | None = None,
) -> RunSummary:
    """Run (or resume) ``spec`` into ``folder``.

    Args:
        spec: the validated study (see :func:`batchlab.study.spec.load_spec`).
        folder: the study folder; the store is ``folder/study.sqlite``.
        options: executor and pruning settings.
        source: the spec's TOML text, kept in the store.
        progress: called with a :class:`RunProgress` at the start and after every trial.
        executor: overrides ``options.executor`` (e.g. a configured :class:`DaskExecutor`).

    Returns:
        A :class:`RunSummary`.

    Raises:
        InputError: an invalid spec or options, a folder holding another study, or a concurrent
            run; raised before anything is written.

    Example:
        >>> from batchlab.study import load_spec, run_study     # doctest: +SKIP
        >>> summary = run_study(load_spec("studies/quick.toml"), "runs/quick")  # doctest: +SKIP
        >>> summary.counts["reached"]  # doctest: +SKIP
    """
    folder = pathlib.Path(folder)
    executor = executor or make_executor(options)
    workload, trials = prepare_run(spec, folder, load_data=isinstance(executor, LocalExecutor))
    prune = spec.prune if options.prune is None else options.prune
    tuning = spec.protocol
    cells = len(spec.optimizers) * len(spec.batch_sizes)
    later = {refine_round(tuning): tuning.refine * cells}
    for fallback in range(tuning.fallback + 1):
        later[replicate_round(tuning, fallback)] = tuning.candidates * tuning.seeds * cells
    base = design_base(spec, workload)
    executor.start()  # before any write: an unreachable scheduler leaves the folder untouched
    with contextlib.closing(executor), _exclusive(folder), open_store(folder, create=True) as store:
        store.initialize(spec.to_dict(), source, trials)
        books = _Bookkeeper(store, workload, planned=sum(later.values()), progress=progress,
                            cache=DEFAULT_CACHE if options.compilation_cache else None)
        known = books.add(trials, store.statuses())
        if progress is not None:
            progress(books.snapshot())
        for round_ in range(replicate_round(tuning, tuning.fallback) + 1):
            if round_ in later and later[round_]:
                if round_ == refine_round(tuning):
                    design = _design_refine(spec, store, base)
                else:
                    design = _design_replicates(spec, store, round_ - replicate_round(tuning))
                store.add_trials(design)
                known += books.add(design, store.statuses(), replaces=later[round_])
            todo = _round_robin([t for t in known if t.round == round_], spec)
            if not todo:
                continue
            books.start_round(todo, _bounds(spec, store, round_) if prune else {})
            executor.run(books.next_task, books.on_done)
            if books.round_failed:
                break  # later rounds are designed from complete results only: rerun to retry
            known = [t for t in known if t.round != round_]
        if progress is not None:
            progress(books.snapshot(final=True))
    return RunSummary(folder=folder, total=books.total, skipped=books.skipped, ran=books.ran,
                      failed=books.counts["failed"], counts=dict(books.counts), steps_run=books.steps,
                      wall_time=time.perf_counter() - books.started)


def default_folder(spec: StudySpec) -> pathlib.Path:
    """``runs/<spec name>`` (relative to the working directory)."""
    return pathlib.Path("runs") / spec.name.replace(os.sep, "_")
