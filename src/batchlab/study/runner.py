"""Running a study: validate, design, store, execute (resumably), with incumbent pruning.

:func:`run_study` validates everything before it touches the study folder, records the design in
the store, then hands the unfinished trials to an executor; it is the store's only writer.
Rerunning the same spec resumes: finished trials are skipped, unfinished ones (pending, running
when a previous run was killed, failed) run again.  A folder holds one study: a spec that differs
(other than in its description or pruning) is rejected.

**Incumbent pruning** (``prune = true``, the default): a trial of cell (optimizer, B) stops as
``pruned`` once it has run as many steps as the best steps-to-target already recorded for that cell
without reaching the target — it can no longer beat the incumbent (reaching at exactly the
incumbent's step still counts).  The best steps per cell, and so every scaling curve, are the same
with and without pruning; what pruning changes is the losing trials' records (``pruned`` at the
bound instead of ``reached`` later or ``budget``), so per-trial statuses of losing trials can
depend on execution order (for example on a Dask cluster).  Trials run round-robin over cells
(trial 0 of every cell, then trial 1, …) so that bounds exist early.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import socket
import time
from typing import Any, Callable, Iterator

from batchlab.errors import InputError
from batchlab.study.design import Trial, make_design
from batchlab.study.executors import DaskExecutor, Executor, LocalExecutor
from batchlab.study.spec import StudySpec
from batchlab.study.store import (
    DB_NAME,
    FINISHED,
    LOCK_NAME,
    StudyStore,
    TrialOutcome,
    check_output_folder,
    open_store,
)
from batchlab.study.trial import DEFAULT_CACHE, task_for

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
    """A snapshot after each finished trial (and once at the start).

    ``done`` counts finished trials of the whole design (earlier runs included); the status
    counts are over the same set.  ``last`` is the outcome just recorded (None at the start).
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


def prepare_run(spec: StudySpec, folder: str | pathlib.Path, *, load_data: bool = True) -> list[Trial]:
    """Everything :func:`run_study` checks before writing: the folder (writable, or creatable), a
    store already there (readable, every page, and the same study), the design, the training
    arguments of every cell and the workload's data (``load_data``).

    Returns:
        The design.

    Raises:
        InputError: the first problem, as one line.
    """
    from batchlab.train import check_arguments
    from batchlab.train.result import TrainOptions

    folder = pathlib.Path(folder)
    check_output_folder(folder, "study folder")
    path = folder / DB_NAME
    if path.exists() or path.is_symlink():
        with open_store(folder, verify=True) as store:
            stored = store.spec()
        if stored is not None:
            _check_same_study(stored, spec, folder)

    workload = spec.make_workload()
    trials = make_design(spec, workload)
    seen = set()
    for trial in trials:
        if (trial.optimizer, trial.batch_size) in seen:
            continue
        seen.add((trial.optimizer, trial.batch_size))
        check_arguments(workload, trial.optimizer, trial.hyperparameters, trial.batch_size, trial.max_steps,
                        eval_every=int(trial.config["eval_every"]),
                        options=TrainOptions(ema_decays=tuple(trial.config["ema_decays"][1:])))
    if load_data:
        workload.load()
    return trials


def _check_same_study(stored: dict[str, Any], spec: StudySpec, folder: pathlib.Path) -> None:
    wanted = json.loads(json.dumps(spec.identity()))  # tuples → lists, as stored
    for key, value in wanted.items():
        if stored.get(key) != value:
            raise InputError(
                f"{folder} holds a different study ({key} differs: stored {stored.get(key)!r}, spec {value!r}); "
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
    return sorted(trials, key=lambda t: (t.index, optimizer_rank[t.optimizer], t.batch_size))


class _Bookkeeper:
    """One run's state, used from the runner's thread only: the queue of unfinished trials, the
    pruning bounds (best steps per cell so far), status counts, and the store writes."""

    def __init__(self, store: StudyStore, trials: list[Trial], todo: list[Trial], *, prune: bool,
                 cache: str | None, progress: Callable[[RunProgress], None] | None) -> None:
        self.store, self.prune, self.cache, self.progress = store, prune, cache, progress
        self.total, self.queue = len(trials), iter(todo)
        self.cells = {t.id: (t.optimizer, t.batch_size) for t in trials}
        self.incumbents = store.incumbents() if prune else {}
        statuses = store.statuses()
        self.counts = {s: sum(statuses[t.id] == s for t in trials) for s in FINISHED}
        self.counts["failed"] = 0  # of this run (failed trials are rerun)
        self.skipped = self.done = self.total - len(todo)
        self.ran = self.steps = 0
        self.host = socket.gethostname()
        self.started = time.perf_counter()

    def snapshot(self, last: TrialOutcome | None = None) -> RunProgress:
        c = self.counts
        return RunProgress(total=self.total, done=self.done, skipped=self.skipped, reached=c["reached"],
                           pruned=c["pruned"], diverged=c["diverged"], budget=c["budget"], failed=c["failed"],
                           elapsed=time.perf_counter() - self.started, last=last)

    def next_task(self) -> dict[str, Any] | None:
        """The next trial's task, marked running, with the current bound of its cell."""
        trial = next(self.queue, None)
        if trial is None:
            return None
        self.store.mark_running(trial.id, self.host)
        bound = self.incumbents.get((trial.optimizer, trial.batch_size)) if self.prune else None
        return task_for(trial, prune_at_step=bound, compilation_cache=self.cache)

    def on_done(self, result: dict[str, Any]) -> None:
        """Record an outcome (one transaction), update the bound of its cell and the counts."""
        outcome = TrialOutcome.from_dict(result)
        self.store.record(outcome)
        self.ran += 1
        self.steps += outcome.steps_run
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        self.done += outcome.status != "failed"
        if outcome.status == "reached" and self.prune:
            cell = self.cells[outcome.id]
            self.incumbents[cell] = min(self.incumbents.get(cell, outcome.steps_to_target), outcome.steps_to_target)
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
    trials = prepare_run(spec, folder, load_data=isinstance(executor, LocalExecutor))
    prune = spec.prune if options.prune is None else options.prune
    executor.start()  # before any write: an unreachable scheduler leaves the folder untouched
    with contextlib.closing(executor), _exclusive(folder), open_store(folder, create=True) as store:
        store.initialize(spec.to_dict(), source, trials)
        statuses = store.statuses()
        todo = [t for t in _round_robin(trials, spec) if statuses[t.id] not in FINISHED]
        books = _Bookkeeper(store, trials, todo, prune=prune, progress=progress,
                            cache=DEFAULT_CACHE if options.compilation_cache else None)
        if progress is not None:
            progress(books.snapshot())
        executor.run(books.next_task, books.on_done)
    return RunSummary(folder=folder, total=books.total, skipped=books.skipped, ran=books.ran,
                      failed=books.counts["failed"], counts=dict(books.counts), steps_run=books.steps,
                      wall_time=time.perf_counter() - books.started)


def default_folder(spec: StudySpec) -> pathlib.Path:
    """``runs/<spec name>`` (relative to the working directory)."""
    return pathlib.Path("runs") / spec.name.replace(os.sep, "_")
