"""First-order optimizers from optax pieces: the shared state, step and registry-entry builder.

A first-order optimizer module only supplies ``transform(hyper) -> optax.GradientTransformation``,
built from the hyperparameter arrays with ``hyper["learning_rate"]`` already multiplied by the
schedule factor of the current step (see :mod:`batchlab.optim.schedules`).  Everything else — the
gradient, the schedule, keeping hyperparameters in the state — lives here, once.

The step, with ``α_t = learning_rate · factor(t)``::

    loss, g = value_and_grad(model.loss)(θ, batch)
    u, inner' = transform(hyper with learning_rate = α_t).update(g, inner, θ)
    θ' = θ + u
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from batchlab.optim.base import HyperArrays, Model, OptimizerSpec, Stepper
from batchlab.optim.hyperparameters import SCHEDULE_HYPERPARAMETERS, Hyperparameter, learning_rate
from batchlab.optim.schedules import learning_rate_factor

__all__ = ["GradientState", "gradient_stepper", "gradient_spec", "learning_rate"]

TransformFactory = Callable[[HyperArrays], optax.GradientTransformation]


class GradientState(NamedTuple):
    """State of a first-order optimizer.

    Attributes:
        count: updates applied so far (int32).
        hyper: hyperparameter arrays (float32 scalars), read by every step.
        inner: the optax transformation's own state.
    """

    count: jax.Array
    hyper: dict[str, jax.Array]
    inner: Any


def gradient_stepper(model: Model, transform: TransformFactory, *, schedule: str) -> Stepper:
    """Bind a first-order optimizer to ``model``.

    Args:
        model: provides ``loss(params, batch)``.
        transform: the optimizer's optax factory (see module docstring).
        schedule: the static learning-rate schedule shape.

    Returns:
        A :class:`~batchlab.optim.base.Stepper`.
    """

    def init(params, hyper: HyperArrays, *, batch=None, key=None) -> GradientState:
        del batch, key
        hyper = {name: jnp.asarray(value, jnp.float32) for name, value in hyper.items()}
        return GradientState(jnp.zeros((), jnp.int32), hyper, transform(hyper).init(params))

    def step(params, state: GradientState, batch, *, key=None):
        del key
        loss, grads = jax.value_and_grad(model.loss)(params, batch)
        rate = state.hyper["learning_rate"] * learning_rate_factor(
            state.count, state.hyper, schedule=schedule
        )
        updates, inner = transform({**state.hyper, "learning_rate": rate}).update(
            grads, state.inner, params
        )
        params = optax.apply_updates(params, updates)
        return params, GradientState(state.count + 1, state.hyper, inner), loss

    return Stepper(init=init, step=step, evaluation_params=lambda params, state: params)


def gradient_spec(
    name: str,
    hyperparameters: tuple[Hyperparameter, ...],
    transform: TransformFactory,
    description: str,
) -> OptimizerSpec:
    """The registry entry of a first-order optimizer (its hyperparameters + the schedule's)."""

    def bind(model: Model, static: tuple[tuple[str, str], ...]) -> Stepper:
        return gradient_stepper(model, transform, schedule=dict(static)["lr_schedule"])

    return OptimizerSpec(
        name=name,
        hyperparameters=tuple(hyperparameters) + SCHEDULE_HYPERPARAMETERS,
        bind=bind,
        description=description,
    )
