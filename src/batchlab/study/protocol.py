"""The tuning protocol of one (optimizer, batch size) cell: explore, refine, replicate.

Pure functions of the spec's :class:`Tuning` and of *finished* results, so that every phase is the
same whatever the order of execution, the worker count or an interruption (resuming re-derives the
same trials from the store).

1. **Explore** — ``explore`` points of the cell's scrambled quasi-random sequence over the whole
   search box, in ``rounds`` rounds (trial ``i`` is in round ``⌊i · rounds / explore⌋``).
2. **Refine** — once every explore trial of *every* cell of the optimizer has finished: ``refine``
   quasi-random points in a box of half-width ``refine_width`` (unit coordinates, clipped to the
   search box) around the cell's best explore trial, and — with ``warm_start`` — around a second
   centre from the neighbouring batch sizes (see :func:`warm_centre`); points alternate between the
   centres.  A cell where no trial reached the target is not refined.
3. **Replicate** — once the cell's explore and refine trials have finished: its ``candidates``
   best configurations (fewest steps to target; ties by phase then index) are each rerun with
   ``seeds`` fresh training seeds.  The cell's answer is the median over those seeds of the best
   candidate (:mod:`batchlab.analysis.uncertainty`); the runs that selected a candidate are not
   among its seeds, so the answer carries no winner's curse from the selection.

**Pruning** stays exact and order-free: a trial of round ``r`` stops once it has run as many steps
as the best steps to target of its cell's trials in rounds ``< r`` (explore rounds, then refine as
the last round) without reaching the target.  Replicates are never pruned (they stop at the target).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from batchlab.checks import check_at_least
from batchlab.errors import InputError

__all__ = ["Tuning", "Result", "best", "bound_for", "distinct_centres", "explore_round", "fallback_candidates",
           "refine_round", "refine_units", "replicate_candidates", "replicate_round", "warm_centre"]


@dataclasses.dataclass(frozen=True)
class Tuning:
    """A cell's tuning budget (the spec's ``[tuning]`` table).

    Attributes:
        explore: quasi-random trials over the whole search box (``>= 1``).
        rounds: explore rounds (pruning bounds come from earlier rounds only), ``1 … explore``.
        refine: trials around the incumbents (``0`` turns refinement off).
        refine_width: half-width of the refinement box in unit coordinates, ``(0, 0.5]``.
        warm_start: also refine around the centre predicted from neighbouring batch sizes.
        candidates: configurations replicated per cell (``0`` turns replication off).
        seeds: fresh training seeds per replicated configuration (``>= 3`` when replicating).
        prune_slack: a pruned trial stops once it can no longer reach the target within
            ``prune_slack`` × the cell's incumbent steps (``>= 1``; 1: within the incumbent's).  The
            incumbent is one seed's luck (calibration-digits, momentum at B = 1024: explore's incumbent
            reached in 25 steps, all 4 refine trials were pruned at 25, its 5 replicates took 31-86
            steps, median 75); a slack lets configurations within seed noise of it finish, so that
            with ``candidates >= 2`` the runners-up can be replicated and the bootstrap sees their
            steps.  It never changes the best single trial, so with ``candidates = 1`` the replicated
            configuration is the same (measured: results/protocol-digits/).
    """

    explore: int = 6
    rounds: int = 2
    refine: int = 0
    refine_width: float = 0.15
    warm_start: bool = True
    candidates: int = 0
    seeds: int = 3
    prune_slack: float = 1.0
    fallback: int = 0

    def __post_init__(self) -> None:
        check_at_least(self.explore, "tuning.explore", 1)
        if not 1 <= self.rounds <= self.explore:
            raise InputError(f"tuning.rounds must be in [1, explore = {self.explore}], got {self.rounds}")
        check_at_least(self.refine, "tuning.refine", 0)
        if not (0.0 < self.refine_width <= 0.5):
            raise InputError(f"tuning.refine_width must be in (0, 0.5], got {self.refine_width}")
        check_at_least(self.candidates, "tuning.candidates", 0)
        if not (math.isfinite(self.prune_slack) and 1.0 <= self.prune_slack <= 10.0):
            raise InputError(f"tuning.prune_slack must be in [1, 10], got {self.prune_slack}")
        if not 0 <= self.fallback <= 10:
            raise InputError(f"tuning.fallback must be in [0, 10], got {self.fallback}")
        if self.fallback and not self.candidates:
            raise InputError("tuning.fallback needs tuning.candidates (it replicates more of them)")
        if self.candidates and self.seeds < 3:
            raise InputError(f"tuning.seeds must be >= 3 to replicate (a median needs 3), got {self.seeds}")

    @property
    def replicated(self) -> bool:
        return self.candidates > 0

    def trials_per_cell(self) -> int:
        """Most trials a cell can take (explore + refine + candidates × seeds × (1 + fallback))."""
        return self.explore + self.refine + self.candidates * self.seeds * (1 + self.fallback)


@dataclasses.dataclass(frozen=True)
class Result:
    """A finished explore or refine trial as the protocol sees it.

    Attributes:
        unit: the hyperparameters in unit coordinates of the search box.
        steps: steps to target (``inf`` if not reached: budget, diverged or pruned).
        round: its pruning round (explore rounds, then :func:`refine_round`).
        index: position within its phase (tie-breaker).
        key: an identifier the caller uses (e.g. the trial id).
    """

    unit: tuple[float, ...]
    steps: float
    round: int
    index: int
    key: str = ""


def explore_round(tuning: Tuning, index: int) -> int:
    """The pruning round of explore trial ``index``."""
    return index * tuning.rounds // tuning.explore


def refine_round(tuning: Tuning) -> int:
    """The refinement phase's pruning round (after every explore round)."""
    return tuning.rounds


