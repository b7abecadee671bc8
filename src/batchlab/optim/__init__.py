"""Optimizers: one module each (optax pieces or kfac-jax), a registry, schedules and weight EMA.

For studies::

    spec = get_optimizer("momentum+ema")             # registry entry (InputError if unknown)
    space = spec.search_space({"lr_schedule": "linear_decay"})   # tunable Hyperparameters
    values = {hp.name: hp.from_unit(u) for hp, u in zip(space, point)}   # a quasi-random point
    spec.validate(values)                            # fills defaults; InputError lists valid names

and :func:`batchlab.train.train` does the rest.  Numeric hyperparameters are stored as float32
arrays in the optimizer state, so one compiled step serves every trial that agrees in the choice
hyperparameters (strings such as ``lr_schedule``).  Lower level (what ``train`` does)::

    prepared = prepare(spec, {"learning_rate": 0.1, "momentum": 0.9})
    stepper = bind(prepared, workload)                                  # pure init/step
    state = stepper.init(params, prepared.arrays(max_steps=1000), batch=batch, key=key)
    params, state, loss = jax.jit(stepper.step)(params, state, batch, key=key)
"""

from batchlab.optim.base import OptimizerSpec, Stepper
from batchlab.optim.ema import EmaState, averaged_params, with_ema
from batchlab.optim.gradient import gradient_spec
from batchlab.optim.hyperparameters import Hyperparameter, Interval, validate
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
    "gradient_spec",
    "learning_rate_factor",
    "optimizer_names",
    "prepare",
    "validate",
    "with_ema",
]
