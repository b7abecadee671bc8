"""Explore boxes centred on a calibrated NQM prediction: the spec's ``[tuning] centre = "calibration"``.

With it, each (optimizer, batch size) cell explores a box around the hyperparameters the calibrated
NQM predicts for that batch size (``prediction.json`` of ``batchlab calibrate``, read by
:func:`batchlab.store.prediction.read_prediction`) instead of the optimizer's whole search box:

* ``learning_rate`` — the predicted rate ``η(B)``, log–log interpolated between the predicted batch
  sizes, gives the box ``[η 10^-w, η 10^w]`` (searched log-uniformly);
* ``momentum`` — the predicted ``β(B)``, interpolated as ``log(1 − β)`` vs ``log B``, gives
  ``1 − β ∈ [(1 − β) 10^-w, (1 − β) 10^w]`` (searched with ``1 − β`` log-uniform);

``w`` is ``centre_width`` (decades).  Each box is intersected with the spec's search box of that
hyperparameter (the optimizer's declared search range unless the spec overrides it), so every
explore trial lies inside the spec's box, whose unit coordinates refinement and the warm start keep
using; its edges are rounded to 12 significant digits (stable ids).  Hyperparameters the prediction
does not cover (other names, a momentum the prediction leaves null) keep the spec's box.

The centred boxes are a pure function of the spec and the prediction file, computed once when the spec
is read: trial ids follow the predicted values (another prediction, other trials), equal in every
executor and on resume.  Refinement, warm start and replication are unchanged.

Which entry of the file an optimizer uses: its own name, else for ``X+ema`` the entry of ``X``.  Its
learning rates must be in the optimizer's own units (``precond`` 0, or ``"units": "optimizer"``; see
:mod:`batchlab.store.prediction`), and every study batch size must lie within its predicted batch
sizes (no extrapolation); the momentum is taken from the same entry, so it too must be in the
optimizer's units.  Anything else is a one-line :class:`~batchlab.errors.InputError`.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from batchlab.errors import InputError
from batchlab.store.prediction import PredictedOptimizer, read_prediction

__all__ = ["CENTRED", "CENTRE_SOURCES", "DEFAULT_WIDTH", "MAX_WIDTH", "Centre", "CentredCell", "centred_bounds",
           "make_centre"]

CENTRE_SOURCES = ("calibration",)
DEFAULT_WIDTH = 0.5  # decades either side of the prediction
MAX_WIDTH = 10.0
# hyperparameter -> the scaling its centred box is symmetric in (log: log η; one_minus_log: log(1 − β))
CENTRED: Mapping[str, str] = {"learning_rate": "log", "momentum": "one_minus_log"}


def _round(value: float) -> float:
    return float(f"{value:.12g}")


def centred_bounds(name: str, value: float, width: float, low: float, high: float) -> tuple[float, float] | None:
    """The centred box of hyperparameter ``name`` (a key of :data:`CENTRED`) around the predicted
    ``value``, ``width`` decades either side, intersected with ``[low, high]``; None when that
    intersection is empty or a single point.

    Example:
        >>> centred_bounds("learning_rate", 0.1, 0.5, 1e-3, 1.0)
        (0.0316227766017, 0.316227766017)
        >>> centred_bounds("momentum", 0.9, 1.0, 0.5, 0.999)
        (0.5, 0.99)
    """
    factor = 10.0 ** width
    if CENTRED[name] == "log":
        box = (value / factor, value * factor)
    else:
        box = (1.0 - (1.0 - value) * factor, 1.0 - (1.0 - value) / factor)
    lo, hi = _round(max(box[0], low)), _round(min(box[1], high))
    return (lo, hi) if lo < hi else None


@dataclasses.dataclass(frozen=True)
class CentredCell:
    """One cell's explore box.

    Attributes:
        optimizer: the study optimizer's name; ``batch_size``: the cell's.
        predicted: ``(hyperparameter, predicted value at this batch size)`` for the centred ones.
        search: the explore dimensions: the spec's, with the centred ones' ranges replaced.
    """

    optimizer: str
    batch_size: int
    predicted: tuple[tuple[str, float], ...]
    search: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Centre:
    """Every cell's centred explore box, from one prediction file.

    Attributes:
        calibration: the prediction file's absolute path.
        sha256: the SHA-256 of its bytes.
        width: ``centre_width`` in decades.
        cells: one :class:`CentredCell` per (optimizer, batch size).
    """

    calibration: str
    sha256: str
    width: float
    cells: tuple[CentredCell, ...]

    def search(self, optimizer: str, batch_size: int) -> tuple[Any, ...] | None:
        """The explore dimensions of a cell (None: not centred)."""
        for cell in self.cells:
            if cell.optimizer == optimizer and cell.batch_size == batch_size:
                return cell.search
        return None

    def to_dict(self) -> dict[str, Any]:
        """What decides the trials (stored with the spec, compared when resuming): source, width and
        every centred box; the file's path and hash are in :meth:`provenance`."""
        cells = []
        for cell in self.cells:
            centred = dict(cell.predicted)
            cells.append({"optimizer": cell.optimizer, "batch_size": cell.batch_size, "predicted": centred,
                          "search": [dataclasses.asdict(d) for d in cell.search if d.name in centred]})
        return {"source": "calibration", "width": self.width, "cells": cells}

    def provenance(self) -> dict[str, str]:
        return {"path": self.calibration, "sha256": self.sha256}


