"""A preconditioner that drifts during the first steps: per-step, per-direction gradient multipliers.

The calibrated NQM of a preconditioned optimizer (Adam, K-FAC) lives in the coordinates ``z = P^{1/2} θ`` of
the optimizer's preconditioner ``P`` at a checkpoint.  A real run does not apply that ``P`` from step 0:
K-FAC applies the inverse it last refreshed (every ``inverse_update_period`` steps, from curvature
estimated along the way), Adam the ``√v̂ + ε`` of the squared gradients seen so far.  If at update ``t``
the run applies ``P_t``, then in the checkpoint's coordinates the update multiplies the gradient by
``R_t = P^{1/2} P_t^{-1} P^{1/2}`` (``I`` once ``P_t = P``).  Along the NQM's direction ``i`` (an
eigenvector ``u_i`` of the preconditioned curvature) this model keeps the diagonal of ``R_t``,
``m_{t,i} = u_iᵀ R_t u_i`` (the "drift"), and drops its off-diagonal part.

Dynamics (heavy ball; ``μ = 0`` is SGD), per direction, with ``ξ ~ N(0, c_i / B)``::

    z_{t+1} = (1 + μ) z_t − μ z_{t−1} − α m_{t,i} (h_i z_t + ξ_t),     z_{−1} = z_0 ~ N(0, s0_i),

with ``m_{t,i} = 1`` for ``t ≥ T`` (the drift's length).  The risk is the NQM's, ``Σ w_i h_i E z_i² / 2``.
:func:`drifted_risk` gives it exactly (the recursion of ``E z_t²``, ``E z_t z_{t−1}``, ``E z_{t−1}²``);
:func:`drifted_first_hits` one run's first hit by Monte Carlo, as :func:`batchlab.nqm.first_hit.first_hits`
does without drift (entries of weight 1 simulated, the others at their expected risk).
:func:`tuned_drifted` tunes the learning rate and momentum on a grid around a centre (e.g. the optimum
without drift), since the engine's closed-form searches assume constant coefficients; :func:`tuned_in_box`
tunes them exhaustively inside a box of the optimizer's own hyperparameters (a study's search space, or a
reference run's fixed momentum).

**Adam's first-moment bias correction** (``bias_correction=True``).  Adam divides its first moment by
``1 − β₁^{t+1}``; in the NQM's velocity form (``v_t = μ v_{t−1} + g_t``, ``μ = β₁``, ``α = lr (1 − β₁)``) update
``t`` is ``z_{t+1} = z_t − α c_t v_t`` with ``c_t = 1 / (1 − μ^{t+1})``, i.e. the recursion above with
gradient step ``α c_t`` and momentum ``μ c_t / c_{t−1}``.  The first update takes the full step ``lr``
(``α c_0``) instead of ``α``; the correction fades after a few ``1 / (1 − μ)`` updates, which at a large
batch size may be the whole run.  Every function here takes it.

Example:
    >>> import numpy as np
    >>> from batchlab.nqm import Problem
    >>> p = Problem(h=[1.0, 0.1], c=[1.0, 0.1], s0=[1.0, 1.0], weights=[1.0, 1.0])
    >>> stale = Drift(np.array([[0.5, 1.0], [0.5, 1.0]]))      # two steps at half the rate along h = 1
    >>> float(drifted_risk(p, stale, learning_rate=0.5, momentum=0.0, batch_size=4, steps=2)[-1]) > \\
    ...     float(drifted_risk(p, Drift.none(2), learning_rate=0.5, momentum=0.0, batch_size=4, steps=2)[-1])
    True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from batchlab.errors import InputError
from batchlab.nqm.spectrum import Problem

__all__ = ["Drift", "DriftedOptimum", "drifted_risk", "drifted_steps", "drifted_paths", "drifted_first_hits",
           "tuned_drifted", "tuned_drifted_first_hit", "tuned_in_box", "LR_MULTIPLIERS", "MOMENTA"]

LR_MULTIPLIERS = tuple(float(2 ** (k / 4)) for k in range(-16, 5))  # 1/16 … 2: around the centre's rate
MOMENTA = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)  # tried besides the centre's (momentum kind)
REFINE = 4  # finer rates per grid step around the grid's best (2^(1/16) apart with the default grid)


@dataclasses.dataclass(frozen=True)
class Drift:
    """Gradient multipliers ``m[t, i]`` for updates ``t < T`` (``multipliers``: shape ``(T, n)``, positive
    and finite); 1 from update ``T`` on."""

    multipliers: np.ndarray

    def __post_init__(self) -> None:
        m = np.asarray(self.multipliers, dtype=np.float64)
        if m.ndim != 2 or not np.all(np.isfinite(m)) or np.any(m <= 0):
            raise InputError("drift multipliers must be a (steps, directions) array of positive finite numbers")
        object.__setattr__(self, "multipliers", m)

    @classmethod
    def none(cls, directions: int) -> "Drift":
        """No drift (length 0)."""
        return cls(np.ones((0, int(directions))))

    @classmethod
    def from_segments(cls, starts: Sequence[int], values: Sequence[Sequence[float]], end: int) -> "Drift":
        """Piecewise constant: ``values[j]`` from update ``starts[j]`` up to the next start, the last up to
        ``end`` (the drift's length).  ``starts`` must begin at 0 and increase, and ``end`` exceed the last."""
        s = [int(x) for x in starts]
        v = np.asarray(values, dtype=np.float64)
        if (not s or s[0] != 0 or any(b <= a for a, b in zip(s, s[1:])) or int(end) <= s[-1] or v.ndim != 2
                or v.shape[0] != len(s)):
            raise InputError("drift segments: starts must begin at 0 and increase, end after the last start, "
                             "one row of values per start")
        return cls(np.repeat(v, np.diff(s + [int(end)]), axis=0))

    @property
    def length(self) -> int:
        return int(self.multipliers.shape[0])

    @property
    def directions(self) -> int:
        return int(self.multipliers.shape[1])

    def at(self, t: int) -> np.ndarray | float:
        """Multipliers of update ``t``."""
        return self.multipliers[t] if t < self.length else 1.0


@dataclasses.dataclass(frozen=True)
class DriftedOptimum:
    """Tuned hyperparameters under a drift: expected-risk ``steps`` (``inf`` if never within the
    horizon) at ``learning_rate`` and ``momentum`` (``None`` for SGD)."""

    steps: float
    learning_rate: float
    momentum: float | None


def _check(problem: Problem, drift: Drift) -> None:
    if drift.directions != problem.h.shape[0]:
        raise InputError(f"the drift has {drift.directions} directions, the problem {problem.h.shape[0]}")


def _corrected(lr, mu, t: int, bias_correction: bool):
    """Update ``t``'s gradient step and momentum: ``(lr, mu)``, or with Adam's first-moment bias correction
    ``(lr c_t, mu c_t / c_{t−1})``, ``c_t = 1 / (1 − mu^{t+1})`` (``t = 0``: the momentum term is void)."""
    if not bias_correction:
        return lr, mu
    c = 1.0 / (1.0 - mu ** (t + 1))
    return lr * c, (mu * (1.0 - mu ** t) * c) if t else mu


def _moments(problem: Problem, drift: Drift, lr: np.ndarray, mu: np.ndarray, batch_size: float, steps: int,
             bias_correction: bool = False):
    """Expected risk at updates 0..steps for a grid of (lr, mu) (shape G each): array (G, steps + 1)."""
    h, c, w = problem.h, problem.c, problem.weights
    q = c / float(batch_size)
    lr, mu = lr[:, None], mu[:, None]
    a = np.broadcast_to(problem.s0, (lr.shape[0], h.shape[0])).astype(np.float64)
    b, e = a.copy(), a.copy()  # z_{-1} = z_0
    out = np.empty((lr.shape[0], steps + 1))
    half_wh = 0.5 * w * h
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps + 1):
            out[:, t] = (half_wh * a).sum(axis=1)
            if t == steps:
                break
            step, m = _corrected(lr, mu, t, bias_correction)
            g = step * drift.at(t)
            k = 1.0 + m - g * h
            a, b, e = k * k * a - 2.0 * k * m * b + m * m * e + g * g * q, k * a - m * b, a
    return np.where(np.isnan(out), np.inf, out)


