"""Learning-rate (and batch-size) schedules on the NQM, with exact risk.

A :class:`Schedule` is a sequence of segments; segment ``k`` runs ``lengths[k]`` steps with learning rate
``lr_multipliers[k] × α`` and batch size ``batch_multipliers[k] × B``.  Piecewise-constant schedules
compose exactly by exact doubling inside each segment (``O(K · d log t)``); smooth schedules (linear
decay, cosine, warmup–stable–decay) change the rate every step and are propagated at step resolution
(``O(T · d)``).  After the last segment the last setting continues.

Example:
    >>> from batchlab.nqm import power_law, sgd
    >>> from batchlab.nqm.schedules import piecewise_constant, scheduled_risk
    >>> s = piecewise_constant([1000, 1000], [1.0, 0.1])
    >>> r = scheduled_risk(power_law(1000), sgd(0.5), s, batch_size=64, steps=[1000, 2000])
"""

from __future__ import annotations

import dataclasses

import numpy as np

from batchlab.errors import InputError
from batchlab.nqm import _linear
from batchlab.nqm.dynamics import Dynamics, build_system, with_learning_rate
from batchlab.nqm.checks import check_steps
from batchlab.nqm.spectrum import Problem

__all__ = [
    "Schedule", "constant", "piecewise_constant", "linear_decay", "cosine", "warmup_stable_decay",
    "batch_size_warmup", "scheduled_risk",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """Segments of constant hyperparameters.

    Attributes:
        lengths: steps per segment (positive integers).
        lr_multipliers: learning-rate multiplier per segment (> 0).
        batch_multipliers: batch-size multiplier per segment (> 0; ``B × multiplier ≥ 1``).
        name: label for tables and figures.
    """

    lengths: np.ndarray
    lr_multipliers: np.ndarray
    batch_multipliers: np.ndarray
    name: str = "schedule"

    def __post_init__(self):
        lengths = np.asarray(self.lengths)
        if lengths.ndim != 1 or lengths.size == 0:
            raise InputError("schedule: needs at least one segment")
        if np.any(lengths != np.round(lengths)) or np.any(lengths < 1):
            raise InputError("schedule: segment lengths must be positive integers")
        lr = np.broadcast_to(np.asarray(self.lr_multipliers, dtype=np.float64), lengths.shape)
        bm = np.broadcast_to(np.asarray(self.batch_multipliers, dtype=np.float64), lengths.shape)
        if not np.all(np.isfinite(lr)) or np.any(lr <= 0):
            raise InputError("schedule: learning-rate multipliers must be finite and > 0")
        if not np.all(np.isfinite(bm)) or np.any(bm <= 0):
            raise InputError("schedule: batch-size multipliers must be finite and > 0")
        object.__setattr__(self, "lengths", lengths.astype(np.int64))
        object.__setattr__(self, "lr_multipliers", np.array(lr))
        object.__setattr__(self, "batch_multipliers", np.array(bm))

    @property
    def total_steps(self) -> int:
        return int(self.lengths.sum())

    @property
    def boundaries(self) -> np.ndarray:
        """Cumulative step at the end of each segment."""
        return np.cumsum(self.lengths)

    def multiplier_at(self, steps) -> np.ndarray:
        """Learning-rate multiplier in effect during step ``t`` (0-based; the update from t to t+1)."""
        idx = np.searchsorted(self.boundaries, np.asarray(steps), side="right")
        return self.lr_multipliers[np.minimum(idx, len(self.lengths) - 1)]

    def merged(self) -> "Schedule":
        """Adjacent segments with equal settings merged (same risk, fewer doublings)."""
        keep = np.ones(len(self.lengths), bool)
        keep[1:] = (np.diff(self.lr_multipliers) != 0) | (np.diff(self.batch_multipliers) != 0)
        starts = np.flatnonzero(keep)
        lengths = np.add.reduceat(self.lengths, starts)
        return Schedule(lengths, self.lr_multipliers[starts], self.batch_multipliers[starts], self.name)


def _check_total(total_steps) -> int:
    if int(total_steps) != total_steps or total_steps < 1:
        raise InputError(f"schedule: total_steps must be a positive integer, got {total_steps}")
    return int(total_steps)


def _check_factor(name, value, *, allow_zero=True) -> float:
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero) or value > 1:
        raise InputError(f"schedule: {name} must be in {'[0' if allow_zero else '(0'}, 1], got {value}")
    return float(value)


