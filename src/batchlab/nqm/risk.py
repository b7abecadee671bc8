"""Exact expected risk of the NQM: at any steps, in the steady state, and the paper's bounds.

The expected risk after ``t`` steps is ``L(t) = Σ_i w_i ½ h_i E[θ_i(t)²]`` (see
:mod:`batchlab.nqm.dynamics` for the per-direction systems).  Every function here is exact in float64
(closed forms where they are well conditioned, exact doubling elsewhere), costs ``O(d log t)`` per
hyperparameter setting, and is vectorised over steps and over arrays of hyperparameters.

Example:
    >>> from batchlab.nqm import power_law, heavy_ball, expected_risk
    >>> r = expected_risk(power_law(1000), heavy_ball(0.5, 0.9), batch_size=64, steps=[0, 100, 1000])
    >>> r.shape
    (3,)
"""

from __future__ import annotations

import numpy as np

from batchlab.errors import InputError
from batchlab.nqm import _engine
from batchlab.nqm.checks import check_steps
from batchlab.nqm.dynamics import EMA, SGD, Dynamics, HeavyBall, Nesterov, build_system
from batchlab.nqm.setting import Setting
from batchlab.nqm.spectrum import Problem

__all__ = [
    "expected_risk", "steady_state_risk", "theorem1_bound", "theorem2_bound", "is_stable",
    "check_steps", "steady_state_of",
]


def expected_risk(problem: Problem, dyn: Dynamics, *, batch_size, steps, per_direction: bool = False,
                  threads: int | None = None) -> np.ndarray:
    """Exact expected risk ``L(t)`` after each of ``steps``.

    Args:
        problem: the NQM problem.
        dyn: optimizer dynamics (:func:`sgd`, :func:`heavy_ball`, :func:`nesterov`, :func:`with_ema`);
            its hyperparameters may be arrays, broadcasting to ``hp_shape``.
        batch_size: ``B ≥ 1`` (scalar or an array broadcasting with the hyperparameters).
        steps: non-negative integer step counts (any shape).
        per_direction: also keep the direction axis (risk of each entry, times its weight).
        threads: worker threads (default: all cores).
    Returns:
        Shape ``hp_shape + steps.shape`` (with ``(d,)`` before the steps axes if ``per_direction``).
        Unstable settings give ``inf`` at large ``t`` (never NaN).
    """
    t = check_steps(steps)
    out = _engine.evaluate(problem, dyn, batch_size, t.reshape(-1), reduce=not per_direction, threads=threads)
    return out.reshape(out.shape[:-1] + t.shape)


def is_stable(problem: Problem, dyn: Dynamics) -> np.ndarray:
    """Whether every direction is strictly inside the stability region (per hyperparameter setting)."""
    return Setting(problem, dyn, 1).stable


def _lyapunov_out(sys) -> np.ndarray:
    """Steady-state measured second moment by solving ``Σ = M Σ Mᵀ + q u uᵀ`` (general n).

    With ``M = I − E`` the operator is ``I − M⊗M = E⊗I + I⊗E − E⊗E``, built from ``E`` so that slow
    directions (tiny ``x``, where ``M⊗M`` rounds to the identity) keep full precision.  Solved only
    for stable entries (``x < limit``, where it is invertible); the others are ``inf``, and so is a
    stable entry so close to the limit that rounding leaves no positive solution.
    """
    rows = np.flatnonzero(np.broadcast_to(sys.x < sys.limit, sys.shape).reshape(-1))
    out = np.full(int(np.prod(sys.shape)), np.inf)
    flat = sys.reshape(-1)
    for start in range(0, rows.size, _LYAPUNOV_BLOCK):  # blocks bound the memory of the n²×n² systems
        block = rows[start:start + _LYAPUNOV_BLOCK]
        out[block] = _lyapunov_block(flat.take(block))
    return out.reshape(sys.shape)


_LYAPUNOV_BLOCK = 1 << 15


