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
from typing import ClassVar, Union

import numpy as np

from batchlab.errors import InputError
from batchlab.nqm.companion import (
    Companion, heavy_ball_companion, heavy_ball_floor, nesterov_companion, sgd_ema_companion,
)
from batchlab.nqm.spectrum import Problem

__all__ = [
    "BaseDynamics", "SGD", "HeavyBall", "Nesterov", "EMA", "Dynamics",
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


class BaseDynamics:
    """What every (non-averaged) optimizer on the NQM provides — abstract; :class:`SGD`,
    :class:`HeavyBall` and :class:`Nesterov` are the concrete ones.

    Each type carries its own behaviour: the stability limit (:meth:`limit`), the per-direction
    system (:meth:`matrices`, :meth:`companion`, :meth:`ema_companion`), closed-form steady states
    (:meth:`steady_state`, :meth:`noise_floor`) and the Monte Carlo update (:meth:`monte_carlo_step`).
    A new optimizer is a new type with these hooks plus one entry of
    :data:`batchlab.nqm.optimize.KIND_TABLE`.  The static hooks take the per-direction arrays of a
    :class:`System` (``x``; ``beta`` the system momentum or ``None``; ``gamma`` the EMA decay or ``None``).
    """

    kind: ClassVar[str]  # System.kind: "sgd", "heavy_ball", "nesterov"
    states: ClassVar[int]  # state coordinates per direction (without an EMA)
    # whether noise_floor is cancellation-free and replaces the companion's steady state in the closed forms
    exact_floor: ClassVar[bool] = False

    @property
    def base(self) -> "BaseDynamics":
        """The dynamics without an iterate average (itself)."""
        return self

    @property
    def ema_decay(self) -> None:
        """Decay ``γ`` of the iterate average (none)."""
        return None

    @property
    def system_momentum(self) -> np.ndarray | None:
        """``β`` of the per-direction system, or ``None`` (no momentum state)."""
        return None

    def limit(self) -> np.ndarray:
        """Largest stable effective step ``x = α P h`` (strict inequality)."""
        raise NotImplementedError

    def with_learning_rate(self, learning_rate):
        """The same dynamics with another learning rate (schedules)."""
        return dataclasses.replace(self, learning_rate=learning_rate)

    def map_hyperparameters(self, fn):
        """``fn`` applied to every hyperparameter array."""
        return type(self)(**{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)})

    @staticmethod
    def matrices(x, beta, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(E, u, a)`` of the base system (``E = I − M``, noise direction, initial direction)."""
        raise NotImplementedError

    @staticmethod
    def companion(x, beta) -> Companion | None:
        """Closed-form data of a 2-state base system, or ``None``."""
        return None

    @staticmethod
    def ema_companion(x, gamma) -> Companion | None:
        """Closed-form data of the system with an EMA if it has 2 states, or ``None``."""
        return None

    @staticmethod
    def steady_state(x, q, beta, gamma):
        """Closed-form ``lim E[θ_meas²]`` per direction, or ``None`` (Lyapunov equation)."""
        return None

    @staticmethod
    def noise_floor(x, beta, gamma):
        """``(floor, gap)``: the steady state per unit of step noise ``q`` in a cancellation-free
        form and the spectral gap ``1 − R``; or ``None`` (from the companion data)."""
        return None

    def monte_carlo_init(self, theta: np.ndarray) -> tuple:
        """Optimizer state for Monte Carlo runs starting at ``theta`` (the iterate first)."""
        return (theta,)

    def monte_carlo_step(self, state: tuple, grad: np.ndarray, alpha: float) -> tuple:
        """One update from the preconditioned gradient ``grad = P g``."""
        raise NotImplementedError

    def monte_carlo_measured(self, state: tuple) -> np.ndarray:
        """The coordinate whose risk is recorded: the iterate."""
        return state[0]


@dataclasses.dataclass(frozen=True, eq=False)
class SGD(BaseDynamics):
    """Plain (optionally preconditioned) SGD: ``θ' = θ − α P g``; per direction ``M = [1 − x]``."""

    learning_rate: np.ndarray
    precond: np.ndarray = 0.0

    kind: ClassVar[str] = "sgd"
    states: ClassVar[int] = 1

    def __post_init__(self):
        object.__setattr__(self, "learning_rate", _check_positive("learning_rate", self.learning_rate))
        object.__setattr__(self, "precond", _check_precond(self.precond))

    @property
    def hp_shape(self) -> tuple[int, ...]:
        return np.broadcast_shapes(self.learning_rate.shape, self.precond.shape)

    def limit(self) -> np.ndarray:
        """``2``."""
        return np.asarray(2.0)

    @staticmethod
    def matrices(x, beta, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(E, u, a)`` of the base system: ``E = [x]``, ``u = a = [1]``."""
        ones = np.ones(shape)
        return x[..., None, None], ones[..., None], ones[..., None]

    @staticmethod
    def ema_companion(x, gamma) -> Companion | None:
        """Roots ``1 − x`` and ``γ`` (Theorem 2)."""
        return sgd_ema_companion(x, gamma)

    @staticmethod
    def steady_state(x, q, beta, gamma):
        """``lim E[θ_meas²]``: ``q / (x(2 − x))``; with an EMA times
        ``(1 − γ)(1 + (1 − x)γ) / ((1 + γ)(1 − (1 − x)γ))`` (Theorem 2)."""
        if gamma is None:
            return q / (x * (2 - x))
        r = 1 - x
        return q / (x * (2 - x)) * (1 - gamma) * (1 + r * gamma) / ((1 + gamma) * (1 - r * gamma))

    @staticmethod
    def noise_floor(x, beta, gamma):
        """``(floor, gap)``: the steady state per unit of step noise ``q`` (the same quantity as
        :meth:`steady_state`, in the factored form the engine has always used) and ``1 − R``."""
        gap = np.minimum(x, 2.0 - x)  # 1 − |1 − x|
        if gamma is None:
            return 1.0 / (x * (2.0 - x)), gap
        g = gamma
        floor = (1 - g) * (1 + (1 - x) * g) / ((x * (2.0 - x)) * (1 + g) * ((1 - g) + g * x))
        return floor, np.minimum(gap, 1.0 - g)

    def monte_carlo_step(self, state, grad, alpha):
        """``θ ← θ − α P g``."""
        return (state[0] - alpha * grad,)


@dataclasses.dataclass(frozen=True, eq=False)
class HeavyBall(BaseDynamics):
    """Heavy-ball momentum, velocity form: ``v' = β v − α P g``, ``θ' = θ + v'``; on ``z = (θ, v)``
    ``M = [[1 − x, β], [−x, β]]``, ``u = (1, 1)``."""

    learning_rate: np.ndarray
    momentum: np.ndarray
    precond: np.ndarray = 0.0

    kind: ClassVar[str] = "heavy_ball"
    states: ClassVar[int] = 2
    exact_floor: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "learning_rate", _check_positive("learning_rate", self.learning_rate))
        object.__setattr__(self, "momentum", _check_open_unit("momentum", self.momentum))
        object.__setattr__(self, "precond", _check_precond(self.precond))

    @property
    def hp_shape(self) -> tuple[int, ...]:
        return np.broadcast_shapes(self.learning_rate.shape, self.momentum.shape, self.precond.shape)

    @property
    def system_momentum(self) -> np.ndarray:
        return self.momentum

    def limit(self) -> np.ndarray:
        """Largest stable effective step: ``2(1 + β)``."""
        return 2.0 * (1.0 + self.momentum)

    @staticmethod
    def matrices(x, beta, shape):
        ones, zeros = np.ones(shape), np.zeros(shape)
        omb = 1.0 - beta
        E = np.stack([np.stack([x, -beta], -1), np.stack([x, omb], -1)], -2)
        u = np.stack([ones, ones], -1)
        return E, u, np.stack([ones, zeros], -1)

    @staticmethod
    def companion(x, beta):
        return heavy_ball_companion(x, beta)

    @staticmethod
    def steady_state(x, q, beta, gamma):
        """``(1 + β) q / ((1 − β) x (2 + 2β − x))``; no closed form with an EMA (``None``)."""
        if gamma is not None:
            return None
        return q * (1 + beta) / ((1 - beta) * x * ((2 - x) + 2 * beta))

    @staticmethod
    def noise_floor(x, beta, gamma):
        return None if gamma is not None else heavy_ball_floor(x, beta)

    def monte_carlo_init(self, theta):
        return theta, np.zeros_like(theta)

    def monte_carlo_step(self, state, grad, alpha):
        """``v ← β v − α P g;  θ ← θ + v``."""
        theta, vel = state
        vel = float(self.momentum) * vel - alpha * grad
        return theta + vel, vel


@dataclasses.dataclass(frozen=True, eq=False)
class Nesterov(HeavyBall):
    """Nesterov momentum as optax runs it; risk measured at the lookahead point ``φ = θ + βv``:
    on ``z = (φ, v)`` ``M = [[1 − (1+β)x, β²], [−x, β]]``, ``u = (1 + β, 1)``."""

    kind: ClassVar[str] = "nesterov"
    exact_floor: ClassVar[bool] = False

    def limit(self) -> np.ndarray:
        """Largest stable effective step: ``2(1 + β)/(1 + 2β)``."""
        return 2.0 * (1.0 + self.momentum) / (1.0 + 2.0 * self.momentum)

    @staticmethod
    def matrices(x, beta, shape):
        ones, zeros = np.ones(shape), np.zeros(shape)
        omb = 1.0 - beta
        E = np.stack([np.stack([(1 + beta) * x, -beta**2], -1), np.stack([x, omb], -1)], -2)
        u = np.stack([1 + beta, ones], -1)
        return E, u, np.stack([ones, zeros], -1)

    @staticmethod
    def companion(x, beta):
        return nesterov_companion(x, beta)

    @staticmethod
    def steady_state(x, q, beta, gamma):
        return None  # the Lyapunov equation (batchlab.nqm.risk)

    @staticmethod
    def noise_floor(x, beta, gamma):
        return None  # from the companion data (batchlab.nqm._closed)

    def monte_carlo_step(self, state, grad, alpha):
        """optax's trace ``m ← P g + β m;  φ ← φ − α (P g + β m)``."""
        theta, vel = state
        beta = float(self.momentum)
        vel = grad + beta * vel
        return theta - alpha * (grad + beta * vel), vel


Base = Union[SGD, HeavyBall, Nesterov]


@dataclasses.dataclass(frozen=True, eq=False)
class EMA:
    """Exponential moving average of the iterates of ``base``: ``θ̃' = γ θ̃ + (1 − γ) θ'``; the risk is
    measured at ``θ̃`` (one more state coordinate; the stability limit is the base's)."""

    base: Base
    decay: np.ndarray

    def __post_init__(self):
        if not isinstance(self.base, BaseDynamics):
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

    @property
    def ema_decay(self) -> np.ndarray:
        return self.decay

    def limit(self) -> np.ndarray:
        return self.base.limit()

    def with_learning_rate(self, learning_rate) -> "EMA":
        return EMA(self.base.with_learning_rate(learning_rate), self.decay)

    def map_hyperparameters(self, fn) -> "EMA":
        return EMA(self.base.map_hyperparameters(fn), fn(self.decay))

    def monte_carlo_init(self, theta):
        return self.base.monte_carlo_init(theta) + (theta.copy(),)

    def monte_carlo_step(self, state, grad, alpha):
        """The base's update, then ``θ̃ ← γ θ̃ + (1 − γ) θ``."""
        inner = self.base.monte_carlo_step(state[:-1], grad, alpha)
        gamma = float(self.decay)
        return inner + (gamma * state[-1] + (1.0 - gamma) * inner[0],)

    def monte_carlo_measured(self, state):
        return state[-1]


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
    return dyn.with_learning_rate(learning_rate)


# --------------------------------------------------------------------------------------------------
# Per-direction systems


@dataclasses.dataclass(frozen=True, eq=False)
class System:
    """A batch of per-direction linear systems (arrays of one common shape, direction axis last).

    ``Σ' = (I − E) Σ (I − E)ᵀ + q u uᵀ``, ``Σ(0) = s0 a aᵀ``, risk contribution ``weight · Σ[out, out]``
    with ``weight = ½ h w``.  ``x`` is the effective step, ``limit`` the largest stable ``x``.  The
    closed-form data (:meth:`companion`) and the matrices ``E, u, a`` (:meth:`matrices`) are built on
    demand, only for the entries that need them.
    """

    law: type  # the base dynamics type (SGD, HeavyBall, Nesterov): its hooks build the matrices
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
    def kind(self) -> str:
        """The base dynamics' name: ``"sgd"``, ``"heavy_ball"`` or ``"nesterov"``."""
        return self.law.kind

    @property
    def n(self) -> int:
        """State dimension per direction."""
        return self.law.states + int(self.ema)

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

    def _full(self, a):
        return None if a is None else np.broadcast_to(a, self.shape)

    def companion(self) -> Companion | None:
        """Closed-form data of 2-state systems (heavy ball, Nesterov, SGD+EMA); ``None`` otherwise."""
        if self.ema:
            return self.law.ema_companion(self._full(self.x), self._full(self.gamma))
        return self.base_companion()

    def base_companion(self) -> Companion | None:
        """Closed-form data of the momentum part alone (heavy ball, Nesterov; ``None`` for SGD), also
        under an EMA (the 3-state systems' momentum roots)."""
        return self.law.companion(self._full(self.x), self._full(self.beta))

    def steady_state(self) -> np.ndarray | None:
        """Closed-form ``lim E[θ_meas²]`` per entry (:meth:`SGD.steady_state`), or ``None`` where the
        law has none (the Lyapunov equation then gives it)."""
        return self.law.steady_state(self.x, self.q, self.beta, self.gamma)

    def matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(E, u, a)`` with shapes ``shape + (n, n)``, ``shape + (n,)``, ``shape + (n,)``."""
        E, u, a = self.law.matrices(self._full(self.x), self._full(self.beta), self.shape)
        ones = np.ones(self.shape)
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
    return dyn.limit()


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
    base, decay = dyn.base, dyn.ema_decay
    momentum = base.system_momentum
    beta = None if momentum is None else np.broadcast_to(np.asarray(momentum)[..., None], shape)
    gamma = None if decay is None else np.broadcast_to(np.asarray(decay)[..., None], shape)
    return System(law=type(base), ema=gamma is not None, beta=beta, gamma=gamma, **common)


def flatten_dynamics(dyn: Dynamics, shape: tuple[int, ...]) -> Dynamics:
    """Every hyperparameter broadcast to ``shape`` and flattened to one axis."""
    return dyn.map_hyperparameters(lambda a: np.broadcast_to(np.asarray(a), shape).reshape(-1))


def take_dynamics(dyn: Dynamics, rows) -> Dynamics:
    """Entries ``rows`` of flattened dynamics."""
    return dyn.map_hyperparameters(lambda a: np.asarray(a)[rows])
