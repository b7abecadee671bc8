"""Steps to reach a target risk: the exact, certified first hit of one hyperparameter setting.

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
from batchlab.nqm.checks import MAX_STEPS, check_target
from batchlab.nqm.dynamics import Dynamics, System, build_system
from batchlab.nqm.risk import expected_risk, steady_state_of
from batchlab.nqm.search import log_secant, search_steps
from batchlab.nqm.setting import Setting
from batchlab.nqm.spectrum import Problem, compress

# search_steps and compress are re-exported: they lived here before the split by concept
__all__ = ["Hit", "steps_to_target", "search_steps", "compress", "MAX_STEPS"]

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


class _Risk:
    """Memoised risk evaluations at integer steps for one hyperparameter setting, kept per direction
    (the certificate bounds every direction on its own)."""

    def __init__(self, setting: Setting):
        # the plan keeps the t-independent work across calls
        self.plan = _engine.Plan(setting.problem, setting.dyn, setting.batch_size)
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
    target = check_target(target)
    if dyn.hp_shape != ():
        raise InputError("steps_to_target takes scalar hyperparameters (use search_steps for arrays)")
    setting = Setting(problem, dyn, batch_size)  # its systems are built once, for every use below
    if not bool(setting.stable):
        return Hit(math.inf, "unstable", math.nan, 0)
    risk = _Risk(setting)
    if risk(0)[0] <= target:
        return Hit(0, "reached", float(risk(0)[0]), 1)
    floor = float(steady_state_of(setting.system))
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
        horizon = _noise_horizon(setting, target, max_steps)
    if (candidate is not None and risk(candidate - 1)[0] > target * (1 + 3 * ROUNDING)
            and _monotone(setting.system)):
        # non-increasing risk, and the step before is above the target by more than rounding
        return Hit(candidate, "reached", float(risk(candidate)[0]), len(risk.cache))
    first = _certify(setting, target, risk, horizon, candidate)
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
                guess = float(log_secant(np.int64(lo), np.int64(hi), f_lo, f_hi))
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


def _monotone(sys: System) -> bool:
    """Whether the risk is provably non-increasing in ``t``: a 1-state system (SGD) with every
    direction starting at or above its noise floor (``s_t = s* + r^{2t}(s0 − s*)``, ``r² < 1``)."""
    if sys.n != 1:
        return False
    return bool(np.all(np.asarray(sys.s0) >= np.asarray(sys.steady_state())))


def _noise_horizon(setting: Setting, target, max_steps) -> int:
    """A step after which the risk stays above ``target``: the noise part alone exceeds it there."""
    problem, dyn, batch_size = setting.problem, setting.dyn, setting.batch_size
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
    return _system_envelope(build_system(problem, dyn, batch_size))


def _system_envelope(sys: System) -> _Envelope:
    """:func:`_envelope` of built systems."""
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
        comp = flat.companion() if n == 2 else flat.base_companion()  # n = 3: momentum + EMA
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


def _certify(setting: Setting, target, risk: _Risk, horizon: int, candidate):
    """Smallest ``t ≤ horizon`` with ``L(t) ≤ target`` (None if none), by branch and bound.

    On a cell ``[a, b]`` each direction's risk satisfies ``l_i(t) ≥ max(0, (l_i(a) + l_i(b) −
    (b − a) λ_i)/2)`` with ``λ_i`` its step-change bound; the cell is cleared when the sum of these
    lower bounds is above the target.  Bounding each direction separately keeps the fast, oscillating
    directions (whose |change| per step is large but whose risk is small) from loosening the bound on
    the slow ones that carry the risk.
    """
    env = _system_envelope(setting.system)
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
