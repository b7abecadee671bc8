"""Optimal hyperparameters per batch size: the fewest steps to reach a target risk.

For each optimizer kind the search runs in three stages:

1. a coarse grid over the tunable coordinates on a compressed spectrum (:func:`~batchlab.nqm.spectrum.compress`),
   with continuous (interpolated) steps-to-target as the objective;
2. a vectorised pattern search around the best grid points, halving its stencil until it stalls;
3. the exact, certified first hit (:func:`solve.steps_to_target`) on the full problem for the best
   candidates, keeping the best.

Coordinates: ``v = logit10(α / α_max)`` (``α/α_max = 10^v / (1 + 10^v)``) with ``α_max`` the largest
stable learning rate for the current momentum — every candidate is stable, and both tiny rates and
rates a hair below the stability limit are resolved — then ``log10(1 − β)`` and ``log10(1 − γ)``
(0 means β = 0 or γ = 0).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable

import numpy as np

from batchlab.errors import InputError
from batchlab.nqm import solve
from batchlab.nqm.checks import check_target
from batchlab.nqm.search import search_steps
from batchlab.nqm.dynamics import heavy_ball, nesterov, sgd, with_ema
from batchlab.nqm.spectrum import Problem, compress

__all__ = ["Kind", "KIND_TABLE", "KINDS", "SCALING_KINDS", "Optimum", "SearchConfig", "optimize", "make_dynamics"]


@dataclasses.dataclass(frozen=True)
class Kind:
    """An NQM optimizer kind of the scaling studies.

    Attributes:
        name: its name (``--optimizer`` of ``batchlab nqm scaling``).
        coordinates: the search coordinates (``"lr"``, then ``"momentum"`` / ``"ema"``, see the module
            docstring); empty for kinds that are not tuned by :func:`optimize`.
        build: ``(learning_rate, momentum, ema, precond) → dynamics`` (``None`` for kinds that are not
            one dynamics with constant hyperparameters).
        solver: ``(kind, problem, batch_size, target, precond, config, hint, near) → row`` (an
            :class:`Optimum` or a :class:`~batchlab.nqm.schedule_opt.ScheduleOptimum`); ``hint`` and
            ``near`` come from the previous batch size's row.
        cost: relative time of one scaling curve (the longest curves start first on worker processes).
    """

    name: str
    coordinates: tuple[str, ...]
    build: Callable | None
    solver: Callable
    cost: float = 8.0

    def optimize(self, problem: Problem, *, batch_size: float, target: float, precond: float,
                 config: "SearchConfig", hint=None, near=None):
        """The best row of this kind at ``batch_size`` (see :attr:`solver`)."""
        return self.solver(self, problem, batch_size, target, precond, config, hint, near)


def _search(kind: Kind, problem, batch_size, target, precond, config, hint, near) -> "Optimum":
    return optimize(problem, kind.name, batch_size=batch_size, target=target, precond=precond, config=config,
                    hint=hint, near_steps=near)


def _schedule(kind: Kind, problem, batch_size, target, precond, config, hint, near):
    from batchlab.nqm.schedule_opt import optimize_piecewise  # SciPy, only when needed

    return optimize_piecewise(problem, batch_size=batch_size, target=target, pieces=config.pieces, precond=precond)


# The one table of NQM optimizer kinds: adding an optimizer is its dynamics type plus one line here.
KIND_TABLE: dict[str, Kind] = {k.name: k for k in (
    Kind("sgd", ("lr",), lambda lr, m, e, p: sgd(lr, precond=p), _search, cost=1),
    Kind("momentum", ("lr", "momentum"), lambda lr, m, e, p: heavy_ball(lr, m, precond=p), _search),
    Kind("nesterov", ("lr", "momentum"), lambda lr, m, e, p: nesterov(lr, m, precond=p), _search),
    Kind("ema", ("lr", "ema"), lambda lr, m, e, p: with_ema(sgd(lr, precond=p), e), _search),
    Kind("momentum-ema", ("lr", "momentum", "ema"),
         lambda lr, m, e, p: with_ema(heavy_ball(lr, m, precond=p), e), _search, cost=30),
    Kind("schedule", (), None, _schedule),  # an optimized piecewise-constant learning rate for SGD
)}
KINDS = tuple(name for name, k in KIND_TABLE.items() if k.build is not None)  # tuned by optimize()
SCALING_KINDS = tuple(KIND_TABLE)  # what scaling curves run


def kind_named(name: str, valid: tuple[str, ...] = SCALING_KINDS) -> Kind:
    """The table entry ``name`` (one of ``valid``), or InputError."""
    if name not in valid:
        raise InputError(f"unknown NQM optimizer {name!r}; valid: {', '.join(valid)}")
    return KIND_TABLE[name]


_BOUNDS = {"lr": (-9.0, 9.0), "momentum": (-6.0, 0.0), "ema": (-6.0, 0.0)}
_LR_GRID = (-8.0, 3.0)  # coarse-grid range of the learning-rate coordinate


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How hard the search works.

    Attributes:
        entries: bins of the compressed spectrum used by stages 1–2.
        grid: coarse points per coordinate (learning rate, then the others).
        grid3: the same for three coordinates (momentum + EMA), where the full grid would cost 12×.
        rounds: pattern-search rounds.
        finalists: candidates certified exactly on the full problem.
        window: when warm-started, half-width (decades) of the coarse window around the hint.
        refine: rounds refining each setting's steps-to-target bracket (then interpolated).
        local_span, local_points: the window of step counts tried first by the pattern search:
            ``local_points`` counts from ``v / local_span`` to ``v``, ``v`` the value of the point a
            candidate is compared with (only answers below it matter).
        starts: pattern-search starts from the best grid points that are not neighbours of one
            another (plus one on each face β = 0 / γ = 0).
        pieces: pieces of the optimized schedule (kind ``"schedule"``).
    """

    entries: int = 64
    grid: tuple[int, int] = (37, 13)
    grid3: tuple[int, int] = (19, 7)
    rounds: int = 8
    finalists: int = 1
    window: float = 1.5
    refine: int = 3
    local_span: float = 2.0
    local_points: int = 5
    starts: int = 3
    pieces: int = 10


