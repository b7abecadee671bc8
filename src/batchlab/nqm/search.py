"""Fast steps-to-target for arrays of hyperparameters: galloping and vectorised regula falsi.

The answer for each setting is a verified hit (``L(T) ≤ target``), the first one when the risk
decreases through the target; :func:`batchlab.nqm.solve.steps_to_target` certifies the first hit of
one setting.  Used by the hyperparameter searches (:mod:`batchlab.nqm.optimize`).
"""

from __future__ import annotations

import math

import numpy as np

from batchlab.nqm import _engine
from batchlab.nqm.checks import MAX_STEPS, check_target
from batchlab.nqm.dynamics import Dynamics, flatten_dynamics
from batchlab.nqm.spectrum import Problem

__all__ = ["search_steps", "log_secant"]


def search_steps(problem: Problem, dyn: Dynamics, *, batch_size, target: float, max_steps: int = MAX_STEPS,
                 fractional: bool = False, near: float | None = None, rtol: float = 0.0,
                 rounds: int | None = None, span: float = 8.0, points: int = 13, cap=None,
                 keep=None) -> np.ndarray:
    """Fast steps-to-target for arrays of hyperparameters (for searches).

    Galloping over powers of two, then regula falsi (bisection as the fallback), both vectorised over
    settings.  The result is a verified hit (``L(T) ≤ target``) or ``inf``; it is the first hit when the
    risk decreases through the target (not certified — use :func:`steps_to_target` for the exact
    answer).  With ``fractional`` the crossing is interpolated between ``T − 1`` and ``T`` (log t
    against the log excess over the noise floor), which makes the objective continuous for local
    optimisers.

    Options that only save work:

    * ``near`` (a step count close to the expected answers) replaces the galloping by a window of
      ``points`` step counts spaced geometrically from ``near / span`` to ``near · span`` (default
      ``near · 2^(k/2 − 3)``); settings not bracketed by the window fall back to galloping.
    * ``cap`` (per setting, broadcast like the hyperparameters): only answers ``≤ cap`` are wanted — a
      comparison against an incumbent.  The window is ``points`` counts from ``cap / span`` up to
      ``⌈cap⌉``; a setting that has not reached the target by ``⌈cap⌉`` reports ``inf`` (it cannot beat
      the incumbent) without galloping or refinement.  Settings with a non-finite cap are searched
      as without it.
    * ``keep(lo, hi)``: given every setting's initial bracket (the answer lies in ``(lo, hi]``;
      ``hi = 0`` where nothing is bracketed yet, the answer then lies above ``lo``), marks the settings
      still wanted; only those are galloped (if the window missed them) and refined.  It is called
      before and, if anything was galloped, again after galloping.  Unwanted settings report the
      interpolation across their initial bracket, or ``inf`` if they had none (e.g. a grid whose
      ranking only matters near its top).
    * ``rtol > 0`` stops refining a bracket once it is narrower than ``rtol`` times its upper end (a
      search objective needs no more); the fractional value then interpolates across the bracket.
    * ``rounds`` caps the refinement rounds (for searches: the few settings whose brackets close
      slowly — far from any optimum — then keep a wider bracket, and the result is a hit but not
      necessarily the first).
    """
    target = check_target(target)
    hp = np.broadcast_shapes(dyn.hp_shape, np.shape(batch_size))
    fdyn = flatten_dynamics(dyn, hp)
    B = np.broadcast_to(np.asarray(batch_size, dtype=np.float64), hp).reshape(-1)
    H = B.shape[0]
    has = np.zeros(H, bool)
    lo, hi = np.zeros(H, np.int64), np.zeros(H, np.int64)
    lo_val, hi_val = np.full(H, np.inf), np.full(H, np.inf)

    def bracket(idx, steps, vals):
        """The first step of each row of ``steps`` (sorted) whose value is ≤ target, and the one before."""
        below = vals <= target
        found = below.any(axis=1)
        first = np.argmax(below, axis=1)
        prev = np.maximum(first - 1, 0)
        steps = np.broadcast_to(steps, vals.shape)
        r = np.arange(len(idx))
        has[idx] = found
        hi[idx] = np.where(found, steps[r, first], 0)
        lo[idx] = np.where(found & (first > 0), steps[r, prev], 0)
        hi_val[idx] = np.where(found, vals[r, first], np.inf)
        lo_val[idx] = np.where(found & (first > 0), vals[r, prev], np.inf)

    plan = _engine.Plan(problem, fdyn, B)  # shared by every evaluation below
    rest = np.arange(H)
    if cap is not None:
        capv = np.broadcast_to(np.asarray(cap, dtype=np.float64), hp).reshape(-1)
        use = np.isfinite(capv) & (capv >= 1)
        if use.any():
            idx = np.flatnonzero(use)
            top = np.ceil(capv[idx])[:, None]
            factors = float(span) ** np.linspace(-1.0, 0.0, max(2, int(points)))
            window = np.maximum(np.round(top * factors[None, :]), 1.0)
            window = np.concatenate([np.zeros((idx.size, 1)), window[:, :-1], top], axis=1)
            window = np.maximum.accumulate(window, axis=1).astype(np.int64)  # sorted (repeats are harmless)
            bracket(idx, window, plan.risk(window, idx, reduce=True))
            rest = np.flatnonzero(~use)
    refine = np.ones(H, bool)
    galloped = False
    if rest.size:
        # galloping over powers of two; of four when ``keep`` prunes (the kept brackets are refined anyway)
        gallop = np.concatenate([[0], 2 ** np.arange(0, int(math.log2(max_steps)) + 1, 2 if keep else 1)])
        gallop = np.unique(np.append(gallop[gallop <= max_steps], max_steps))
        missed = np.ones(rest.size, bool)
        if near is not None and np.isfinite(near) and near >= 8:
            factors = float(span) ** np.linspace(-1.0, 1.0, max(2, int(points)))
            window = np.unique(np.concatenate([[0], np.round(near * factors)])).astype(np.int64)
            vals = plan.risk(window, rest, reduce=True)
            bracket(rest, window[None, :], vals)
            missed = ~has[rest]
            lo[rest[missed]] = window[-1]  # not bracketed: the answer lies above the window
        if keep is not None:
            refine = np.asarray(keep(lo.copy(), np.where(has, hi, 0)), bool).reshape(-1)
        idx = np.flatnonzero(missed & refine[rest])
        if idx.size:  # galloping for the settings no window bracketed (and that are still wanted)
            gv = plan.risk(gallop, rest[idx], reduce=True)
            bracket(rest[idx], gallop[None, :], gv)
            galloped = True
    if keep is not None and (galloped or not rest.size):  # (again) with every bracket known
        refine = np.asarray(keep(lo.copy(), np.where(has, hi, 0)), bool).reshape(-1)
    # Illinois regula falsi inside each bracket, bisection as the fallback, on log t against
    # g = log((L − F)/(target − F)) with F the noise floor: close to linear where the excess over the
    # floor decays like a power of t (plain log L bends sharply when the target sits near the floor,
    # where the optimum usually puts it); log(L/target) where that transform does not apply (or the
    # floor has no closed form: it only speeds up the search).
    floor = plan.floor_risk()
    floor = np.full(H, np.nan) if floor is None else floor
    floor = np.where(np.isfinite(floor) & (floor >= 0) & (floor < target), floor, np.nan)

    def excess(v_lo, v_hi, f):
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = (v_lo > f) & (v_hi > f)  # False where f is nan
            fe = np.where(ok, f, 0.0)
            return np.log((v_lo - fe) / (target - fe)), np.log((v_hi - fe) / (target - fe))

    side = np.zeros(H, dtype=np.int8)
    refine &= has

    def unresolved():
        return refine & (hi - lo > np.maximum(1, rtol * hi))

    active = unresolved()
    done = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        while active.any() and (rounds is None or done < rounds):
            done += 1
            idx = np.flatnonzero(active)
            f_lo, f_hi = excess(lo_val[idx], hi_val[idx], floor[idx])
            s_lo = np.where(side[idx] == 1, 0.5, 1.0) * f_lo  # Illinois: halve the stale end's weight
            s_hi = np.where(side[idx] == -1, 0.5, 1.0) * f_hi
            guess = log_secant(lo[idx], hi[idx], s_lo, s_hi)
            mid = np.round(guess).astype(np.int64)
            bisect = (lo[idx] + hi[idx]) // 2
            ok = np.isfinite(guess) & (mid > lo[idx]) & (mid < hi[idx])
            mid = np.where(ok, mid, bisect)
            rm = plan.risk(mid[:, None], idx, reduce=True)[:, 0]
            hit = rm <= target
            hi[idx[hit]], hi_val[idx[hit]] = mid[hit], rm[hit]
            lo[idx[~hit]], lo_val[idx[~hit]] = mid[~hit], rm[~hit]
            side[idx] = np.where(hit, 1, -1)
            active = unresolved()
    steps = np.where(has, hi.astype(np.float64), np.inf)
    if fractional:  # interpolation of the crossing inside [lo, hi] (log t against the transform above)
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = log_secant(lo, hi, *excess(lo_val, hi_val, floor))
        cross = np.where(np.isfinite(cross) & (lo > 0), np.clip(cross, lo, hi), hi)
        steps = np.where(has, cross, np.inf)
    return steps.reshape(hp)


def log_secant(lo, hi, f_lo, f_hi):
    """Where the line through ``(log lo, f_lo)`` and ``(log hi, f_hi)`` crosses 0, as a step count."""
    x_lo, x_hi = np.log(np.maximum(lo, 0.5)), np.log(np.maximum(hi, 1).astype(np.float64))
    return np.exp(x_lo + (x_hi - x_lo) * f_lo / (f_lo - f_hi))