def constant(total_steps: int = 1) -> Schedule:
    """A constant learning rate (the default everywhere)."""
    return Schedule(np.array([_check_total(total_steps)]), np.array([1.0]), np.array([1.0]), "constant")


def piecewise_constant(lengths, lr_multipliers, batch_multipliers=1.0) -> Schedule:
    """Segments of given lengths and learning-rate (and batch-size) multipliers."""
    return Schedule(np.asarray(lengths), np.asarray(lr_multipliers, float), np.asarray(batch_multipliers, float),
                    f"piecewise({len(np.atleast_1d(lengths))})")


def _per_step(values: np.ndarray, name: str) -> Schedule:
    values = np.maximum(values, 1e-300)
    return Schedule(np.ones(values.shape[0], np.int64), values, np.ones_like(values), name).merged()


def linear_decay(total_steps: int, end_factor: float, *, decay_steps: int | None = None,
                 warmup_steps: int = 0) -> Schedule:
    """Linear decay from 1 to ``end_factor`` over ``decay_steps`` (default: all), then constant.

    Shallue et al.'s protocol, times an optional linear warmup ramp ``w``: update ``t = 0 … T − 1`` has

        lr(t) = α · w(t) · (1 − (1 − end_factor) · min(t, T_d)/T_d),   w(t) = min(1, (t + 1)/W)  (1 if W = 0)

    with ``T_d = decay_steps`` and ``W = warmup_steps``.  The ramp multiplies the decay, which starts at
    ``t = 0`` (:mod:`batchlab.optim.schedules` instead starts the decay after the warmup).  The rate
    reaches ``end_factor`` at ``t = T_d`` (with ``T_d = T`` the last update has ``1 − (1 − end)(T − 1)/T``);
    a rate of 0 is held at ``1e-300`` (rates must be positive).  Step resolution.
    """
    T = _check_total(total_steps)
    end = _check_factor("end_factor", end_factor)
    Td = T if decay_steps is None else _check_total(decay_steps)
    t = np.arange(T, dtype=np.float64)
    mult = 1.0 - (1.0 - end) * np.minimum(t, Td) / Td
    mult = _apply_warmup(mult, warmup_steps)
    return dataclasses.replace(_per_step(mult, ""), name=f"linear-decay(end={end:g})")


def cosine(total_steps: int, end_factor: float = 0.0, *, warmup_steps: int = 0) -> Schedule:
    """Cosine decay with an optional linear warmup ramp: update ``t = 0 … T − 1`` has

        lr(t) = α · w(t) · (end + (1 − end)(1 + cos(π t/T))/2),   w(t) = min(1, (t + 1)/W)  (1 if W = 0)

    (``end = end_factor``, ``W = warmup_steps``; the ramp multiplies the decay, as in :func:`linear_decay`).
    Step resolution.
    """
    T = _check_total(total_steps)
    end = _check_factor("end_factor", end_factor)
    t = np.arange(T, dtype=np.float64)
    mult = end + (1.0 - end) * 0.5 * (1.0 + np.cos(np.pi * t / T))
    return dataclasses.replace(_per_step(_apply_warmup(mult, warmup_steps), ""), name=f"cosine(end={end:g})")


def warmup_stable_decay(total_steps: int, *, warmup_steps: int, decay_steps: int,
                        end_factor: float = 0.0) -> Schedule:
    """Linear warmup, constant plateau, then linear decay to ``end_factor`` over the last ``decay_steps``.

    With ``W = warmup_steps``, ``D = decay_steps`` and ``S = T − D``, update ``t = 0 … T − 1`` has
    ``lr(t) = α (t + 1)/W`` for ``t < W``, ``α`` for ``W ≤ t < S`` and
    ``α (1 − (1 − end_factor)(t − S + 1)/D)`` for ``t ≥ S``: the first decay update is already below ``α``
    and the last runs at ``end_factor`` (a rate of 0 is held at ``1e-300``), one step earlier than
    :func:`linear_decay`'s convention.  Step resolution.
    """
    T = _check_total(total_steps)
    end = _check_factor("end_factor", end_factor)
    if warmup_steps < 0 or decay_steps < 0 or warmup_steps + decay_steps > T:
        raise InputError("schedule: warmup_steps + decay_steps must be within total_steps")
    t = np.arange(T, dtype=np.float64)
    start_decay = T - decay_steps
    mult = np.where(t < start_decay, 1.0, 1.0 - (1.0 - end) * (t - start_decay + 1) / max(decay_steps, 1))
    return dataclasses.replace(_per_step(_apply_warmup(mult, warmup_steps), ""), name="wsd")