@dataclasses.dataclass(frozen=True)
class Optimum:
    """The best hyperparameters found for one (optimizer kind, batch size).

    ``steps`` is exact for the reported hyperparameters (certified first hit on the full problem);
    ``inf`` with ``reason`` when the target is unreachable.  ``coordinates`` are the search
    coordinates (usable as a warm-start hint).
    """

    kind: str
    batch_size: float
    target: float
    precond: float
    steps: float
    reason: str
    learning_rate: float
    momentum: float | None
    ema: float | None
    coordinates: tuple[float, ...]
    evaluations: int

    @property
    def effective_learning_rate(self) -> float:
        """``α / (1 − β)`` (α without momentum)."""
        return self.learning_rate / (1.0 - (self.momentum or 0.0))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["effective_learning_rate"] = self.effective_learning_rate
        d["steps"] = None if not math.isfinite(self.steps) else int(self.steps)
        d["coordinates"] = list(self.coordinates)
        return d

    def scaling_row(self, lower_bound: float) -> dict:
        """A row of a scaling curve's JSON: :meth:`as_dict` and the lower bound."""
        return {**self.as_dict(), "lower_bound": lower_bound}


def _decode(kind: str, z: np.ndarray, problem: Problem, precond: float) -> dict[str, np.ndarray]:
    """Coordinates → hyperparameters (arrays)."""
    names = KIND_TABLE[kind].coordinates
    hp = {}
    for i, name in enumerate(names):
        if name != "lr":
            hp[name] = np.where(z[..., i] >= 0, 0.0, 1.0 - 10.0 ** z[..., i])
    beta = hp.get("momentum", np.zeros(z.shape[:-1]))
    limit = KIND_TABLE[kind].build(1.0, beta, hp.get("ema"), 0.0).limit()
    hmax = float(np.max(problem.h ** (1.0 - precond)))
    frac = 1.0 / (1.0 + 10.0 ** (-z[..., 0]))  # 10^v / (1 + 10^v)
    hp["learning_rate"] = limit / hmax * frac
    return hp


