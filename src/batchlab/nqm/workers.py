"""Worker processes for the NQM: where they come from, how they are started, and what they cost.

Three things live here and nowhere else:

- **start method**: forked workers when forking is safe (no other threads, no JAX/PyTorch/TensorFlow
  loaded: they start in milliseconds), else fresh workers from a ``forkserver`` whose server has
  already imported the NQM modules (``spawn`` where there is no forkserver);
- **unguarded scripts**: jobs are submitted inside :func:`main_hidden`, so a script that calls the
  NQM at top level without an ``if __name__ == "__main__"`` guard is not re-run in each fresh worker;
- **pools**: a persistent pool per worker count for the engine's evaluations (:func:`run_persistent`,
  which falls back to the caller with a :class:`NQMPoolWarning` once per cause when the pool fails),
  and a one-off pool for longer jobs (:func:`fresh_pool`).

Nothing happens at import time: :func:`keep_heap_slack` (a glibc setting that makes the engine's
temporaries cheap) is applied once, by the engine, when it first evaluates.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, Sequence

__all__ = [
    "NQMPoolWarning", "keep_heap_slack", "may_spawn", "forkserver_context", "worker_context", "main_hidden",
    "run_persistent", "fresh_pool",
]

PRELOAD = ["batchlab.nqm.scaling"]  # what a forkserver imports once for all its workers
_POOL: dict = {}  # worker count → persistent pool
_WARNED: set = set()  # causes of fallbacks already reported
_SLACK: list = []  # whether keep_heap_slack ran (and its result)


class NQMPoolWarning(RuntimeWarning):
    """The worker processes failed and an evaluation ran in this process instead: slower, same numbers."""


def _mallopt_top_pad(pad: int) -> bool:
    """glibc's ``mallopt(M_TOP_PAD, pad)``; False without glibc."""
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
        if libc is None or not hasattr(libc, "mallopt"):
            return False
        M_TOP_PAD = -2
        return bool(libc.mallopt(M_TOP_PAD, int(pad)))
    except (OSError, AttributeError, ValueError):
        return False


def keep_heap_slack() -> bool:
    """Ask glibc, once per process, to keep free memory at the top of the heap instead of returning it.

    The engine's NumPy temporaries (hundreds of KB each, allocated and freed thousands of times a
    second) otherwise make glibc trim the heap after each block and grow it again for the next, and
    every regrowth page-faults the memory back in: on virtual machines that costs more than the
    arithmetic (measured on the 100 × 20 grid benchmark, one thread: 4.4 s with 7 s of system time,
    1.8 s with 64 MiB of slack).  ``BATCHLAB_HEAP_SLACK_MB`` sets the slack (default 64, 0 turns it
    off); a no-op without glibc.  Returns whether the setting is in effect.
    """
    if not _SLACK:
        mb = os.environ.get("BATCHLAB_HEAP_SLACK_MB", "64")
        _SLACK.append(mb.strip().isdigit() and int(mb) > 0 and _mallopt_top_pad(int(mb) << 20))
    return bool(_SLACK[0])


def may_spawn() -> bool:
    """Processes only from a top-level process (not from pool workers or daemons), and not disabled
    (``BATCHLAB_NQM_PROCESSES=0``)."""
    if os.environ.get("BATCHLAB_NQM_PROCESSES", "1").strip() in ("0", "false", "no"):
        return False
    proc = multiprocessing.current_process()
    return multiprocessing.parent_process() is None and not proc.daemon


def forkserver_context():
    """The ``forkserver`` multiprocessing context, its server preloading the NQM modules (workers fork
    from a clean process that has already imported them: no per-worker import cost); ``spawn`` where
    there is no forkserver (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _fork_is_safe() -> bool:
    """Whether forking this process is safe: no other Python threads, and no library known to run
    native threads (JAX, PyTorch, TensorFlow) loaded — then workers start in milliseconds."""
    import threading

    heavy = ("jax", "jaxlib", "torch", "tensorflow")
    return ("fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
            and not any(name in sys.modules for name in heavy))


def worker_context():
    """Where persistent workers come from: forked when that is safe, else fresh from a forkserver."""
    return multiprocessing.get_context("fork") if _fork_is_safe() else forkserver_context()


@contextlib.contextmanager
def main_hidden():
    """Workers start without re-running the user's main script: processes started here (lazily, on
    submit) are told there is no ``__main__`` file or module to import, so a script that calls the
    engine at top level, without an ``if __name__ == "__main__"`` guard, is not executed again in
    each worker (the jobs need only batchlab)."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if main is not None and hasattr(main, k)}
    try:
        for k in saved:
            setattr(main, k, None)
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def _pool(workers: int) -> ProcessPoolExecutor:
    """A persistent pool of worker processes (:func:`worker_context`), started on first use."""
    pool = _POOL.get(workers)
    if pool is None:
        pool = ProcessPoolExecutor(workers, mp_context=worker_context())
        _POOL[workers] = pool
        atexit.register(pool.shutdown, wait=False, cancel_futures=True)
    return pool


def _warn_fallback(exc: BaseException) -> None:
    """Report a fallback to in-process evaluation, once per cause (exception type and first line)."""
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    cause = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    if cause in _WARNED:
        return
    _WARNED.add(cause)
    warnings.warn(f"NQM worker processes failed ({cause}); evaluating in this process instead "
                  "(slower, results unchanged)", NQMPoolWarning, stacklevel=5)


def run_persistent(fn: Callable, jobs: Sequence, workers: int) -> list | None:
    """``[fn(job) for job in jobs]`` on the persistent pool of ``workers`` processes, or ``None`` after
    an :class:`NQMPoolWarning` (once per cause) when the pool fails: the caller then computes in
    this process (a broken pool is dropped, the next call starts a new one)."""
    try:
        with main_hidden():
            futures = [_pool(workers).submit(fn, job) for job in jobs]
        return [f.result() for f in futures]
    except Exception as exc:  # a broken pool (e.g. a worker killed) or one that cannot start
        _POOL.pop(workers, None)
        _warn_fallback(exc)
        return None


@contextlib.contextmanager
def fresh_pool(workers: int) -> Iterator[Callable]:
    """A one-off pool of fresh workers (forkserver: forking a process that runs JAX threads can deadlock,
    and forked workers that run for seconds pay copy-on-write faults on the parent's heap — measured
    ~5% slower); yields ``submit(fn, job) → Future``, which submits inside :func:`main_hidden`."""
    with ProcessPoolExecutor(workers, mp_context=forkserver_context()) as pool:
        def submit(fn, job):
            with main_hidden():
                return pool.submit(fn, job)

        yield submit
