"""Steps to reach a target risk: the exact first hit, and a fast vectorised version for searches.

The first hit is ``T = min{t : L(t) ≤ target}``.  The risk need not be monotone in ``t`` (underdamped
momentum oscillates; directions that start below their noise floor rise), so :func:`steps_to_target`
does not assume it is: it finds a candidate hit by galloping and a 4-way search (or from an estimate
of the answer), then **certifies** that no earlier step hits, by branch and bound on step intervals
with a rigorous bound on the per-step change of each direction's risk ``l_i``::

    |l_i(t+1) − l_i(t)| ≤ λ_i(t) = w_i [s0 A_d (2 A_m + A_d) + q A_n²] env_i(t)²

where ``env_i(t) = G_i^(t−1) t^p min(t, K_i)`` bounds ``|e M^t w| / A_w`` for the direction's
spectral radius ``G_i`` (``|U_t| ≤ min(t, K) G^(t−1)`` with ``K = 1/sin φ`` for complex roots,
``1/(1 − ω)`` for real roots of one sign).  On ``[a, b]`` every step then satisfies
``L(t) ≥ Σ_i max(0, (l_i(a) + l_i(b) − (b − a) max λ_i)/2)``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from batchlab.errors import InputError
from batchlab.nqm import _engine
from batchlab.nqm.dynamics import (
    Dynamics, _heavy_ball_companion, _nesterov_companion, build_system, flatten_dynamics,
)
from batchlab.nqm.risk import expected_risk, is_stable, steady_state_risk
from batchlab.nqm.spectrum import Problem

__all__ = ["Hit", "steps_to_target", "search_steps", "compress", "MAX_STEPS"]

MAX_STEPS = 2**40
ROUNDING = 1e-11  # relative error allowance of one risk evaluation in the certificate
_SPARSE = 8.0  # with an estimate, the certificate's first cells end at estimate / 8^k


@dataclasses.dataclass(frozen=True)
class Hit:
    """Result of :func:`steps_to_target`.

    Attributes:
        steps: the first step with risk ≤ target, or ``inf``.
        reason: ``"reached"``; or why not: ``"unstable"``, ``"floor"`` (the noise floor is above the
            target and no earlier step dips below it), ``"budget"`` (not reached within ``max_steps``).
        risk: the risk at ``steps`` (``nan`` when not reached).
        evaluations: risk evaluations spent (steps × hyperparameter settings).
    """

    steps: float
    reason: str
    risk: float
    evaluations: int

    @property
    def reached(self) -> bool:
        return self.reason == "reached"


def _check_target(target) -> float:
    if not np.isfinite(target) or target <= 0:
        raise InputError(f"target must be a finite number > 0, got {target}")
    return float(target)


class _Risk:
    """Memoised risk evaluations at integer steps for one hyperparameter setting, kept per direction
    (the certificate bounds every direction on its own)."""

    def __init__(self, problem: Problem, dyn: Dynamics, batch_size: float):
        self.problem, self.dyn, self.B = problem, dyn, batch_size
        self.plan = _engine.Plan(problem, dyn, batch_size)  # keeps the t-independent work across calls
        self.cache: dict[int, float] = {}
        self.parts: dict[int, np.ndarray] = {}

    def _fill(self, steps) -> list[int]:
        steps = [int(s) for s in np.atleast_1d(steps)]
        todo = sorted({s for s in steps if s not in self.cache})
        if todo:
            vals = self.plan.risk(np.array(todo, dtype=np.int64), reduce=False)[0]  # (d, m)
            total = vals.sum(axis=0)
            for j, s in enumerate(todo):
                self.parts[s] = vals[:, j]
                self.cache[s] = float(total[j])
        return steps

    def __call__(self, steps) -> np.ndarray:
        return np.array([self.cache[s] for s in self._fill(steps)])

    def per_direction(self, steps) -> np.ndarray:
        """``(d, len(steps))`` per-direction risks."""
        return np.stack([self.parts[s] for s in self._fill(steps)], axis=1)


def steps_to_target(problem: Problem, dyn: Dynamics, *, batch_size: float, target: float,
                    max_steps: int = MAX_STEPS, near: float | None = None) -> Hit:
    """The exact first step at which the expected risk is ≤ ``target`` (scalar hyperparameters).

    ``near`` (an estimate of the answer, e.g. from a search on a compressed spectrum) only saves
    evaluations: the answer is certified the same way with or without it.

    Example:
        >>> from batchlab.nqm import power_law, sgd
        >>> hit = steps_to_target(power_law(1000), sgd(1.0), batch_size=1024, target=0.05)
        >>> hit.reached
        True
    """
    target = _check_target(target)
    if dyn.hp_shape != ():
        raise InputError("steps_to_target takes scalar hyperparameters (use search_steps for arrays)")
    if not bool(is_stable(problem, dyn)):
        return Hit(math.inf, "unstable", math.nan, 0)
    risk = _Risk(problem, dyn, batch_size)
    if risk(0)[0] <= target:
        return Hit(0, "reached", float(risk(0)[0]), 1)
    floor = float(steady_state_risk(problem, dyn, batch_size=batch_size))
    powers = np.unique(np.concatenate([[0], 2 ** np.arange(0, int(math.log2(max_steps)) + 1), [max_steps]]))
    powers = powers[powers <= max_steps]
    bracketed = False
    if near is not None and math.isfinite(near) and 16 <= near < max_steps / 4:
        # points estimate / 8^k below the estimate (the certificate's first cells) and a tight window around it
        window = np.round(near * (1.0 + 5e-4 * np.arange(-3, 4))).astype(np.int64)
        below = np.unique(np.round(near / _SPARSE ** np.arange(1, 1 + int(math.log(near) / math.log(_SPARSE)))))
        bracketed = bool((risk(np.concatenate([[0], below, window]).astype(np.int64)) <= target).any())
    if not bracketed:
        risk(powers)
    powers = np.array(sorted(t for t in risk.cache if t <= max_steps))
    vals = risk(powers)
    hits = np.flatnonzero(vals <= target)
    if hits.size:
        hi = int(powers[hits[0]])
        lo = int(powers[hits[0] - 1])
        hi, lo = _candidate(risk, target, floor, lo, hi)
        candidate, horizon = hi, hi
    else:
        candidate = None
        if floor <= target:
            return Hit(math.inf, "budget", math.nan, len(risk.cache))
        horizon = _noise_horizon(problem, dyn, batch_size, target, max_steps)
    if (candidate is not None and risk(candidate - 1)[0] > target * (1 + 3 * ROUNDING)
            and _monotone(problem, dyn, batch_size)):
        # non-increasing risk, and the step before is above the target by more than rounding
        return Hit(candidate, "reached", float(risk(candidate)[0]), len(risk.cache))
    first = _certify(problem, dyn, batch_size, target, risk, horizon, candidate)
    if first is None:
        return Hit(math.inf, "floor", math.nan, len(risk.cache))
    return Hit(first, "reached", float(risk(first)[0]), len(risk.cache))


def _candidate(risk: _Risk, target: float, floor: float, lo: int, hi: int) -> tuple[int, int]:
    """Narrow a bracket (``L(lo) > target ≥ L(hi)``) to adjacent steps: a candidate first hit ``hi``
    (assumes nothing: the caller certifies it).

    Regula falsi on ``log t`` against ``log((L − F)/(target − F))`` (``F`` the noise floor), probing
    the guess and the step before it, so a good guess closes the bracket at once; Illinois weights,
    and a bisection whenever a probe leaves more than half the bracket.
    """
    use_floor = math.isfinite(floor) and 0 <= floor < target

    def g(v):
        if use_floor and v > floor:
            return math.log((v - floor) / (target - floor))
        return math.log(v / target) if v > 0 else -math.inf

    side, halve = 0, False
    while hi - lo > 1:
        if halve:
            probe = np.array([(lo + hi) // 2])
        else:
            f_lo, f_hi = g(float(risk(lo)[0])), g(float(risk(hi)[0]))
            f_lo *= 0.5 if side == 1 else 1.0
            f_hi *= 0.5 if side == -1 else 1.0
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                guess = float(_log_secant(np.int64(lo), np.int64(hi), f_lo, f_hi))
            mid = int(round(guess)) if math.isfinite(guess) else (lo + hi) // 2
            mid = min(max(mid, lo + 1), hi - 1)
            probe = np.unique([max(mid - 1, lo + 1), mid])
        width = hi - lo
        pv = risk(probe)
        below = np.flatnonzero(pv <= target)
        if below.size:
            hi = int(probe[below[0]])
            lo = int(probe[below[0] - 1]) if below[0] > 0 else lo
            side = 1
        else:
            lo = int(probe[-1])
            side = -1
        halve = not halve and (hi - lo) * 2 > width
    return hi, lo


def _monotone(problem: Problem, dyn: Dynamics, batch_size: float) -> bool:
    """Whether the risk is provably non-increasing in ``t``: SGD with every direction starting at or
    above its noise floor (``s_t = s* + r^{2t}(s0 − s*)``, ``r² < 1``)."""
    from batchlab.nqm.dynamics import SGD

    if not isinstance(dyn, SGD):
        return False
    sys = build_system(problem, dyn, batch_size)
    floor = np.asarray(sys.q) / (np.asarray(sys.x) * (2.0 - np.asarray(sys.x)))
    return bool(np.all(np.asarray(sys.s0) >= floor))


def _noise_horizon(problem, dyn, batch_size, target, max_steps) -> int:
    """A step after which the risk stays above ``target``: the noise part alone exceeds it there."""
    noise_only = Problem(h=problem.h, c=problem.c, s0=np.zeros_like(problem.s0), weights=problem.weights)
    t = 1
    while t < max_steps:
        if expected_risk(noise_only, dyn, batch_size=batch_size, steps=[t])[0] > target:
            return t
        t *= 2
    return max_steps


@dataclasses.dataclass(frozen=True)
class _Envelope:
    """Per-direction bounds ``|e M^t w| ≤ min(modal_w(t), A_w G^(t−1) t^p min(t, K))`` for the
    sequences that move the risk: the mean (w = a), its first and second differences (w = (M − I) a,
    (M − I)² a), the noise response (w = u) and its first difference (w = (M − I) u).
    ``modal_w(t) = P_w |r₁|^t + Q_w |r₂|^t`` (tight for distinct roots; for a complex pair
    ``P = |c₁ − r̄ c₀| / (ρ sin φ)``, ``Q = 0``).
    """

    log_g: np.ndarray
    log_k: np.ndarray
    power: int
    A: dict
    roots: tuple | None  # (log|r1|, log|r2|) of the modal bounds, or None
    modal: dict  # name → (P, Q)
    s0: np.ndarray
    q: np.ndarray
    weight: np.ndarray

    def bounds(self, a: np.ndarray, b: np.ndarray) -> dict:
        """Upper bounds of ``|e M^t w|`` over ``t ∈ [a, b]`` for every sequence, each ``(d, cells)``
        (the powers are shared by all sequences: computed once)."""
        a, b = a.astype(np.float64)[None, :], b.astype(np.float64)[None, :]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            decay = np.where(a <= 1, 0.0, (a - 1.0) * self.log_g[:, None])
            logb = np.log(np.maximum(b, 1.0))
            grow = np.exp(decay + self.power * logb + np.minimum(logb, self.log_k[:, None]))
            out = {name: A[:, None] * grow for name, A in self.A.items()}
            if self.roots is not None:
                l1, l2 = self.roots
                e1 = np.exp(np.where(a == 0, 0.0, a * l1[:, None]))  # |r|^a (r^0 = 1 also for r = 0)
                e2 = np.exp(np.where(a == 0, 0.0, a * l2[:, None]))
                for name, (P, Q) in self.modal.items():
                    out[name] = np.fmin(P[:, None] * e1 + Q[:, None] * e2, out[name])  # fmin skips nan
        return out


def _envelope(problem: Problem, dyn: Dynamics, batch_size: float) -> _Envelope:
    """The bounds of :class:`_Envelope` for every direction of ``dyn`` on ``problem``."""
    sys = build_system(problem, dyn, batch_size)
    flat = sys.reshape(-1)
    E, u, a = flat.matrices()
    n, out = flat.n, flat.out
    M = np.eye(n) - E
    Ea = np.einsum("kij,kj->ki", E, a)
    # mean, its first and second differences; noise response and its first difference
    seqs = {"m": a, "d": -Ea, "dd": np.einsum("kij,kj->ki", E, Ea), "n": u, "dn": -np.einsum("kij,kj->ki", E, u)}
    x = np.asarray(flat.x)
    common = dict(s0=np.asarray(flat.s0), q=np.asarray(flat.q), weight=np.asarray(flat.weight))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if n == 1:
            log_r = np.log(np.abs(1.0 - x))
            A = {k: np.abs(w[:, 0]) for k, w in seqs.items()}
            modal = {k: (A[k], np.zeros_like(x)) for k in seqs}
            return _Envelope(log_r, np.zeros_like(x), 0, A, (log_r, log_r), modal, **common)
        if flat.kind == "sgd":
            comp = flat.companion()
        else:
            comp = (_nesterov_companion if flat.kind == "nesterov" else _heavy_ball_companion)(x, flat.beta)
        log_g, log_k = _radius_and_cap(comp)
        if n == 3:  # momentum + EMA: measured θ̃ = EMA of the base's coordinate 0
            gamma = np.asarray(flat.gamma)
            log_g = np.maximum(log_g, np.log(gamma))
            M2 = M[:, :2, :2]
            A = {k: np.abs(w[:, 2]) + (1.0 - gamma) * (np.abs(np.einsum("ki,ki->k", M2[:, 0], w[:, :2]))
                                                       + np.abs(w[:, 0])) for k, w in seqs.items()}
            return _Envelope(log_g, log_k, 1, A, None, {}, **common)
        c = {k: (np.einsum("ki,ki->k", M[:, out], w), w[:, out]) for k, w in seqs.items()}
        A = {k: np.abs(c1) + np.abs(c0) for k, (c1, c0) in c.items()}
        roots = _roots(comp)
        modal = {k: _modal(comp, roots, c1, c0) for k, (c1, c0) in c.items()}
        logs = _modal_logs(roots)
    return _Envelope(log_g, log_k, 0, A, logs, modal, **common)


def _roots(comp):
    """``(√|D|, complex?, ρ = √|δ|, r1, r2)`` of the characteristic polynomials (r1 of the sign of τ)."""
    sd = np.sqrt(np.abs(comp.disc))
    r1 = (comp.tau + np.where(comp.tau >= 0, sd, -sd)) / 2.0
    return sd, comp.disc < 0, np.sqrt(np.abs(comp.delta)), r1, comp.delta / r1


def _modal(comp, roots, c1, c0):
    """Modal bound coefficients ``(P, Q)`` of ``c1 U_t − c0 δ U_{t−1}`` (see :class:`_Envelope`)."""
    sd, cplx, rho, r1, r2 = roots
    sin_phi, cos_phi = sd / (2.0 * rho), comp.tau / (2.0 * rho)
    amp_c = np.sqrt((c1 - rho * c0 * cos_phi) ** 2 + (rho * c0 * sin_phi) ** 2) / (rho * sin_phi)
    P = np.abs(c1 - r2 * c0) / sd
    Q = np.abs(c1 - r1 * c0) / sd
    return np.where(cplx, amp_c, P), np.where(cplx, 0.0, Q)


def _modal_logs(roots):
    """``(log|r1|, log|r2|)`` of the modal bounds (both ``log ρ`` for a complex pair)."""
    _, cplx, rho, r1, r2 = roots
    log_rho = np.log(rho)
    return np.where(cplx, log_rho, np.log(np.abs(r1))), np.where(cplx, log_rho, np.log(np.abs(r2)))


def _radius_and_cap(c):
    """Log spectral radius and log of the cap ``K`` with ``|U_t| ≤ min(t, K) G^(t−1)``."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sd = np.sqrt(np.abs(c.disc))
        cplx = c.disc < 0
        cb = np.where(c.tau >= 0, 2.0 * c.p1 / (c.p1 + c.omd + sd), 2.0 * c.pm1 / (c.pm1 + c.omd + sd))
        log_g = np.where(cplx, 0.5 * np.log1p(-np.minimum(c.omd, 1.0)), np.log1p(-np.minimum(cb, 1.0)))
        rho = np.sqrt(np.abs(c.delta))
        log_k_c = np.log(2.0 * rho / sd)  # 1 / sin φ
        psi2 = np.log1p(sd * (np.abs(c.tau) + sd) / (2.0 * np.abs(c.delta)))
        log_k_same = -np.log(-np.expm1(-psi2))  # 1 / (1 − ω)
        log_k = np.where(cplx, log_k_c,
                         np.where(c.delta > 0, log_k_same, np.where(c.delta < 0, np.log(2.0), 0.0)))
        log_k = np.where(c.disc == 0, np.inf, log_k)
    return log_g, log_k


