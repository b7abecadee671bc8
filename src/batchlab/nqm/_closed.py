"""Closed forms for the measured second moment of 1- and 2-state systems, with error estimates.

For a 2-state system with characteristic polynomial ``r² − τ r + δ`` (roots ``r₁, r₂``) Cayley–Hamilton
gives ``M^t = U_t M − δ U_{t−1} I`` with ``U_t = (r₁^t − r₂^t)/(r₁ − r₂)``, so for the measured row ``e``::

    mean_t  = e M^t a = U_t m1 − δ U_{t−1} m0,          m0 = e·a,  m1 = e·M a
    V_k     = e M^k u = U_k n1 − δ U_{k−1} n0,          n0 = e·u,  n1 = e·M u
    E[θ_t²] = s0 · mean_t² + q · Σ_{k<t} V_k².

``U_t`` is evaluated in forms that stay exact at critical damping (``r₁ = r₂``)::

    complex roots ρ e^{±iφ}:  U_t = ρ^{t−1} sin(tφ) / sin φ
    real roots b, s (|s| ≤ |b|, ω = s/b):  U_t = b^{t−1} (1 − ω^t) / (1 − ω),
        same signs: 1 − ω^t = −expm1(−2tψ) with 2ψ = log1p(√D (|τ| + √D) / 2δ)

and all complements (``1 − |r|``, ``1 − r²``, ``1 − δ``) come from ``p(1)``, ``p(−1)``, ``1 − δ`` so slow
directions keep full precision.  The noise sum uses the modal expansion (geometric sums
``G_t(z) = (1 − z^t)/(1 − z)``), which cancels near critical damping; every function therefore also
returns an estimate of its relative rounding error, and the caller recomputes the few entries whose
estimate is too large with exact doubling (:mod:`batchlab.nqm._linear`).
"""

from __future__ import annotations

import numpy as np

from batchlab.nqm.dynamics import Companion

__all__ = ["sgd_moment", "companion_moment", "CompanionPlan", "momentum_ema_moment", "TRUST"]

# Entries whose estimated cancellation factor exceeds this go to exact doubling (≈ 1e-11 relative).
TRUST = 1e4


def _times(a, b):
    """``a * b`` with ``0 * inf = inf * 0 = 0`` (a direction with no noise or no initial error stays
    at 0, and so does the noise of a direction with an overflowing step before its first step)."""
    with np.errstate(invalid="ignore"):
        prod = a * b
        zero = np.equal(a, 0) | np.equal(b, 0)
        return np.where(zero, 0.0, prod) if np.any(zero) else prod


def sgd_moment(x, q, s0, t):
    """``E[θ_t²]`` for SGD, ``s_t = r^{2t} s0 + q (1 − r^{2t})/(1 − r²)``, ``r = 1 − x`` (exact).

    ``x, q, s0`` have shape ``(k, 1)``, ``t`` shape ``(1, m)``.  Returns the ``(k, m)`` values.
    """
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        log_r2 = np.where(x < 1, 2.0 * np.log1p(-np.minimum(x, 1.0)), 2.0 * np.log(np.abs(x - 1.0)))
        om_r2 = x * (2.0 - x)
        tl = np.where(t == 0, 0.0, t * log_r2)
        G = np.where(om_r2 != 0, -np.expm1(tl) / np.where(om_r2 != 0, om_r2, 1.0), t)
        return _times(s0, np.exp(tl)) + _times(q, G)


def companion_moment(comp: Companion, q, s0, t):
    """``E[θ_t²]`` of 2-state systems from their :class:`Companion` data.

    Args:
        comp, q, s0: one-dimensional arrays over ``k`` systems.
        t: integer steps, ``(m,)`` for all systems or ``(k, m)`` per system.
    Returns:
        ``(value, cancellation)`` of shape ``(k, m)``: the second moment and an estimate of how many
        times larger the summed terms were than the result (relative error ≈ 1e-16 × cancellation).
        Entries where the closed form is undefined (double root, |root| ≥ 1) have ``inf``.
    """
    return CompanionPlan(comp, q, s0).moment(t)


