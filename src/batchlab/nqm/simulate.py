"""Monte Carlo sample paths of optimizers on the NQM (seeded), for validation and for users.

The optimizers are run as written (not through the engine's matrices): per direction,
``g = h θ + ε`` with ``ε ~ N(0, c / B)``, preconditioned by ``P = h^-p``:

- SGD ``θ ← θ − α P g``;
- heavy ball ``v ← β v − α P g;  θ ← θ + v``;
- Nesterov (optax's form) ``m ← P g + β m;  φ ← φ − α (P g + β m)``;
- EMA ``θ̃ ← γ θ̃ + (1 − γ) θ`` with ``θ̃(0) = θ(0)``; the loss is measured at ``θ̃``.

Initial parameters are ``θ_i(0) ~ N(0, s0_i)``.  Entries with multiplicity ``w_i`` are simulated once
and weighted (exact in expectation).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from batchlab.errors import InputError
from batchlab.nqm.dynamics import EMA, SGD, Dynamics, HeavyBall, Nesterov
from batchlab.nqm.checks import check_steps
from batchlab.nqm.schedules import Schedule
from batchlab.nqm.spectrum import Problem

__all__ = ["MonteCarlo", "simulate"]


@dataclasses.dataclass(frozen=True)
class MonteCarlo:
    """Result of :func:`simulate`.

    Attributes:
        steps: the recorded steps.
        mean: mean risk over runs at each step.
        stderr: standard error of that mean.
        paths: risk of every run at every step, shape ``(num_runs, len(steps))``.
    """

    steps: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    paths: np.ndarray


def simulate(problem: Problem, dyn: Dynamics, *, batch_size: float, steps, num_runs: int = 100,
             seed: int = 0, schedule: Schedule | None = None) -> MonteCarlo:
    """Simulate ``num_runs`` independent runs and record the risk ``Σ w ½ h θ²`` at ``steps``.

    Hyperparameters must be scalars here.  Cost ``O(num_runs · d · max(steps))``.

    Example:
        >>> from batchlab.nqm import power_law, sgd
        >>> mc = simulate(power_law(50), sgd(0.5), batch_size=4, steps=[10, 100], num_runs=200, seed=1)
        >>> mc.mean.shape
        (2,)
    """
    if num_runs < 2 or int(num_runs) != num_runs:
        raise InputError(f"num_runs must be an integer >= 2, got {num_runs}")
    if dyn.hp_shape != ():
        raise InputError("simulate takes scalar hyperparameters")
    t_rec = check_steps(steps).reshape(-1)
    rng = np.random.default_rng(seed)
    base = dyn.base if isinstance(dyn, EMA) else dyn
    h, c, w = problem.h, problem.c, problem.weights
    P = h ** (-float(base.precond))
    alpha0 = float(base.learning_rate)
    beta = float(base.momentum) if isinstance(base, HeavyBall) else 0.0
    gamma = float(dyn.decay) if isinstance(dyn, EMA) else None
    theta = rng.standard_normal((num_runs, h.size)) * np.sqrt(problem.s0)
    vel = np.zeros_like(theta)
    avg = theta.copy() if gamma is not None else None
    record = np.empty((num_runs, t_rec.size))
    order = np.argsort(t_rec, kind="stable")
    k = 0
    t_max = int(t_rec.max(initial=0))
    for t in range(t_max + 1):
        while k < order.size and t_rec[order[k]] == t:
            meas = avg if gamma is not None else theta
            record[:, order[k]] = (0.5 * w * h * meas**2).sum(axis=1)
            k += 1
        if t == t_max:
            break
        alpha, B = alpha0, float(batch_size)
        if schedule is not None:
            idx = min(np.searchsorted(schedule.boundaries, t, side="right"), len(schedule.lengths) - 1)
            alpha *= schedule.lr_multipliers[idx]
            B *= schedule.batch_multipliers[idx]
        noise = rng.standard_normal(theta.shape) * np.sqrt(c / B)
        grad = P * (h * theta + noise)
        if isinstance(base, Nesterov):
            vel = grad + beta * vel  # optax trace: m ← g + βm
            theta = theta - alpha * (grad + beta * vel)
        elif isinstance(base, HeavyBall):
            vel = beta * vel - alpha * grad
            theta = theta + vel
        elif isinstance(base, SGD):
            theta = theta - alpha * grad
        if gamma is not None:
            avg = gamma * avg + (1.0 - gamma) * theta
    mean = record.mean(axis=0)
    stderr = record.std(axis=0, ddof=1) / np.sqrt(num_runs)
    return MonteCarlo(steps=t_rec, mean=mean, stderr=stderr, paths=record)
