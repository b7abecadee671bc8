"""Closed-form data of 2-state per-direction systems: characteristic polynomials and noise floors.

A 2-state system ``z' = M z − ξ u`` has characteristic polynomial ``p(r) = r² − τ r + δ``; the closed
forms of :mod:`batchlab.nqm._closed` need ``τ, δ``, the complements ``1 − δ, p(1), p(−1)``, the
discriminant and the Krylov moments of the measured row, each computed from a factored form so that it
keeps full relative precision when tiny (slow directions, the stability limit, critical damping).
The dynamics types (:mod:`batchlab.nqm.dynamics`) pick their builder here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Companion", "heavy_ball_companion", "nesterov_companion", "sgd_ema_companion", "heavy_ball_floor"]


class Companion(NamedTuple):
    """Data of a 2-state system's characteristic polynomial ``p(r) = r² − τ r + δ`` and Krylov moments.

    ``omd = 1 − δ``, ``p1 = p(1)``, ``pm1 = p(−1)`` and ``disc = τ² − 4δ`` are computed from factored forms so they are
    accurate even when they are tiny (slow directions, stability limit, critical damping).
    ``m0 = e·a``, ``m1 = e·M a`` (mean), ``n0 = e·u``, ``n1 = e·M u`` (noise) for the measured row e,
    and ``dm = m1 − m0 = −e·E a`` computed without cancellation.
    """

    tau: np.ndarray
    delta: np.ndarray
    omd: np.ndarray
    p1: np.ndarray
    pm1: np.ndarray
    disc: np.ndarray
    m0: np.ndarray
    m1: np.ndarray
    n0: np.ndarray
    n1: np.ndarray
    dm: np.ndarray


@np.errstate(over="ignore")  # a huge step overflows to inf: far outside the stable region
def heavy_ball_companion(x, beta) -> Companion:
    omb, sb = 1.0 - beta, np.sqrt(beta)
    return Companion(
        tau=(1 - x) + beta, delta=beta, omd=omb, p1=x, pm1=(2 - x) + 2 * beta,
        disc=(x - (1 - sb) ** 2) * (x - (1 + sb) ** 2),
        m0=np.ones_like(x), m1=1 - x, n0=np.ones_like(x), n1=1 - x + beta, dm=-x,
    )


@np.errstate(over="ignore")
def nesterov_companion(x, beta) -> Companion:
    omb, omx = 1.0 - beta, 1.0 - x
    return Companion(
        tau=(1 + beta) * omx, delta=beta * omx, omd=omb + beta * x, p1=x,
        pm1=_accurate_sum(2.0, 2.0 * beta, -x, -2.0 * beta * x, _two_prod_err(-2.0 * beta, x)),
        disc=omx * (omb**2 - x * (1 + beta) ** 2),
        m0=np.ones_like(x), m1=1 - (1 + beta) * x, n0=1 + beta + 0 * x,
        n1=(1 - (1 + beta) * x) * (1 + beta) + beta**2, dm=-(1 + beta) * x,
    )


def _two_prod_err(a, b):
    """Rounding error of ``a * b`` (Dekker's exact product without FMA): ``a·b = fl(a·b) + err``."""
    split = 134217729.0  # 2^27 + 1
    p = a * b
    ca, cb = split * a, split * b
    ah, bh = ca - (ca - a), cb - (cb - b)
    al, bl = a - ah, b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _accurate_sum(*terms):
    """Compensated (Kahan–Babuška) sum: near full relative precision even when terms cancel."""
    total = np.zeros(np.broadcast_shapes(*(np.shape(t) for t in terms)))
    comp = np.zeros_like(total)
    for term in terms:
        new = total + term
        comp = comp + np.where(np.abs(total) >= np.abs(term), (total - new) + term, (term - new) + total)
        total = new
    return total + comp


@np.errstate(over="ignore")
def sgd_ema_companion(x, gamma) -> Companion:
    """SGD + EMA on ``(θ, θ̃)``, measured ``θ̃``: roots ``1 − x`` and ``γ`` (Theorem 2)."""
    omg, r = 1.0 - gamma, 1.0 - x
    return Companion(
        tau=r + gamma, delta=r * gamma, omd=omg + gamma * x, p1=x * omg, pm1=(2 - x) * (1 + gamma),
        disc=(omg - x) ** 2, m0=np.ones_like(x), m1=1 - omg * x, n0=omg + 0 * x, n1=omg * (r + gamma),
        dm=-omg * x,
    )


def heavy_ball_floor(x, beta):
    """Heavy ball: floor ``(1 + β)/((1 − β) x (2 + 2β − x))`` and spectral gap ``1 − R`` — ``1 − √β``
    between the critical points ``(1 ∓ √β)²``, else that of the real root nearest ±1::

        overdamped, small x:  1 − r₁ = 2x / (x + 1 − β + √D)
        overdamped, large x:  1 + r₂ = 2 p(−1) / (p(−1) + 1 − β + √D)

    (one pass over the arrays, no boolean indexing: this runs on every entry of a grid)."""
    omb = 1 - beta
    pm = (2 - x) + 2 * beta
    floor = (1 + beta) / (omb * (x * pm))
    sb = np.sqrt(beta)
    lo, hi = (1 - sb) ** 2, (1 + sb) ** 2
    sd = np.sqrt(np.maximum((x - lo) * (x - hi), 0.0))
    slow = x <= lo
    num = np.where(slow, x, pm)
    comp = np.minimum(2.0 * num / ((num + omb) + sd), 1.0)  # 1 − |r| for the overdamped branches
    gap = np.where(slow | (x >= hi), comp, omb / (1.0 + sb))  # 1 − √β = (1 − β)/(1 + √β)
    return floor, np.broadcast_to(gap, np.broadcast_shapes(np.shape(x), np.shape(beta)))