def batch_size_warmup(lengths, batch_multipliers, lr_multipliers=1.0) -> Schedule:
    """Segments that change the batch size (e.g. ``[1000, 1000]`` with ``[0.25, 1.0]``): segment ``k`` runs
    ``lengths[k]`` updates at batch size ``batch_multipliers[k] × B`` and rate ``lr_multipliers[k] × α``."""
    return Schedule(np.asarray(lengths), np.asarray(lr_multipliers, float), np.asarray(batch_multipliers, float),
                    "batch-warmup")


def _apply_warmup(mult: np.ndarray, warmup_steps: int) -> np.ndarray:
    if warmup_steps < 0 or int(warmup_steps) != warmup_steps:
        raise InputError("schedule: warmup_steps must be a non-negative integer")
    if warmup_steps:
        ramp = np.minimum(1.0, (np.arange(mult.shape[0]) + 1.0) / warmup_steps)
        mult = mult * ramp
    return mult


def scheduled_risk(problem: Problem, dyn: Dynamics, schedule: Schedule, *, batch_size, steps,
                   per_direction: bool = False) -> np.ndarray:
    """Exact expected risk at ``steps`` under ``schedule`` (learning rates are ``multiplier × dyn``'s).

    The full per-direction second-moment matrix is carried across segment boundaries.  Shapes as in
    :func:`batchlab.nqm.expected_risk` (``hp_shape + steps.shape``).
    """
    t = check_steps(steps)
    flat_t = t.reshape(-1)
    order = np.argsort(flat_t, kind="stable")
    sched = schedule.merged()
    starts = np.concatenate([[0], sched.boundaries[:-1]])
    hp = np.broadcast_shapes(dyn.hp_shape, np.shape(batch_size))
    B = np.asarray(batch_size, dtype=np.float64)
    first = build_system(problem, dyn, batch_size)
    E0, _, a0 = first.matrices()
    Sigma = np.broadcast_to(first.s0, first.shape)[..., None, None] * a0[..., :, None] * a0[..., None, :]
    out = np.empty(first.shape + (flat_t.shape[0],))
    seg, pos = 0, 0  # current segment, step reached by Sigma
    n_seg = len(sched.lengths)
    systems: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}

    def segment_system(k):
        if k not in systems:
            d = with_learning_rate(dyn, np.asarray(dyn.learning_rate) * sched.lr_multipliers[k])
            sys = build_system(problem, d, B * sched.batch_multipliers[k])
            E, u, _ = sys.matrices()
            R = np.broadcast_to(sys.q, sys.shape)[..., None, None] * u[..., :, None] * u[..., None, :]
            systems.clear()
            systems[k] = (E, R, sys.out)
        return systems[k]

    def advance(S, k, n_steps):
        if n_steps == 0:
            return S
        E, R, _ = segment_system(k)
        if n_steps == 1:
            return _linear.step(E, S, R)
        F, N = _linear.doubling(E, R, n_steps)
        return _linear.transform(F, S) + N

    with np.errstate(over="ignore", invalid="ignore"):
        for j in order:
            target = int(flat_t[j])
            while seg < n_seg - 1 and starts[seg + 1] <= target:
                Sigma = advance(Sigma, seg, starts[seg + 1] - pos)
                pos, seg = starts[seg + 1], seg + 1
            Sigma = advance(Sigma, seg, target - pos)
            pos = target
            out[..., j] = Sigma[..., first.out, first.out]
    out = np.where(np.isnan(out), np.inf, out) * np.broadcast_to(first.weight, first.shape)[..., None]
    out = out.reshape(first.shape + t.shape)
    if per_direction:
        return out
    return out.sum(axis=len(hp))
