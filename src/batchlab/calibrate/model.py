"""From measured spectra to an NQM :class:`~batchlab.nqm.Problem` and its target.

Units are the workload's own: curvature ``h`` in loss/θ², per-example noise ``c`` in (loss/θ)², risk in
loss, so the NQM's noise floor ``≈ α Σ c P / (4B)`` and its target are directly comparable.

**Directions.**  The top-k eigenpairs enter exactly: ``h_i = λ_i``, ``c_i`` = measured variance of the
per-example gradients along the eigenvector.  The bulk enters from the deflated SLQ density: each Gauss
node ``θ`` with mass ``τ`` (the masses of a density sum to 1) becomes an entry with ``h = θ`` and weight
``τ · (d − k)`` (the number of eigenvalues it stands for).  Nodes at or below ``min_curvature · λ_1``
(negative curvature included) are left out: the NQM has no such directions, and with a start of the
family below with ``a > 0`` they would hold a share ``∝ h^a`` of the risk, i.e. almost none.  The bulk is then compressed to
``bulk_entries`` entries (:func:`batchlab.nqm.spectrum.compress`, exact in ``c/h``).

**Bulk noise** is modelled as ``c = r h`` (the noise-equals-curvature assumption of the paper) with ``r``
from (``bulk_noise``):

- ``"curvature-weighted"`` (default): match the measured ``tr(HΣ) = Σ_i h_i c_i`` —
  ``r = (tr(HΣ) − Σ_{top} λ_i c_i) / Σ_{bulk} w h²``.  This is the noise that matters for the risk
  (noise along flat directions barely raises ``½ h θ²``) and the numerator of ``B_noise``;
- ``"total"``: match ``tr Σ``: ``r = (tr Σ − Σ_{top} c_i) / Σ_{bulk} w h``;
- ``"top-k"``: the top-k ratio ``r = Σ_{top} c_i / Σ_{top} λ_i``.

A non-positive or non-finite ``r`` (sampling error when the top-k already carry all the noise) falls
back to ``"top-k"``.

**Initial state** ``s0`` (``initial``), always scaled so that the NQM's initial risk ``Σ w ½ h s0``
equals the measured ``L(θ₀) − floor``.  Within the family "direction i starts with a share of the risk
``∝ w_i h_i^a``", i.e. ``s0_i = 2(L₀ − floor) h_i^(a−1) / Σ_j w_j h_j^a``:

- ``"fit"`` (default): choose ``a`` so that the NQM reproduces the (tuned) reference run: the NQM's
  fewest steps to its target at the reference batch size, for the reference optimizer's NQM kind with
  its learning rate (and momentum) tuned by :func:`batchlab.nqm.optimize.optimize`, equal the
  reference run's ``T`` steps (:class:`Anchor`).  Tuned is matched with tuned because the predictions
  are of tuned optimizers, and because the reference's own learning rate is not transferable: at the
  edge of stability (Cohen et al. 2021) a network trained with rate α has sharpness ≈ 2/α at the
  checkpoint, on or past the NQM's hard stability limit, and the noise measured at the target
  (cross-entropy noise shrinks with the loss, the NQM's does not) can put the NQM's noise floor at
  that rate above the target.  The tuned NQM steps fall steeply and monotonically in ``a``; the root is
  bracketed on a grid of ``a`` in ``[−1, 12]`` and refined by Brent's method.  Real networks start
  with their loss concentrated in high-curvature directions (the gradient lives mostly in the top
  eigenspace: Gur-Ari, Roberts & Dyer 2018), which the fitted ``a > 1`` expresses; with ``a = 1`` a
  network's thousands of flat bulk directions would hold much of the risk and the NQM would need far
  more steps than the reference run did.  Without an anchor (a reference optimizer without an NQM
  proxy, a schedule, or a given target loss) this falls back to ``"isotropic"``; if no ``a`` matches,
  the closest grid value is used and the rule says ``"fit (closest)"`` (seen on fashion-mnist-mlp with
  a coarse bulk: a Gauss–Newton matrix of n examples and K classes has rank ≤ n(K − 1), and 32 SLQ
  nodes resolve no eigenvalue below ~1e-3 · λ₁, so even ``a = −1`` leaves the NQM faster than the
  network; more ``curvature_examples`` and ``slq_steps`` resolve the slow bulk);
- ``"isotropic"`` (``a = 1``, the paper's ``θ(0) ~ N(0, s0 I)``): the initial displacement has no
  preferred direction, so each direction's risk is proportional to its curvature;
- ``"equal-risk"`` (``a = 0``): every direction starts with the same risk.

**Start-up delay** (``delay = "fit"``, the default).  A network does not start in the quadratic regime it is
measured in: digits-cnn's SGD reference run (rate 0.46, B = 128) starts at sharpness 33.7, ten times its
checkpoint's, catapults out of it and trains at the edge of stability; its training loss is not monotone
over its first ~20 updates (``prediction.json`` ``reference.loss_curve``), a phase the NQM, with the
checkpoint's curvature from update 0, does not have.  The fitted
initial state absorbed that cost as slow directions, which a large batch cannot speed up, so the NQM came
out too fast at large batch sizes and too slow at small ones.  The model: the run stays at its initial
risk for ``T0`` updates and then follows the NQM, so every predicted count is ``T0`` plus the NQM's.  ``T0``
and ``a`` are fitted together to the reference run's loss curve (the median over its seeds of the mean
minibatch training loss per evaluation interval, :func:`batchlab.calibrate.reference.loss_curve`): for
each ``T0`` the exponent makes the tuned NQM reach its target in ``T − T0`` updates, and ``T0`` minimises
the mean squared log-loss residual between the curve and the delayed NQM run at that optimum
(:func:`delayed_means`) over the intervals up to ``T``.  Anchors other than plain SGD or heavy ball in their
own coordinates (a proxy's ``H^-p``) get no delay.  A network without such a phase fits ``T0 ≈ 0``
(fashion-mnist-mlp: 0 for all four optimizers), and the optimizers whose NQM already tracks their curve fit a
small one (digits-cnn, six calibration seeds: Adam 0–4 and K-FAC 1–2 updates, against SGD's 9–15;
``results/calibration/digits/delay*``).

**Target.**  The workload's target needs the relative risk reduction
``ρ = (L_target − floor) / (L₀ − floor)`` (losses measured on the reference run); the NQM target is
``ρ`` times its initial risk, i.e. ``L_target − floor`` in loss units.  ``floor`` defaults to 0: the
training loss of an over-parameterised network can be driven to ~0 (and the NQM's risk is ≥ 0).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Sequence

import numpy as np

from scipy.optimize import brentq

from batchlab.calibrate.measure import Spectra
from batchlab.checks import check_at_least, check_finite
from batchlab.errors import InputError
from batchlab.nqm.drift import Drift, drifted_risk, tuned_drifted, tuned_in_box
from batchlab.nqm.optimize import optimize
from batchlab.nqm.spectrum import compress
from batchlab.nqm.spectrum import Problem

__all__ = ["Anchor", "ModelConfig", "CalibratedProblem", "anchor_steps", "anchor_path", "build_problem",
           "delayed_means", "tuned_optimum", "EXPONENT_RANGE", "LossCurve"]

LossCurve = Sequence[tuple[int, int, float]]  # (start, stop, mean training loss of updates start … stop − 1)

EXPONENT_RANGE = (-1.0, 12.0)


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A measured point the NQM must reproduce: the tuned reference optimizer (NQM ``kind`` with
    preconditioner power ``precond``) first met the workload's target after ``steps`` updates at
    ``batch_size``.  ``bias_correction``: the optimizer divides its momentum by ``1 − β^{t+1}`` (Adam's
    first moment; :mod:`batchlab.nqm.drift`), so the NQM's tuned steps are counted with it.  ``momentum``:
    the momentum the reference run had (its learning rate alone was tuned: Adam's ``β₁``, K-FAC's
    momentum), at which the NQM's rate alone is tuned too; ``None``: every coordinate tuned."""

    kind: str
    precond: float
    batch_size: float
    steps: int
    bias_correction: bool = False
    momentum: float | None = None


