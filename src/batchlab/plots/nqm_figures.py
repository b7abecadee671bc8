"""The paper's NQM figures: data (CSV + JSON) and PNGs, computed with the exact engine.

Figures (file stems):
    fig2_momentum_single_direction   convergence rate and steady-state risk vs momentum (αh = 0.0005, B = 1)
    fig3a_momentum_preconditioning   steps vs batch size, p ∈ {0, .25, .5, .75}; SGD dashed, momentum solid
    fig3b_schedules                  optimized piecewise-constant schedules (solid) vs constant SGD (dashed)
    fig3c_schedules_p0               the optimized schedules for p = 0
    fig4_ema                         SGD + EMA (solid) vs SGD (dashed)
    fig_learning_rates               optimal and effective learning rates vs batch size
    fig_targets                      steps vs batch size for several targets (p = 0)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from batchlab.nqm import Problem, binned, heavy_ball, power_law, stability_limit  # noqa: E402
from batchlab.nqm.optimize import SearchConfig  # noqa: E402
from batchlab.nqm.scaling import scaling_curves  # noqa: E402

__all__ = ["FigureSpec", "write_nqm_figures", "PRECONDS", "COLORS"]

PRECONDS = (0.0, 0.25, 0.5, 0.75)
COLORS = {0.0: "tab:blue", 0.25: "tab:orange", 0.5: "tab:green", 0.75: "tab:red"}


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """What to compute: the problem and the grids."""

    dim: int = 10_000
    bins: int | None = None
    target: float = 0.01
    batch_sizes: tuple[float, ...] = tuple(float(4**k) for k in range(1, 11))
    targets: tuple[float, ...] = (0.1, 0.03, 0.01, 0.003, 0.001)
    pieces: int = 10

    def problem(self) -> Problem:
        p = power_law(self.dim)
        return binned(p, self.bins) if self.bins else p

    @classmethod
    def quick(cls, **kw) -> "FigureSpec":
        """A small version (every other batch size, three targets) for demos."""
        return cls(batch_sizes=tuple(float(4**k) for k in range(1, 11, 2)), targets=(0.1, 0.01, 0.001), **kw)


def write_nqm_figures(out: Path, spec: FigureSpec = FigureSpec(), *, workers: int = 1,
                      progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Compute every figure's data and write ``<stem>.png`` + ``<stem>.csv`` (+ ``summary.json``).

    ``progress(done, total)`` is called as work completes.  Returns the written paths.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curve_jobs = [(k, p, spec.target) for p in PRECONDS for k in ("sgd", "momentum", "ema")]
    curve_jobs += [(k, 0.0, t) for t in spec.targets if t != spec.target for k in ("sgd", "momentum")]
    sched_jobs = [("schedule", p, spec.target) for p in PRECONDS]  # optimized schedules: one curve per p
    total = len(curve_jobs) + len(sched_jobs)
    done = [0]

    def tick(n):
        done[0] += n
        if progress:
            progress(done[0], total)

    problem = spec.problem()
    computed = scaling_curves(problem, curve_jobs + sched_jobs, spec.batch_sizes, target=spec.target,
                              config=SearchConfig(pieces=spec.pieces), workers=workers, progress=lambda _: tick(1))
    curves = {job: curve.as_dict() for job, curve in zip(curve_jobs, computed)}
    schedules = {(p, row.batch_size): row.as_dict()
                 for (_, p, _), curve in zip(sched_jobs, computed[len(curve_jobs):]) for row in curve.rows}
    paths = [
        *_fig2(out),
        *_fig_steps(out, "fig3a_momentum_preconditioning", curves, spec, ("sgd", "momentum"),
                    "Momentum and preconditioning: SGD dashed, momentum solid", problem),
        *_fig_steps(out, "fig4_ema", curves, spec, ("sgd", "ema"), "EMA: SGD dashed, SGD + EMA solid", problem),
        *_fig3b(out, curves, schedules, spec, problem),
        *_fig3c(out, schedules, spec),
        *_fig_lr(out, curves, spec),
        *_fig_targets(out, curves, spec, problem),
    ]
    summary = {
        "problem": problem.describe(), "target": spec.target, "batch_sizes": list(spec.batch_sizes),
        "critical_batch_size": {f"{k}@p={p:g}": c["critical_batch_size"] for (k, p, t), c in curves.items()
                                if t == spec.target},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return paths + [out / "summary.json"]


def _save(fig, out: Path, stem: str, frame: pd.DataFrame) -> list[Path]:
    png, csv = out / f"{stem}.png", out / f"{stem}.csv"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    plt.close(fig)
    frame.to_csv(csv, index=False)
    return [png, csv]


def _log2_batch_axis(ax):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (log₂ scale)")


def _fig2(out: Path) -> list[Path]:
    x, B = 0.0005, 1.0
    beta = 1.0 - np.logspace(-4, 0, 200, endpoint=False)[::-1]
    sb = np.sqrt(beta)
    disc = (x - (1 - sb) ** 2) * (x - (1 + sb) ** 2)
    tau = 1 - x + beta
    radius = np.where(disc < 0, sb, (np.abs(tau) + np.sqrt(np.maximum(disc, 0))) / 2)
    rate = -np.log(radius)  # per-step convergence rate of the mean
    ssr = (1 + beta) * x / (2 * B * (1 - beta) * (2 + 2 * beta - x))  # h = c = 1, α = x
    frame = pd.DataFrame({"momentum": beta, "convergence_rate": rate, "steady_state_risk": ssr,
                          "critical_damping": (1 - np.sqrt(x)) ** 2})
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(1 - beta, rate, color="tab:blue", label="convergence rate −log|r|max")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("1 − momentum β")
    ax.set_ylabel("convergence rate per step", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(1 - beta, ssr, color="tab:red", label="steady-state risk")
    ax2.set_yscale("log")
    ax2.set_ylabel("steady-state risk", color="tab:red")
    ax.axvline(1 - (1 - np.sqrt(x)) ** 2, color="gray", ls=":", label="critical damping")
    ax.set_title("One direction, αh = 0.0005, B = 1")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="upper left")
    return _save(fig, out, "fig2_momentum_single_direction", frame)


def _rows(curves, kind, p, target):
    c = curves[(kind, p, target)]
    return pd.DataFrame([{**r, "optimizer": kind, "precond": p, "target": target} for r in c["rows"]])


def _fig_steps(out, stem, curves, spec, kinds, title, problem) -> list[Path]:
    frames = [_rows(curves, k, p, spec.target) for p in PRECONDS for k in kinds]
    frame = pd.concat(frames, ignore_index=True)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for p in PRECONDS:
        for k, ls in zip(kinds, ("--", "-")):
            d = frame[(frame.optimizer == k) & (frame.precond == p)]
            ax.plot(d.batch_size, d.steps, ls=ls, marker="o", ms=3, color=COLORS[p],
                    label=f"{k}, p={p:g}")
    Bs = np.array(spec.batch_sizes)
    ax.plot(Bs, [problem.lower_bound_steps(b, spec.target) for b in Bs], "k--", lw=1, label="lower bound")
    _log2_batch_axis(ax)
    ax.set_yscale("log")
    ax.set_ylabel(f"steps to reach risk {spec.target:g}")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out, stem, frame)


def _fig3b(out, curves, schedules, spec, problem) -> list[Path]:
    rows = [{**v, "precond": p} for (p, B), v in schedules.items()]
    frame = pd.DataFrame(rows).drop(columns=["learning_rates"])
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for p in PRECONDS:
        d = frame[frame.precond == p].sort_values("batch_size")
        ax.plot(d.batch_size, d.steps, "-", marker="o", ms=3, color=COLORS[p], label=f"schedule, p={p:g}")
        s = _rows(curves, "sgd", p, spec.target)
        ax.plot(s.batch_size, s.steps, "--", color=COLORS[p], label=f"constant, p={p:g}")
    Bs = np.array(spec.batch_sizes)
    ax.plot(Bs, [problem.lower_bound_steps(b, spec.target) for b in Bs], "k--", lw=1, label="lower bound")
    _log2_batch_axis(ax)
    ax.set_yscale("log")
    ax.set_ylabel(f"steps to reach risk {spec.target:g}")
    ax.set_title(f"Optimized {spec.pieces}-piece schedules (solid) vs constant SGD (dashed)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out, "fig3b_schedules", frame)


def _fig3c(out, schedules, spec) -> list[Path]:
    rows = []
    fig, ax = plt.subplots(figsize=(6, 4.2))
    cmap = plt.get_cmap("viridis")
    for i, B in enumerate(spec.batch_sizes):
        v = schedules[(0.0, B)]
        lr = v["learning_rates"]
        if not lr:
            continue
        frac = (np.arange(len(lr)) + 0.5) / len(lr)
        ax.step(np.concatenate([[0], frac + 0.5 / len(lr)]), [lr[0]] + list(lr), where="pre",
                color=cmap(i / max(1, len(spec.batch_sizes) - 1)), label=f"B={int(B)}")
        rows += [{"batch_size": B, "piece": k, "fraction_of_run": frac[k], "learning_rate": lr[k]} for k in range(len(lr))]
    ax.set_yscale("log")
    ax.set_xlabel("fraction of the run")
    ax.set_ylabel("learning rate")
    ax.set_title("Optimized piecewise-constant schedules, p = 0", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out, "fig3c_schedules_p0", pd.DataFrame(rows))


def _fig_lr(out, curves, spec) -> list[Path]:
    frame = pd.concat([_rows(curves, k, p, spec.target) for p in PRECONDS for k in ("sgd", "momentum")],
                      ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for p in PRECONDS:
        for k, ls in (("sgd", "--"), ("momentum", "-")):
            d = frame[(frame.optimizer == k) & (frame.precond == p)]
            axes[0].plot(d.batch_size, d.learning_rate, ls=ls, marker="o", ms=3, color=COLORS[p], label=f"{k}, p={p:g}")
            axes[1].plot(d.batch_size, d.effective_learning_rate, ls=ls, marker="o", ms=3, color=COLORS[p],
                         label=f"{k}, p={p:g}")
    for ax, name in zip(axes, ("optimal learning rate α", "effective learning rate α/(1−β)")):
        _log2_batch_axis(ax)
        ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.legend(fontsize=7, ncol=2)
    limit = float(stability_limit(heavy_ball(1.0, 0.0)))
    axes[0].axhline(limit, color="gray", ls=":", lw=1)
    fig.suptitle("Optimal learning rates grow ∝ B, then saturate near the stability limit", fontsize=10)
    return _save(fig, out, "fig_learning_rates", frame)


def _fig_targets(out, curves, spec, problem) -> list[Path]:
    frames = [_rows(curves, k, 0.0, t) for t in spec.targets for k in ("sgd", "momentum")]
    frame = pd.concat(frames, ignore_index=True)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    cmap = plt.get_cmap("plasma")
    for i, t in enumerate(spec.targets):
        color = cmap(i / max(1, len(spec.targets)))
        for k, ls in (("sgd", "--"), ("momentum", "-")):
            d = frame[(frame.optimizer == k) & (frame.target == t)]
            ax.plot(d.batch_size, d.steps, ls=ls, marker="o", ms=3, color=color, label=f"{k}, target {t:g}")
    _log2_batch_axis(ax)
    ax.set_yscale("log")
    ax.set_ylabel("steps to reach the target")
    ax.set_title("Several targets (p = 0): SGD dashed, momentum solid", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out, "fig_targets", frame)