def drifted_risk(problem: Problem, drift: Drift, *, learning_rate: float, momentum: float | None,
                 batch_size: float, steps: int, bias_correction: bool = False) -> np.ndarray:
    """Exact expected risk after 0, 1, …, ``steps`` updates (``momentum`` ``None`` or 0: SGD).

    ``bias_correction``: Adam's first-moment bias correction (see the module docstring).

    Raises:
        InputError: the drift's directions differ from the problem's; a bad rate, momentum or batch size.
    """
    _check(problem, drift)
    _check_hyper(learning_rate, momentum, batch_size)
    return _moments(problem, drift, np.array([float(learning_rate)]), np.array([float(momentum or 0.0)]),
                    batch_size, int(steps), bias_correction)[0]


def _check_hyper(learning_rate, momentum, batch_size) -> None:
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise InputError(f"learning rate must be positive and finite, got {learning_rate!r}")
    if momentum is not None and not 0.0 <= momentum < 1.0:
        raise InputError(f"momentum must be in [0, 1), got {momentum!r}")
    if not (math.isfinite(batch_size) and batch_size > 0):
        raise InputError(f"batch size must be positive and finite, got {batch_size!r}")


def _first_below(risk: np.ndarray, target: float) -> np.ndarray:
    hit = risk <= target
    return np.where(hit.any(axis=-1), np.argmax(hit, axis=-1), np.inf).astype(float)