def tuned_optimum(problem: Problem, kind: str, *, batch_size: float, target: float, precond: float = 0.0,
                  bias_correction: bool = False, momentum: float | None = None):
    """The NQM's tuned expected-risk optimum of ``kind`` at ``batch_size``.

    Without bias correction: :func:`~batchlab.nqm.optimize.optimize`'s.  With it (Adam's first moment,
    ``precond`` 0 only): that optimum retuned under the correction (:func:`batchlab.nqm.drift.tuned_drifted`
    around it, no drift).  With a ``momentum`` (kind ``"momentum"``, ``precond`` 0): the rate alone, at that
    momentum, on 121 rates over six decades below the heavy ball's stability limit ``2 (1 + β) / h_max``
    (:func:`batchlab.nqm.drift.tuned_in_box`; with the correction if asked).

    Raises:
        InputError: bias correction or a fixed momentum asked with ``precond`` other than 0, or a fixed
            momentum for another kind.
    """
    if (bias_correction or momentum is not None) and precond:
        raise InputError(f"bias correction and a fixed momentum are modelled in the optimizer's own coordinates "
                         f"(precond 0), not {precond}")
    if momentum is not None:
        if kind != "momentum":
            raise InputError(f"a fixed momentum needs the momentum kind, not {kind!r}")
        limit = 2.0 * (1.0 + float(momentum)) / float(np.max(problem.h))
        return tuned_in_box(problem, Drift.none(problem.h.shape[0]), batch_size=batch_size, target=target,
                            rates=(limit * 1e-6, limit), momenta=[float(momentum)], points=121,
                            bias_correction=bias_correction)
    best = optimize(problem, kind, batch_size=batch_size, target=target, precond=precond)
    if not bias_correction or not math.isfinite(best.steps):
        return best
    return tuned_drifted(problem, Drift.none(problem.h.shape[0]), kind, batch_size=batch_size, target=target,
                         learning_rate=best.learning_rate, momentum=best.momentum,
                         horizon=int(max(4 * best.steps, 50)), bias_correction=True)