def _step_change(env: _Envelope, e: dict) -> np.ndarray:
    """Per-direction upper bounds on ``|l_i(t+1) − l_i(t)|`` for ``t ∈ [a, b]``, shape ``(d, cells)``::

        w [ s0 |D_t| (2 |mean_t| + |D_t|) + q V_t² ]

    (``0 · ∞`` terms of directions without initial error or noise count as 0).
    """
    m, d, n = e["m"], e["d"], e["n"]
    with np.errstate(invalid="ignore"):
        terms = env.weight[:, None] * (env.s0[:, None] * d * (2.0 * m + d) + env.q[:, None] * n * n)
    return np.where(np.isnan(terms), 0.0, terms)


def _curvature(env: _Envelope, e: dict) -> np.ndarray:
    """Per-direction upper bounds on ``|l_i(t+1) − 2 l_i(t) + l_i(t−1)|`` for ``t−1, t+1 ∈ [a, b]``::

        w [ s0 (2 |mean| |D²| + 2 D²) + q 2 |V| |ΔV| ]

    from ``Δ²(mean²) = 2 mean_t (D_t − D_{t−1}) + D_t² + D_{t−1}²`` and ``Δ²N_t = V_t² − V_{t−1}²``.
    """
    m, d, dd, n, dn = e["m"], e["d"], e["dd"], e["n"], e["dn"]
    with np.errstate(invalid="ignore"):
        terms = env.weight[:, None] * (env.s0[:, None] * 2.0 * (m * dd + d * d) + env.q[:, None] * 2.0 * n * dn)
    return np.where(np.isnan(terms), 0.0, terms)