def drifted_steps(problem: Problem, drift: Drift, *, learning_rate: float, momentum: float | None,
                  batch_size: float, target: float, horizon: int, bias_correction: bool = False) -> float:
    """The first update count at which the expected risk is at or below ``target`` (``inf``: not within
    ``horizon``)."""
    risk = drifted_risk(problem, drift, learning_rate=learning_rate, momentum=momentum, batch_size=batch_size,
                        steps=horizon, bias_correction=bias_correction)
    return float(_first_below(risk, target))


def tuned_drifted(problem: Problem, drift: Drift, kind: str, *, batch_size: float, target: float,
                  learning_rate: float, momentum: float | None, horizon: int,
                  lr_multipliers: Sequence[float] = LR_MULTIPLIERS, momenta: Sequence[float] = MOMENTA,
                  extensions: int = 8, bias_correction: bool = False) -> DriftedOptimum:
    """The fewest expected-risk steps of ``kind`` (``"sgd"`` or ``"momentum"``) under ``drift`` on the grid
    ``learning_rate × lr_multipliers`` (× ``momenta`` plus ``momentum`` for the momentum kind).  Where the
    best rate lies on the grid's edge, the grid is extended past it by as many multipliers again, in the
    same geometric steps, up to ``extensions`` times; then :data:`REFINE` rates per grid step on either side
    of the best are tried (every momentum).  Ties go to the smaller rate, then the smaller momentum.
    ``bias_correction``: Adam's first-moment bias correction (module docstring).

    Raises:
        InputError: another kind, bad multipliers, or see :func:`drifted_risk`.
    """
    _check(problem, drift)
    if kind not in ("sgd", "momentum"):
        raise InputError(f"drift is modelled for the sgd and momentum kinds, not {kind!r}")
    _check_hyper(learning_rate, momentum if kind == "momentum" else None, batch_size)
    factors = sorted({float(f) for f in lr_multipliers})
    if len(factors) < 2 or factors[0] <= 0 or not math.isfinite(factors[-1]):
        raise InputError("tuning a drift needs at least two distinct positive, finite learning-rate multipliers")
    mus = [0.0] if kind == "sgd" else sorted({float(m) for m in (*momenta, momentum or 0.0)})
    span = factors[-1] / factors[0]
    tried: dict[tuple[float, float], tuple[float, float]] = {}  # (rate, momentum) -> (steps, risk at the horizon)

    def evaluate(keys):
        keys = [key for key in keys if key not in tried]
        if keys:
            risk = _moments(problem, drift, np.array([k[0] for k in keys]), np.array([k[1] for k in keys]),
                            batch_size, int(horizon), bias_correction)
            tried.update(zip(keys, zip(_first_below(risk, target).tolist(), risk[:, -1].tolist())))
        # fewest steps; where none reaches, the lowest risk at the horizon says which way to go
        return min(tried, key=lambda key: (*tried[key], key[0], key[1]))

    for _ in range(int(extensions) + 1):
        best = evaluate([(learning_rate * f, m) for m in mus for f in factors])
        edge = best[0] / learning_rate
        if not (math.isclose(edge, factors[0]) or math.isclose(edge, factors[-1])):
            break
        factors = [f * span for f in factors] if math.isclose(edge, factors[-1]) else [f / span for f in factors]
    if math.isfinite(tried[best][0]):  # refine: REFINE rates per grid step on either side of the best
        step = span ** (1.0 / (len(factors) - 1))
        best = evaluate([(best[0] * step ** (k / REFINE), m) for m in mus for k in range(-REFINE, REFINE + 1)])
    return DriftedOptimum(float(tried[best][0]), float(best[0]), None if kind == "sgd" else float(best[1]))