def anchor_steps(problem: Problem, anchor: Anchor, target: float) -> float:
    """The NQM's tuned expected-risk steps at the anchor's batch size, as the anchor's optimizer runs
    (:func:`tuned_optimum`)."""
    return tuned_optimum(problem, anchor.kind, batch_size=anchor.batch_size, target=target, precond=anchor.precond,
                         bias_correction=anchor.bias_correction, momentum=anchor.momentum).steps


def anchor_path(problem: Problem, anchor: Anchor, target: float, steps: int) -> np.ndarray | None:
    """The NQM's expected risk after 0 … ``steps`` updates of the anchor's optimizer at its tuned optimum
    (:func:`tuned_optimum`, the run :func:`anchor_steps` counts); ``None`` where the anchor is not plain
    SGD or heavy ball in its own coordinates (``precond`` 0), or the target is out of reach."""
    if anchor.precond or anchor.kind not in ("sgd", "momentum"):
        return None
    best = tuned_optimum(problem, anchor.kind, batch_size=anchor.batch_size, target=target,
                         bias_correction=anchor.bias_correction, momentum=anchor.momentum)
    if not math.isfinite(best.steps):
        return None
    return drifted_risk(problem, Drift.none(problem.h.shape[0]), learning_rate=best.learning_rate,
                        momentum=best.momentum, batch_size=anchor.batch_size, steps=int(steps),
                        bias_correction=anchor.bias_correction)


def delayed_means(path: np.ndarray, delay: int, curve: LossCurve) -> np.ndarray:
    """The mean risk over each interval ``[start, stop)`` of ``curve`` of a run that stays at its initial
    risk ``path[0]`` for ``delay`` updates and then follows ``path`` (``path[t]``: after ``t`` updates;
    it must reach ``max stop − delay − 1``)."""
    stop = max(int(b) for _, b, _ in curve)
    tau = np.arange(stop)
    risk = np.where(tau < delay, path[0], path[np.clip(tau - delay, 0, None)])
    total = np.concatenate([[0.0], np.cumsum(risk)])
    return np.array([(total[int(b)] - total[int(a)]) / (int(b) - int(a)) for a, b, _ in curve])


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """How measurements become an NQM (see the module docstring).

    Attributes:
        initial: ``"fit"``, ``"isotropic"`` or ``"equal-risk"``.
        bulk_noise: ``"curvature-weighted"``, ``"total"`` or ``"top-k"``.
        min_curvature: bulk nodes with ``h ≤ min_curvature · λ_1`` are left out.
        bulk_entries: entries of the compressed bulk.
        loss_floor: the loss the NQM's zero risk stands for.
        delay: ``"fit"``: fit a start-up delay to the reference run's loss curve along with the initial
            state (module docstring); ``"none"``: no delay (the NQM starts at update 0).
    """

    initial: Literal["fit", "isotropic", "equal-risk"] = "fit"
    bulk_noise: Literal["curvature-weighted", "total", "top-k"] = "curvature-weighted"
    min_curvature: float = 1e-5
    bulk_entries: int = 64
    loss_floor: float = 0.0
    delay: Literal["fit", "none"] = "fit"

    def check(self) -> None:
        if self.initial not in ("fit", "isotropic", "equal-risk"):
            raise InputError(f"initial must be fit, isotropic or equal-risk, got {self.initial!r}")
        if self.delay not in ("fit", "none"):
            raise InputError(f"delay must be fit or none, got {self.delay!r}")
        if self.bulk_noise not in ("curvature-weighted", "total", "top-k"):
            raise InputError(f"bulk_noise must be curvature-weighted, total or top-k, got {self.bulk_noise!r}")
        if not (0.0 < self.min_curvature < 1.0):
            raise InputError(f"min_curvature must be in (0, 1), got {self.min_curvature}")
        check_at_least(self.bulk_entries, "bulk_entries", 1)
        check_finite(self.loss_floor, "loss_floor")