def _noise_part(env: _Envelope, e: dict, la: np.ndarray) -> np.ndarray:
    """Per-direction lower bounds of ``l_i(t)`` over each cell from its noise part alone: ``l_i(t) ≥
    w q N_t ≥ w q N_a`` (``N_t = Σ_{k<t} V_k²`` never decreases) and ``w q N_a = l_i(a) − w s0 mean_a²
    ≥ l_i(a) − w s0 sup|mean|²`` — tight for directions that sit at their noise floor."""
    with np.errstate(invalid="ignore", over="ignore"):
        mean_part = env.weight[:, None] * env.s0[:, None] * e["m"] ** 2
        z = la - np.where(np.isnan(mean_part), np.inf, mean_part)
    return np.where(z > 0, z, 0.0)


def _cell_lower_bound(la, lb, width, lam, kappa, noise=None) -> np.ndarray:
    """A lower bound of ``L(t) = Σ_i l_i(t)`` over each cell ``[a, b]`` of ``width`` steps.

    Each direction is bounded at first order, ``l_i ≥ max(0, (l_i(a) + l_i(b) − width λ_i)/2)``, by
    its noise part ``noise`` (see :func:`_noise_part`), or at second order: ``l_i`` lies above its
    chord minus ``κ_i (t − a)(b − t)/2`` (``κ_i`` bounds its second difference), and the chords of the
    directions bounded that way sum to a chord, so those directions together are
    ``≥ min(Σ l_i(a), Σ l_i(b)) − width² Σ κ_i / 8``.  Each direction takes the bound that is largest
    on its own (any split gives a valid bound): directions at their noise floor the noise part,
    oscillating ones the first order, the slow, smooth ones that carry the risk near the first hit
    the second.
    """
    w = width[None, :]
    with np.errstate(invalid="ignore", over="ignore"):
        first = 0.5 * (la + lb - w * lam)
        first = np.where(first > 0, first, 0.0)
        if noise is not None:
            first = np.maximum(first, noise)
        curve = kappa * (w * w / 8.0)
        second = np.where(np.isnan(curve), -np.inf, np.minimum(la, lb) - curve)
    use2 = second > first
    chord = np.minimum(np.sum(np.where(use2, la, 0.0), axis=0), np.sum(np.where(use2, lb, 0.0), axis=0))
    return np.sum(np.where(use2, 0.0, first), axis=0) + chord - np.sum(np.where(use2, curve, 0.0), axis=0)