class CompanionPlan:
    """2-state systems prepared for :meth:`moment` at any steps: everything that does not depend on
    ``t`` (roots, phases, modal and steady-state coefficients — about half the work of one evaluation)
    is computed once, per branch (complex roots, real roots of one sign, of opposite signs, a zero
    root).  Plans are built per block of systems by :class:`batchlab.nqm._engine.Plan`.

    Args:
        comp, q, s0: one-dimensional arrays over ``k`` systems.
        floor: their steady states ``Σ_{k≥0} V_k²`` if known in a cancellation-free form (heavy ball:
            :func:`noise_floor`); otherwise computed from the companion data.
    """

    def __init__(self, comp: Companion, q, s0, floor=None):
        q, s0 = np.asarray(q, dtype=np.float64), np.asarray(s0, dtype=np.float64)
        k = comp.tau.shape[0]
        self.k = k
        self.code = np.full(k, -1, dtype=np.int8)  # branch of each system (-1: none applies, e.g. nan)
        self.local = np.zeros(k, dtype=np.int64)
        self.at_zero = s0 * comp.m0**2
        real = comp.disc > 0
        masks = (comp.disc < 0, real & (comp.delta > 0), real & (comp.delta < 0), real & (comp.delta == 0))
        self.branches = []
        for j, (mask, (setup, at)) in enumerate(zip(masks, _BRANCHES)):
            idx = np.flatnonzero(mask)
            if not idx.size:
                self.branches.append(None)
                continue
            self.code[idx] = j
            self.local[idx] = np.arange(idx.size)
            sub = comp if idx.size == k else Companion(*(f[idx] for f in comp))
            sub = Companion(*(f[:, None] for f in sub))
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                consts, stable = setup(sub)
                pick = (lambda a: a[:, None]) if idx.size == k else (lambda a: a[idx][:, None])  # noqa: E731
                consts.update(_finish_setup(sub, pick(q), pick(s0), None if floor is None else pick(floor)))
            consts["stable"] = stable
            self.branches.append((idx.size, consts, at))

    def moment(self, t, rows=None):
        """``(value, cancellation)`` at steps ``t`` for systems ``rows`` (all by default).

        ``t`` is ``(m,)`` for every row, or ``(len(rows), m)`` per row; returns ``(len(rows), m)``.
        """
        t = np.asarray(t)
        t2 = t if t.ndim == 2 else t[None, :]
        tf = t2.astype(np.float64)
        sign_t = np.where(t2 % 2 == 1, -1.0, 1.0)  # (−1)^t
        n = self.k if rows is None else len(rows)
        m = t2.shape[1]
        per_row = t2.shape[0] > 1 or n == 1
        codes = self.code if rows is None else self.code[rows]
        value = np.zeros((n, m))
        cancel = np.full((n, m), np.inf)
        for j, branch in enumerate(self.branches):
            if branch is None:
                continue
            size, consts, at = branch
            whole = rows is None and size == self.k
            sel = None if whole else np.flatnonzero(codes == j)
            if sel is not None and not sel.size:
                continue
            if sel is None or (rows is None and sel.size == size):
                c = consts  # every system of the branch, in order
            else:
                li = self.local[sel if rows is None else np.asarray(rows)[sel]]
                c = {key: v[li] for key, v in consts.items()}
            tt, st = (tf, sign_t) if (sel is None or not per_row) else (tf[sel], sign_t[sel])
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                v, cc = _finish_at(c, at(c, tt, st))
            if sel is None:
                value, cancel = v, cc
            else:
                value[sel], cancel[sel] = v, cc
        zero = np.broadcast_to(t2 == 0, value.shape)
        if zero.any():
            start = self.at_zero if rows is None else self.at_zero[rows]
            value = np.where(zero, start[:, None], value)
            cancel = np.where(zero, 1.0, cancel)
        return value, cancel


def noise_floor(sys):
    """Steady state in units of the step noise, ``Σ_{k≥0} (e M^k u)²``, without modal cancellation.

    Returns ``(floor, gap, trusted)`` over ``sys.shape`` — ``gap = 1 − R`` with ``R`` the spectral
    radius of ``M`` (accurate when tiny; ``≤ 0`` when unstable), ``trusted`` marks stable entries
    whose floor is well conditioned — or ``None`` for systems without a closed form (momentum + EMA).
    """
    x = np.broadcast_to(sys.x, sys.shape)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        stable = x < np.broadcast_to(sys.limit, sys.shape)
        closed = sys.law.noise_floor(x, sys.beta, sys.gamma)  # the dynamics type's closed form, if any
        if closed is not None:
            return closed + (stable,)
    comp = sys.companion()
    if comp is None:
        return None
    floor, cancel, log_rad, ok = _steady_state(comp)
    with np.errstate(over="ignore", invalid="ignore"):
        return floor, -np.expm1(log_rad), ok & (cancel <= TRUST)