@dataclasses.dataclass(frozen=True)
class CalibratedProblem:
    """The NQM built from measurements.

    Attributes:
        problem: the :class:`~batchlab.nqm.Problem` (top-k entries first, then the compressed bulk).
        target: the NQM target risk ``ρ · initial risk``.
        relative_target: ``ρ``.
        bulk_noise_ratio: ``r`` of the bulk's ``c = r h``, and ``bulk_noise_rule``: the rule that gave it.
        bulk_directions: the number of bulk directions kept (``Σ`` of their weights) of ``d − k``.
        initial_exponent: ``a`` of the initial risk shares ``∝ w h^a``, and ``initial_rule``: how it
            was chosen (``"fit"``, ``"fit (closest)"``, ``"isotropic"``, ``"equal-risk"``).
        anchor_steps: the NQM's tuned steps at the anchor's batch size, its delay included (compare with
            the anchor's steps: equal up to rounding after ``"fit"``; the gap after ``"fit (closest)"``);
            ``None`` without an anchor.
        delay: the start-up delay in updates added to every predicted count (0 without one), and
            ``delay_rule``: ``"fit"``, or why there is none (``"none"``, ``"none (…)"``);
            ``delay_residual``: the fit's root-mean-square log-loss residual (``None`` without a fit).
    """

    problem: Problem
    target: float
    relative_target: float
    bulk_noise_ratio: float
    bulk_noise_rule: str
    bulk_directions: float
    initial_exponent: float
    initial_rule: str
    anchor_steps: float | None = None
    delay: int = 0
    delay_rule: str = "none"
    delay_residual: float | None = None

    def as_dict(self) -> dict:
        p = self.problem
        return {"h": p.h.tolist(), "c": p.c.tolist(), "s0": p.s0.tolist(), "weights": p.weights.tolist(),
                "initial_risk": p.initial_risk(), "target": self.target, "relative_target": self.relative_target,
                "bulk_noise_ratio": self.bulk_noise_ratio, "bulk_noise_rule": self.bulk_noise_rule,
                "bulk_directions": self.bulk_directions, "initial_exponent": self.initial_exponent,
                "initial_rule": self.initial_rule,
                "anchor_steps": None if self.anchor_steps is None or not math.isfinite(self.anchor_steps)
                else self.anchor_steps, "delay": self.delay, "delay_rule": self.delay_rule,
                "delay_residual": self.delay_residual}


def _noise_ratio(spectra: Spectra, top_h: np.ndarray, top_c: np.ndarray, bulk_h: np.ndarray,
                 bulk_w: np.ndarray, rule: str) -> tuple[float, str]:
    noise = spectra.noise
    top_ratio = float(top_c.sum() / top_h.sum()) if top_h.size else float("nan")
    if rule == "curvature-weighted":
        ratio = (noise.trace_h_sigma - float(top_h @ top_c)) / float(bulk_w @ bulk_h**2)
    elif rule == "total":
        ratio = (noise.trace_sigma - float(top_c.sum())) / float(bulk_w @ bulk_h)
    else:
        ratio = top_ratio
    if math.isfinite(ratio) and ratio > 0:
        return float(ratio), rule
    return top_ratio, "top-k"