def replicate_round(tuning: Tuning, fallback: int = 0) -> int:
    """The pruning round of the replicates (``fallback = 0``) or of fallback round ``fallback``."""
    return refine_round(tuning) + 1 + fallback


def bound_for(results: Sequence[Result], round_: int, slack: float = 1.0) -> int | None:
    """Pruning bound of a trial in ``round_``: the best steps of the cell's results of earlier rounds,
    times ``slack`` (rounded up)."""
    earlier = [r.steps for r in results if r.round < round_ and math.isfinite(r.steps)]
    if not earlier:
        return None
    return int(min(earlier)) if slack == 1.0 else int(math.ceil(min(earlier) * slack))


def _ranked(results: Sequence[Result]) -> list[Result]:
    return sorted((r for r in results if math.isfinite(r.steps)), key=lambda r: (r.steps, r.round, r.index))


def best(results: Sequence[Result]) -> Result | None:
    """The cell's best result (fewest steps; ties: earlier round, then index), None if none reached."""
    ranked = _ranked(results)
    return ranked[0] if ranked else None


def replicate_candidates(results: Sequence[Result], count: int) -> list[Result]:
    """The ``count`` best reached results (fewer if fewer reached), best first, distinct configurations."""
    chosen: list[Result] = []
    for result in _ranked(results):
        if all(result.unit != c.unit for c in chosen):
            chosen.append(result)
        if len(chosen) == count:
            break
    return chosen


def fallback_candidates(results: Sequence[Result], replicated: Mapping[str, Sequence[float]],
                        count: int) -> list[Result]:
    """The next configurations to replicate when every replicated one failed, best first.

    Args:
        results: the cell's finished search results (explore and refine).
        replicated: per replicated search result (its ``key``), its seeds' steps (``inf``: not reached).
        count: how many to pick (the spec's ``candidates``).

    Returns:
        ``[]`` if nothing was replicated or some replicated candidate's median over its seeds is finite
        (it reached on at least half of them; an even count takes the mean of the middle two);
        otherwise the ``count`` best reached results whose configurations differ from every
        replicated one and from each other (fewer if fewer remain).
    """
    if not replicated or any(math.isfinite(float(np.median(np.asarray(s, dtype=np.float64))))
                             for s in replicated.values() if len(s)):
        return []
    done = {r.unit for r in results if r.key in replicated}
    chosen: list[Result] = []
    for result in _ranked(results):
        if result.unit not in done and all(result.unit != c.unit for c in chosen):
            chosen.append(result)
        if len(chosen) == count:
            break
    return chosen


def warm_centre(batch_sizes: Sequence[int], best_units: Sequence[tuple[float, ...] | None], k: int,
                rate_axis: int | None, rate_span: float | None) -> tuple[float, ...] | None:
    """A refinement centre for cell ``k`` predicted from its neighbours' best configurations.

    Below the critical batch size the optimal learning rate grows about linearly with ``B``, above
    it stays flat (the NQM's prediction), so from a neighbour ``j < k`` the optimum at ``B_k`` lies in
    ``[η_j, η_j B_k/B_j]`` and from ``j > k`` in ``[η_j B_k/B_j, η_j]``.  The centre takes the middle
    (in ``log η``) of the intersection of its neighbours' ranges (of their union if they disagree);
    the other coordinates are the nearest neighbour's (the smaller one on ties).

    Args:
        batch_sizes: the study's batch sizes, increasing.
        best_units: per batch size, the best explore configuration in unit coordinates (None: none reached).
        k: the cell.
        rate_axis: index of the log-scaled learning-rate coordinate (None: no learning rate searched).
        rate_span: ``log(high / low)`` of the learning-rate range.

    Returns:
        The centre in unit coordinates, or None if no neighbour reached the target.
    """
    neighbours = [j for j in (k - 1, k + 1) if 0 <= j < len(batch_sizes) and best_units[j] is not None]
    if not neighbours:
        return None
    nearest = min(neighbours, key=lambda j: (abs(math.log(batch_sizes[j] / batch_sizes[k])), j))
    centre = list(best_units[nearest])  # type: ignore[arg-type]
    if rate_axis is not None and rate_span:
        ranges = []
        for j in neighbours:
            u = best_units[j][rate_axis]  # type: ignore[index]
            shifted = u + math.log(batch_sizes[k] / batch_sizes[j]) / rate_span
            ranges.append((min(u, shifted), max(u, shifted)))
        low, high = max(r[0] for r in ranges), min(r[1] for r in ranges)
        if low > high:  # the neighbours disagree: take the span of both
            low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        centre[rate_axis] = min(max(0.5 * (low + high), 0.0), 1.0)
    return tuple(centre)


def refine_units(centres: Sequence[tuple[float, ...]], points: np.ndarray, width: float) -> np.ndarray:
    """Refinement points: unit-cube ``points`` (shape ``(n, d)``) mapped into boxes of half-width
    ``width`` around the ``centres`` in turn, clipped to ``[0, 1)``."""
    if not centres:
        return np.zeros((0, points.shape[1]))
    centre = np.array([centres[i % len(centres)] for i in range(points.shape[0])], dtype=np.float64)
    return np.clip(centre + (2.0 * points - 1.0) * width, 0.0, np.nextafter(1.0, 0.0))


def distinct_centres(centres: Sequence[tuple[float, ...] | None], width: float) -> list[tuple[float, ...]]:
    """Drop missing centres and those within ``width / 2`` (max-norm) of an earlier one."""
    kept: list[tuple[float, ...]] = []
    for c in centres:
        if c is None:
            continue
        if all(max((abs(a - b) for a, b in zip(c, k)), default=0.0) >= width / 2 for k in kept):
            kept.append(c)
    return kept