def make_dynamics(kind: str, *, learning_rate, momentum=None, ema=None, precond: float = 0.0):
    """NQM dynamics for an optimizer kind (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"ema"``,
    ``"momentum-ema"``) and hyperparameters (scalars or arrays)."""
    return kind_named(kind, KINDS).build(learning_rate, momentum, ema, precond)


def _objective(problem, kind, z, batch_size, target, precond, config, near=None, span=8.0, points=13,
               cap=None, keep=None) -> np.ndarray:
    hp = _decode(kind, z, problem, precond)
    dyn = make_dynamics(kind, learning_rate=hp["learning_rate"], momentum=hp.get("momentum"),
                        ema=hp.get("ema"), precond=precond)
    steps = search_steps(problem, dyn, batch_size=batch_size, target=target, fractional=True, near=near,
                               rtol=1e-4, rounds=config.refine, span=span, points=points, cap=cap, keep=keep)
    return np.where(np.isfinite(steps), steps, np.inf)


def _grid_keep(grid: np.ndarray, top: int):
    """For the coarse grid: refine only the settings that can still rank among the ``top`` best, or
    be the best on a face (β = 0 / γ = 0) — the only ones the later stages look at.  A setting's answer
    lies in ``(lo, hi]``, so one whose ``lo`` is at or above the ``top``-th smallest ``hi`` cannot."""

    def keep(lo, hi):
        hi = np.where(hi > 0, hi, np.inf).astype(np.float64)
        groups = [np.ones(len(grid), bool)] + [grid[:, j] >= 0 for j in range(1, grid.shape[1])]
        out = np.zeros(len(grid), bool)
        for g, k in zip(groups, [top] + [1] * (len(groups) - 1)):
            if g.any():
                bound = np.sort(hi[g])[min(k, g.sum()) - 1]
                out |= g & (lo < bound)
        return out

    return keep


def _grid_sizes(config: SearchConfig, ndim: int) -> tuple[int, int]:
    """Coarse points (learning rate, other coordinates) for a search in ``ndim`` coordinates."""
    return config.grid3 if ndim == 3 else config.grid