def _initial(h: np.ndarray, w: np.ndarray, risk0: float, exponent: float) -> np.ndarray:
    """``s0 = 2 risk0 h^(a−1) / Σ w h^a`` (scaled by ``h_max`` first, so powers neither over- nor underflow)."""
    scaled = h / h.max()
    return 2.0 * risk0 * scaled ** (exponent - 1.0) / (float(w @ scaled**exponent) * h.max())


def _fit_exponent(h, c, w, risk0: float, target: float, anchor: Anchor, near: float | None = None
                  ) -> tuple[float, str]:
    """The share exponent ``a`` whose tuned NQM steps at the anchor equal its steps (module docstring).
    ``near``: a root is first sought within ±0.25 of it (the fit of a neighbouring anchor), which
    spares the grid's far, slow exponents; the whole grid otherwise."""
    def gap(a: float) -> float:
        problem = Problem(h=h, c=c, s0=_initial(h, w, risk0, a), weights=w)
        steps = anchor_steps(problem, anchor, target)
        return math.log(max(steps, 0.5) / anchor.steps) if math.isfinite(steps) else math.inf

    if near is not None:
        low, high = max(near - 0.25, EXPONENT_RANGE[0]), min(near + 0.25, EXPONENT_RANGE[1])
        g_low, g_high = gap(low), gap(high)
        if math.isfinite(g_low) and math.isfinite(g_high) and g_low * g_high <= 0:
            return float(brentq(gap, low, high, xtol=1e-3)), "fit"
    grid = np.linspace(*EXPONENT_RANGE, 14)
    values = np.array([gap(a) for a in grid])
    brackets = [i for i in range(len(grid) - 1)
                if np.isfinite(values[i]) and np.isfinite(values[i + 1]) and values[i] * values[i + 1] <= 0]
    if not brackets:
        best = int(np.argmin(np.abs(values)))
        return float(grid[best]), "fit (closest)"
    i = min(brackets, key=lambda j: abs(grid[j] - 1.0))  # the crossing nearest the isotropic start
    return float(brentq(gap, grid[i], grid[i + 1], xtol=1e-3)), "fit"


def _fit_delay(h, c, w, risk0: float, target: float, anchor: Anchor, curve: LossCurve, floor: float
               ) -> tuple[int, float, str, str, float | None]:
    """The start-up delay ``T0`` and exponent ``a`` whose delayed NQM run best matches the reference's loss
    curve: for each ``T0`` the exponent is fitted so the NQM reaches its target in ``steps − T0`` updates
    (:func:`_fit_exponent`), and ``T0`` minimises the mean squared log-loss residual over the curve's
    intervals that end by the anchor's steps (:func:`delayed_means`).  Candidates are searched on a grid
    of at most 12 values, refined around the best until every integer there is tried (the residual is
    smooth in ``T0``).  Returns ``(T0, a, the exponent's rule, the delay's rule, rms residual)``; ``T0 = 0``
    and the plain fit where the curve has fewer than two such intervals or the anchor has no expected-risk
    path."""
    steps = int(anchor.steps)
    points = [(int(a), int(b), float(v)) for a, b, v in curve if 0 <= a < b <= steps and v > floor]
    exponent, how = _fit_exponent(h, c, w, risk0, target, anchor)
    if len(points) < 2 or steps < 2 or anchor.precond or anchor.kind not in ("sgd", "momentum"):
        reason = "none (a loss curve of fewer than two intervals)" if len(points) < 2 else "none (anchor)"
        return 0, exponent, how, reason, None
    measured = np.log(np.array([v for _, _, v in points]) - floor)
    fits: dict[int, tuple[float, str, float]] = {0: (exponent, how, math.nan)}

    def cost(delay: int) -> float:
        if delay in fits and not math.isnan(fits[delay][2]):  # nan: exponent fitted, residual not yet
            return fits[delay][2]
        if delay not in fits:
            near = fits[min(fits, key=lambda d: abs(d - delay))][0]
            fits[delay] = (*_fit_exponent(h, c, w, risk0, target, dataclasses.replace(anchor, steps=steps - delay),
                                          near=near), math.nan)
        a, rule, _ = fits[delay]
        problem = Problem(h=h, c=c, s0=_initial(h, w, risk0, a), weights=w)
        path = anchor_path(problem, dataclasses.replace(anchor, steps=steps - delay), target, points[-1][1])
        value = math.inf
        if path is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                residual = measured - np.log(delayed_means(path, delay, points))
            if np.all(np.isfinite(residual)):
                value = float(np.mean(residual**2))
        fits[delay] = (a, rule, value)
        return value

    low, high = 0, steps - 1
    while True:
        grid = sorted({int(round(x)) for x in np.linspace(low, high, 12)})
        best = min(grid, key=lambda d: (cost(d), d))
        if len(grid) == high - low + 1:
            break
        i = grid.index(best)
        low, high = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    if not math.isfinite(cost(best)):
        return 0, exponent, how, "none (no finite fit)", None
    a, rule, value = fits[best]
    return best, a, rule, "fit", math.sqrt(value)


