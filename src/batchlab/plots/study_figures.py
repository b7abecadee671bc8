"""Figures of a batch-size scaling study, from the analysis data frames (never trains).

* :func:`steps_figure`: steps to target vs batch size, every optimizer on one log–log plot, with
  bootstrap intervals and each optimizer's perfect-scaling line ``S(B₀)·B₀/B`` (the paper's main
  figure; ``X+ema`` dash-dotted with square markers in ``X``'s colour); an NQM prediction, when
  given, is overlaid dashed.
* :func:`learning_rate_figure`: the winning learning rate, effective learning rate and ``1 − β`` vs
  batch size; an NQM prediction's tuned learning rates and momenta, when in the optimizer's own units,
  are overlaid dashed.
* :func:`ema_figure`: with vs without an EMA of the weights (``X`` dashed, ``X+ema`` solid), plus
  each tracked decay's best steps (thin).
"""

from __future__ import annotations

import io
import math
import pathlib
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["color_map", "ema_figure", "figures", "learning_rate_figure", "png_bytes", "save_png", "steps_figure"]

_EMA = "+ema"


def color_map(optimizers: list[str]) -> dict[str, Any]:
    """One colour per base optimizer; ``X`` and ``X+ema`` share it."""
    bases = list(dict.fromkeys(o.removesuffix(_EMA) for o in optimizers))
    palette = plt.get_cmap("tab10")
    return {o: palette(bases.index(o.removesuffix(_EMA)) % 10) for o in optimizers}