def _grid(kind: str, config: SearchConfig, hint) -> np.ndarray:
    names = KIND_TABLE[kind].coordinates
    sizes = _grid_sizes(config, len(names))
    axes = []
    for i, name in enumerate(names):
        lo, hi = _LR_GRID if name == "lr" else _BOUNDS[name]
        n = sizes[0] if name == "lr" else sizes[1]
        if hint is not None:
            lo, hi = max(lo, hint[i] - config.window), min(hi, hint[i] + config.window)
            n = max(5, n // 2)
        axis = np.linspace(lo, hi, n)
        if name != "lr" and hint is None:
            axis = np.unique(np.concatenate([axis, [0.0]]))
        axes.append(axis)
    return np.array(list(itertools.product(*axes)))


def _pattern_search(f, starts: np.ndarray, values: np.ndarray, step0: float, rounds: int, bounds,
                    frozen: np.ndarray):
    """Compass search (all 3^D − 1 moves) from several starts at once, inside ``bounds``;
    ``frozen[k, j]`` keeps coordinate ``j`` of start ``k`` fixed (a search along a face); repeated
    candidates (the moves of a face search that differ only in a frozen coordinate) are evaluated once.
    ``f(z, cap)`` only needs to be exact below ``cap`` (the value of the centre the candidate is compared
    with); above it, any value ``> cap`` will do.

    Returns every evaluated point and its value.
    """
    D = starts.shape[1]
    moves = np.array([m for m in itertools.product((-1, 0, 1), repeat=D) if any(m)], dtype=float)
    pts, vals = [starts], [values]
    centers, cvals = starts.copy(), values.copy()
    step = np.full(len(starts), step0)
    free = ~frozen[:, None, :]
    for _ in range(rounds):
        cand = (centers[:, None, :] + step[:, None, None] * moves[None] * free).reshape(-1, D)
        cand = np.clip(cand, bounds[:, 0], bounds[:, 1])
        uniq, inverse = np.unique(cand, axis=0, return_inverse=True)
        caps = np.full(len(uniq), -np.inf)
        np.maximum.at(caps, inverse.reshape(-1), np.repeat(cvals, len(moves)))
        uv = f(uniq, caps)
        cv = uv[inverse.reshape(-1)].reshape(len(centers), -1)
        pts.append(uniq)
        vals.append(uv)
        rows = np.arange(len(centers))
        best = np.argmin(cv, axis=1)
        improved = cv[rows, best] < cvals
        centers = np.where(improved[:, None], cand.reshape(len(centers), -1, D)[rows, best], centers)
        cvals = np.where(improved, cv[rows, best], cvals)
        step = np.where(improved, step, step / 2.0)
    return np.concatenate(pts), np.concatenate(vals)


def optimize(problem: Problem, kind: str, *, batch_size: float, target: float, precond: float = 0.0,
             config: SearchConfig = SearchConfig(), hint=None, near_steps: float | None = None) -> Optimum:
    """Hyperparameters of ``kind`` minimising the steps to ``target`` at ``batch_size``.

    Args:
        problem: the NQM problem.
        kind: ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"ema"`` or ``"momentum-ema"``.
        batch_size, target, precond: the setting (``P = H^-precond``).
        config: search effort.
        hint: coordinates of a nearby optimum (e.g. the previous batch size's) to warm-start from.
        near_steps: a step count near the expected optimum (e.g. the previous batch size's); it only
            speeds up the search (a window of step counts around it is tried before galloping).
    Returns:
        The :class:`Optimum` with exact (certified) steps.

    Example:
        >>> from batchlab.nqm import power_law
        >>> opt = optimize(power_law(1000), "momentum", batch_size=256, target=0.01)
        >>> opt.steps < float("inf")
        True
    """
    kind_named(kind, KINDS)
    if not np.isfinite(batch_size) or batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    target = check_target(target)
    bounds = np.array([_BOUNDS[n] for n in KIND_TABLE[kind].coordinates])
    small = compress(problem, config.entries)

    def f(z, near=None, **window):
        return _objective(small, kind, z, batch_size, target, precond, config, near=near, **window)

    grid = _grid(kind, config, None if hint is None else np.asarray(hint, float))
    # refined: whatever can rank among the best few (the starts skip neighbours of better points)
    gv = f(grid, near_steps if hint is not None else None, keep=_grid_keep(grid, 3 * config.starts))
    if hint is not None and not np.isfinite(gv).any():
        grid = _grid(kind, config, None)
        gv = f(grid, keep=_grid_keep(grid, 3 * config.starts))
    # the pattern search explores around the best grid values: their step count is the window's centre
    near = float(np.min(gv)) if np.isfinite(gv).any() else None
    chosen = _starts(grid, gv, config.starts)
    frozen = [np.zeros(grid.shape[1], bool) for _ in chosen]
    for j in range(1, grid.shape[1]):  # also refine along each face β = 0 / γ = 0
        on_face = grid[:, j] >= 0
        if on_face.any():
            chosen.append(np.flatnonzero(on_face)[np.argmin(gv[on_face])])
            frozen.append(np.arange(grid.shape[1]) == j)
    step0 = float(np.max(np.ptp(grid, axis=0)) / max(_grid_sizes(config, grid.shape[1])[1], 4))
    pts, vals = _pattern_search(lambda z, cap: f(z, near, cap=cap, span=config.local_span, points=config.local_points),
                                 grid[chosen], gv[chosen], step0, config.rounds, bounds, np.array(frozen))
    pts, vals = np.concatenate([grid, pts]), np.concatenate([gv, vals])
    evaluations = len(pts)
    best = _finalists(pts, vals, config.finalists)
    best += _face_candidates(pts, vals, best, tolerance=0.01)
    results = []
    for z in best:
        hp = _decode(kind, z[None, :], problem, precond)
        scalars = {k: float(v[0]) for k, v in hp.items()}
        dyn = make_dynamics(kind, learning_rate=scalars["learning_rate"], momentum=scalars.get("momentum"),
                            ema=scalars.get("ema"), precond=precond)
        estimate = float(vals[np.flatnonzero(np.all(pts == z, axis=1))[0]])  # on the compressed spectrum
        hit = solve.steps_to_target(problem, dyn, batch_size=batch_size, target=target, near=estimate)
        evaluations += hit.evaluations
        results.append((hit.steps, hit.reason, z, scalars))
    steps, reason, z, scalars = min(results, key=lambda r: (r[0], r[2][0]))
    if not math.isfinite(steps) and all(not math.isfinite(r[0]) for r in results):
        reason = results[0][1]
    return Optimum(kind=kind, batch_size=float(batch_size), target=target, precond=float(precond),
                   steps=float(steps), reason=reason, learning_rate=scalars["learning_rate"],
                   momentum=scalars.get("momentum"), ema=scalars.get("ema"),
                   coordinates=tuple(float(v) for v in z), evaluations=int(evaluations))


def _starts(grid: np.ndarray, values: np.ndarray, k: int) -> list[int]:
    """The ``k`` best grid points, skipping any next to one already chosen (a neighbour lies in the same
    basin, which the pattern search from the better point explores anyway)."""
    spacing = np.array([np.min(np.diff(np.unique(grid[:, j]))) if np.unique(grid[:, j]).size > 1 else 1.0
                        for j in range(grid.shape[1])])
    chosen: list[int] = []
    for i in np.argsort(values, kind="stable"):
        if len(chosen) == k or (chosen and not np.isfinite(values[i])):
            break
        if all(np.any(np.abs(grid[i] - grid[c]) > 1.01 * spacing) for c in chosen):
            chosen.append(int(i))
    return chosen


def _face_candidates(pts, vals, chosen, tolerance: float) -> list[np.ndarray]:
    """Best points with a momentum/EMA coordinate at 0 (β = 0 or γ = 0) that are within ``tolerance``
    of the best value: the compressed search cannot tell such near-ties apart, the exact stage can
    (so adding momentum or EMA never reports more steps than the plain optimizer it contains)."""
    out = []
    best_val = np.min(vals)
    for j in range(1, pts.shape[1]):
        on_face = pts[:, j] >= 0
        if not on_face.any():
            continue
        i = np.flatnonzero(on_face)[np.argmin(vals[on_face])]
        if vals[i] <= best_val * (1 + tolerance) and all(np.max(np.abs(pts[i] - c)) > 1e-9 for c in chosen):
            out.append(pts[i])
    return out


def _finalists(pts: np.ndarray, vals: np.ndarray, k: int) -> list[np.ndarray]:
    """The ``k`` best distinct points."""
    order = np.argsort(vals, kind="stable")
    chosen: list[np.ndarray] = []
    for i in order:
        if not np.isfinite(vals[i]) and chosen:
            break
        if all(np.max(np.abs(pts[i] - c)) > 1e-9 for c in chosen):
            chosen.append(pts[i])
        if len(chosen) == k:
            break
    return chosen
