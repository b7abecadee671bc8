"""Executors: where trials run.  Both pull tasks (:class:`~batchlab.study.trial.TrialTask`) from the
runner and hand outcomes (:class:`~batchlab.store.TrialOutcome`) back to it.

* :class:`LocalExecutor` (default): in this process, one trial after another, from the runner's
  objects (no serialisation).  Compiled training steps are reused across trials (see
  :mod:`batchlab.study.trial`) and JAX's persistent compilation cache makes a rerun skip
  compilation too.
* :class:`DaskExecutor`: ``dask.distributed`` workers — a scheduler at ``scheduler`` (a LocalCluster,
  dask-jobqueue, Kubernetes …), or a LocalCluster of ``workers`` processes started on loopback and
  closed afterwards.  At most one trial per worker is in flight, so each worker's JAX uses all of
  its cores and pruning bounds stay fresh.  Start external workers with ``--nthreads 1`` (or
  ``--resources trial=1``), on machines that can import batchlab and read the workload's data.
  Tasks and outcomes cross the process boundary as plain dicts.

The runner stays the only process that writes the store: executors call ``on_done`` in the
runner's thread.  Measured on this 2-core machine, JAX already uses both cores, so parallel workers
pay off across machines (or accelerators), not within one.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Protocol

from batchlab.errors import InputError
from batchlab.store import TrialOutcome, failed_outcome
from batchlab.study.trial import TrialTask, execute, run_task

__all__ = ["Executor", "LocalExecutor", "DaskExecutor", "NextTask", "OnDone"]

MAX_LOCAL_WORKERS = 256  # a LocalCluster is processes on one machine
NextTask = Callable[[], "TrialTask | None"]
OnDone = Callable[[TrialOutcome], None]


class Executor(Protocol):
    """Runs tasks from ``next_task()`` (``None``: no more) and reports each outcome to ``on_done``.

    ``start()`` acquires resources (connections, clusters) before the runner writes anything, so an
    unreachable scheduler fails early; ``close()`` releases them (always called).
    """

    name: str

    def start(self) -> None: ...

    def run(self, next_task: NextTask, on_done: OnDone) -> None: ...

    def close(self) -> None: ...


@dataclasses.dataclass
class LocalExecutor:
    """In-process, sequential."""

    name: str = "local"

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def run(self, next_task: NextTask, on_done: OnDone) -> None:
        while (task := next_task()) is not None:
            on_done(run_task(task))


@dataclasses.dataclass
class DaskExecutor:
    """Dask: connect to ``scheduler``, or start a loopback LocalCluster of ``workers`` workers.

    Attributes:
        scheduler: scheduler address, e.g. ``"tcp://10.0.0.5:8786"``; ``None`` starts a LocalCluster.
        workers: LocalCluster size (default 2).
        processes: LocalCluster workers as processes (``False``: threads of this process; for tests).
        timeout: seconds to wait for the scheduler and for its first worker; default: Dask's
            ``distributed.comm.timeouts.connect`` for the scheduler (30 s unless configured, e.g.
            ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``) and 60 s for the first worker.

    A worker that dies while running a trial (killed, out of memory) is handled by Dask: the trial
    runs again on another worker, up to ``distributed.scheduler.allowed-failures`` (3) deaths; after
    that its ``KilledWorker`` is recorded as a ``failed`` trial, which the next run retries.  The
    runner sees one outcome per trial either way, so nothing is stored twice.
    """

    scheduler: str | None = None
    workers: int | None = None
    processes: bool = True
    timeout: float | None = None
    name: str = "dask"
    _cluster: Any = dataclasses.field(default=None, init=False, repr=False)
    _client: Any = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.scheduler is not None and self.workers is not None:
            raise InputError("--workers starts a local cluster; it cannot be combined with --scheduler")
        if self.workers is not None and not 1 <= self.workers <= MAX_LOCAL_WORKERS:
            raise InputError(f"--workers must be in [1, {MAX_LOCAL_WORKERS}] (processes on this machine; "
                             f"for more, start a cluster and pass --scheduler), got {self.workers}")
        if self.scheduler is not None:
            _check_address(self.scheduler)

    def start(self) -> None:
        """Connect to the scheduler and wait for a worker, or start the LocalCluster and wait for all
        of its workers (once; later calls do nothing until :meth:`close`)."""
        from dask.config import get as config
        from dask.utils import parse_timedelta
        from distributed import Client, LocalCluster

        if self._client is not None:
            return
        if self.scheduler is None:
            self._cluster = LocalCluster(
                n_workers=self.workers or 2, threads_per_worker=1, processes=self.processes,
                protocol="tcp://", host="127.0.0.1", dashboard_address=None, resources={"trial": 1},
                silence_logs=logging.ERROR,
            )
            self._client = Client(self._cluster)
        else:
            connect = self.timeout
            if connect is None:
                connect = parse_timedelta(config("distributed.comm.timeouts.connect"), "s")
            try:
                self._client = Client(self.scheduler, timeout=connect)
            except (OSError, TimeoutError, ValueError, TypeError) as error:  # refused, timed out, unusable scheme
                raise InputError(f"cannot reach the Dask scheduler at {self.scheduler}: {_line(error)}") from None
        wait = 60.0 if self.timeout is None else self.timeout
        expected = 1 if self.scheduler is not None else self.workers or 2  # run() counts the slots once
        try:
            self._client.wait_for_workers(expected, timeout=wait)
        except TimeoutError:
            self.close()
            raise InputError(f"no Dask worker joined within {wait:g} s" if expected == 1 else
                             f"fewer than {expected} Dask workers started within {wait:g} s") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def run(self, next_task: NextTask, on_done: OnDone) -> None:
        from distributed import as_completed

        if self._client is None:
            self.start()
        client = self._client
        try:
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            trial_slots = [w.get("resources", {}).get("trial") for w in workers]
            resources = {"trial": 1} if all(trial_slots) else None
            slots = int(sum(trial_slots)) if resources else len(trial_slots)
            tasks: dict[Any, TrialTask] = {}
            pending = as_completed()

            def submit() -> bool:
                task = next_task()
                if task is None:
                    return False
                future = client.submit(execute, task.to_dict(), pure=False, resources=resources)
                tasks[future] = task
                pending.add(future)
                return True

            for _ in range(max(slots, 1)):
                if not submit():
                    break
            for future in pending:
                task = tasks.pop(future)
                on_done(_result(future, task))
                submit()
        finally:
            for future in list(tasks):  # interrupted: do not leave trials running on the cluster
                future.cancel()


def _line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _check_address(address: str) -> None:
    """Reject a scheduler address Dask cannot parse (``notanaddress``, ``tcp://host:port99``)."""
    from distributed.comm.addressing import get_address_host_port

    try:
        _, port = get_address_host_port(address)
    except (ValueError, TypeError) as error:
        raise InputError(f"invalid Dask scheduler address {address!r} ({_line(error)}); "
                         "expected e.g. tcp://10.0.0.5:8786") from None
    if not 0 < port < 65536:
        raise InputError(f"invalid Dask scheduler address {address!r} (port {port} is not in 1..65535)")


def _result(future: Any, task: TrialTask) -> TrialOutcome:
    """The worker's outcome, or a ``failed`` one when the worker itself failed (``KilledWorker``: it
    died running the trial more often than the scheduler allows; a lost connection)."""
    try:
        outcome = future.result()
    except Exception as error:  # noqa: BLE001 (a lost worker fails the trial, the study goes on)
        return failed_outcome({"id": task.id, "prune_at_step": task.prune_at_step},
                              f"{type(error).__name__}: {_line(error)}")
    return TrialOutcome.from_dict(outcome)