def _finite(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    if frame.empty or column not in frame:
        return frame.iloc[0:0]
    return frame[np.isfinite(frame[column].astype(float))]


def _log_axes(ax: plt.Axes, **labels: str) -> None:
    """Log–log axes with a grid; a note instead when nothing was drawn (no trial reached yet)."""
    if ax.lines:
        ax.set(xscale="log", yscale="log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no trial has reached the target yet", ha="center", va="center",
                transform=ax.transAxes, color="gray")
    ax.set(**labels)


def steps_figure(best: pd.DataFrame, critical: pd.DataFrame | None = None, *, prediction: Any = None,
                 title: str = "") -> plt.Figure:
    """Steps to target vs batch size (log–log), one line per optimizer.

    Args:
        best: :func:`batchlab.analysis.best_per_cell` rows.
        critical: :func:`batchlab.analysis.critical_batch_sizes` rows (B_noise in the legend).
        prediction: an :class:`~batchlab.analysis.prediction.Prediction` to overlay, or None.
        title: the axes title.
    """
    optimizers = list(dict.fromkeys(best["optimizer"])) if not best.empty else []
    colors = color_map(optimizers + (list(prediction.curves) if prediction else []))
    noise = {} if critical is None or critical.empty else dict(zip(critical["optimizer"], critical["b_noise"]))
    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    for name in optimizers:
        rows = _finite(best[best["optimizer"] == name], "best_steps")
        if rows.empty:
            continue
        sizes, steps = rows["batch_size"].to_numpy(float), rows["best_steps"].to_numpy(float)
        low, high = rows["steps_low"].to_numpy(float), rows["steps_high"].to_numpy(float)
        upper = np.where(np.isfinite(high), np.maximum(high - steps, 0.0), 0.0)
        lower = np.where(np.isfinite(low), np.maximum(steps - low, 0.0), 0.0)
        label = name if not math.isfinite(noise.get(name, math.nan)) else f"{name} (B_noise ≈ {noise[name]:,.0f})"
        averaged = name.endswith(_EMA)  # shares its base optimizer's colour: tell it apart by style
        ax.errorbar(sizes, steps, yerr=[lower, upper], color=colors[name],
                    marker="s" if averaged else "o", linestyle="-." if averaged else "-", capsize=3, label=label)
        ax.plot(sizes, steps[0] * sizes[0] / sizes, color=colors[name], linestyle=":", linewidth=1.0)
    if prediction is not None:
        for name, curve in prediction.curves.items():
            ok = np.isfinite(curve.steps)
            ax.plot(curve.batch_sizes[ok], curve.steps[ok], color=colors.get(name, "gray"), linestyle="--",
                    linewidth=1.5, label=f"NQM prediction: {name}")
    if ax.lines:
        ax.plot([], [], color="black", linestyle=":", linewidth=1.0, label="perfect scaling")
    _log_axes(ax, xlabel="batch size", ylabel="steps to target", title=title)
    fig.tight_layout()
    return fig


def _predicted_rates(prediction: Any) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Prediction name → (batch sizes, learning rates, momenta) for the curves whose learning rates are
    in the optimizer's own units (a preconditioned proxy's are not comparable: left out)."""
    out = {}
    for name, curve in ({} if prediction is None else prediction.curves).items():
        rates = getattr(curve, "learning_rates", None)
        if not getattr(curve, "optimizer_units", False) or rates is None or not np.isfinite(rates).any():
            continue
        momenta = getattr(curve, "momenta", None)
        momenta = np.full(rates.shape, np.nan) if momenta is None else np.asarray(momenta, dtype=float)
        out[name] = (np.asarray(curve.batch_sizes, dtype=float), np.asarray(rates, dtype=float), momenta)
    return out


def learning_rate_figure(best: pd.DataFrame, *, prediction: Any = None, title: str = "") -> plt.Figure:
    """The winning learning rate (left), effective learning rate ``α/(1 − β)`` (middle) and, where an
    optimizer has a momentum, ``1 − β`` (right) vs batch size.

    Args:
        best: :func:`batchlab.analysis.best_per_cell` rows (the winners: solid, with markers).
        prediction: an :class:`~batchlab.analysis.prediction.Prediction`; its NQM-tuned learning rates
            and momenta are overlaid dashed in the optimizer's colour, for entries whose learning rates
            are in the optimizer's own units only (``precond`` 0 or ``"units": "optimizer"``).
        title: the figure title.
    """
    optimizers = list(dict.fromkeys(best["optimizer"])) if not best.empty else []
    predicted = _predicted_rates(prediction)
    colors = color_map(optimizers + list(predicted))
    with_momentum = ("hp_momentum" in best and np.isfinite(best["hp_momentum"].astype(float)).any()) or any(
        np.isfinite(m).any() for _, _, m in predicted.values())
    panels = [("learning_rate", "optimal learning rate"), ("effective_learning_rate", "effective learning rate α/(1−β)")]
    if with_momentum:
        panels.append(("one_minus_momentum", "1 − momentum β"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5))
    frame = best.copy()
    if with_momentum and "hp_momentum" in frame:
        frame["one_minus_momentum"] = 1.0 - frame["hp_momentum"].astype(float)
    for ax, (column, label) in zip(axes, panels):
        for name in optimizers:
            if column not in frame:
                continue
            rows = frame[(frame["optimizer"] == name)]
            rows = rows[np.isfinite(rows[column].astype(float))]
            if not rows.empty:
                ax.plot(rows["batch_size"], rows[column].astype(float), marker="o", color=colors[name], label=name)
        for name, (sizes, rates, momenta) in predicted.items():
            values = {"learning_rate": rates,
                      "effective_learning_rate": np.where(np.isfinite(momenta), rates / (1.0 - momenta), rates),
                      "one_minus_momentum": 1.0 - momenta}[column]
            ok = np.isfinite(values)
            if ok.any():
                ax.plot(sizes[ok], values[ok], linestyle="--", linewidth=1.5, color=colors[name],
                        label=f"NQM prediction: {name}")
        _log_axes(ax, xlabel="batch size", ylabel=label)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def ema_figure(best: pd.DataFrame, ema: pd.DataFrame, *, title: str = "") -> plt.Figure | None:
    """With vs without EMA: ``X`` dashed, ``X+ema`` (best decay per trial) solid, per-decay thin.

    Returns:
        The figure, or ``None`` when the study has no ``+ema`` optimizer.
    """
    optimizers = list(dict.fromkeys(best["optimizer"])) if not best.empty else []
    averaged = [o for o in optimizers if o.endswith(_EMA)]
    if not averaged:
        return None
    colors = color_map(optimizers)
    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    for name in averaged:
        base = name.removesuffix(_EMA)
        for which, style, width in ((base, "--", 1.5), (name, "-", 2.0)):
            rows = _finite(best[best["optimizer"] == which], "best_steps")
            if not rows.empty:
                ax.plot(rows["batch_size"], rows["best_steps"], linestyle=style, linewidth=width, marker="o",
                        color=colors[name], label=which if which == base else f"{which} (best decay)")
        decays = ema[ema["optimizer"] == name]
        for k, (decay, rows) in enumerate(decays.groupby("ema_decay")):
            rows = _finite(rows, "best_steps")
            if not rows.empty:
                ax.plot(rows["batch_size"], rows["best_steps"], linestyle=":", linewidth=0.9, alpha=0.6,
                        marker="v^<>ph"[k % 6], color=colors[name], label=f"{name}, γ = {decay:g}")
    _log_axes(ax, xlabel="batch size", ylabel="steps to target", title=title)
    fig.tight_layout()
    return fig


def png_bytes(fig: plt.Figure, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes, without the Software metadata (which names a web address)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def save_png(fig: plt.Figure, path: str | pathlib.Path, *, dpi: int = 110) -> bytes:
    """Write the figure to ``path`` (see :func:`png_bytes`), close it and return the bytes."""
    data = png_bytes(fig, dpi=dpi)
    pathlib.Path(path).write_bytes(data)
    plt.close(fig)
    return data


def figures(best: pd.DataFrame, critical: pd.DataFrame, ema: pd.DataFrame, *, prediction: Any = None,
            title: str = "") -> Mapping[str, plt.Figure]:
    """Every study figure by file stem (``ema`` only when the study has ``+ema`` optimizers)."""
    out = {"steps_vs_batch_size": steps_figure(best, critical, prediction=prediction, title=title),
           "learning_rate_vs_batch_size": learning_rate_figure(best, prediction=prediction, title=title)}
    with_ema = ema_figure(best, ema, title=title)
    if with_ema is not None:
        out["ema"] = with_ema
    return out