def _steady_state(c: Companion):
    """Noise floor ``Σ_{k≥0} V_k²`` without modal cancellation, and the spectral radius.

    With ``S = Σ_{k≥1} U_k² = (1 + δ)/((1 − δ) p(1) p(−1))`` and ``Σ_{k≥1} U_k U_{k−1} = τ S/(1 + δ)``:
    ``Σ_{k≥0} V_k² = n0² + S (n1² + δ² n0² − 2 δ τ n1 n0/(1 + δ))``.
    Returns ``(floor, cancellation, log spectral radius, stable)``.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.abs(c.disc))
        cb = np.where(c.tau >= 0, 2.0 * c.p1 / (c.p1 + c.omd + sd), 2.0 * c.pm1 / (c.pm1 + c.omd + sd))
        cplx = c.disc < 0
        stable = np.where(cplx, c.omd > 0, cb > 0) & (c.p1 > 0) & (c.pm1 > 0)
        log_radius = np.where(cplx, 0.5 * np.log1p(-np.minimum(c.omd, 1.0)), np.log1p(-np.minimum(cb, 1.0)))
        S = (1.0 + c.delta) / (c.omd * c.p1 * c.pm1)
        cross = 2.0 * c.delta * c.tau * c.n1 * c.n0 / (1.0 + c.delta)
        sq = c.n1**2 + (c.delta * c.n0) ** 2
        floor = c.n0**2 + S * (sq - cross)
        cancel = (c.n0**2 + S * (sq + np.abs(cross))) / floor
    return floor, np.where(stable, cancel, np.inf), log_radius, stable


def _finish_setup(c: Companion, q, s0, floor=None) -> dict:
    """The ``t``-independent part of :func:`_finish_at`: the steady state (``floor`` if given: a
    cancellation-free one) and tail coefficients."""
    if floor is None:
        n_inf, inf_cancel, _, _ = _steady_state(c)
    else:
        n_inf, inf_cancel = floor, 1.0
    a = n_inf - c.n0**2
    X = (c.n1 * c.n0 + c.tau * a) / (1.0 + c.delta)
    return dict(n_inf=n_inf, a=a, X=X, abs_a=np.abs(a), abs_X=np.abs(X), abs_n_inf=np.abs(n_inf),
                inf_abs=np.abs(n_inf) * inf_cancel, q=q, s0=s0)


def _finish_at(c: dict, parts):
    """Mean from ``U_t, δU_{t−1}``; the noise from the better of two forms.

    Modal sums cancel when the roots are close (slow, nearly critically damped directions); the
    tail form ``N_t = N_∞ − e M^t Σ_∞ M^tᵀ eᵀ`` cancels only while ``M^t`` is far from decayed.  With
    ``e M^t = U_t eM − δU_{t−1} e``, ``eMΣ_∞Mᵀeᵀ = N_∞ − n0²`` and ``eMΣ_∞eᵀ = X =
    (n1 n0 + τ (N_∞ − n0²)) / (1 + δ)``, both come from the companion data alone.
    """
    U_t, dU, mean, mean_abs, noise, noise_abs = parts
    UdU, U2, dU2 = U_t * dU, U_t * U_t, dU * dU
    tail = U2 * c["a"] - (2.0 * c["X"]) * UdU + dU2 * c["n_inf"]
    tail_abs = U2 * c["abs_a"] + (2.0 * c["abs_X"]) * np.abs(UdU) + dU2 * c["abs_n_inf"]
    noise_t = c["n_inf"] - tail
    noise_t_abs = c["inf_abs"] + tail_abs
    with_tail = (noise_t_abs * np.abs(noise) < noise_abs * np.abs(noise_t)) & np.isfinite(noise_t)
    noise = np.where(with_tail, noise_t, noise)
    noise_abs = np.where(with_tail, noise_t_abs, noise_abs)
    value, cancel = _combine(mean, mean_abs, noise, noise_abs, c["q"], c["s0"])
    return value, np.where(c["stable"], cancel, np.inf)


def _combine(mean, mean_abs, noise, noise_abs, q, s0):
    with np.errstate(over="ignore", invalid="ignore"):
        value = _times(s0, mean**2) + _times(q, noise)
        scale = _times(s0, 2.0 * np.abs(mean) * mean_abs) + _times(q, noise_abs)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cancel = np.where(value > 0, scale / value, np.where(scale > 0, np.inf, 1.0))
    return value, cancel


# 2π in three parts with 27 significant bits in the first two: k · part is exact for |k| < 2^26
_TWO_PI_HI = 6.283185303211212158203125
_TWO_PI_MID = 3.9683742958374068621196784079074859619140625e-09
_TWO_PI_LO = 2.2884754904439327e-17  # 2π − HI − MID, rounded


def _sincos(x):
    """``sin x, cos x`` with the argument reduced modulo 2π here (Cody–Waite, exact for
    ``|x| < 2^26 · 2π``; larger arguments go to NumPy's own reduction): small arguments cost NumPy
    half as much."""
    k = np.rint(x * (1.0 / (2.0 * np.pi)))
    r = ((x - k * _TWO_PI_HI) - k * _TWO_PI_MID) - k * _TWO_PI_LO
    r = np.where(np.abs(k) < 2.0**26, r, x)
    return np.sin(r), np.cos(r)


def _complex_setup(c: Companion):
    """Complex roots ``ρ e^{±iφ}`` (underdamped): the ``t``-independent part."""
    log_rho = 0.5 * np.log1p(-c.omd)
    rho = np.sqrt(c.delta)
    sq = np.sqrt(-c.disc)
    sin_phi = sq / (2.0 * rho)
    cos_phi = c.tau / (2.0 * rho)
    # mean_t = U_t m1 − δU_{t−1} m0 = amp [sin(tφ)(m1 − τ m0/2) + cos(tφ) m0 √(−D)/2], with
    # m1 − τ m0/2 = dm + m0 (p(1) + 1 − δ)/2 free of the cancellation m1 ≈ τ/2 of slow directions
    mh = c.dm + c.m0 * (c.p1 + c.omd) / 2.0
    # V_k = ρ^{k−1} Im(w e^{ikφ}) / sin φ with w = n1 − ρ n0 e^{−iφ}
    w_re = c.n1 - rho * c.n0 * cos_phi
    w_im = rho * c.n0 * sin_phi
    # 1 − z with z = δ e^{2iφ}
    den_re = c.omd + 2.0 * c.delta * sin_phi**2
    den_im = -2.0 * c.delta * sin_phi * cos_phi
    consts = dict(
        log_rho=log_rho, rho=rho, phi=np.arctan2(sq, c.tau), sin_phi=sin_phi, cos_phi=cos_phi, mh=mh,
        mc=c.m0 * (sq / 2.0), w2=w_re**2 + w_im**2, w2_re=w_re**2 - w_im**2, w2_im=2.0 * w_re * w_im,
        den_re=den_re, den_im=den_im, den2=den_re**2 + den_im**2, scale=1.0 / (2.0 * c.delta * sin_phi**2),
        omd=c.omd,
    )
    return consts, c.omd > 0


def _complex_at(c: dict, t, sign_t):
    """Complex roots: ``U_t = ρ^{t−1} sin(tφ) / sin φ``, ``δ U_{t−1} = ρ^t sin((t−1)φ) / sin φ``."""
    s_t, c_t = _sincos(t * c["phi"])
    s_tm1 = s_t * c["cos_phi"] - c_t * c["sin_phi"]
    rho_tm1 = np.exp((t - 1.0) * c["log_rho"])
    amp = rho_tm1 / c["sin_phi"]
    U_t, dU = amp * s_t, amp * c["rho"] * s_tm1
    a1, a0 = s_t * c["mh"], c_t * c["mc"]
    mean, mean_abs = amp * (a1 + a0), amp * (np.abs(a1) + np.abs(a0))
    em = np.expm1(t * (2.0 * c["log_rho"]))  # ρ^{2t} − 1
    G1 = -em / c["omd"]
    # 1 − z^t = −(expm1(t log δ) cos 2tφ − 2 sin² tφ) − i δ^t sin 2tφ
    ss = s_t * s_t
    num_re = -(em * (c_t * c_t - ss) - 2.0 * ss)
    num_im = -(((rho_tm1 * c["rho"]) ** 2) * 2.0 * s_t * c_t)
    den_re, den_im, den2 = c["den_re"], c["den_im"], c["den2"]
    G2_re = (num_re * den_re + num_im * den_im) / den2
    G2_im = (num_im * den_re - num_re * den_im) / den2
    noise = (c["w2"] * G1 - (c["w2_re"] * G2_re - c["w2_im"] * G2_im)) * c["scale"]
    noise_abs = c["w2"] * (np.abs(G1) + np.sqrt(G2_re**2 + G2_im**2)) * c["scale"]
    return U_t, dU, mean, mean_abs, noise, noise_abs


def _real_roots(c: Companion):
    """Big (sign of τ) and small roots with accurate complements: b, s, 1∓b, 1∓s, log|b|, log|s|."""
    sd = np.sqrt(c.disc)
    pos = c.tau >= 0
    cb = np.where(pos, 2.0 * c.p1 / (c.p1 + c.omd + sd), 2.0 * c.pm1 / (c.pm1 + c.omd + sd))  # 1 − |b|
    b = np.where(pos, 1.0 - cb, cb - 1.0)
    omb, opb = np.where(pos, cb, 2.0 - cb), np.where(pos, 2.0 - cb, cb)
    s = c.delta / b
    oms, ops = c.p1 / omb, c.pm1 / opb
    cs = np.where(s >= 0, oms, ops)  # 1 − |s|
    lb = np.where(np.abs(b) > 0.5, np.log1p(-cb), np.log(np.abs(b)))
    ls = np.where(np.abs(s) > 0.5, np.log1p(-cs), np.log(np.abs(s)))
    bms = np.where(pos, sd, -sd)  # b − s
    return sd, b, s, omb, opb, oms, ops, lb, ls, bms, cb > 0


def _real_setup(c: Companion, b, s, omb, opb, oms, ops, lb, ls, bms) -> dict:
    """The ``t``-independent part of :func:`_real_at` (real roots ``b``, ``s``)."""
    return dict(
        b_neg=b < 0, s_neg=s < 0, s_zero=s == 0, b=b, db=c.delta / b, lb=lb, ls=ls, m1=c.m1, m0=c.m0,
        al_b=(c.dm + np.where(s >= 0, oms, 2.0 - ops) * c.m0) / bms, al_s=-(c.dm + omb * c.m0) / bms,
        a_b=(c.n1 - s * c.n0) / bms, a_s=-(c.n1 - b * c.n0) / bms, gb=omb * opb, gs=oms * ops,
    )


def _real_at(c: dict, t, sign_t, ratio_t, ratio_tm1, Gbs, bt1=None, st=None):
    """U_t = b^{t−1} ratio_t, δ U_{t−1}, the mean, and the noise sum from geometric sums (real roots).

    The mean is taken from the better conditioned of ``U_t m1 − δU_{t−1} m0`` (good near a double
    root) and the modal form ``α_b b^t + α_s s^t`` with ``α_b = (dm + (1 − s) m0)/(b − s)``,
    ``α_s = −(dm + (1 − b) m0)/(b − s)`` (good for well separated roots).  Branches may pass
    ``b^{t−1}`` and ``s^t`` when they have them cheaper.
    """
    if bt1 is None:
        bt1 = np.exp((t - 1.0) * c["lb"])  # |b|^{t−1}
        if c["b_neg"].any():
            bt1 = np.where(c["b_neg"], -sign_t, 1.0) * bt1
    U_t = bt1 * ratio_t
    dU = np.where(t >= 2, (bt1 * c["db"]) * ratio_tm1, 0.0)
    Um, dm = U_t * c["m1"], dU * c["m0"]
    mean1 = Um - dm
    abs1 = np.abs(Um) + np.abs(dm)
    if st is None:
        st = np.exp(t * c["ls"])
        if c["s_neg"].any():
            st = np.where(c["s_neg"], sign_t, 1.0) * st
    mb, ms = c["al_b"] * (bt1 * c["b"]), c["al_s"] * st
    mean2 = mb + ms
    abs2 = np.abs(mb) + np.abs(ms)
    modal_better = (abs2 * np.abs(mean1) < abs1 * np.abs(mean2)) & np.isfinite(mean2)
    mean = np.where(modal_better, mean2, mean1)
    mean_abs = np.where(modal_better, abs2, abs1)
    Gbb = -np.expm1(2.0 * t * c["lb"]) / c["gb"]
    Gss = -np.expm1(2.0 * t * c["ls"]) / c["gs"]
    a_b, a_s = c["a_b"], c["a_s"]
    nb, ns, cross = a_b**2 * Gbb, a_s**2 * Gss, (2.0 * a_b * a_s) * Gbs
    noise = nb + cross + ns
    noise_abs = np.abs(nb) + np.abs(cross) + np.abs(ns)
    return U_t, dU, mean, mean_abs, noise, noise_abs


def _same_sign_setup(c: Companion):
    """Distinct real roots of one sign (overdamped): ``1 − ω^t = −expm1(−2tψ)``, exact as ψ → 0."""
    sd, b, s, omb, opb, oms, ops, lb, ls, bms, stable = _real_roots(c)
    consts = _real_setup(c, b, s, omb, opb, oms, ops, lb, ls, bms)
    psi2 = np.log1p(sd * (np.abs(c.tau) + sd) / (2.0 * c.delta))  # −log ω
    consts.update(psi2=psi2, inv_e1=1.0 / np.expm1(-psi2), e_psi=np.exp(psi2), em_psi=np.expm1(psi2),
                  lbs=lb + ls, omd=c.omd)
    return consts, stable


def _same_sign_at(c: dict, t, sign_t):
    """With ``ω = s/b = e^{−2ψ}`` and ``E_t = ω^t − 1``: ``ω^{t−1} − 1 = E_t e^{2ψ} + (e^{2ψ} − 1)`` (the
    two terms differ by at most ~2× for t ≥ 2: no cancellation), and ``s^t = b^t (1 + E_t)`` (its
    absolute error is within the modal mean's cancellation estimate)."""
    E_t = np.expm1(-t * c["psi2"])
    ratio_t = E_t * c["inv_e1"]
    ratio_tm1 = (E_t * c["e_psi"] + c["em_psi"]) * c["inv_e1"]
    Gbs = -np.expm1(t * c["lbs"]) / c["omd"]
    bt1 = np.exp((t - 1.0) * c["lb"])
    if c["b_neg"].any():
        bt1 = np.where(c["b_neg"], -sign_t, 1.0) * bt1
    return _real_at(c, t, sign_t, ratio_t, ratio_tm1, Gbs, bt1=bt1, st=(bt1 * c["b"]) * (1.0 + E_t))


def _opposite_sign_setup(c: Companion):
    """Real roots of opposite signs (δ < 0): no cancellation in ``1 − ω^t``."""
    sd, b, s, omb, opb, oms, ops, lb, ls, bms, stable = _real_roots(c)
    consts = _real_setup(c, b, s, omb, opb, oms, ops, lb, ls, bms)
    lw = ls - lb
    consts.update(lw=lw, inv_den=1.0 / (1.0 + np.exp(lw)), back=np.exp(-lw), lbs=lb + ls, omd=c.omd)
    return consts, stable


def _opposite_sign_at(c: dict, t, sign_t):
    w_t = sign_t * np.exp(t * c["lw"])  # ω^t = (−1)^t |ω|^t
    ratio_t = (1.0 - w_t) * c["inv_den"]
    ratio_tm1 = (1.0 + w_t * c["back"]) * c["inv_den"]
    Gbs = (1.0 - sign_t * np.exp(t * c["lbs"])) / c["omd"]
    return _real_at(c, t, sign_t, ratio_t, ratio_tm1, Gbs)


def _zero_root_setup(c: Companion):
    """One root is zero (δ = 0, e.g. β = 0 or x = 1): ``U_t = b^{t−1}``; ``s^k = [k == 0]``."""
    sd, b, s, omb, opb, oms, ops, lb, ls, bms, stable = _real_roots(c)
    one = np.ones_like(b)
    return _real_setup(c, b, np.zeros_like(b), omb, opb, one, one, lb, np.full_like(b, -np.inf), bms), stable


def _zero_root_at(c: dict, t, sign_t):
    one = np.ones_like(t)
    # Σ_{k<t} s^{2k} = 1 and Σ_{k<t} (bs)^k = 1 for t ≥ 1
    return _real_at(c, t, sign_t, one, one, np.where(t == 0, 0.0, one))


_BRANCHES = (
    (_complex_setup, _complex_at),
    (_same_sign_setup, _same_sign_at),
    (_opposite_sign_setup, _opposite_sign_at),
    (_zero_root_setup, _zero_root_at),
)


# --------------------------------------------------------------------------------------------------
# Momentum + EMA (3 states): modal closed form


def _momentum_roots(c: Companion):
    """The two momentum roots as ``(sgn, log|λ|, angle, 1 − λ, 1 + λ)`` arrays of shape ``(k, 2)``, plus
    ``λ₀ − λ₁`` — every complement from ``p(1)``, ``p(−1)``, ``1 − δ`` (accurate when tiny)."""
    k = c.tau.shape[0]
    sgn, lm, ang = np.ones((k, 2)), np.empty((k, 2)), np.zeros((k, 2))
    comp = np.empty((k, 2), complex)
    cplx = c.disc < 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sq = np.sqrt(np.abs(c.disc))
        # complex pair ρ e^{±iφ}: log ρ = ½ log(1 − (1 − δ)),  1 − λ = (p(1) + 1 − δ)/2 ∓ i √(−D)/2
        phi = np.arctan2(sq, c.tau)
        lr = 0.5 * np.log1p(-np.minimum(c.omd, 1.0))
        re = (c.p1 + c.omd) / 2.0
        # real roots: b (sign of τ, |b| ≥ |s|) and s = δ / b
        sd, b, s, omb, opb, oms, ops, lb, ls, bms, _ = _real_roots(c)
        ls = np.where(c.delta == 0, -800.0, ls)  # s = 0: s^k = [k == 0] (the power underflows)
    lm[:, 0], lm[:, 1] = np.where(cplx, lr, lb), np.where(cplx, lr, ls)
    ang[:, 0], ang[:, 1] = np.where(cplx, phi, 0.0), np.where(cplx, -phi, 0.0)
    sgn[:, 0] = np.where(~cplx & (b < 0), -1.0, 1.0)
    sgn[:, 1] = np.where(~cplx & (s < 0), -1.0, 1.0)
    comp[:, 0] = np.where(cplx, re - 0.5j * sq, omb)
    comp[:, 1] = np.where(cplx, re + 0.5j * sq, np.where(s >= 0, oms, 2.0 - ops))
    # 1 + λ (accurate near the stability limit, where a root approaches −1): (p(−1) + 1 − δ)/2 ± i √(−D)/2
    rp = (c.pm1 + c.omd) / 2.0
    plus = np.empty((k, 2), complex)
    plus[:, 0] = np.where(cplx, rp + 0.5j * sq, opb)
    plus[:, 1] = np.where(cplx, rp - 0.5j * sq, np.where(s >= 0, 2.0 - oms, ops))
    d01 = np.where(cplx, 1j * sq, bms + 0j)
    return sgn, lm, ang, comp, plus, d01


def _power(sgn, lm, ang, t, t_odd):
    """``λ^t`` for ``λ = sgn · exp(lm + i·ang)`` (``sgn^t`` from the parity of ``t``, exact)."""
    sign = np.where((sgn < 0) & t_odd, -1.0, 1.0)
    return sign * np.exp(t * lm + 1j * (t * ang))


def momentum_ema_moment(sys, t):
    """``E[θ̃_t²]`` of heavy-ball or Nesterov momentum with an iterate EMA (3-state systems).

    ``M`` is block triangular, so its eigenvalues are the momentum roots ``r₁, r₂`` and the decay
    ``γ``.  With distinct roots the measured responses are modal sums, ``e M^k u = Σ_i w_i λ_i^k``
    and ``e M^k a = Σ_i v_i λ_i^k``, where (writing ``λ = 1 − c`` and ``M = I − E``)::

        w_i = e (c_j − E)(c_l − E) u / ((c_j − c_i)(c_l − c_i))

    uses only the complements and the small products ``e E^k u`` (accurate for slow directions), and
    ``Σ_{k<t} (e M^k u)² = Σ_ij w_i w_j (1 − (λ_iλ_j)^t) / (1 − λ_iλ_j)`` with ``1 − z^t`` from
    ``expm1``.  Near a double root (critical damping, ``γ`` equal to a root) the ``w_i`` grow and the
    sum cancels; the returned cancellation estimate flags those entries for exact doubling.

    Args:
        sys: a one-dimensional batch of 3-state :class:`System` entries.
        t: integer steps, ``(m,)`` or ``(k, m)``.
    Returns:
        ``(value, cancellation)``, each ``(k, m)``; ``inf`` cancellation where the form does not apply.
    """
    t = np.asarray(t)
    t2 = t if t.ndim == 2 else t[None, :]
    tf = t2.astype(np.float64)[:, None, :]  # (k|1, 1, m)
    t_odd = (t2 % 2 == 1)[:, None, :]
    shape = sys.shape
    gamma = np.broadcast_to(sys.gamma, shape)
    comp = sys.base_companion()
    E, u, a = sys.matrices()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        sgn2, lm2, ang2, c2, p2, d01 = _momentum_roots(comp)
        omg = 1.0 - gamma
        lg = np.where(gamma > 0, np.log1p(-omg), -800.0)
        sgn = np.concatenate([sgn2, np.ones(shape)[:, None]], 1)
        lm = np.concatenate([lm2, lg[:, None]], 1)
        ang = np.concatenate([ang2, np.zeros(shape)[:, None]], 1)
        cc = np.concatenate([c2, omg[:, None] + 0j], 1)  # 1 − λ_i, (k, 3)
        pp = np.concatenate([p2, (1.0 + gamma)[:, None] + 0j], 1)  # 1 + λ_i
        lam = 1.0 - cc
        # λ_i − λ_j for the pairs (0,1), (0,2), (1,2)
        diff = {(0, 1): d01, (0, 2): cc[:, 2] - cc[:, 0], (1, 2): cc[:, 2] - cc[:, 1]}

        def dif(i, j):
            return diff[(i, j)] if i < j else -diff[(j, i)]

        def krylov(v):
            e1 = np.einsum("kij,kj->ki", E, v)
            e2 = np.einsum("kij,kj->ki", E, e1)
            return v[:, 2], e1[:, 2], e2[:, 2]

        def coefficients(h0, h1, h2):
            coef, cabs = np.empty((shape[0], 3), complex), np.empty((shape[0], 3))
            for i, (j, l) in enumerate(((1, 2), (0, 2), (0, 1))):
                cj, cl = cc[:, j], cc[:, l]
                num = cj * cl * h0 - (cj + cl) * h1 + h2
                den = dif(i, j) * dif(i, l)
                coef[:, i] = num / den
                cabs[:, i] = (np.abs(cj * cl * h0) + np.abs(cj + cl) * np.abs(h1) + np.abs(h2)) / np.abs(den)
            return coef, cabs

        w, wabs = coefficients(*krylov(u))
        v, vabs = coefficients(*krylov(a))
        # mean_t = Σ v_i λ_i^t
        pw = _power(sgn[:, :, None], lm[:, :, None], ang[:, :, None], tf, t_odd)  # (k, 3, m)
        grow = 1.0 + tf * np.abs(lm + 1j * ang)[:, :, None]
        mean = np.sum(v[:, :, None] * pw, axis=1).real
        mean_abs = np.sum(vabs[:, :, None] * np.abs(pw) * grow, axis=1)
        noise = np.zeros(mean.shape)
        noise_abs = np.zeros(mean.shape)
        for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)):
            mult = 1.0 if i == j else 2.0
            if (i, j) == (0, 1):
                one_minus_z = comp.omd + 0j  # 1 − r₁r₂ = 1 − δ
            elif i == j:
                one_minus_z = cc[:, i] * pp[:, i]
            else:
                one_minus_z = cc[:, j] + cc[:, i] * lam[:, j]
            s_ij = (sgn[:, i] * sgn[:, j])[:, None]
            L = (lm[:, i] + lm[:, j] + 1j * (ang[:, i] + ang[:, j]))[:, None]
            zt = np.where((s_ij < 0) & t_odd[:, 0], -1.0, 1.0) * np.exp(tf[:, 0] * L)
            one_minus_zt = np.where((s_ij < 0) & t_odd[:, 0], 1.0 - zt, -np.expm1(tf[:, 0] * L))
            one_minus_zt = np.where(tf[:, 0] == 0, 0.0, one_minus_zt)
            G = one_minus_zt / one_minus_z[:, None]
            noise += mult * ((w[:, i] * w[:, j])[:, None] * G).real
            noise_abs += mult * (wabs[:, i] * wabs[:, j])[:, None] * (
                np.abs(G) + tf[:, 0] * np.abs(L) * np.abs(zt) / np.abs(one_minus_z)[:, None])
        stable = np.all(lm < 0, axis=1) & np.all(np.isfinite(wabs), axis=1) & np.all(np.isfinite(vabs), axis=1)
        q = np.broadcast_to(sys.q, shape)[:, None]
        s0 = np.broadcast_to(sys.s0, shape)[:, None]
        value, cancel = _combine(mean, mean_abs, noise, noise_abs, q, s0)
    cancel = np.where(stable[:, None] & np.isfinite(value), cancel, np.inf)
    return value, cancel