def _certify(problem, dyn, batch_size, target, risk: _Risk, horizon: int, candidate):
    """Smallest ``t ≤ horizon`` with ``L(t) ≤ target`` (None if none), by branch and bound.

    On a cell ``[a, b]`` each direction's risk satisfies ``l_i(t) ≥ max(0, (l_i(a) + l_i(b) −
    (b − a) λ_i)/2)`` with ``λ_i`` its step-change bound; the cell is cleared when the sum of these
    lower bounds is above the target.  Bounding each direction separately keeps the fast, oscillating
    directions (whose |change| per step is large but whose risk is small) from loosening the bound on
    the slow ones that carry the risk.
    """
    env = _envelope(problem, dyn, batch_size)
    best = candidate if candidate is not None else horizon + 1
    pts = sorted(t for t in risk.cache if 0 <= t <= min(best, horizon))
    if pts[-1] < min(best, horizon):
        pts.append(min(best, horizon))
        risk(pts[-1])
    for t in pts:
        if risk.cache[t] <= target:
            best = min(best, t)
    cells = np.array([(pts[i], pts[i + 1]) for i in range(len(pts) - 1) if pts[i] < best], dtype=np.int64)
    while cells.size:
        cells[:, 1] = np.minimum(cells[:, 1], best)
        cells = cells[cells[:, 0] < cells[:, 1]]
        if not cells.size:
            break
        la = risk.per_direction(cells[:, 0])
        lb = risk.per_direction(cells[:, 1])
        width = (cells[:, 1] - cells[:, 0]).astype(np.float64)
        e = env.bounds(cells[:, 0], cells[:, 1])  # sequence bounds over each cell
        lower = _cell_lower_bound(la, lb, width, _step_change(env, e), _curvature(env, e),
                                  _noise_part(env, e, la))
        # slack for rounding in the risk evaluations themselves (≤ ~1e-12 relative, see _closed.TRUST)
        lower -= ROUNDING * np.maximum(risk(cells[:, 0]), risk(cells[:, 1]))
        open_ = (lower <= target) & (width > 1)
        cells = cells[open_]
        if not cells.size:
            break
        mids = (cells[:, 0] + cells[:, 1]) // 2
        rm = risk(mids)
        hit = rm <= target
        if hit.any():
            best = min(best, int(mids[hit].min()))
        cells = np.concatenate([np.stack([cells[:, 0], mids], 1), np.stack([mids, cells[:, 1]], 1)])
        cells = cells[cells[:, 0] < best]
    return best if best <= horizon else None


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
    target = _check_target(target)
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
            guess = _log_secant(lo[idx], hi[idx], s_lo, s_hi)
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
            cross = _log_secant(lo, hi, *excess(lo_val, hi_val, floor))
        cross = np.where(np.isfinite(cross) & (lo > 0), np.clip(cross, lo, hi), hi)
        steps = np.where(has, cross, np.inf)
    return steps.reshape(hp)


