"""Figures of a calibration: the measured spectrum and the predicted scaling curves (PNG).

- ``spectrum.png``: left, the top-k eigenvalues (markers) over the bulk's smoothed SLQ density (scaled to
  eigenvalue counts, ``(d − k) · φ(λ)``); right, per top eigenvector, the curvature ``λ_i`` against the
  measured noise ``c_i`` with ±2 standard errors, and the bulk's noise model ``c = r h``.
- ``prediction.png``: predicted steps to target versus batch size per study optimizer (log–log), with the
  critical batch size (hyperbola fit) marked and a perfect-scaling guide; the legend names each
  optimizer's NQM kind and its power ``p`` (proxy) or "measured P" with the fitted ``p``.
- ``preconditioned.png`` (measured preconditioners only): left, eigenvalue versus rank (log–log,
  :func:`batchlab.calibrate.exponent.rank_function`) of ``H`` and of each optimizer's
  ``P^{-1/2} H P^{-1/2}``; right, the rank-matched pairs ``(λ_H(r), λ_M(r))`` with the fitted line of
  slope ``1 − p``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from batchlab.calibrate.exponent import ExponentFit, rank_function, spectrum_entries
from batchlab.calibrate.measure import Spectra
from batchlab.nqm.scaling import ScalingCurve

__all__ = ["spectrum_figure", "prediction_figure", "exponent_figure"]

COLORS = {"sgd": "tab:blue", "momentum": "tab:orange", "adam": "tab:green", "kfac": "tab:red"}


def _new_figure(width: float) -> Figure:
    # a bare Figure renders with Agg on savefig: no pyplot, no backend switch, no global state
    return Figure(figsize=(width, 4.0), layout="constrained")


def spectrum_figure(spectra: Spectra, path: Path, *, bulk_noise_ratio: float | None = None) -> Path:
    """Write the spectrum figure to ``path`` and return it."""
    fig = _new_figure(11.0)
    left, right = fig.subplots(1, 2)
    grid, density = spectra.bulk.smoothed()
    left.plot(grid, density * spectra.bulk.dim, color="tab:gray", label="bulk density × (d − k), SLQ")
    values = spectra.top.values
    left.plot(values, np.ones_like(values), "v", color="tab:red", label=f"top-{values.size} eigenvalues")
    left.set_yscale("log")
    left.set_ylim(bottom=0.5)
    left.set_xlabel(f"eigenvalue of the {spectra.curvature}")
    left.set_ylabel("eigenvalues per unit")
    left.legend(loc="upper right")
    noise, err = spectra.noise.noise, spectra.noise.noise_stderr
    positive = values > 0
    right.errorbar(values[positive], np.maximum(noise[positive], 1e-30), yerr=2 * err[positive], fmt="o",
                   color="tab:red", label="c_i (±2 s.e.)")
    if bulk_noise_ratio is not None and np.any(positive):
        h = np.geomspace(values[positive].min() / 100, values[positive].max(), 50)
        right.plot(h, bulk_noise_ratio * h, "--", color="tab:gray", label="bulk model c = r h")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("curvature h_i")
    right.set_ylabel("per-example gradient variance c_i")
    right.legend(loc="upper left")
    fig.suptitle(f"B_simple = {_fmt(spectra.noise.b_simple)}, B_noise = {_fmt(spectra.noise.b_noise)}")
    fig.savefig(path, dpi=110)
    return path


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def prediction_figure(curves: Mapping[str, ScalingCurve], path: Path, *, title: str = "",
                      labels: Mapping[str, str] | None = None) -> Path:
    """Write the predicted steps-versus-batch-size figure to ``path`` and return it (``labels``: legend
    entry per optimizer, default its NQM kind and power)."""
    fig = _new_figure(6.5)
    ax = fig.subplots()
    for name, curve in curves.items():
        B, S = curve.batch_sizes, curve.steps
        ok = np.isfinite(S)
        color = COLORS.get(name)
        label = (labels or {}).get(name) or f"{name} (NQM {curve.kind}, p = {curve.precond:g})"
        ax.plot(B[ok], S[ok], "o-", color=color, label=label)
        fit = curve.critical.fit
        if fit is not None and np.isfinite(fit.b_noise) and B.min() <= fit.b_noise <= B.max():
            ax.axvline(fit.b_noise, color=color, ls=":", lw=1)
    first = next(iter(curves.values()))
    finite = np.isfinite(first.steps)
    if np.any(finite):
        b0, s0 = first.batch_sizes[finite][0], first.steps[finite][0]
        ax.plot(first.batch_sizes, s0 * b0 / first.batch_sizes, color="k", ls="--", lw=0.8, label="perfect scaling")
        lowest = min(float(np.min(c.steps[np.isfinite(c.steps)], initial=np.inf)) for c in curves.values())
        ax.set_ylim(bottom=0.5 * lowest)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("predicted steps to target")
    ax.set_title(title or "calibrated NQM prediction (dotted: critical batch size)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def exponent_figure(reference: Spectra, measured: Mapping[str, tuple[Spectra, ExponentFit]], path: Path, *,
                    min_curvature: float = 1e-5) -> Path:
    """Write the preconditioned-spectrum figure to ``path`` and return it (see the module docstring)."""
    fig = _new_figure(11.0)
    left, right = fig.subplots(1, 2)
    ranks_h, values_h = rank_function(*spectrum_entries(reference, min_curvature))
    left.plot(ranks_h, values_h, ".-", color="k", label=f"H ({reference.curvature}), reference checkpoint")
    for name, (spectra, fit) in measured.items():
        color = COLORS.get(name)
        ranks_m, values_m = rank_function(*spectrum_entries(spectra, min_curvature))
        left.plot(ranks_m, values_m, ".-", color=color, label=f"{name}: P^-1/2 H P^-1/2")
        if fit.points < 2:
            continue
        ranks = np.geomspace(max(1.0, ranks_h[0], ranks_m[0]), fit.max_rank, fit.points)
        x = np.exp(np.interp(np.log(ranks), np.log(ranks_h), np.log(values_h)))
        y = np.exp(np.interp(np.log(ranks), np.log(ranks_m), np.log(values_m)))
        label = f"{name}: p = {fit.exponent:.2f} (top-k {fit.exponent_top_k:.2f})"
        right.plot(x, y, "o", ms=3, color=color, label=label)
        line = np.geomspace(x.min(), x.max(), 20)
        right.plot(line, np.exp(fit.intercept) * line ** (1.0 - fit.exponent), "-", color=color, lw=1)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
    left.set_xlabel("rank")
    left.set_ylabel("eigenvalue")
    left.legend(fontsize=8)
    right.set_xlabel("eigenvalue of H at the same rank")
    right.set_ylabel("eigenvalue of P^-1/2 H P^-1/2")
    right.set_title("fit: log λ_M = a + (1 − p) log λ_H", fontsize=9)
    right.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path
