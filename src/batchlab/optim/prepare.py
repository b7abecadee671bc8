"""From a name and a hyperparameter dict to what a training step needs.

:func:`prepare` validates hyperparameters once, in Python, and splits them into the *static* part
(choice hyperparameters: they select compiled code) and the *traced* part (float32 arrays stored in
the optimizer state).  :func:`bind` turns the static part and a model into a
:class:`~batchlab.optim.base.Stepper`.  Two trials whose :attr:`Prepared.static` and EMA count agree
can share one compiled step.

Example:
    >>> from batchlab.optim import get_optimizer, prepare
    >>> p = prepare(get_optimizer("momentum+ema"), {"learning_rate": 0.1}, extra_ema_decays=(0.9,))
    >>> p.static, p.ema_decays
    ((('lr_schedule', 'constant'),), (0.99, 0.9))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from batchlab.errors import InputError
from batchlab.optim.base import Model, OptimizerSpec, Stepper
from batchlab.optim.ema import with_ema
from batchlab.optim.hyperparameters import UNIT_OPEN_RIGHT

__all__ = ["Prepared", "prepare", "bind"]


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Validated hyperparameters of one trial.

    Attributes:
        spec: the optimizer.
        values: every hyperparameter (defaults filled in), as ``float`` or ``str``.
        static: sorted ``(name, value)`` pairs of the choice hyperparameters.
        ema_decays: decays of the tracked weight averages: ``ema_decay`` first for ``+ema``
            optimizers, then the extra ones; empty when nothing is averaged.
    """

    spec: OptimizerSpec
    values: Mapping[str, float | str]
    static: tuple[tuple[str, str], ...]
    ema_decays: tuple[float, ...]

    def arrays(self, *, max_steps: int) -> dict[str, jax.Array]:
        """The traced hyperparameters: numeric values, ``horizon`` and ``ema_decays`` as float32."""
        out = {k: jnp.float32(v) for k, v in self.values.items() if not isinstance(v, str)}
        out.pop("ema_decay", None)
        out["horizon"] = jnp.float32(max_steps)
        if self.ema_decays:
            out["ema_decays"] = jnp.asarray(self.ema_decays, jnp.float32)
        return out


def prepare(
    spec: OptimizerSpec, values: Mapping[str, Any], *, extra_ema_decays: tuple[float, ...] = ()
) -> Prepared:
    """Validate ``values`` for ``spec`` and split static from traced hyperparameters.

    Args:
        spec: the optimizer's registry entry.
        values: hyperparameter name → value (partial; defaults fill the rest).
        extra_ema_decays: further EMA decays to track as side results (any optimizer).

    Returns:
        A :class:`Prepared`.

    Raises:
        InputError: unknown names, out-of-range values, or an invalid extra decay.
    """
    full = spec.validate(values)
    for decay in extra_ema_decays:
        if not UNIT_OPEN_RIGHT.contains(float(decay)):
            raise InputError(f"EMA decays must be in {UNIT_OPEN_RIGHT}, got {decay:g}")
    static = tuple(sorted((k, v) for k, v in full.items() if isinstance(v, str)))
    primary = (float(full["ema_decay"]),) if spec.ema else ()
    decays = primary + tuple(float(d) for d in extra_ema_decays)
    return Prepared(spec, full, static, decays)


def bind(prepared: Prepared, model: Model) -> Stepper:
    """The :class:`~batchlab.optim.base.Stepper` for ``prepared`` on ``model``.

    ``+ema`` optimizers evaluate their first average; other optimizers with extra decays evaluate
    the raw parameters and carry the averages as side results.
    """
    stepper = prepared.spec.bind(model, prepared.static)
    if prepared.ema_decays and not prepared.spec.ema:
        stepper = with_ema(stepper, evaluate_average=False)
    return stepper
