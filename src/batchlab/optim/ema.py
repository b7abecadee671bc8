"""Exponential moving average (EMA) of the weights, as a wrapper over any optimizer.

For each tracked decay ``γ_k`` (the NQM engine's convention, no zero-initialisation bias)::

    θ̃_k(0) = θ(0),        θ̃_k' = γ_k θ̃_k + (1 − γ_k) θ'

where ``θ'`` are the parameters after the wrapped optimizer's update.  Starting the average at
``θ(0)`` instead of 0 means no bias correction is needed (a zero-initialised average divided by
``1 − γᵏ`` is a different estimator; we use the NQM's).  Evaluation of an ``"<name>+ema"`` optimizer
uses ``θ̃_0`` (decay ``ema_decay``).  Several decays are tracked in one run — the averages are
stacked on a leading axis — so a single run answers "which EMA decay" for all of them.

Example:
    >>> from batchlab.optim import get_optimizer
    >>> spec = get_optimizer("momentum+ema")
    >>> spec.validate({"ema_decay": 0.999})["ema_decay"]
    0.999
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from batchlab.optim.base import HyperArrays, Model, OptimizerSpec, Stepper
from batchlab.optim.hyperparameters import EMA_DECAY

__all__ = ["EMA_DECAY", "EmaState", "averaged_params", "with_ema", "ema_spec"]


class EmaState(NamedTuple):
    """State of :func:`with_ema`.

    Attributes:
        inner: the wrapped optimizer's state.
        decays: the tracked decays ``γ_k``, shape ``(K,)``.
        averages: the averages ``θ̃_k``: the parameters' tree with a leading axis of size ``K``.
    """

    inner: Any
    decays: jax.Array
    averages: Any


def averaged_params(state: EmaState, index: int) -> Any:
    """The average ``θ̃_index`` (a parameter tree)."""
    return jax.tree.map(lambda a: a[index], state.averages)


def with_ema(stepper: Stepper, *, evaluate_average: bool) -> Stepper:
    """Track weight averages for the decays in ``hyper["ema_decays"]`` (shape ``(K,)``).

    Args:
        stepper: the optimizer to wrap.
        evaluate_average: evaluate ``θ̃_0`` (``True``, ``"+ema"`` optimizers) or the raw parameters
            (``False``: averages tracked only as side results).

    Returns:
        A :class:`~batchlab.optim.base.Stepper` whose state is an :class:`EmaState`.
    """

    def init(params, hyper: HyperArrays, *, batch=None, key=None) -> EmaState:
        decays = jnp.asarray(hyper["ema_decays"], jnp.float32).reshape(-1)
        inner_hyper = {k: v for k, v in hyper.items() if k != "ema_decays"}
        averages = jax.tree.map(
            lambda p: jnp.broadcast_to(p, (decays.shape[0],) + p.shape).copy(), params
        )
        return EmaState(stepper.init(params, inner_hyper, batch=batch, key=key), decays, averages)

    def step(params, state: EmaState, batch, *, key=None):
        params, inner, loss = stepper.step(params, state.inner, batch, key=key)

        def average(avg, p):
            gamma = state.decays.reshape((-1,) + (1,) * p.ndim).astype(avg.dtype)
            return gamma * avg + (1 - gamma) * p[None]

        averages = jax.tree.map(average, state.averages, params)
        return params, EmaState(inner, state.decays, averages), loss

    def evaluation_params(params, state: EmaState):
        if evaluate_average:
            return averaged_params(state, 0)
        return stepper.evaluation_params(params, state.inner)

    return Stepper(init, step, evaluation_params, traces_model=stepper.traces_model)


def ema_spec(base: OptimizerSpec) -> OptimizerSpec:
    """The ``"<base>+ema"`` registry entry: ``base`` plus a tuned ``ema_decay``, evaluated on θ̃."""

    def bind(model: Model, static: tuple[tuple[str, str], ...]) -> Stepper:
        return with_ema(base.bind(model, static), evaluate_average=True)

    return dataclasses.replace(
        base,
        name=f"{base.name}+ema",
        hyperparameters=base.hyperparameters + (EMA_DECAY,),
        bind=bind,
        description=f"{base.description}, evaluated on an EMA of the weights",
        ema=True,
    )