def _lyapunov_block(flat) -> np.ndarray:
    mats = flat.matrices()
    n = flat.n
    E, eye = mats[0], np.eye(n)
    A = (np.einsum("kij,ab->kiajb", E, eye) + np.einsum("ij,kab->kiajb", eye, E)
         - np.einsum("kij,kab->kiajb", E, E)).reshape(-1, n * n, n * n)
    rhs = _engine.noise_covariance(flat, mats).reshape(-1, n * n)
    with np.errstate(all="ignore"):
        try:
            sol = np.linalg.solve(A, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:  # an entry at the limit within rounding: solve one by one
            sol = np.stack([_solve_or_inf(a, b) for a, b in zip(A, rhs)])
    value = sol.reshape(-1, n, n)[:, flat.out, flat.out]
    return np.where(np.isfinite(value) & (value >= 0), value, np.inf)


def _solve_or_inf(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.full(b.shape, np.inf)


def steady_state_risk(problem: Problem, dyn: Dynamics, *, batch_size, per_direction: bool = False) -> np.ndarray:
    """Risk as ``t → ∞``: ``Σ_i w_i ½ h_i q_i S_i`` (``inf`` where unstable).

    Closed forms (``x = αPh``):
      SGD ``α c P / (2B(2 − x))``; heavy ball ``(1 + β) α c P / (2B(1 − β)(2 + 2β − x))``;
      SGD+EMA: the SGD value times ``(1 − γ)(1 + (1 − x)γ) / ((1 + γ)(1 − (1 − x)γ))`` (Theorem 2);
      Nesterov and momentum+EMA by solving the discrete Lyapunov equation per direction.
    """
    return steady_state_of(build_system(problem, dyn, batch_size), per_direction=per_direction)


def steady_state_of(sys, *, per_direction: bool = False) -> np.ndarray:
    """:func:`steady_state_risk` of built systems (:class:`~batchlab.nqm.dynamics.System`)."""
    stable = sys.x < sys.limit
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        S = sys.steady_state()  # the dynamics type's closed form (batchlab.nqm.dynamics), if any
        if S is None:
            S = _lyapunov_out(sys)
    per = np.where(stable, sys.weight * S, np.inf)
    per = np.broadcast_to(per, sys.x.shape)
    return per if per_direction else per.sum(axis=-1)


def _transient(problem: Problem, dyn: Dynamics, steps) -> np.ndarray:
    """Per-direction noise-free part ``w ½ h s0 (e M^t a)²`` (the mean's contribution)."""
    noiseless = Problem(h=problem.h, c=np.zeros_like(problem.c), s0=problem.s0, weights=problem.weights)
    return expected_risk(noiseless, dyn, batch_size=1, steps=steps, per_direction=True)


def theorem1_bound(problem: Problem, dyn: HeavyBall, *, batch_size, steps) -> np.ndarray:
    """Theorem 1 of the paper: ``L(t) ≤ Σ_i [(U_{t+1} − β U_t)² ℓ_i(0) + ℓ_i(∞)]`` for heavy ball.

    ``U_t = (r₁^t − r₂^t)/(r₁ − r₂)`` with ``r₁,₂`` the roots of ``r² − (1 − x + β) r + β``; the paper
    excludes critical damping, where this evaluates the exact limit.  Holds with equality at
    ``t = 0`` and as ``t → ∞``.
    """
    if not isinstance(dyn, HeavyBall) or isinstance(dyn, Nesterov):
        raise InputError("theorem1_bound applies to heavy-ball momentum (SGD is beta = 0)")
    return _bound(problem, dyn, batch_size, steps)


def theorem2_bound(problem: Problem, dyn: EMA, *, batch_size, steps) -> np.ndarray:
    """Theorem 2 of the paper (SGD with iterate averaging): transient with roots ``1 − x`` and ``γ``
    (``−γ(1 − x)`` in place of ``−β``) plus the EMA steady state."""
    if not (isinstance(dyn, EMA) and isinstance(dyn.base, SGD)):
        raise InputError("theorem2_bound applies to SGD with EMA")
    return _bound(problem, dyn, batch_size, steps)


def _bound(problem, dyn, batch_size, steps):
    steps = check_steps(steps)
    trans = _transient(problem, dyn, steps)
    floor = steady_state_risk(problem, dyn, batch_size=batch_size, per_direction=True)
    per = trans + floor.reshape(floor.shape + (1,) * steps.ndim)
    return per.sum(axis=-(steps.ndim + 1))
