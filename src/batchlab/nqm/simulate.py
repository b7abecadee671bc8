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
from batchlab.nqm.dynamics import Dynamics
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
    h, c, w = problem.h, problem.c, problem.weights
    P = h ** (-float(dyn.precond))
    alpha0 = float(dyn.learning_rate)
    theta = rng.standard_normal((num_runs, h.size)) * np.sqrt(problem.s0)
    state = dyn.monte_carlo_init(theta)  # the dynamics type's own state and update
    record = np.empty((num_runs, t_rec.size))
    order = np.argsort(t_rec, kind="stable")
    k = 0
    t_max = int(t_rec.max(initial=0))
    for t in range(t_max + 1):
        while k < order.size and t_rec[order[k]] == t:
            meas = dyn.monte_carlo_measured(state)
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
        grad = P * (h * state[0] + noise)
        state = dyn.monte_carlo_step(state, grad, alpha)
    mean = record.mean(axis=0)
    stderr = record.std(axis=0, ddof=1) / np.sqrt(num_runs)
    return MonteCarlo(steps=t_rec, mean=mean, stderr=stderr, paths=record)