def _log_secant(lo, hi, f_lo, f_hi):
    """Where the line through ``(log lo, f_lo)`` and ``(log hi, f_hi)`` crosses 0, as a step count."""
    x_lo, x_hi = np.log(np.maximum(lo, 0.5)), np.log(np.maximum(hi, 1).astype(np.float64))
    return np.exp(x_lo + (x_hi - x_lo) * f_lo / (f_lo - f_hi))


def compress(problem: Problem, entries: int = 128) -> Problem:
    """A smaller problem whose risk approximates ``problem``'s (for hyperparameter searches).

    Directions are grouped into ``entries`` bins of equal width in ``u = log h``.  A bin holding one or
    two directions keeps them exactly; a larger bin becomes the two-point Gauss rule of its own
    (weighted) distribution of ``u`` — nodes ``μ + σ z`` with ``z² − γ z − 1 = 0`` (``γ`` the bin's
    skewness), weights ``z₂/(z₂ − z₁)`` and ``−z₁/(z₂ − z₁)`` times the bin's multiplicity — so sums of
    functions of ``log h`` over the bin are exact up to cubics.  Noise is carried as the bin's mean ratio
    ``c/h`` (exact when ``c ∝ h``) and ``s0`` as its mean.  Measured on the d = 10⁴ power law: relative
    risk error ≲ 1e-4 with 128 bins.
    """
    if problem.dim <= 2 * entries:
        return problem
    logh = np.log(problem.h)
    edges = np.linspace(logh.min(), logh.max(), entries + 1)
    idx = np.clip(np.searchsorted(edges, logh, side="right") - 1, 0, entries - 1)
    w = problem.weights
    ratio = problem.c / problem.h
    h_out, c_out, s0_out, w_out = [], [], [], []
    order = np.argsort(idx, kind="stable")
    bounds = np.searchsorted(idx[order], np.arange(entries + 1))
    for k in range(entries):
        members = order[bounds[k]:bounds[k + 1]]
        if members.size == 0:
            continue
        if members.size <= 2:
            h_out.extend(problem.h[members]); c_out.extend(problem.c[members])
            s0_out.extend(problem.s0[members]); w_out.extend(w[members])
            continue
        wk, uk = w[members], logh[members]
        W = wk.sum()
        mu = np.sum(wk * uk) / W
        var = np.sum(wk * (uk - mu) ** 2) / W
        r_mean, s_mean = np.sum(wk * ratio[members]) / W, np.sum(wk * problem.s0[members]) / W
        if var <= 0:
            nodes, weights = np.array([mu]), np.array([W])
        else:
            sd = np.sqrt(var)
            skew = np.sum(wk * ((uk - mu) / sd) ** 3) / W
            root = np.sqrt(skew**2 + 4.0)
            z1, z2 = (skew - root) / 2.0, (skew + root) / 2.0
            nodes = mu + sd * np.array([z1, z2])
            weights = W * np.array([z2 / (z2 - z1), -z1 / (z2 - z1)])
        hk = np.exp(nodes)
        h_out.extend(hk); c_out.extend(r_mean * hk); s0_out.extend([s_mean] * len(hk)); w_out.extend(weights)
    return Problem(h=np.array(h_out), c=np.array(c_out), s0=np.array(s0_out), weights=np.array(w_out),
                   name=f"{problem.name} compressed({len(h_out)})")