def tuned_in_box(problem: Problem, drift: Drift, *, batch_size: float, target: float, rates: tuple[float, float],
                 momenta: Sequence[float], averaged: bool = False, bias_correction: bool = False, points: int = 41,
                 refine: int = 8, finalists: int = 8, max_horizon: int = 2**16) -> DriftedOptimum:
    """The fewest expected-risk steps with the optimizer's hyperparameters inside a box: ``points``
    log-spaced rates in ``rates`` (the optimizer's units) × ``momenta`` (``[0]`` or ``[0.0]``: SGD), then
    ``refine`` rates per grid step on either side of each of the ``finalists`` best, still inside ``rates``.  An exhaustive
    grid on the exact expected risk (no search heuristics), so the answer is the best the box holds up to
    its resolution.  The horizon doubles from 64 updates until some setting reaches ``target`` (at most
    ``max_horizon``).  Ties go to the smaller rate, then the smaller momentum.

    ``averaged``: the optimizer's momentum averages its gradients, ``m = (1 − β) Σ βᵏ g`` (Adam's first
    moment), so its rate ``lr`` is the NQM's ``α / (1 − β)``: the NQM runs ``α = lr (1 − β)``.

    Returns:
        :class:`DriftedOptimum` with the NQM's rate ``α`` (``momentum`` ``None`` when every momentum is 0).

    Raises:
        InputError: an empty or invalid box, or see :func:`drifted_risk`.
    """
    _check(problem, drift)
    low, high = (float(r) for r in rates)
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise InputError(f"a learning-rate box needs 0 < low <= high, got {rates!r}")
    mus = sorted({float(m) for m in momenta})
    if not mus or not all(0.0 <= m < 1.0 for m in mus):
        raise InputError(f"box momenta must be in [0, 1), got {list(momenta)!r}")
    if int(points) < 2 or int(refine) < 0:
        raise InputError("a box grid needs points >= 2 and refine >= 0")
    _check_hyper(low, None, batch_size)
    lrs = np.geomspace(low, high, int(points)) if high > low else np.array([low])

    def nqm_rate(lr: float, m: float) -> float:
        return lr * ((1.0 - m) if averaged else 1.0)

    def evaluate(grid: list[tuple[float, float]], horizon: int) -> tuple[np.ndarray, list[int]]:
        """Each setting's steps, and the settings ordered best first (fewest steps, smaller rate, momentum)."""
        alpha = np.array([nqm_rate(lr, m) for lr, m in grid])
        mu = np.array([m for _, m in grid])
        steps = _first_below(_moments(problem, drift, alpha, mu, batch_size, int(horizon), bias_correction), target)
        return steps, sorted(range(len(grid)), key=lambda j: (steps[j], grid[j][0], grid[j][1]))

    grid = [(lr, m) for m in mus for lr in lrs]
    horizon = 64
    while True:
        steps, order = evaluate(grid, horizon)
        if math.isfinite(steps[order[0]]) or horizon >= max_horizon:
            break
        horizon = min(2 * horizon, int(max_horizon))
    best = (float(steps[order[0]]), *grid[order[0]])
    if math.isfinite(best[0]) and lrs.size > 1 and refine:
        # steps against the rate are jagged (crossings jump as oscillations line up): refine around the
        # `finalists` best coarse settings, each over one coarse step on either side
        chosen = [grid[j] for j in order[:max(int(finalists), 1)] if math.isfinite(steps[j])]
        step = (high / low) ** (1.0 / (lrs.size - 1))
        fine = sorted({(min(max(lr * step ** (k / refine), low), high), m) for lr, m in chosen
                       for k in range(-refine, refine + 1)})
        fine_steps, fine_order = evaluate(fine, int(best[0]) + 1)
        best = (float(fine_steps[fine_order[0]]), *fine[fine_order[0]])
    steps, lr, mu = best
    return DriftedOptimum(float(steps), float(nqm_rate(lr, mu)), None if mus == [0.0] else float(mu))


