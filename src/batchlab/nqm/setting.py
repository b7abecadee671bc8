"""One NQM setting — problem, dynamics, batch size — validated once, its per-direction systems built once.

The solvers pass a :class:`Setting` down instead of the triple: everything that needs the systems
(stability, the closed-form steady state, the certificate's envelope) reads :attr:`Setting.system`,
which is built on first use and kept.

Example:
    >>> from batchlab.nqm import power_law, sgd
    >>> s = Setting(power_law(100), sgd(0.5), 64.0)
    >>> bool(s.stable)
    True
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from batchlab.nqm.dynamics import Dynamics, System, build_system
from batchlab.nqm.spectrum import Problem

__all__ = ["Setting"]


@dataclasses.dataclass(frozen=True, eq=False)
class Setting:
    """``problem``, ``dyn`` and ``batch_size`` (scalar or broadcasting with the hyperparameters)."""

    problem: Problem
    dyn: Dynamics
    batch_size: float | np.ndarray

    @functools.cached_property
    def system(self) -> System:
        """The per-direction systems (:func:`~batchlab.nqm.dynamics.build_system`), built once."""
        return build_system(self.problem, self.dyn, self.batch_size)

    @property
    def stable(self) -> np.ndarray:
        """Whether every direction is strictly inside the stability region (per hyperparameter setting)."""
        return np.all(self.system.x < self.system.limit, axis=-1)
