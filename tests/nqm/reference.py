"""Independent reference computations for the NQM engine (test helpers only).

- :func:`decimal_moment`: repeated squaring of the augmented second-moment map
  ``vec Σ ↦ (M ⊗ M) vec Σ + q vec(u uᵀ)`` in 60-digit decimal arithmetic — a different algorithm from
  the engine's (which powers the n × n mean matrix in float64) and free of float64 rounding.
- :func:`longdouble_steps`: plain step-by-step propagation ``Σ ← M Σ Mᵀ + q u uᵀ`` in extended precision.
- ``*_rate``: learning-rate (and batch-size) multipliers of the schedules from their published formulas.
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np


def _dec(x) -> Decimal:
    return Decimal(float(x))  # exact binary value of the float


def _matmul(A, B):
    n, k, m = len(A), len(B), len(B[0])
    return [[sum((A[i][l] * B[l][j] for l in range(k)), Decimal(0)) for j in range(m)] for i in range(n)]


def _decimal_system(kind: str, ema: bool, x, beta, gamma):
    """Mean matrix M, noise direction u and initial direction a of one direction, built in decimal
    from the optimizer definitions (not from the engine's float matrices)."""
    one, zero = Decimal(1), Decimal(0)
    x = _dec(x)
    if kind == "sgd":
        M, u, a = [[one - x]], [one], [one]
    else:
        b = _dec(beta)
        if kind == "nesterov":  # optax form on (φ, v)
            M, u = [[one - (one + b) * x, b * b], [-x, b]], [one + b, one]
        else:  # heavy ball on (θ, v)
            M, u = [[one - x, b], [-x, b]], [one, one]
        a = [one, zero]
    if ema:
        g = _dec(gamma)
        n = len(u)
        M = [row + [zero] for row in M] + [[(one - g) * m for m in M[0]] + [g]]
        u = u + [(one - g) * u[0]]
        a = a + [one]
    return M, u, a


def decimal_moment(M, u, a, q, s0, out, t, prec: int = 60) -> float:
    """``E[z_out(t)²]`` for ``z' = M z − ξ u``, ``Var ξ = q``, ``z(0) = a θ0``, ``E θ0² = s0``."""
    getcontext().prec = prec
    n = len(u)
    N2 = n * n
    A = [[Decimal(0)] * (N2 + 1) for _ in range(N2 + 1)]
    for i in range(n):
        for j in range(n):
            for k in range(n):
                for l in range(n):
                    A[i * n + j][k * n + l] = M[i][k] * M[j][l]
    qd = _dec(q)
    for i in range(n):
        for j in range(n):
            A[i * n + j][N2] = qd * u[i] * u[j]
    A[N2][N2] = Decimal(1)
    vec = [[_dec(s0) * a[i] * a[j]] for i in range(n) for j in range(n)] + [[Decimal(1)]]
    result = vec
    power = A
    t = int(t)
    while t:
        if t & 1:
            result = _matmul(power, result)
        t >>= 1
        if t:
            power = _matmul(power, power)
    return float(result[out * n + out][0])


def system_moment_decimal(sys, index, t) -> float:
    """:func:`decimal_moment` for entry ``index`` of a batch of engine systems."""
    one = sys.take(index)
    getcontext().prec = 60
    M, u, a = _decimal_system(one.kind, one.ema, float(one.x), None if one.beta is None else float(one.beta),
                              None if one.gamma is None else float(one.gamma))
    return decimal_moment(M, u, a, float(one.q), float(one.s0), one.out, t)


def longdouble_steps(sys, T: int) -> np.ndarray:
    """Measured second moments at steps ``0..T`` for every entry, shape ``sys.shape + (T + 1,)``."""
    E, u, a = sys.matrices()
    ld = np.longdouble
    n = E.shape[-1]
    M = np.eye(n, dtype=ld) - E.astype(ld)
    q = np.broadcast_to(sys.q, sys.shape).astype(ld)
    s0 = np.broadcast_to(sys.s0, sys.shape).astype(ld)
    S = s0[..., None, None] * a.astype(ld)[..., :, None] * a.astype(ld)[..., None, :]
    R = q[..., None, None] * u.astype(ld)[..., :, None] * u.astype(ld)[..., None, :]
    out = [S[..., sys.out, sys.out].copy()]
    Mt = np.swapaxes(M, -1, -2)
    for _ in range(T):
        S = M @ S @ Mt + R
        out.append(S[..., sys.out, sys.out].copy())
    return np.stack(out, -1)


# --------------------------------------------------------------------------------------------------
# Schedules by their textbook definitions (pure Python, step by step), not from batchlab's Schedule.
# ``t`` is the 0-based update (from step t to t + 1); after ``total`` updates the last rate continues.


def warmup_ramp(t: int, warmup: int) -> float:
    """Linear warmup ``min(1, (t + 1)/W)`` (1 without warmup)."""
    return 1.0 if warmup == 0 else min(1.0, (t + 1) / warmup)


def linear_decay_rate(t: int, total: int, end: float, decay: int | None = None, warmup: int = 0) -> float:
    """Shallue et al. (2018): ``1 − (1 − end)·min(t, T_d)/T_d``, times the warmup ramp."""
    t = min(t, total - 1)
    decay = total if decay is None else decay
    return (1.0 - (1.0 - end) * min(t, decay) / decay) * warmup_ramp(t, warmup)


def cosine_rate(t: int, total: int, end: float = 0.0, warmup: int = 0) -> float:
    """Cosine annealing (Loshchilov & Hutter; optax ``cosine_decay_schedule``):
    ``end + (1 − end)(1 + cos(π t/T))/2``, times the warmup ramp."""
    t = min(t, total - 1)
    return (end + (1.0 - end) * (1.0 + math.cos(math.pi * t / total)) / 2.0) * warmup_ramp(t, warmup)


def wsd_rate(t: int, total: int, warmup: int, decay: int, end: float = 0.0) -> float:
    """Warmup–stable–decay: ramp ``(t + 1)/W`` for ``t < W``, 1 on the plateau, and over the last ``D``
    updates a linear decay whose ``k``-th update (``k = 1..D``) has ``1 − (1 − end)·k/D`` (the last is ``end``)."""
    t = min(t, total - 1)
    if t < warmup:
        return (t + 1) / warmup
    start = total - decay
    return 1.0 if t < start else 1.0 - (1.0 - end) * (t - start + 1) / decay


def steps_rate(t: int, lengths, values) -> float:
    """Piecewise constant: ``values[k]`` for the ``lengths[k]`` updates of segment ``k``, then the last."""
    for length, value in zip(lengths, values):
        if t < length:
            return float(value)
        t -= length
    return float(values[-1])
