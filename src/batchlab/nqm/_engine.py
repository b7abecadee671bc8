"""Exact measured second moments of per-direction systems at many steps, chunked and parallel.

Dispatch: SGD by its closed form; 2-state systems (heavy ball, Nesterov, SGD+EMA) by the closed forms of
:mod:`batchlab.nqm._closed`, with the entries whose estimated cancellation is too large (near critical
damping, an EMA decay near a root, |root| ≥ 1) recomputed by exact doubling; 3-state systems
(momentum+EMA) by their modal closed form, with the same fallback.  Entries whose transient has
provably decayed below float64 resolution hold only the noise floor.

Work is split into (hyperparameter, direction) blocks that fit in cache.  A :class:`Plan` keeps the
blocks' ``t``-independent data for callers that evaluate the same settings repeatedly (the first-hit
certificate, search refinement); blocks run on a thread pool, and large one-shot reduced evaluations
on worker processes (:data:`PROCESS_ENTRIES`, :mod:`batchlab.nqm.workers`).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from batchlab.nqm import _closed, _linear
from batchlab.nqm import workers as processes
from batchlab.nqm.workers import NQMPoolWarning
from batchlab.nqm.dynamics import (
    Dynamics, System, build_system, flatten_dynamics, take_dynamics,
)
from batchlab.nqm.spectrum import Problem

__all__ = ["Plan", "moment", "evaluate", "initial_covariance", "noise_covariance", "THREADS", "NQMPoolWarning"]

THREADS = max(1, min(os.cpu_count() or 1, 8))
_BLOCK = 1 << 16  # (systems × steps) per work item


def initial_covariance(sys: System, E_u_a=None) -> np.ndarray:
    """``Σ(0) = s0 a aᵀ``, shape ``sys.shape + (n, n)``."""
    _, _, a = E_u_a or sys.matrices()
    return np.broadcast_to(sys.s0, sys.shape)[..., None, None] * a[..., :, None] * a[..., None, :]


def noise_covariance(sys: System, E_u_a=None) -> np.ndarray:
    """Per-step noise covariance ``q u uᵀ``, shape ``sys.shape + (n, n)``."""
    _, u, _ = E_u_a or sys.matrices()
    return np.broadcast_to(sys.q, sys.shape)[..., None, None] * u[..., :, None] * u[..., None, :]


def doubling_moment(sys: System, steps: np.ndarray) -> np.ndarray:
    """Measured second moment by exact doubling; ``sys`` and ``steps`` broadcast together."""
    mats = sys.matrices()
    with np.errstate(over="ignore", invalid="ignore"):
        F, N = _linear.doubling(mats[0], noise_covariance(sys, mats), steps)
        S = _linear.transform(F, initial_covariance(sys, mats)) + N
    return S[..., sys.out, sys.out]


def moment(sys: System, t: np.ndarray) -> np.ndarray:
    """``E[θ_meas(t)²]`` for a one-dimensional batch of systems, shape ``(rows, m)``.

    ``t`` is ``(m,)`` (the same steps for every system) or ``(rows, m)`` (steps per system).
    """
    return _moment(sys, None, None, t)


def _moment(sys: System, plan, rows, t, floor=None) -> np.ndarray:
    """:func:`moment` of ``sys.take(rows)`` (all rows if ``None``), with a prepared
    :class:`_closed.CompanionPlan` of ``sys`` for 2-state systems if given (else one is built, with
    the systems' cancellation-free noise floors ``floor`` if given)."""
    t = np.asarray(t, dtype=np.int64)
    col = lambda a: np.asarray(a)[:, None] if rows is None else np.asarray(a)[rows][:, None]  # noqa: E731
    n_rows = sys.shape[0] if rows is None else len(rows)
    t2 = t if t.ndim == 2 else t[None, :]
    if sys.n == 1:
        value = _closed.sgd_moment(col(sys.x), col(sys.q), col(sys.s0), t2.astype(np.float64))
        value = np.broadcast_to(value, (n_rows, t2.shape[1])).copy()
        bad = None
    elif plan is not None or (comp := sys.companion()) is not None:
        if plan is None:
            plan = _closed.CompanionPlan(comp, np.asarray(sys.q), np.asarray(sys.s0), floor)
        value, cancel = plan.moment(t, rows)
        bad = ~(cancel <= _closed.TRUST)
    elif sys.n == 3:
        sub = sys if rows is None else sys.take(rows)
        value, cancel = _closed.momentum_ema_moment(sub, t)
        bad = ~(cancel <= _closed.TRUST)
    else:
        value = np.empty((n_rows, t2.shape[1]))
        bad = np.ones(value.shape, bool)
    if bad is not None and bad.any():
        r, j = np.nonzero(bad)
        value[r, j] = doubling_moment(sys.take(r if rows is None else np.asarray(rows)[r]),
                                      np.broadcast_to(t2, value.shape)[r, j])
    unstable = ~(col(sys.x) < col(sys.limit))
    if unstable.any():
        value = np.where(np.isnan(value) & unstable, np.inf, value)
    return value


class _Block:
    """One ``(settings × directions)`` block of systems, prepared for evaluation at any steps: the
    noise floors, the decay test's constants and (built on first use, for every system when the block
    is reused) the closed forms' ``t``-independent data."""

    def __init__(self, sys: System, reuse: bool):
        self.sys, self.reuse = sys, reuse
        self.shape = sys.shape
        self.weight = np.broadcast_to(sys.weight, sys.shape)
        self.floor = _closed.noise_floor(sys)
        if self.floor is not None:
            fl, gap, trusted = self.floor
            q = np.broadcast_to(sys.q, sys.shape)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                self.floor_value = self.weight * q * fl
            self.q, self.s0 = q, np.broadcast_to(sys.s0, sys.shape)
        self._flat = None
        self._plan = None

    @property
    def flat(self) -> System:
        """The block's systems as one row each (setting-major)."""
        if self._flat is None:
            self._flat = self.sys.reshape(-1)
        return self._flat

    def _exact_floor(self):
        """Cancellation-free steady states for the closed forms (heavy ball), or None."""
        if self.floor is None or self.sys.ema or not self.sys.law.exact_floor:
            return None
        return self.floor[0]

    def _companion_plan(self):
        if self._plan is None:
            comp = self.flat.companion()
            fl = self._exact_floor()
            self._plan = False if comp is None else _closed.CompanionPlan(
                comp, np.asarray(self.flat.q), np.asarray(self.flat.s0), None if fl is None else fl.reshape(-1))
        return self._plan or None

    def risk(self, t: np.ndarray, hrows, reduce: bool) -> np.ndarray:
        """Weighted risk of settings ``hrows`` (local indices; all if ``None``) at steps ``t``:
        ``(h, m)`` or ``(h, d, m)``; ``t`` is ``(m,)`` or ``(h, m)`` per setting.

        Entries whose transient is negligible at a step hold only the noise floor there (a closed form
        without cancellation); the rest go through the closed forms.  Negligible means every root
        power has underflowed, or the rigorous bound (``|U_t| ≤ t R^(t−1)``, ``|m1| + |m0|,
        |n1| + |n0| ≤ 8``)

            s0 mean_t² + q Σ_{k≥t} V_k² ≤ 64 R^(2t−2) [s0 t² + q (2(t+1)²/(1−R²) + 4/(1−R²)³)]

        is below ``1e-17 × q × floor`` — far below float64 resolution of the entry.
        """
        h_all, d = self.shape
        pick = (lambda a: a) if hrows is None else (lambda a: a[hrows])  # noqa: E731
        h = h_all if hrows is None else len(hrows)
        t_full = t[:, None, :] if t.ndim == 2 else t  # per-setting steps broadcast over directions
        out_shape = (h, d, t.shape[-1])
        if self.floor is None:
            live = np.ones((h, d), bool)
            val = np.empty(out_shape)
        else:
            fl, gap, trusted = (pick(a) for a in self.floor)
            tf = t_full.astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                # log R = log(1 − gap) ≤ −gap: the test below with −gap for log R is sufficient (and
                # loses only entries within a relative gap/2 of the threshold, which stay exact)
                g, q, s0 = gap[..., None], pick(self.q)[..., None], pick(self.s0)[..., None]
                om = g * (2.0 - g)  # 1 − R²
                log_bound = (math.log(64.0) - (2.0 * tf - 2.0) * g
                             + np.log(s0 * tf**2 + q * (2.0 * (tf + 1.0) ** 2 / om + 4.0 / om**3)))
                decayed = trusted[..., None] & (
                    ((tf - 1.0) * g > 800.0)
                    | ((tf >= 2) & (log_bound < np.log(1e-17 * q * fl[..., None]))))
            val = np.broadcast_to(pick(self.floor_value)[..., None], decayed.shape).copy()
            live = ~np.all(decayed, axis=-1)
        if live.any():
            hi, di = np.nonzero(live)
            hs = hi if hrows is None else np.asarray(hrows)[hi]  # settings of the block
            tt = np.broadcast_to(t_full, out_shape)[hi, di] if t.ndim == 2 else t
            if self.reuse:
                value = _moment(self.flat, self._companion_plan(), hs * d + di, tt)
            else:  # one evaluation: prepare only the live systems
                fl = self._exact_floor()
                value = _moment(self.sys.take((hs, di)), None, None, tt, None if fl is None else fl[hs, di])
            val[hi, di] = value * self.weight[hs, di][:, None]
        return val.sum(axis=-2) if reduce else val


class Plan:
    """Risk of ``dyn`` on ``problem`` at ``batch_size`` prepared for evaluation at many step sets.

    Hyperparameters are flattened to ``H`` settings.  The work is split into (settings × directions)
    blocks that fit in cache and run on a thread pool (NumPy releases the GIL inside its loops).  With
    ``reuse`` (callers that evaluate the same settings again and again: the first-hit certificate, the
    searches' refinement rounds) each block keeps its systems' ``t``-independent data; without it
    (one evaluation) blocks are sized for the ``m`` steps of that evaluation and prepare only what it
    needs.
    """

    def __init__(self, problem: Problem, dyn: Dynamics, batch_size, *, reuse: bool = True, m: int = 4):
        processes.keep_heap_slack()  # once per process: cheap NumPy temporaries (see there)
        self.hp = np.broadcast_shapes(dyn.hp_shape, np.shape(batch_size))
        self.H, self.d = int(np.prod(self.hp)), problem.dim
        self.problem, self.reuse = problem, reuse
        self.dyn = flatten_dynamics(dyn, self.hp)
        self.B = np.broadcast_to(np.asarray(batch_size, dtype=np.float64), self.hp).reshape(-1)
        d = self.d
        self.dir_block = max(1, min(d, _BLOCK // max(1, m)))
        self.hp_block = max(1, _BLOCK // (self.dir_block * max(1, m)))
        self.blocks: dict = {}
        self.sub_problems: dict = {}

    def _block(self, h0, h1, d0, d1) -> _Block:
        key = (h0, d0)
        if key not in self.blocks:
            if (d0, d1) not in self.sub_problems:
                p = self.problem
                self.sub_problems[(d0, d1)] = p if (d0, d1) == (0, self.d) else Problem(
                    h=p.h[d0:d1], c=p.c[d0:d1], s0=p.s0[d0:d1], weights=p.weights[d0:d1])
            sys = build_system(self.sub_problems[(d0, d1)], take_dynamics(self.dyn, slice(h0, h1)),
                               self.B[h0:h1])
            block = _Block(sys, self.reuse)
            if not self.reuse:
                return block
            self.blocks[key] = block
        return self.blocks[key]

    def _blocks(self):
        for h0 in range(0, self.H, self.hp_block):
            h1 = min(self.H, h0 + self.hp_block)
            for d0 in range(0, self.d, self.dir_block):
                yield h0, h1, d0, min(self.d, d0 + self.dir_block)

    def floor_risk(self) -> np.ndarray | None:
        """Steady-state risk per setting from the blocks' closed-form noise floors (``nan`` where a floor
        is unstable or ill-conditioned), or ``None`` for systems without one (momentum + EMA, whose floor
        needs a Lyapunov solve per direction — see :func:`batchlab.nqm.risk.steady_state_risk`)."""
        out = np.zeros(self.H)
        for h0, h1, d0, d1 in self._blocks():
            block = self._block(h0, h1, d0, d1)
            if block.floor is None:
                return None
            out[h0:h1] += np.where(block.floor[2], block.floor_value, np.nan).sum(axis=-1)
        return out

    def risk(self, t, rows=None, *, reduce: bool, threads: int | None = None) -> np.ndarray:
        """Risk at steps ``t`` of settings ``rows`` (all by default): ``(n, m)`` or ``(n, d, m)``.

        ``t`` is ``(m,)``, or ``(n, m)`` for steps per setting.
        """
        t = np.asarray(t, dtype=np.int64)
        rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        n = self.H if rows is None else len(rows)
        m = t.shape[-1]
        items = []
        for h0, h1, d0, d1 in self._blocks():
            if rows is None:
                pos, local = slice(h0, h1), None
            else:
                pos = np.flatnonzero((rows >= h0) & (rows < h1))
                if not pos.size:
                    continue
                local = rows[pos] - h0
            items.append((pos, local, h0, h1, d0, d1))
        out = np.zeros((n, m)) if reduce else np.empty((n, self.d, m))

        def work(item):
            pos, local, h0, h1, d0, d1 = item
            tt = t[pos] if t.ndim == 2 else t
            return item, self._block(h0, h1, d0, d1).risk(tt, local, reduce)

        workers = min(threads or THREADS, len(items))
        if workers <= 1:
            results = map(work, items)
        else:
            pool = ThreadPoolExecutor(workers)
            results = pool.map(work, items)
        for (pos, _, _, _, d0, d1), val in results:
            if reduce:
                out[pos] += val
            else:
                out[pos, d0:d1] = val
        if workers > 1:
            pool.shutdown()
        return out


def evaluate(problem: Problem, dyn: Dynamics, batch_size, t: np.ndarray, *, reduce: bool,
             threads: int | None = None) -> np.ndarray:
    """Risk per hyperparameter setting (and per direction unless ``reduce``) at steps ``t``.

    ``t`` is ``(m,)``, or ``hp + (m,)`` for steps per hyperparameter setting.  Returns shape
    ``hp + (m,)`` if ``reduce`` else ``hp + (d, m)`` where ``hp = broadcast(dyn.hp_shape, shape(B))``.
    Large reduced evaluations run on worker processes (see :data:`PROCESS_ENTRIES`).
    """
    t = np.asarray(t, dtype=np.int64)
    plan = Plan(problem, dyn, batch_size, reuse=False, m=t.shape[-1])
    if t.ndim > 1:
        t = np.broadcast_to(t, plan.hp + t.shape[-1:]).reshape(-1, t.shape[-1])
    workers = min(threads or THREADS, plan.H)
    if reduce and workers > 1 and plan.H * plan.d * t.shape[-1] >= PROCESS_ENTRIES and processes.may_spawn():
        out = _evaluate_on_processes(plan, t, workers)
    else:
        out = plan.risk(t, reduce=reduce, threads=threads)
    return out.reshape(plan.hp + out.shape[1:])


# Reduced evaluations of at least this many (setting, direction, step) entries are split over worker
# processes instead of threads.  Threads share the GIL, which NumPy holds while it allocates and
# dispatches each operation: on the 100 × 20 grid benchmark two threads ran 1.5× faster than one, two
# processes 2× (measured).  ``BATCHLAB_NQM_PROCESSES=0`` turns processes off (see
# :mod:`batchlab.nqm.workers`, where the processes come from).
PROCESS_ENTRIES = 1 << 23


def _settings_job(args) -> np.ndarray:
    problem, dyn, B, t = args
    return Plan(problem, dyn, B, reuse=False, m=t.shape[-1]).risk(t, reduce=True, threads=1)


def _evaluate_on_processes(plan: Plan, t: np.ndarray, workers: int) -> np.ndarray:
    """:meth:`Plan.risk` (reduced) with the settings dealt round-robin to ``workers`` processes (costs
    vary smoothly along a grid, so interleaving balances the load); in this process if they fail."""
    parts = [np.arange(k, plan.H, workers) for k in range(workers)]
    jobs = [(plan.problem, take_dynamics(plan.dyn, rows), plan.B[rows], t[rows] if t.ndim == 2 else t)
            for rows in parts]
    results = processes.run_persistent(_settings_job, jobs, workers)
    if results is None:  # the pool failed (a warning said so): same numbers, computed here
        return plan.risk(t, reduce=True)
    out = np.empty((plan.H, t.shape[-1]))
    for rows, res in zip(parts, results):
        out[rows] = res
    return out