def _predicted(entry: PredictedOptimizer, optimizer: str, batch_size: int, names: set[str],
               where: str) -> dict[str, float]:
    """The predicted values at ``batch_size`` of the centred hyperparameters among ``names``."""
    out = {}
    if "learning_rate" in names:
        rate = entry.learning_rate_at(batch_size)
        if not math.isfinite(rate):
            known = entry.batch_sizes[~_nan(entry.learning_rates)]
            span = f"[{known.min():g}, {known.max():g}]" if known.size else "none"
            raise InputError(f"{where}: batch size {batch_size} of {optimizer} lies outside the batch sizes with a "
                             f"predicted learning rate in {entry.name!r} ({span}); recalibrate with the study's "
                             "batch sizes")
        out["learning_rate"] = rate
    if "momentum" in names:
        momentum = entry.momentum_at(batch_size)
        if math.isfinite(momentum):
            out["momentum"] = momentum
        elif not _nan(entry.momenta).all():
            raise InputError(f"{where}: batch size {batch_size} of {optimizer} lies outside the batch sizes with a "
                             f"predicted momentum in {entry.name!r}")
    return out


def _nan(values: Any) -> Any:
    return ~np.isfinite(values)


def make_centre(path: str | pathlib.Path, width: float, optimizers: Sequence[tuple[str, Sequence[Any]]],
                batch_sizes: Sequence[int], *, where: str = "tuning.calibration") -> Centre:
    """The centred explore box of every cell.

    Args:
        path: the prediction file (absolute, or relative to the working directory).
        width: half-width in decades, in ``(0, MAX_WIDTH]``.
        optimizers: ``(name, search dimensions)`` per study optimizer (dimensions: frozen dataclasses
            with ``name``, ``low``, ``high``, ``scaling``, e.g. :class:`batchlab.study.spec.SearchDim`).
        batch_sizes: the study's batch sizes.
        where: the spec key named in messages.

    Raises:
        InputError: a missing, unreadable or malformed file, an optimizer it lacks or predicts in a
            proxy's units, a batch size outside its predicted ones, or a box outside the search box.
    """
    if not (math.isfinite(width) and 0.0 < width <= MAX_WIDTH):
        raise InputError(f"tuning.centre_width must be in (0, {MAX_WIDTH:g}] decades, got {width:g}")
    try:
        file = read_prediction(path)
    except InputError as error:
        raise InputError(f"{where}: {error}") from None
    cells = []
    for name, search in optimizers:
        entry = file.entry_for(name)
        if entry is None:
            raise InputError(f"{where}: {file.path} has no prediction for optimizer {name!r} "
                             f"(it has: {', '.join(file.optimizers) or 'none'})")
        names = {d.name for d in search if d.name in CENTRED}
        if names and not entry.optimizer_units:
            raise InputError(f"{where}: the predicted hyperparameters of {entry.name!r} in {file.path} are in a "
                             f"proxy's units ({entry.units_note()}), not {name}'s; centring needs rates in the "
                             'optimizer\'s own units (precond 0 or "units": "optimizer")')
        if "learning_rate" in names and _nan(entry.learning_rates).all():
            raise InputError(f"{where}: {file.path} gives no learning_rates for {entry.name!r}")
        for size in batch_sizes:
            predicted = _predicted(entry, name, size, names, where)
            dims = []
            for dim in search:
                if dim.name not in predicted:
                    dims.append(dim)
                    continue
                bounds = centred_bounds(dim.name, predicted[dim.name], width, dim.low, dim.high)
                if bounds is None:
                    raise InputError(f"{where}: the predicted {dim.name} of {name} at batch size {size} "
                                     f"({predicted[dim.name]:.4g}) ± {width:g} decades misses the search box "
                                     f"[{dim.low:g}, {dim.high:g}]; widen optimizers.{name}.search.{dim.name} "
                                     "or tuning.centre_width")
                dims.append(dataclasses.replace(dim, low=bounds[0], high=bounds[1], scaling=CENTRED[dim.name]))
            cells.append(CentredCell(name, int(size), tuple((k, _round(v)) for k, v in predicted.items()),
                                     tuple(dims)))
    return Centre(str(file.path), file.sha256, float(width), tuple(cells))