def drifted_paths(problem: Problem, drift: Drift, *, learning_rates: Sequence[float], momentum: float | None,
                  batch_size: float, steps: int, runs: int = 400, seed: int = 0,
                  bias_correction: bool = False) -> np.ndarray:
    """Each run's risk after 0 … ``steps`` updates for each learning rate, all rates on the same random
    numbers: array ``(len(learning_rates), runs, steps + 1)``.  Entries of weight 1 are simulated, the
    others contribute their exact expected risk (as in :mod:`batchlab.nqm.first_hit`); ``inf`` where a
    run overflows."""
    _check(problem, drift)
    lrs = np.asarray(learning_rates, dtype=np.float64).reshape(-1)
    for lr in lrs:
        _check_hyper(float(lr), momentum, batch_size)
    if int(steps) < 0 or int(runs) < 1:
        raise InputError("steps must be >= 0 and runs >= 1")
    last, count = int(steps), int(runs)
    mu = float(momentum or 0.0)
    single = problem.weights == 1.0
    risk = np.zeros((lrs.shape[0], count, last + 1))
    if (~single).any():
        rest = Problem(h=problem.h[~single], c=problem.c[~single], s0=problem.s0[~single],
                       weights=problem.weights[~single])
        risk += _moments(rest, Drift(drift.multipliers[:, ~single]), lrs, np.full(lrs.shape, mu), batch_size,
                         last, bias_correction)[:, None, :]
    if single.any():
        h, c, s0 = problem.h[single], problem.c[single], problem.s0[single]
        rng = np.random.default_rng(seed)
        z = np.broadcast_to(rng.standard_normal((count, h.shape[0])) * np.sqrt(s0), (lrs.shape[0], count, h.shape[0]))
        z, prev = z.copy(), z.copy()  # z_{-1} = z_0
        scale = np.sqrt(c / float(batch_size))
        lr = lrs[:, None, None]
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(last + 1):
                risk[:, :, t] += (0.5 * h * z * z).sum(axis=-1)
                if t == last:
                    break
                xi = rng.standard_normal((count, h.shape[0])) * scale
                m = drift.at(t)
                m = m[single] if isinstance(m, np.ndarray) else m
                step, mu_t = _corrected(lr, np.float64(mu), t, bias_correction)
                z, prev = z + mu_t * (z - prev) - step * m * (h * z + xi), z
    return np.where(np.isnan(risk), np.inf, risk)


def drifted_first_hits(problem: Problem, drift: Drift, *, learning_rates: Sequence[float], momentum: float | None,
                       batch_size: float, target: float, eval_every: int, horizon: int, runs: int = 400,
                       seed: int = 0, bias_correction: bool = False) -> np.ndarray:
    """Each run's first hit (as :func:`batchlab.nqm.first_hit.first_hits` reports it, replay on) for each
    learning rate, all rates on the same random numbers (:func:`drifted_paths`): array
    ``(len(learning_rates), runs)``, ``inf`` for runs that never hit by ``horizon``."""
    from batchlab.nqm.first_hit import hit_steps

    every = int(eval_every)
    if every < 1 or int(horizon) < 1 or int(runs) < 2:
        raise InputError("eval_every and horizon must be positive, runs at least 2")
    last = every * math.ceil(int(horizon) / every)
    risk = drifted_paths(problem, drift, learning_rates=learning_rates, momentum=momentum, batch_size=batch_size,
                         steps=last, runs=runs, seed=seed, bias_correction=bias_correction)
    return np.stack([hit_steps(r <= target, every) for r in risk])


def tuned_drifted_first_hit(problem: Problem, drift: Drift, *, batch_size: float, target: float, eval_every: int,
                            optimum: Any, runs: int = 400, seed: int = 0,
                            multipliers: Sequence[float] | None = None, horizon_factor: float = 4.0,
                            bias_correction: bool = False):
    """:func:`batchlab.nqm.first_hit.tuned_first_hit` under ``drift``: the fewest median first-hit steps
    over ``multipliers`` × the expected-risk ``optimum``'s rate (its momentum kept), all rates on the same
    random runs, up to ``horizon_factor`` × its steps (at least the drift's length) on the evaluation
    grid.  ``optimum``: a :class:`DriftedOptimum` (or any object with ``steps``, ``learning_rate`` and
    ``momentum``, e.g. an :class:`~batchlab.nqm.optimize.Optimum`).  Ties go to the smaller multiplier.
    Returns a :class:`~batchlab.nqm.first_hit.FirstHit`."""
    from batchlab.nqm.first_hit import MULTIPLIERS, FirstHit

    factors = sorted(MULTIPLIERS if multipliers is None else multipliers)
    if not factors or not all(math.isfinite(m) and m > 0 for m in factors):
        raise InputError("learning-rate multipliers must be positive and finite")
    if not math.isfinite(optimum.steps):
        return FirstHit(math.inf, optimum.learning_rate, optimum.momentum, 1.0, 0.0, optimum.steps)
    every = int(eval_every)
    reach = max(horizon_factor * optimum.steps, drift.length, every)
    horizon = int(every * math.ceil(reach / every))
    hits = drifted_first_hits(problem, drift, learning_rates=[optimum.learning_rate * m for m in factors],
                              momentum=optimum.momentum, batch_size=batch_size, target=target, eval_every=every,
                              horizon=horizon, runs=runs, seed=seed, bias_correction=bias_correction)
    medians = np.median(hits, axis=1)
    best = int(np.argmin(medians))  # first of the smallest: the smaller multiplier on ties
    return FirstHit(float(medians[best]), optimum.learning_rate * factors[best], optimum.momentum, factors[best],
                    float(np.isfinite(hits[best]).mean()), optimum.steps)
