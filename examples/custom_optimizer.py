"""A user-defined optimizer: SGD with heavy-ball momentum and gradient clipping, from optax pieces.

Use it anywhere an optimizer name is accepted (add ``+ema`` for its weight-EMA variant), e.g.::

    batchlab train --workload digits-cnn --optimizer examples/custom_optimizer.py:my_optimizer --batch-size 64

An optimizer is an ``OptimizerSpec``.  ``gradient_spec`` builds one from an optax factory and declared
hyperparameters (name, default, search scaling, search range, valid interval, description); it adds
the learning-rate schedule's hyperparameters.  The factory receives the hyperparameters as float32
arrays (``hyper["learning_rate"]`` already scheduled), so one compiled step serves every trial.
"""

from __future__ import annotations

import optax

from batchlab.optim import gradient_spec
from batchlab.optim.hyperparameters import MOMENTUM, POSITIVE, Hyperparameter, learning_rate

HYPERPARAMETERS = (
    learning_rate(0.1, (1e-3, 1.0)),
    MOMENTUM,  # momentum 0.9, searched with 1 − momentum log-uniform
    Hyperparameter("clip_norm", 1.0, "log", (0.1, 10.0), POSITIVE, "largest global gradient norm (> 0)"),
)


def transform(hyper) -> optax.GradientTransformation:
    """Clip the gradient's global norm, heavy-ball momentum, then ``−α_t``."""
    return optax.chain(
        optax.clip_by_global_norm(hyper["clip_norm"]),
        optax.trace(decay=hyper["momentum"]),
        optax.scale(-hyper["learning_rate"]),
    )


my_optimizer = gradient_spec("clipped-momentum", HYPERPARAMETERS, transform, "clipped heavy-ball SGD")
