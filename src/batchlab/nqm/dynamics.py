"""Optimizer dynamics on the NQM as per-direction linear systems.

Per eigendirection with curvature ``h``, noise ``c`` and preconditioner ``P = h^-p``, write the effective
step ``x = α P h = α h^(1-p)`` and the per-step injected noise variance ``q = α² P² c / B``.  Each
optimizer is a linear system on a small state ``z`` (``n`` = 1, 2 or 3 numbers per direction)::

    z' = M z − ξ u,   Var ξ = q,   z(0) = a θ(0),   measured coordinate  θ_meas = z[out]

so the second moment ``Σ = E[z zᵀ]`` obeys ``Σ' = M Σ Mᵀ + q u uᵀ`` and the expected risk of the
direction is ``½ h Σ[out, out]`` (times the entry's multiplicity).

- SGD:  ``θ' = (1 − x) θ − ξ``.  ``M = [1 − x]``.
- Heavy ball (velocity form):  ``v' = β v − αP g``, ``θ' = θ + v'`` on ``z = (θ, v)``:
  ``M = [[1 − x, β], [−x, β]]``, ``u = (1, 1)``.
- Nesterov, written as optax runs it (``m' = g + βm``, ``φ' = φ − α(g + βm')``), i.e. the lookahead
  recursion ``v' = βv − αP g(θ + βv)``, ``θ' = θ + v'`` in the variable ``φ = θ + βv`` where gradients
  are taken and which a training run holds: on ``z = (φ, v)``
  ``M = [[1 − (1+β)x, β²], [−x, β]]``, ``u = (1 + β, 1)``.
- EMA of iterates over any of them: ``θ̃' = γ θ̃ + (1 − γ) θ'``, ``θ̃(0) = θ(0)``; the risk is measured
  at ``θ̃``.  Adds one state coordinate.

Hyperparameters may be arrays; they broadcast together (their broadcast shape is ``hp_shape``) and the
direction axis is appended last.  Every system also carries ``E = I − M`` computed without rounding
``1 − x`` (slow directions have ``x ≪ 1``; rounding ``1 − x`` would cost ``x/ε`` digits), and, for the
two-dimensional systems, the characteristic-polynomial data the closed forms need.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Union

import numpy as np

from batchlab.errors import InputError
from batchlab.nqm.spectrum import Problem

__all__ = [
    "SGD", "HeavyBall", "Nesterov", "EMA", "Dynamics",
    "sgd", "heavy_ball", "nesterov", "with_ema",
    "System", "Companion", "build_system", "stability_limit", "max_stable_learning_rate",
    "heavy_ball_companion", "nesterov_companion",
]


def _check_open_unit(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr >= 1):
        raise InputError(f"{name} must be in [0, 1), got {value!r}")
    return arr


def _check_positive(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"{name} must be > 0, got {value!r}")
    return arr


def _check_precond(value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise InputError(f"precond (power p of P = H^-p) must be in [0, 1], got {value!r}")
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class SGD:
    """Plain (optionally preconditioned) SGD: ``θ' = θ − α P g``."""

    learning_rate: np.ndarray
    precond: np.ndarray = 0.0

    def __post_init__(self):
        object.__setattr__(self, "learning_rate", _check_positive("learning_rate", self.learning_rate))
        object.__setattr__(self, "precond", _check_precond(self.precond))

    @property
    def hp_shape(self) -> tuple[int, ...]:
        return np.broadcast_shapes(self.learning_rate.shape, self.precond.shape)


@dataclasses.dataclass(frozen=True, eq=False)
class HeavyBall:
    """Heavy-ball momentum, velocity form: ``v' = β v − α P g``, ``θ' = θ + v'``."""

    learning_rate: np.ndarray
    momentum: np.ndarray
    precond: np.ndarray = 0.0

    def __post_init__(self):
        object.__setattr__(self, "learning_rate", _check_positive("learning_rate", self.learning_rate))
        object.__setattr__(self, "momentum", _check_open_unit("momentum", self.momentum))
        object.__setattr__(self, "precond", _check_precond(self.precond))

    @property
    def hp_shape(self) -> tuple[int, ...]:
        return np.broadcast_shapes(self.learning_rate.shape, self.momentum.shape, self.precond.shape)


