"""Schedule-free AdamW (Defazio et al. 2024, "The Road Less Scheduled"), evaluated at its average.

Schedule-free keeps three sequences: the base iterate ``z`` (AdamW without momentum steps it), the
average ``x`` (where the model is *evaluated*) and the interpolation ``y`` (where the gradient is
taken).  With the scheduled learning rate ``α_t`` (warmup only, typically; any batchlab schedule is
accepted), ``k = t + 1`` and the decay ``λ`` applied to the weight tensors (rank ≥ 2)::

    y  = β₁ x + (1 − β₁) z
    g  = ∇L(y)
    s' = β₂ s + (1 − β₂) g²
    z' = z − α_t ( g / (√(s' / (1 − β₂ᵏ)) + ε) + λ y )
    a' = max(a, α_t),  w = a'^p,  W' = W + w,  c = w / W'      (p = ``weight_lr_power`` = 2)
    x' = (1 − c) x + c z'

from ``x = y = z = θ(0)``, ``a = W = 0``; ``c = 0`` while ``W' = 0``.  This is optax's
``contrib.schedule_free_adamw`` exactly (the tests compare the two), arranged differently:

**batchlab's parameters are x.**  optax carries ``y`` as the parameters and recovers the evaluation
point with ``schedule_free_eval_params(state, y) = (y − (1 − β₁) z) / β₁``.  Here the stepper
carries ``x`` and forms ``y`` from ``(x, z)`` inside the step, so that everything that reads the
parameters sees the evaluation point: :attr:`~batchlab.optim.base.Stepper.evaluation_params` is the
identity, the ``"+ema"`` wrapper (:mod:`batchlab.optim.ema`), which averages the parameters a step
returns, averages ``x``, and so do extra EMA decays tracked as side results.  No division by ``β₁``
is needed, so ``β₁ = 0`` (``y = z``: primal averaging) is valid.  :func:`training_params` gives ``y``.

Default search space: learning rate, ``1 − β₁`` and ``λ`` log-uniform; ``β₂``, ``ε`` fixed.

Defaults on digits-cnn (target error ≤ 0.025, seeds 0 and 1): the target after 52, 67 steps at
B = 64 and 38, 40 at B = 1024; with ``+ema`` (decay 0.99) after 168, 133 and 134, 161.

Example:
    >>> from batchlab.optim import get_optimizer
    >>> get_optimizer("schedule-free-adamw").validate({})["beta1"]
    0.9
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from batchlab.optim.base import HyperArrays, Model, OptimizerSpec, Stepper
from batchlab.optim.decay import weight_decay, weight_tensors
from batchlab.optim.gradient import GradientState, learning_rate
from batchlab.optim.hyperparameters import BETA2, beta1, epsilon
from batchlab.optim.schedules import SCHEDULE_HYPERPARAMETERS, learning_rate_factor

__all__ = ["HYPERPARAMETERS", "SPEC", "ScheduleFreeState", "base_transform", "training_params"]

WEIGHT_LR_POWER = 2.0  # optax's and the paper's default: early (small, warming-up) rates count less

HYPERPARAMETERS = (
    learning_rate(2.5e-3, (1e-5, 1e-1)),
    beta1("interpolation β₁: gradients are taken at y = β₁ x + (1 − β₁) z"),
    BETA2,
    epsilon(1e-8, (1e-10, 1e-3)),
    weight_decay(1e-4, (1e-6, 1.0)),
)


class ScheduleFreeState(NamedTuple):
    """The schedule-free part of the state (the parameters themselves are ``x``).

    Attributes:
        z: the base iterate (a parameter tree).
        max_rate: the largest learning rate so far, ``a``.
        weight_sum: the sum ``W`` of the averaging weights ``a^p``.
        base: the state of :func:`base_transform`.
    """

    z: Any
    max_rate: jax.Array
    weight_sum: jax.Array
    base: Any


def base_transform(hyper: HyperArrays) -> optax.GradientTransformation:
    """The step of ``z``: AdamW without momentum (RMS scaling with bias correction), decay, ``−α_t``.

    The same chain as optax's ``contrib.schedule_free_adamw``.
    """
    return optax.chain(
        optax.scale_by_rms(decay=hyper["beta2"], eps=hyper["epsilon"], eps_in_sqrt=False, bias_correction=True),
        optax.add_decayed_weights(hyper["weight_decay"], mask=weight_tensors),
        optax.scale_by_learning_rate(hyper["learning_rate"]),
    )


def _interpolate(beta: jax.Array, x: Any, z: Any) -> Any:
    return jax.tree.map(lambda xi, zi: beta * xi + (1 - beta) * zi, x, z)


def training_params(params: Any, state: GradientState) -> Any:
    """The gradient point ``y = β₁ x + (1 − β₁) z`` of the next step (``params`` are ``x``)."""
    return _interpolate(state.hyper["beta1"], params, state.inner.z)


def _stepper(model: Model, *, schedule: str) -> Stepper:
    def init(params, hyper: HyperArrays, *, batch=None, key=None) -> GradientState:
        del batch, key
        hyper = {name: jnp.asarray(value, jnp.float32) for name, value in hyper.items()}
        # distinct arrays (z a copy of x, two zeros): the training loop donates the whole state
        inner = ScheduleFreeState(
            jax.tree.map(jnp.copy, params), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32),
            base_transform(hyper).init(params),
        )
        return GradientState(jnp.zeros((), jnp.int32), hyper, inner)

    def step(params, state: GradientState, batch, *, key=None):
        del key
        hyper, inner = state.hyper, state.inner
        y = training_params(params, state)
        loss, grads = jax.value_and_grad(model.loss)(y, batch)
        rate = hyper["learning_rate"] * learning_rate_factor(state.count, hyper, schedule=schedule)
        updates, base = base_transform({**hyper, "learning_rate": rate}).update(grads, inner.base, y)
        z = optax.apply_updates(inner.z, updates)
        max_rate = jnp.maximum(inner.max_rate, rate)
        weight = max_rate**WEIGHT_LR_POWER
        weight_sum = inner.weight_sum + weight
        c = jnp.where(weight_sum > 0, weight / jnp.where(weight_sum > 0, weight_sum, 1.0), 0.0)
        x = jax.tree.map(lambda xi, zi: ((1 - c) * xi + c * zi).astype(xi.dtype), params, z)
        state = GradientState(state.count + 1, hyper, ScheduleFreeState(z, max_rate, weight_sum, base))
        return x, state, loss

    return Stepper(init=init, step=step, evaluation_params=lambda params, state: params)


def _bind(model: Model, static: tuple[tuple[str, str], ...]) -> Stepper:
    return _stepper(model, schedule=dict(static)["lr_schedule"])


SPEC = OptimizerSpec(
    name="schedule-free-adamw",
    hyperparameters=HYPERPARAMETERS + SCHEDULE_HYPERPARAMETERS,
    bind=_bind,
    description="schedule-free AdamW, evaluated at its average x",
)
