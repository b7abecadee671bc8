"""Frozen results and options of one training run."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Mapping, NamedTuple

__all__ = ["Status", "EvalPoint", "Snapshot", "TrackResult", "TrainOptions", "TrainResult"]

Status = Literal["reached", "budget", "diverged", "pruned"]


@dataclasses.dataclass(frozen=True)
class EvalPoint:
    """One evaluation: ``metrics`` of the evaluated parameters after ``step`` updates.

    ``metrics`` also holds ``train_loss``, the mean training loss of the minibatches since the
    previous cadence evaluation (absent at step 0 and at replay points).
    """

    step: int
    metrics: Mapping[str, float]


class Snapshot(NamedTuple):
    """Parameters kept during a run (``TrainOptions.checkpoints`` and ``keep_hit``).

    Attributes:
        step: the number of updates before it.
        params: the raw parameters.
        evaluated: the parameters the workload evaluates (the weight average for ``+ema``
            optimizers, else ``params``).
        state: the optimizer state after those updates (e.g. Adam's moments, K-FAC's curvature
            estimate), as the next step would read it.
    """

    step: int
    params: Any
    evaluated: Any
    state: Any = None


@dataclasses.dataclass(frozen=True)
class TrackResult:
    """Outcome for one set of evaluated parameters (the run's own, or one EMA decay's).

    Attributes:
        status: ``reached`` | ``budget`` | ``diverged`` | ``pruned``.
        steps_to_target: first step at which the target was met (``None`` unless reached).
        curve: evaluations in step order (cadence points and, near the first hit, every step).
        final_metrics: metrics at the first hit if reached, else at the last evaluation.
    """

    status: Status
    steps_to_target: int | None
    curve: tuple[EvalPoint, ...]
    final_metrics: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Less common settings of :func:`batchlab.train.train`.

    Attributes:
        ema_decays: extra EMA decays tracked in the same run; their results land in
            :attr:`TrainResult.ema_results` (one run answers "which decay" for all of them).
        prune_at_step: stop as ``pruned`` once this many steps are done without reaching the
            target (a study's incumbent); ``None``: never.
        divergence_factor: ``diverged`` once a minibatch loss exceeds this times
            ``max(|first loss|, 1)``, or is NaN/inf.
        loop: ``"device"`` (each evaluation interval is one call of a compiled loop), ``"python"``
            (a Python loop over a jitted step) or ``"auto"``: Python for models with convolutions,
            else device (see :func:`batchlab.train.compiled.choose_loop`).
        replay: find the exact first step meeting the target by replaying from the previous
            evaluation (else report the cadence evaluation's step).
        checkpoints: keep the parameters (and the optimizer state) after these numbers of updates (each in
            ``[0, max_steps]``) in :attr:`TrainResult.checkpoints`; a run that ends earlier (reached,
            pruned) trains on, without evaluating, to the last of them (``steps_run`` counts those
            steps); a diverged run keeps only those taken before it stopped.
        keep_hit: also keep the parameters at the first step meeting the target (the run's own
            track), under that step.
    """

    ema_decays: tuple[float, ...] = ()
    prune_at_step: int | None = None
    divergence_factor: float = 1e3
    loop: Literal["auto", "device", "python"] = "auto"
    replay: bool = True
    checkpoints: tuple[int, ...] = ()
    keep_hit: bool = False


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`batchlab.train.train`.

    Attributes:
        status: ``reached`` | ``budget`` | ``diverged`` | ``pruned``.
        steps_to_target: the first step ``t`` (number of updates) at which ``metric ≤ target``,
            ``None`` unless reached.  Resolution: exact to one step within the cadence interval
            in which the target was first met at an evaluation (see :mod:`batchlab.train.loop`).
        curve: evaluations of the run's evaluated parameters, in step order.
        final_metrics: metrics at the first hit if reached, else at the last evaluation.
        wall_time: seconds for the call after loading the data (compilation included).
        eval_time: seconds of that spent evaluating (cadence and replay).
        steps_run: training steps executed by the main run (replays not counted).
        diverged_at: the step whose minibatch loss was first NaN/inf/exploding (or the
            evaluation step with non-finite metrics), else ``None``.
        target: the target value used; ``target_metric``: the metric it applies to.
        ema_results: per extra EMA decay (and, for ``+ema`` optimizers, ``ema_decay``) results.
        checkpoints: step → :class:`Snapshot`, for the steps ``TrainOptions.checkpoints`` and
            ``keep_hit`` asked for (not in :meth:`to_dict`).
    """

    status: Status
    steps_to_target: int | None
    curve: tuple[EvalPoint, ...]
    final_metrics: Mapping[str, float]
    wall_time: float
    eval_time: float
    steps_run: int
    diverged_at: int | None
    target: float
    target_metric: str
    ema_results: Mapping[float, TrackResult] = dataclasses.field(default_factory=dict)
    checkpoints: Mapping[int, Snapshot] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become ``None``; parameters are left out)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, Mapping):
                return {str(k): clean(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            if dataclasses.is_dataclass(value):
                return clean(dataclasses.asdict(value))
            return value

        out = {field.name: clean(getattr(self, field.name)) for field in dataclasses.fields(self)
               if field.name not in ("ema_results", "checkpoints")}
        out["ema_results"] = {str(k): clean(v) for k, v in self.ema_results.items()}
        return out