@dataclasses.dataclass(frozen=True, eq=False)
class Nesterov(HeavyBall):
    """Nesterov momentum as optax runs it; risk measured at the lookahead point ``φ = θ + βv``."""


Base = Union[SGD, HeavyBall, Nesterov]


@dataclasses.dataclass(frozen=True, eq=False)
class EMA:
    """Exponential moving average of the iterates of ``base``: ``θ̃' = γ θ̃ + (1 − γ) θ'``."""

    base: Base
    decay: np.ndarray

    def __post_init__(self):
        if not isinstance(self.base, (SGD, HeavyBall)):
            raise InputError("EMA wraps SGD, heavy-ball or Nesterov dynamics")
        object.__setattr__(self, "decay", _check_open_unit("ema decay", self.decay))

    @property
    def hp_shape(self) -> tuple[int, ...]:
        return np.broadcast_shapes(self.base.hp_shape, self.decay.shape)

    @property
    def learning_rate(self) -> np.ndarray:
        return self.base.learning_rate

    @property
    def precond(self) -> np.ndarray:
        return self.base.precond


Dynamics = Union[SGD, HeavyBall, Nesterov, EMA]


def sgd(learning_rate, *, precond=0.0) -> SGD:
    """SGD dynamics.  Example: ``expected_risk(power_law(), sgd(0.5), batch_size=64, steps=[100])``."""
    return SGD(learning_rate, precond)


def heavy_ball(learning_rate, momentum, *, precond=0.0) -> HeavyBall:
    """Heavy-ball momentum dynamics (effective learning rate ``α / (1 − β)``)."""
    return HeavyBall(learning_rate, momentum, precond)


def nesterov(learning_rate, momentum, *, precond=0.0) -> Nesterov:
    """Nesterov momentum dynamics (optax's formulation)."""
    return Nesterov(learning_rate, momentum, precond)


def with_ema(base: Base, decay) -> EMA:
    """Wrap ``base`` with an exponential moving average of its iterates (decay ``γ``)."""
    return EMA(base, decay)


def with_learning_rate(dyn: Dynamics, learning_rate) -> Dynamics:
    """The same dynamics with another learning rate (used by schedules)."""
    if isinstance(dyn, EMA):
        return EMA(with_learning_rate(dyn.base, learning_rate), dyn.decay)
    return dataclasses.replace(dyn, learning_rate=learning_rate)


# --------------------------------------------------------------------------------------------------
# Per-direction systems


