"""Exact measured second moments of per-direction systems at many steps, chunked and threaded.

Dispatch: SGD by its closed form; 2-state systems (heavy ball, Nesterov, SGD+EMA) by the closed forms of
:mod:`batchlab.nqm._closed`, with the entries whose estimated cancellation is too large (near critical
damping, an EMA decay near a root, |root| ≥ 1) recomputed by exact doubling; 3-state systems
(momentum+EMA) by doubling.  Work is split into (hyperparameter, direction) blocks that fit in cache and
run on a thread pool (NumPy releases the GIL inside its loops).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from batchlab.nqm import _closed, _linear
from batchlab.nqm.dynamics import (
    Dynamics, System, build_system, flatten_dynamics, take_dynamics,
)
from batchlab.nqm.spectrum import Problem

__all__ = ["moment", "evaluate", "floor_risk", "initial_covariance", "noise_covariance", "THREADS"]

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
    t = np.asarray(t, dtype=np.int64)
    col = lambda a: np.asarray(a)[:, None]  # noqa: E731
    rows = sys.shape[0]
    t2 = t if t.ndim == 2 else t[None, :]
    if sys.n == 1:
        value = _closed.sgd_moment(col(sys.x), col(sys.q), col(sys.s0), t2.astype(np.float64))
        value = np.broadcast_to(value, (rows, t2.shape[1])).copy()
        bad = None
    elif (comp := sys.companion()) is not None:
        value, cancel = _closed.companion_moment(comp, np.asarray(sys.q), np.asarray(sys.s0), t)
        bad = ~(cancel <= _closed.TRUST)
    elif sys.n == 3:
        value, cancel = _closed.momentum_ema_moment(sys, t)
        bad = ~(cancel <= _closed.TRUST)
    else:
        value = np.empty((rows, t2.shape[1]))
        bad = np.ones(value.shape, bool)
    if bad is not None and bad.any():
        r, j = np.nonzero(bad)
        value[r, j] = doubling_moment(sys.take(r), np.broadcast_to(t2, value.shape)[r, j])
    unstable = ~(col(sys.x) < col(sys.limit))
    if unstable.any():
        value = np.where(np.isnan(value) & unstable, np.inf, value)
    return value


def floor_risk(problem: Problem, dyn: Dynamics, batch_size) -> np.ndarray | None:
    """Steady-state risk per hyperparameter setting from the closed-form noise floors (``nan`` where
    a floor is unstable or ill-conditioned), or ``None`` for systems without one (momentum + EMA, whose
    floor needs a Lyapunov solve per direction — see :func:`batchlab.nqm.risk.steady_state_risk`)."""
    sys = build_system(problem, dyn, batch_size)
    floor = _closed.noise_floor(sys)
    if floor is None:
        return None
    fl, _, trusted = floor
    with np.errstate(invalid="ignore", over="ignore"):
        per = np.where(trusted, sys.weight * sys.q * fl, np.nan)
    return per.sum(axis=-1)


def _block_risk(sys: System, t: np.ndarray, reduce: bool) -> np.ndarray:
    """Weighted risk of a ``(h, d)`` block of systems at steps ``t``: ``(h, m)`` or ``(h, d, m)``.

    Entries whose transient is negligible at a step hold only the noise floor there (a closed form
    without cancellation); the rest go through :func:`moment`.  Negligible means every root power
    has underflowed, or the rigorous bound (``|U_t| ≤ t R^(t−1)``, ``|m1| + |m0|, |n1| + |n0| ≤ 8``)

        s0 mean_t² + q Σ_{k≥t} V_k² ≤ 64 R^(2t−2) [s0 t² + q (2(t+1)²/(1−R²) + 4/(1−R²)³)]

    is below ``1e-17 × q × floor`` — far below float64 resolution of the entry.
    """
    weight = np.broadcast_to(sys.weight, sys.shape)
    floor = _closed.noise_floor(sys)
    t_full = t[:, None, :] if t.ndim == 2 else t  # per-hp steps broadcast over directions
    out_shape = sys.shape + (t.shape[-1],)
    if floor is None:
        live = np.ones(sys.shape, bool)
        val = np.empty(out_shape)
    else:
        fl, log_rad, trusted = floor
        tf = t_full.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            lr = log_rad[..., None]
            decayed = trusted[..., None] & ((tf - 1.0) * lr < -800.0) & (tf > 0)
            q = np.broadcast_to(sys.q, sys.shape)[..., None]
            s0 = np.broadcast_to(sys.s0, sys.shape)[..., None]
            om = -np.expm1(2.0 * lr)  # 1 − R²
            log_bound = (math.log(64.0) + (2.0 * tf - 2.0) * lr
                         + np.log(s0 * tf**2 + q * (2.0 * (tf + 1.0) ** 2 / om + 4.0 / om**3)))
            negligible = log_bound < np.log(1e-17 * q * fl[..., None])
            decayed |= trusted[..., None] & (tf >= 2) & negligible
        val = np.broadcast_to((weight * np.broadcast_to(sys.q, sys.shape) * fl)[..., None], decayed.shape).copy()
        live = ~np.all(decayed, axis=-1)
    if live.any():
        idx = np.nonzero(live)
        sub = sys.take(idx)
        tt = np.broadcast_to(t_full, out_shape)[idx] if t.ndim == 2 else t
        val[idx] = moment(sub, tt) * np.asarray(sub.weight)[:, None]
    return val.sum(axis=-2) if reduce else val


def evaluate(problem: Problem, dyn: Dynamics, batch_size, t: np.ndarray, *, reduce: bool,
             threads: int | None = None) -> np.ndarray:
    """Risk per hyperparameter setting (and per direction unless ``reduce``) at steps ``t``.

    ``t`` is ``(m,)``, or ``hp + (m,)`` for steps per hyperparameter setting.  Returns shape
    ``hp + (m,)`` if ``reduce`` else ``hp + (d, m)`` where ``hp = broadcast(dyn.hp_shape, shape(B))``.
    """
    t = np.asarray(t, dtype=np.int64)
    hp = np.broadcast_shapes(dyn.hp_shape, np.shape(batch_size))
    if t.ndim > 1:
        t = np.broadcast_to(t, hp + t.shape[-1:]).reshape(-1, t.shape[-1])
    H, d, m = int(np.prod(hp)), problem.dim, t.shape[-1]
    fdyn = flatten_dynamics(dyn, hp)
    B = np.broadcast_to(np.asarray(batch_size, dtype=np.float64), hp).reshape(-1)
    dir_block = max(1, min(d, _BLOCK // max(1, m)))
    hp_block = max(1, _BLOCK // (dir_block * max(1, m)))
    items = [(h0, min(H, h0 + hp_block), d0, min(d, d0 + dir_block))
             for h0 in range(0, H, hp_block) for d0 in range(0, d, dir_block)]
    out = np.zeros((H, m)) if reduce else np.empty((H, d, m))
    sub_problems = {}

    def problem_block(d0, d1):
        if (d0, d1) not in sub_problems:
            sub_problems[(d0, d1)] = problem if (d0, d1) == (0, d) else Problem(
                h=problem.h[d0:d1], c=problem.c[d0:d1], s0=problem.s0[d0:d1], weights=problem.weights[d0:d1])
        return sub_problems[(d0, d1)]

    for d0 in range(0, d, dir_block):
        problem_block(d0, min(d, d0 + dir_block))

    def work(item):
        h0, h1, d0, d1 = item
        sys = build_system(problem_block(d0, d1), take_dynamics(fdyn, slice(h0, h1)), B[h0:h1])
        return item, _block_risk(sys, t[h0:h1] if t.ndim == 2 else t, reduce)

    workers = min(threads or THREADS, len(items))
    if workers <= 1:
        results = map(work, items)
    else:
        pool = ThreadPoolExecutor(workers)
        results = pool.map(work, items)
    for (h0, h1, d0, d1), val in results:
        if reduce:
            out[h0:h1] += val
        else:
            out[h0:h1, d0:d1] = val
    if workers > 1:
        pool.shutdown()
    return out.reshape(hp + out.shape[1:])
