"""Critical batch size estimators for any steps-versus-batch-size curve (NQM or real networks).

Two estimators, both on a curve of batch sizes ``B_i`` and steps ``S_i`` (unreachable points, ``inf``
or ``nan``, are ignored):

- **hyperbola fit** (McCandlish et al.; Shallue et al.): least squares in log space of
  ``S(B) = S_min (1 + B_noise / B)``; ``B_noise`` is the critical batch size — below it steps fall
  ∝ 1/B (perfect scaling), above it they approach ``S_min``.
- **overhead**: the largest ``B`` from the smallest one up to which the steps stay within
  ``1 + tolerance`` of perfect scaling, ``S(B) ≤ (1 + tol) · S(B_0) B_0 / B``; also the crossing
  interpolated in log–log between grid points.

Pure NumPy/SciPy; used by :mod:`batchlab.nqm` scaling curves and by study analysis.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from batchlab.checks import check_positive
from batchlab.errors import InputError

__all__ = ["HyperbolaFit", "fit_hyperbola", "overhead_critical_batch_size", "CriticalBatchSize", "critical_batch_size"]


@dataclasses.dataclass(frozen=True)
class HyperbolaFit:
    """``S(B) = s_min (1 + b_noise / B)`` fitted in log space; ``residual`` is the RMS log residual."""

    s_min: float
    b_noise: float
    residual: float
    points: int

    def predict(self, batch_size) -> np.ndarray:
        return self.s_min * (1.0 + self.b_noise / np.asarray(batch_size, dtype=np.float64))


@dataclasses.dataclass(frozen=True)
class CriticalBatchSize:
    """Both estimates for one curve.

    Attributes:
        fit: the hyperbola fit (``fit.b_noise`` is estimate (a)), or None with fewer than 2 points.
        overhead: estimate (b): largest measured batch size within the tolerance of perfect scaling.
        overhead_interpolated: where the overhead ratio crosses ``1 + tolerance`` (log–log
            interpolation; the largest batch size if it never does).
        tolerance: the overhead tolerance used.
    """

    fit: HyperbolaFit | None
    overhead: float
    overhead_interpolated: float
    tolerance: float

    def as_dict(self) -> dict:
        fit = None if self.fit is None else dataclasses.asdict(self.fit)
        return {"hyperbola_fit": fit, "b_noise": None if self.fit is None else self.fit.b_noise,
                "overhead": self.overhead, "overhead_interpolated": self.overhead_interpolated,
                "tolerance": self.tolerance}


def _clean(batch_sizes, steps) -> tuple[np.ndarray, np.ndarray]:
    B = np.asarray(batch_sizes, dtype=np.float64).reshape(-1)
    S = np.asarray(steps, dtype=np.float64).reshape(-1)
    if B.shape != S.shape:
        raise InputError(f"batch sizes ({B.size}) and steps ({S.size}) differ in length")
    if np.any(~np.isfinite(B)) or np.any(B <= 0):
        raise InputError("batch sizes must be finite and > 0")
    ok = np.isfinite(S) & (S > 0)
    order = np.argsort(B[ok])
    return B[ok][order], S[ok][order]


def fit_hyperbola(batch_sizes, steps) -> HyperbolaFit | None:
    """Least-squares fit of ``log S = log s_min + log(1 + b_noise / B)`` (``b_noise ≥ 0``).

    Example:
        >>> B = np.array([1, 4, 16, 64, 256.0])
        >>> fit = fit_hyperbola(B, 1000 * (1 + 32 / B))
        >>> round(fit.b_noise)
        32
    """
    B, S = _clean(batch_sizes, steps)
    if B.size < 2:
        return None
    logS = np.log(S)

    def residual(p):
        return p[0] + np.log1p(np.exp(p[1]) / B) - logS

    # starts: plateau at the largest B, noise scale spread over the measured range
    from scipy.optimize import least_squares  # deferred: importing scipy.optimize costs ~0.3 s

    best = None
    for b0 in np.geomspace(B.min() / 10, B.max() * 10, 9):
        p0 = np.array([np.log(S.min()), np.log(b0)])
        sol = least_squares(residual, p0, method="lm" if B.size >= 2 else "trf")
        if best is None or sol.cost < best.cost:
            best = sol
    s_min, b_noise = float(np.exp(best.x[0])), float(np.exp(best.x[1]))
    rms = float(np.sqrt(np.mean(residual(best.x) ** 2)))
    return HyperbolaFit(s_min=s_min, b_noise=b_noise, residual=rms, points=int(B.size))


def overhead_critical_batch_size(batch_sizes, steps, tolerance: float = 0.2) -> tuple[float, float]:
    """Largest batch size within ``1 + tolerance`` of perfect scaling from the smallest, and the
    log–log interpolated crossing.  Returns ``(nan, nan)`` for an empty curve."""
    check_positive(tolerance, "tolerance")
    B, S = _clean(batch_sizes, steps)
    if B.size == 0:
        return math.nan, math.nan
    ratio = S * B / (S[0] * B[0])  # steps relative to perfect scaling
    limit = 1.0 + tolerance
    over = np.flatnonzero(ratio > limit)
    if over.size == 0:
        return float(B[-1]), float(B[-1])
    k = int(over[0])
    last_ok = float(B[k - 1])
    lr0, lr1 = math.log(ratio[k - 1]), math.log(ratio[k])
    frac = (math.log(limit) - lr0) / (lr1 - lr0) if lr1 != lr0 else 0.0
    crossing = math.exp(math.log(B[k - 1]) + frac * (math.log(B[k]) - math.log(B[k - 1])))
    return last_ok, float(crossing)


def critical_batch_size(batch_sizes, steps, tolerance: float = 0.2) -> CriticalBatchSize:
    """Both estimators on one curve."""
    fit = fit_hyperbola(batch_sizes, steps)
    last_ok, crossing = overhead_critical_batch_size(batch_sizes, steps, tolerance)
    return CriticalBatchSize(fit=fit, overhead=last_ok, overhead_interpolated=crossing, tolerance=tolerance)
