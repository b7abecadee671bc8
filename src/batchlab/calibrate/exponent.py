"""The power ``p`` of ``H^{-p}`` that best matches a measured preconditioned spectrum (a diagnostic).

The proxies of :mod:`batchlab.calibrate.predict` precondition with ``P = H^{-p}``.  Such a ``P`` commutes
with ``H``, so ``M = P^{-1/2} H P^{-1/2} = H^{1−p}``: the i-th largest eigenvalue of ``M`` is the i-th
largest of ``H`` to the power ``1 − p``.  A measured preconditioner need not commute with ``H``, but its
spectrum can still be compared rank by rank with that of ``H``:

- **rank function.**  A spectrum is a list of entries (value, multiplicity): the top-k eigenvalues
  (multiplicity 1) and the SLQ atoms of the bulk (node, mass · (d − k)), descending; entries at or
  below ``min_curvature · λ₁`` (the NQM's cut, :mod:`batchlab.calibrate.model`) are dropped.  An entry
  with multiplicity ``w`` after ``W`` larger eigenvalues sits at rank ``W + (w + 1)/2`` (the i-th top
  eigenvalue at rank i, a bulk atom in the middle of the ranks it stands for), and ``λ(r)`` is the
  log–log linear interpolation between entries.
- **fit.**  At ``points`` log-spaced ranks ``r`` from 1 to ``R`` (the smaller of the two spectra's
  largest rank), least squares of ``log λ_M(r) = a + b log λ_H(r)``; ``p = 1 − b``.  The intercept is
  free: a preconditioner's overall scale only rescales the learning rate.  ``r2`` is the fit's
  coefficient of determination (1: ``M``'s spectrum is exactly a power of ``H``'s).
- **top-k.**  ``exponent_top_k`` is the same fit on the paired top-k eigenvalues alone.

``H``'s spectrum is the one the proxies use (the reference run's checkpoint, plain coordinates), so
``p`` answers "which proxy power compresses the spectrum as much as the measured preconditioner does";
the two spectra are measured at different checkpoints (the SGD reference's and the optimizer's own).
Noise is not part of the fit.

Example:
    >>> import numpy as np
    >>> h = np.geomspace(10.0, 0.01, 20)
    >>> round(fit_exponent((h, np.ones(20)), (3.0 * h**0.4, np.ones(20))).exponent, 6)
    0.6
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from batchlab.calibrate.measure import Spectra
from batchlab.checks import finite_or_none

__all__ = ["ExponentFit", "spectrum_entries", "rank_function", "fit_exponent", "fitted_exponent"]

Entries = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ExponentFit:
    """Outcome of :func:`fit_exponent` (``nan`` where undefined).

    Attributes:
        exponent: ``p = 1 − b`` of the rank fit.
        intercept: ``a`` (log units).
        r2: coefficient of determination of the rank fit.
        max_rank: ``R``, the largest rank compared.
        points: number of ranks in the fit.
        exponent_top_k: ``p`` of the paired top-k eigenvalues alone.
    """

    exponent: float
    intercept: float
    r2: float
    max_rank: float
    points: int
    exponent_top_k: float

    def as_dict(self) -> dict[str, Any]:
        return {"exponent": finite_or_none(self.exponent), "exponent_top_k": finite_or_none(self.exponent_top_k),
                "intercept": finite_or_none(self.intercept), "r2": finite_or_none(self.r2),
                "max_rank": finite_or_none(self.max_rank), "points": self.points,
                "definition": "p = 1 - slope of log eig(P^-1/2 H P^-1/2) vs log eig(H), matched by rank"}


def spectrum_entries(spectra: Spectra, min_curvature: float = 1e-5) -> Entries:
    """``(values, multiplicities)`` of a measured spectrum, descending, above ``min_curvature · λ₁``."""
    nodes, mass = spectra.bulk.atoms()
    values = np.concatenate([spectra.top.values, nodes])
    weights = np.concatenate([np.ones_like(spectra.top.values), mass * spectra.bulk.dim])
    keep = (values > min_curvature * float(spectra.top.values[0])) & (weights > 0)
    order = np.argsort(values[keep])[::-1]
    return values[keep][order], weights[keep][order]


def rank_function(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank positions ``W + (w + 1)/2`` and values of descending entries (module docstring)."""
    values, weights = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    order = np.argsort(values)[::-1]
    values, weights = values[order], weights[order]
    before = np.concatenate([[0.0], np.cumsum(weights)[:-1]])
    return before + (weights + 1.0) / 2.0, values


def _interpolate(ranks: np.ndarray, positions: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.exp(np.interp(np.log(ranks), np.log(positions), np.log(values)))


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``y = a + b x``: ``(b, a, r2)`` (``nan`` when ``x`` is constant)."""
    if x.size < 2 or np.ptp(x) == 0:
        return math.nan, math.nan, math.nan
    b, a = np.polyfit(x, y, 1)
    residual = y - (a + b * x)
    total = float(np.sum((y - y.mean()) ** 2))
    return float(b), float(a), (1.0 - float(residual @ residual) / total) if total > 0 else 1.0


def fit_exponent(reference: Entries, measured: Entries, *, top: tuple[np.ndarray, np.ndarray] | None = None,
                 points: int = 48) -> ExponentFit:
    """The power ``p`` with ``λ_M(r) ≈ e^a λ_H(r)^{1−p}`` over ranks (module docstring).

    Args:
        reference: ``(values, multiplicities)`` of ``H`` (positive values).
        measured: the same of ``M = P^{-1/2} H P^{-1/2}``.
        top: the top-k eigenvalues of ``H`` and of ``M`` (positive) for ``exponent_top_k`` (paired in
            descending order, the shorter length); ``nan`` without.
        points: number of log-spaced ranks.
    """
    pos_h, val_h = rank_function(*reference)
    pos_m, val_m = rank_function(*measured)
    low = max(pos_h[0], pos_m[0], 1.0)
    high = min(pos_h[-1], pos_m[-1])
    exponent = intercept = r2 = math.nan
    count = 0
    if high > low:
        ranks = np.geomspace(low, high, points)
        x = np.log(_interpolate(ranks, pos_h, val_h))
        y = np.log(_interpolate(ranks, pos_m, val_m))
        slope, intercept, r2 = _slope(x, y)
        exponent, count = 1.0 - slope, points
    top_exponent = math.nan
    if top is not None:
        first, second = (np.sort(np.asarray(t, np.float64))[::-1] for t in top)
        k = min(first.size, second.size)
        first, second = first[:k], second[:k]
        keep = (first > 0) & (second > 0)
        top_exponent = 1.0 - _slope(np.log(first[keep]), np.log(second[keep]))[0]
    return ExponentFit(float(exponent), float(intercept), float(r2), float(high) if count else math.nan, count,
                       float(top_exponent))


def fitted_exponent(reference: Spectra, measured: Spectra, *, min_curvature: float = 1e-5,
                    points: int = 48) -> ExponentFit:
    """:func:`fit_exponent` of two measured spectra (``H`` and the preconditioned ``M``), their top-k paired."""
    return fit_exponent(spectrum_entries(reference, min_curvature), spectrum_entries(measured, min_curvature),
                        top=(reference.top.values, measured.top.values), points=points)