class Companion(NamedTuple):
    """Data of a 2-state system's characteristic polynomial ``p(r) = r² − τ r + δ`` and Krylov moments.

    ``omd = 1 − δ``, ``p1 = p(1)``, ``pm1 = p(−1)`` and ``disc = τ² − 4δ`` are computed from factored forms so they are
    accurate even when they are tiny (slow directions, stability limit, critical damping).
    ``m0 = e·a``, ``m1 = e·M a`` (mean), ``n0 = e·u``, ``n1 = e·M u`` (noise) for the measured row e,
    and ``dm = m1 − m0 = −e·E a`` computed without cancellation.
    """

    tau: np.ndarray
    delta: np.ndarray
    omd: np.ndarray
    p1: np.ndarray
    pm1: np.ndarray
    disc: np.ndarray
    m0: np.ndarray
    m1: np.ndarray
    n0: np.ndarray
    n1: np.ndarray
    dm: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class System:
    """A batch of per-direction linear systems (arrays of one common shape, direction axis last).

    ``Σ' = (I − E) Σ (I − E)ᵀ + q u uᵀ``, ``Σ(0) = s0 a aᵀ``, risk contribution ``weight · Σ[out, out]``
    with ``weight = ½ h w``.  ``x`` is the effective step, ``limit`` the largest stable ``x``.  The
    closed-form data (:meth:`companion`) and the matrices ``E, u, a`` (:meth:`matrices`) are built on
    demand, only for the entries that need them.
    """

    kind: str  # "sgd", "heavy_ball", "nesterov"
    ema: bool
    x: np.ndarray
    q: np.ndarray
    s0: np.ndarray
    weight: np.ndarray
    limit: np.ndarray
    beta: np.ndarray | None
    gamma: np.ndarray | None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.x.shape

    @property
    def n(self) -> int:
        """State dimension per direction."""
        return (1 if self.kind == "sgd" else 2) + int(self.ema)

    @property
    def out(self) -> int:
        """Index of the measured coordinate."""
        return self.n - 1 if self.ema else 0

    def reshape(self, *shape: int) -> "System":
        """The same systems with the leading shape changed (e.g. flattened to rows)."""
        def f(a):
            return None if a is None else np.ascontiguousarray(np.broadcast_to(a, self.shape)).reshape(shape)
        return dataclasses.replace(
            self, x=f(self.x), q=f(self.q), s0=f(self.s0), weight=f(self.weight), limit=f(self.limit),
            beta=f(self.beta), gamma=f(self.gamma),
        )

    def take(self, rows) -> "System":
        """Entries ``rows`` (any NumPy index into :attr:`shape`) as a new batch of systems."""
        pairs = isinstance(rows, tuple) and len(rows) == 2 and len(self.shape) == 2

        def f(a):
            if a is None:
                return None
            a = np.broadcast_to(a, self.shape)
            if pairs and a.strides[0] == 0:  # per direction only (broadcast over settings)
                return a[0][rows[1]]
            if pairs and a.strides[1] == 0:  # per setting only
                return a[:, 0][rows[0]]
            return a[rows]
        return dataclasses.replace(
            self, x=f(self.x), q=f(self.q), s0=f(self.s0), weight=f(self.weight), limit=f(self.limit),
            beta=f(self.beta), gamma=f(self.gamma),
        )

    def companion(self) -> Companion | None:
        """Closed-form data of 2-state systems (heavy ball, Nesterov, SGD+EMA); ``None`` otherwise."""
        x = np.broadcast_to(self.x, self.shape)
        if self.ema:
            return _sgd_ema_companion(x, np.broadcast_to(self.gamma, self.shape)) if self.kind == "sgd" else None
        if self.kind == "sgd":
            return None
        return self.base_companion()

    def base_companion(self) -> Companion | None:
        """Closed-form data of the momentum part alone (heavy ball, Nesterov; ``None`` for SGD), also
        under an EMA (the 3-state systems' momentum roots)."""
        if self.kind == "sgd":
            return None
        x = np.broadcast_to(self.x, self.shape)
        beta = np.broadcast_to(self.beta, self.shape)
        return (nesterov_companion if self.kind == "nesterov" else heavy_ball_companion)(x, beta)

    def matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(E, u, a)`` with shapes ``shape + (n, n)``, ``shape + (n,)``, ``shape + (n,)``."""
        x = np.broadcast_to(self.x, self.shape)
        ones, zeros = np.ones(self.shape), np.zeros(self.shape)
        if self.kind == "sgd":
            E, u, a = x[..., None, None], ones[..., None], ones[..., None]
        else:
            beta = np.broadcast_to(self.beta, self.shape)
            omb = 1.0 - beta
            if self.kind == "nesterov":
                E = np.stack([np.stack([(1 + beta) * x, -beta**2], -1), np.stack([x, omb], -1)], -2)
                u = np.stack([1 + beta, ones], -1)
            else:
                E = np.stack([np.stack([x, -beta], -1), np.stack([x, omb], -1)], -2)
                u = np.stack([ones, ones], -1)
            a = np.stack([ones, zeros], -1)
        if not self.ema:
            return E, u, a
        # θ̃' = γθ̃ + (1−γ)(M z − ξ u)[out]:  M_full = [[M_b, 0], [(1−γ) M_b[0], γ]],  E_full = I − M_full
        n = E.shape[-1]
        omg = 1.0 - np.broadcast_to(self.gamma, self.shape)
        row = -E[..., 0, :]
        row[..., 0] += 1.0
        top = np.concatenate([E, np.zeros(self.shape + (n, 1))], -1)
        bottom = np.concatenate([-(omg[..., None] * row), omg[..., None]], -1)[..., None, :]
        E = np.concatenate([top, bottom], -2)
        u = np.concatenate([u, (omg * u[..., 0])[..., None]], -1)
        a = np.concatenate([a, ones[..., None]], -1)
        return E, u, a


def stability_limit(dyn: Dynamics) -> np.ndarray:
    """Largest effective step ``x = α P h`` for which the dynamics is stable (strict inequality).

    SGD ``2``; heavy ball ``2(1 + β)``; Nesterov ``2(1 + β)/(1 + 2β)``; EMA does not change it.
    """
    if isinstance(dyn, EMA):
        return stability_limit(dyn.base)
    if isinstance(dyn, Nesterov):
        return 2.0 * (1.0 + dyn.momentum) / (1.0 + 2.0 * dyn.momentum)
    if isinstance(dyn, HeavyBall):
        return 2.0 * (1.0 + dyn.momentum)
    return np.asarray(2.0)


def max_stable_learning_rate(problem: Problem, dyn: Dynamics) -> np.ndarray:
    """Largest learning rate for which every direction is stable: ``limit / max_i h_i^(1−p)``."""
    p = np.asarray(dyn.precond)
    hmax = np.max(problem.h[:, None] ** (1.0 - p.reshape(-1)[None, :]), axis=0).reshape(p.shape)
    return stability_limit(dyn) / hmax


def _direction_arrays(problem: Problem, dyn: Dynamics, batch_size) -> tuple[np.ndarray, ...]:
    """Effective step x and noise variance q with the direction axis last."""
    B = np.asarray(batch_size, dtype=np.float64)
    if not np.all(np.isfinite(B)) or np.any(B < 1):
        raise InputError(f"batch_size must be >= 1, got {batch_size!r}")
    alpha = np.asarray(dyn.learning_rate)[..., None]
    p = np.asarray(dyn.precond)
    h, c = problem.h, problem.c
    with np.errstate(over="ignore"):  # a huge learning rate overflows to inf: unstable, risk inf
        if p.size == 1:  # one preconditioner for every setting: per-direction factors computed once
            P = h ** (-float(p.reshape(-1)[0])) if float(p.reshape(-1)[0]) != 0.0 else 1.0
            x = alpha * (P * h)
            q = (alpha**2 / B[..., None]) * (P**2 * c)
            return x, q
        P = h ** (-p[..., None])
        return alpha * P * h, alpha**2 * P**2 * c / B[..., None]


def build_system(problem: Problem, dyn: Dynamics, batch_size) -> System:
    """The per-direction linear systems of ``dyn`` on ``problem`` at ``batch_size``.

    Arrays have shape ``broadcast(hp_shape, shape(batch_size)) + (d,)``.
    """
    x, q = _direction_arrays(problem, dyn, batch_size)
    shape = np.broadcast_shapes(dyn.hp_shape + (1,), x.shape, q.shape, np.shape(batch_size) + (1,))
    x, q = np.broadcast_to(x, shape), np.broadcast_to(q, shape)
    common = dict(
        x=x, q=q, weight=np.broadcast_to(0.5 * problem.h * problem.weights, shape),
        s0=np.broadcast_to(problem.s0, shape),
        limit=np.broadcast_to(np.asarray(stability_limit(dyn))[..., None], shape),
    )
    base = dyn.base if isinstance(dyn, EMA) else dyn
    kind = "sgd" if isinstance(base, SGD) else "nesterov" if isinstance(base, Nesterov) else "heavy_ball"
    beta = None if kind == "sgd" else np.broadcast_to(np.asarray(base.momentum)[..., None], shape)
    gamma = np.broadcast_to(np.asarray(dyn.decay)[..., None], shape) if isinstance(dyn, EMA) else None
    return System(kind=kind, ema=gamma is not None, beta=beta, gamma=gamma, **common)


@np.errstate(over="ignore")  # a huge step overflows to inf: far outside the stable region
def heavy_ball_companion(x, beta) -> Companion:
    omb, sb = 1.0 - beta, np.sqrt(beta)
    return Companion(
        tau=(1 - x) + beta, delta=beta, omd=omb, p1=x, pm1=(2 - x) + 2 * beta,
        disc=(x - (1 - sb) ** 2) * (x - (1 + sb) ** 2),
        m0=np.ones_like(x), m1=1 - x, n0=np.ones_like(x), n1=1 - x + beta, dm=-x,
    )


@np.errstate(over="ignore")
def nesterov_companion(x, beta) -> Companion:
    omb, omx = 1.0 - beta, 1.0 - x
    return Companion(
        tau=(1 + beta) * omx, delta=beta * omx, omd=omb + beta * x, p1=x,
        pm1=_accurate_sum(2.0, 2.0 * beta, -x, -2.0 * beta * x, _two_prod_err(-2.0 * beta, x)),
        disc=omx * (omb**2 - x * (1 + beta) ** 2),
        m0=np.ones_like(x), m1=1 - (1 + beta) * x, n0=1 + beta + 0 * x,
        n1=(1 - (1 + beta) * x) * (1 + beta) + beta**2, dm=-(1 + beta) * x,
    )


def _two_prod_err(a, b):
    """Rounding error of ``a * b`` (Dekker's exact product without FMA): ``a·b = fl(a·b) + err``."""
    split = 134217729.0  # 2^27 + 1
    p = a * b
    ca, cb = split * a, split * b
    ah, bh = ca - (ca - a), cb - (cb - b)
    al, bl = a - ah, b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _accurate_sum(*terms):
    """Compensated (Kahan–Babuška) sum: near full relative precision even when terms cancel."""
    total = np.zeros(np.broadcast_shapes(*(np.shape(t) for t in terms)))
    comp = np.zeros_like(total)
    for term in terms:
        new = total + term
        comp = comp + np.where(np.abs(total) >= np.abs(term), (total - new) + term, (term - new) + total)
        total = new
    return total + comp


@np.errstate(over="ignore")
def _sgd_ema_companion(x, gamma) -> Companion:
    """SGD + EMA on ``(θ, θ̃)``, measured ``θ̃``: roots ``1 − x`` and ``γ`` (Theorem 2)."""
    omg, r = 1.0 - gamma, 1.0 - x
    return Companion(
        tau=r + gamma, delta=r * gamma, omd=omg + gamma * x, p1=x * omg, pm1=(2 - x) * (1 + gamma),
        disc=(omg - x) ** 2, m0=np.ones_like(x), m1=1 - omg * x, n0=omg + 0 * x, n1=omg * (r + gamma),
        dm=-omg * x,
    )


def _map_hyperparameters(dyn: Dynamics, fn) -> Dynamics:
    """Apply ``fn`` to every hyperparameter array of ``dyn`` (recursing into EMA)."""
    if isinstance(dyn, EMA):
        return EMA(_map_hyperparameters(dyn.base, fn), fn(dyn.decay))
    fields = {f.name: fn(getattr(dyn, f.name)) for f in dataclasses.fields(dyn)}
    return type(dyn)(**fields)


def flatten_dynamics(dyn: Dynamics, shape: tuple[int, ...]) -> Dynamics:
    """Every hyperparameter broadcast to ``shape`` and flattened to one axis."""
    return _map_hyperparameters(dyn, lambda a: np.broadcast_to(np.asarray(a), shape).reshape(-1))


def take_dynamics(dyn: Dynamics, rows) -> Dynamics:
    """Entries ``rows`` of flattened dynamics."""
    return _map_hyperparameters(dyn, lambda a: np.asarray(a)[rows])
