"""Optimizers: one module each (optax pieces or kfac-jax), a registry, schedules and weight EMA.

Typical use (what :func:`batchlab.train.train` does internally)::

    spec = get_optimizer("momentum+ema")
    prepared = prepare(spec, {"learning_rate": 0.1, "momentum": 0.9})   # validates
    stepper = bind(prepared, workload)                                  # pure init/step
    state = stepper.init(params, prepared.arrays(max_steps=1000), batch=batch, key=key)
    params, state, loss = jax.jit(stepper.step)(params, state, batch, key=key)
"""

from batchlab.optim.base import Hyperparameter, Interval, OptimizerSpec, Stepper, validate
from batchlab.optim.ema import EmaState, averaged_params, with_ema
from batchlab.optim.prepare import Prepared, bind, prepare
from batchlab.optim.registry import EMA_SUFFIX, get_optimizer, optimizer_names
from batchlab.optim.schedules import SCHEDULES, learning_rate_factor

__all__ = [
    "EMA_SUFFIX",
    "EmaState",
    "Hyperparameter",
    "Interval",
    "OptimizerSpec",
    "Prepared",
    "SCHEDULES",
    "Stepper",
    "averaged_params",
    "bind",
    "get_optimizer",
    "learning_rate_factor",
    "optimizer_names",
    "prepare",
    "validate",
    "with_ema",
]
