"""Learning-rate schedules shared by every optimizer, as ordinary hyperparameters.

The learning rate at update ``t = 0, 1, …`` (``t`` updates already done) is ``α_t = α · w(t) · d(t)``
with the run's step budget ``H`` (``max_steps``), ``W = ⌊warmup_fraction · H⌋`` warmup steps and the
decay end ``D = max(decay_fraction · H, W + 1)``:

* warmup (any schedule): ``w(t) = min(1, (t + 1) / W)`` if ``W > 0``, else 1;
* decay progress ``p(t) = clip((t − W) / (D − W), 0, 1)``;
* ``constant``: ``d = 1``;
* ``linear_decay`` (Shallue et al. 2018): ``d = 1 − (1 − end_factor) · p``, i.e. linear from 1 to
  ``end_factor`` between steps ``W`` and ``D``, then constant;
* ``cosine``: ``d = end_factor + (1 − end_factor) · ½ (1 + cos π p)``.

Fractions of the budget (rather than step counts) keep one search space meaningful for every batch
size.  The schedule's shape (``lr_schedule``) is static; its parameters are traced arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from batchlab.optim.base import HyperArrays
from batchlab.optim.hyperparameters import SCHEDULE_HYPERPARAMETERS, SCHEDULES, unused_by

# The schedule's hyperparameters are declared with the other shared ones (the base needs them too).
__all__ = ["SCHEDULE_HYPERPARAMETERS", "SCHEDULES", "learning_rate_factor", "unused_by"]


def learning_rate_factor(count: jax.Array, hyper: HyperArrays, *, schedule: str) -> jax.Array:
    """The factor ``w(t) · d(t)`` multiplying the base learning rate at update ``count``.

    Args:
        count: number of updates already applied (int or float array).
        hyper: arrays with ``horizon`` (the step budget) and the schedule hyperparameters.
        schedule: one of :data:`SCHEDULES` (static).

    Returns:
        A float32 scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> hyper = dict(horizon=jnp.float32(100), warmup_fraction=jnp.float32(0.0),
        ...              decay_fraction=jnp.float32(1.0), end_factor=jnp.float32(0.0))
        >>> float(learning_rate_factor(jnp.int32(50), hyper, schedule="linear_decay"))
        0.5
    """
    t = jnp.asarray(count, jnp.float32)
    horizon = hyper["horizon"]
    warmup = jnp.floor(hyper["warmup_fraction"] * horizon)
    warm = jnp.where(warmup > 0, jnp.minimum(1.0, (t + 1.0) / jnp.maximum(warmup, 1.0)), 1.0)
    if schedule == "constant":
        return warm
    end = jnp.maximum(hyper["decay_fraction"] * horizon, warmup + 1.0)
    progress = jnp.clip((t - warmup) / (end - warmup), 0.0, 1.0)
    floor = hyper["end_factor"]
    if schedule == "linear_decay":
        decay = 1.0 - (1.0 - floor) * progress
    elif schedule == "cosine":
        decay = floor + (1.0 - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    else:  # validated earlier; keep a clear failure for direct callers
        raise ValueError(f"unknown schedule {schedule!r}")
    return warm * decay