def kept_top(values: np.ndarray, min_curvature: float) -> np.ndarray:
    """Which of the top-k eigenvalues (descending) become NQM entries: those above ``min_curvature`` × the
    largest.  They come first in the problem, in this order, before the bulk's entries."""
    values = np.asarray(values)
    return values > min_curvature * float(values[0])


def build_problem(spectra: Spectra, *, initial_loss: float, target_loss: float, anchor: Anchor | None = None,
                  config: ModelConfig = ModelConfig(), loss_curve: LossCurve | None = None) -> CalibratedProblem:
    """The NQM problem and target calibrated on ``spectra`` (see the module docstring).

    Args:
        spectra: measurements at the checkpoint.
        initial_loss: measured loss at initialisation ``L₀``.
        target_loss: measured loss at the workload's target ``L_target``.
        anchor: the reference run in NQM terms (needed by ``initial = "fit"``; else ignored).
        config: modelling choices.
        loss_curve: the reference run's training loss per evaluation interval (needed by ``delay = "fit"``
            with ``initial = "fit"``; else no delay).

    Returns:
        :class:`CalibratedProblem`.

    Raises:
        InputError: ``L_target − floor`` not in ``(0, L₀ − floor)``; no positive top eigenvalue.
    """
    config.check()
    floor = config.loss_floor
    if not (floor < target_loss < initial_loss):
        raise InputError(f"need loss floor < loss at target < initial loss, got {floor:g}, {target_loss:g}, "
                         f"{initial_loss:g}")
    values = spectra.top.values
    if values[0] <= 0:
        raise InputError(f"the largest eigenvalue is not positive ({values[0]:g}); nothing to model")
    cutoff = config.min_curvature * float(values[0])
    keep = kept_top(values, config.min_curvature)
    top_h, top_c = values[keep], np.maximum(spectra.noise.noise[keep], 0.0)
    nodes, mass = spectra.bulk.atoms()
    inside = nodes > cutoff
    bulk_h, bulk_w = nodes[inside], mass[inside] * spectra.bulk.dim
    if bulk_h.size == 0:
        bulk_h, bulk_w = np.array([cutoff]), np.array([1e-12])  # keeps shapes simple; carries no risk
    ratio, rule = _noise_ratio(spectra, top_h, top_c, bulk_h, bulk_w, config.bulk_noise)
    bulk = compress(Problem(h=bulk_h, c=ratio * bulk_h, s0=1.0, weights=bulk_w, name="bulk"),
                    config.bulk_entries)
    h = np.concatenate([top_h, bulk.h])
    c = np.concatenate([top_c, bulk.c])
    w = np.concatenate([np.ones_like(top_h), bulk.weights])
    risk0 = initial_loss - floor
    target = target_loss - floor
    initial = config.initial if config.initial != "fit" or anchor is not None else "isotropic"
    delay, delay_rule, residual = 0, "none", None
    if initial == "fit" and config.delay == "fit" and loss_curve:
        delay, exponent, how, delay_rule, residual = _fit_delay(h, c, w, risk0, target, anchor, loss_curve, floor)
    elif initial == "fit":
        exponent, how = _fit_exponent(h, c, w, risk0, target, anchor)
    else:
        exponent, how = (1.0 if initial == "isotropic" else 0.0), initial
    problem = Problem(h=h, c=c, s0=_initial(h, w, risk0, exponent), weights=w,
                      name=f"calibrated ({spectra.curvature})")
    relative = target / risk0
    reproduced = None
    if anchor is not None:
        shifted = dataclasses.replace(anchor, steps=max(int(anchor.steps) - delay, 1))
        reproduced = delay + anchor_steps(problem, shifted, relative * problem.initial_risk())
    return CalibratedProblem(problem, relative * problem.initial_risk(), relative, ratio, rule,
                             float(bulk_w.sum()), exponent, how, reproduced, delay, delay_rule, residual)
