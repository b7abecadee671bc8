"""The reference run: where the checkpoint comes from and how much loss the workload's target needs.

The reference run is a :func:`batchlab.train.train` run — the same keys, initial parameters,
minibatches, evaluation cadence, exact first hit (the interval before a hit is replayed step by
step) and divergence test — that keeps parameters (``TrainOptions.checkpoints`` and ``keep_hit``):
the checkpoint after N steps is the parameters ``train(workload, optimizer, hyperparameters,
batch_size, ·, seed)`` has after N steps.

By default the learning rate is tuned first (``tune_points`` rates over the optimizer's search space,
each run stopped once it can no longer beat the fastest so far) and the fastest run is the reference.
It records the checkpoint (raw parameters after ``checkpoint_step`` updates, by default at the first
step meeting the target), the *measured loss* at the initial parameters and at the first step meeting
the workload's target.  The measured loss is the expected training loss, the NQM's risk plus its
floor: the mean training loss over a fixed measurement batch, or, for ``loss_kind = "quadratic"``
(``nqm-sampled``), the exact ``evaluate(params)["risk"]`` (its minibatch loss adds zero-mean noise).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from batchlab.calibrate.model import Anchor
from batchlab.calibrate.predict import PROXIES, Proxy
from batchlab.calibrate.progress import Stages, Tick, no_progress
from batchlab.checks import check_finite, check_integer
from batchlab.errors import InputError
from batchlab.optim import get_optimizer, prepare
from batchlab.train import TrainOptions, TrainResult, TrainSetup, run, setup

__all__ = ["ReferenceConfig", "ReferenceRun", "run_reference", "measured_loss", "reference_anchor", "tuning_rates",
           "loss_curve"]


@dataclasses.dataclass(frozen=True)
class ReferenceConfig:
    """The reference optimizer run.

    Attributes:
        optimizer: registry name (``batchlab list``).
        hyperparameters: name → value (defaults fill the rest).
        batch_size: minibatch size.
        checkpoint_step: N, the number of updates before the measurement (0: at initialisation);
            ``None`` (default): the first step meeting the target, where the noise level matters most
            for the critical batch size (McCandlish et al. find ``B_noise`` grows during training and
            predicts the critical batch size late in training).
        max_steps: step budget for reaching the target (default: the workload's).
        eval_every: evaluation cadence for the target (default: the workload's).
        target_loss: skip running to the target and use this measured loss at the target instead.
        target: the target value (default: the workload's); ``target_metric``: the metric it is on
            (default: the workload's; another, e.g. a classifier's ``train_set_loss``, needs ``target``),
            as in a study spec: calibrate for the study's target.
        tune_points: tune the learning rate over this many log-spaced rates of the optimizer's search
            space before the reference run (0: use ``hyperparameters`` as given).  The NQM's predictions
            are of tuned optimizers, and the fitted initial state (:mod:`batchlab.calibrate.model`) makes
            the NQM reproduce the reference run, so an untuned, slow reference would be read as slow
            directions of the landscape.
        seeds: seeds per tuning rate and for the anchor's steps (median); more seeds damp the
            downward bias of taking the luckiest first hit over rates.
    """

    optimizer: str = "sgd"
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int = 128
    checkpoint_step: int | None = None
    max_steps: int | None = None
    eval_every: int | None = None
    target_loss: float | None = None
    target: float | None = None
    target_metric: str | None = None
    tune_points: int = 13
    seeds: int = 3

    def check(self) -> None:
        """Raise :class:`InputError` on the first invalid setting (cheap; trains nothing)."""
        for name, low in (("batch_size", 1), ("checkpoint_step", 0), ("max_steps", 1), ("eval_every", 1),
                          ("tune_points", 0), ("seeds", 1)):
            value = getattr(self, name)
            if name not in ("batch_size", "tune_points", "seeds") and value is None:
                continue
            check_integer(value, f"reference {name}", low)
        if self.target_loss is not None:
            check_finite(self.target_loss, "the loss at the target")
            if self.checkpoint_step is None:
                raise InputError("with a given loss at the target the checkpoint step must be given too")
        prepare(get_optimizer(self.optimizer), self.hyperparameters)


@dataclasses.dataclass(frozen=True)
class ReferenceRun:
    """Outcome of :func:`run_reference`.

    Attributes:
        checkpoint: parameters after ``checkpoint_step`` updates.
        checkpoint_step: N.
        initial_loss: measured loss at the initial parameters.
        target_loss: measured loss at the first step meeting the target (or the given one).
        target_step: that step (``None`` when ``target_loss`` was given).
        target_metrics: the workload's metrics there (empty when given).
        hyperparameters: the reference run's hyperparameters (all of them, the tuned rate included).
        trials: ``(learning rate, median steps to target)`` of the tuning (in the order run; ``inf``
            for rates stopped early or diverged).
        median_steps: median over the reference seeds of the steps to target at the chosen
            hyperparameters (``target_step`` with one seed): the anchor of the NQM fit.
        checkpoint_state: the optimizer state at the checkpoint (e.g. Adam's moments, K-FAC's
            curvature estimate: :mod:`batchlab.calibrate.precondition` reads the preconditioner there).
        snapshots: step → :class:`~batchlab.train.result.Snapshot` of the extra steps asked for
            (``keep``), those the run got to (the preconditioner's drift, :mod:`batchlab.nqm.drift`).
        loss_curve: ``(start, stop, loss)`` per evaluation interval up to ``median_steps``: the median
            over the reference seeds' runs at the chosen hyperparameters of their mean minibatch training
            loss over updates ``start … stop − 1`` (:func:`loss_curve`); empty when the target was given.
    """

    checkpoint: Any
    checkpoint_step: int
    initial_loss: float
    target_loss: float
    target_step: int | None
    target_metrics: Mapping[str, float]
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    trials: tuple[tuple[float, float], ...] = ()
    median_steps: int | None = None
    checkpoint_state: Any = dataclasses.field(default=None, repr=False, compare=False)
    snapshots: Mapping[int, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    loss_curve: tuple[tuple[int, int, float], ...] = ()


def measured_loss(workload: Any, params: Any, chunks: list[Any]) -> float:
    """The expected training loss at ``params`` (see the module docstring)."""
    if workload.loss_kind == "quadratic":
        return float(workload.evaluate(params)["risk"])
    loss = jax.jit(workload.loss)
    return float(sum(float(loss(params, chunk)) for chunk in chunks) / len(chunks))


def _progress(tick: Tick | None):
    """A :func:`~batchlab.train.train` progress hook ticking once per step done."""
    if tick is None:
        return None
    done = [0]

    def progress(step: int, metrics: Any) -> None:
        del metrics
        for _ in range(step - done[0]):
            tick()
        done[0] = max(done[0], step)

    return progress


def _median_steps(base: TrainSetup, seeds: list[int], limit: int) -> tuple[float, tuple[Any, ...]]:
    """Lower median over ``seeds`` of the first step meeting the target, and the runs' curves; runs stop
    after ``limit`` steps (stopped or diverged runs count as infinite, which leaves a median below
    ``limit`` exact)."""
    options = TrainOptions(prune_at_step=limit if limit < base.max_steps else None)
    steps, curves = [], []
    for seed in seeds:
        result = run(dataclasses.replace(base, seed=seed, options=options))
        steps.append(math.inf if result.steps_to_target is None else result.steps_to_target)
        curves.append(result.curve)
    return float(sorted(steps)[(len(steps) - 1) // 2]), tuple(curves)


def loss_curve(curves: Sequence[Sequence[Any]], end: int) -> tuple[tuple[int, int, float], ...]:
    """The reference runs' training loss up to update ``end``: for each evaluation interval ``[start, stop)``
    the median over runs of ``train_loss`` (the mean minibatch loss of the updates ``start … stop − 1``,
    at the parameters each update started from), over the runs that got there.  Intervals come from the
    evaluations at the cadence (replayed points carry no ``train_loss`` and are skipped); a run that met
    the target earlier has no later intervals."""
    by_interval: dict[tuple[int, int], list[float]] = {}
    for curve in curves:
        previous = 0
        for point in curve:
            value = point.metrics.get("train_loss")
            if point.step > previous and value is not None and math.isfinite(float(value)) and point.step <= end:
                by_interval.setdefault((previous, int(point.step)), []).append(float(value))
            if value is not None:
                previous = int(point.step)
    return tuple((start, stop, float(np.median(values))) for (start, stop), values in sorted(by_interval.items()))


def tuning_rates(optimizer: str, points: int) -> np.ndarray:
    """``points`` learning rates, log-spaced over the optimizer's learning-rate search space, descending."""
    low, high = get_optimizer(optimizer).hyperparameter("learning_rate").search
    return np.geomspace(high, low, points)


def _sweep(workload: Any, config: ReferenceConfig, budget: int, seeds: list[int], tick: Tick
           ) -> tuple[dict[str, Any], tuple[tuple[float, float], ...], float | None, tuple[Any, ...]]:
    """The learning rate with the fewest (median over seeds) steps to the target, and its runs' curves;
    runs stop once they can no longer win."""
    best: tuple[float, float] | None = None
    trials, curves = [], ()
    for rate in tuning_rates(config.optimizer, config.tune_points):
        tick()
        values = {**config.hyperparameters, "learning_rate": float(rate)}
        limit = budget if best is None else int(best[0])
        base = setup(workload, config.optimizer, values, config.batch_size, budget, seeds[0],
                     eval_every=config.eval_every, target=config.target, target_metric=config.target_metric)
        steps, runs = _median_steps(base, seeds, limit)
        trials.append((float(rate), steps))
        if math.isfinite(steps) and (best is None or steps < best[0]):
            best, curves = (steps, float(rate)), runs
    if best is None:
        return dict(config.hyperparameters), tuple(trials), None, ()
    return {**config.hyperparameters, "learning_rate": best[1]}, tuple(trials), best[0], curves


def _reference_run(base: TrainSetup, checkpoint_step: int | None, want_target: bool, tick: Tick,
                   keep: tuple[int, ...] = ()) -> TrainResult:
    """The reference run: to the first hit (kept) and the checkpoint, or (no target wanted) to the
    checkpoint only, evaluating there and at the start; the steps ``keep`` are kept too."""
    steps = tuple(sorted({0, *keep} | (set() if checkpoint_step is None else {checkpoint_step})))
    if want_target:
        return run(dataclasses.replace(base, options=TrainOptions(checkpoints=steps, keep_hit=True)),
                   progress=_progress(tick))
    assert checkpoint_step is not None
    options = TrainOptions(checkpoints=steps, prune_at_step=checkpoint_step)
    return run(dataclasses.replace(base, target=-math.inf, eval_every=max(checkpoint_step, 1), options=options),
               progress=_progress(tick))


def run_reference(workload: Any, config: ReferenceConfig, *, seed: int, loss_chunks: list[Any],
                  stages: Stages = no_progress, keep: tuple[int, ...] = ()) -> ReferenceRun:
    """Train the reference optimizer to the checkpoint and (unless ``target_loss`` is given) the target.

    With ``tune_points > 0`` (and no given ``target_loss``) the learning rate is first tuned: for each
    rate of :func:`tuning_rates` (the other hyperparameters fixed) the median steps to the target over
    the seeds ``seed, seed + 1, …`` (``config.seeds`` of them), each run stopped once it can no longer
    win.  The run with ``seed`` and the chosen rate is the reference run (checkpoint, losses); the
    anchor's steps are the median over the seeds, which damps the luck of a single first hit.

    Args:
        workload: the workload.
        config: the reference run.
        seed: the run's seed (``train``'s convention, see the module docstring).
        loss_chunks: the fixed measurement batch, in chunks (see :func:`measured_loss`).
        stages: progress hook: one unit per tuning rate, then one per update of the reference run.
        keep: also keep the parameters and optimizer state after these numbers of updates (those the
            run gets to; steps beyond the budget are dropped) in :attr:`ReferenceRun.snapshots`.

    Returns:
        :class:`ReferenceRun`.

    Raises:
        InputError: bad configuration, or the target is not reached within the budget (the message
            says to raise the budget or give ``target_loss``), or the run diverged.
    """
    config.check()
    budget = config.max_steps or workload.default_max_steps
    if config.checkpoint_step is not None and config.checkpoint_step > budget:
        raise InputError(f"checkpoint step {config.checkpoint_step} exceeds the reference budget {budget}")
    want_target = config.target_loss is None
    seeds = [seed + i for i in range(config.seeds)]
    values, trials, median, curves = dict(config.hyperparameters), (), None, ()
    if want_target and config.tune_points > 0:
        values, trials, median, curves = _sweep(workload, config, budget, seeds,
                                                stages("reference tuning", config.tune_points))
    base = setup(workload, config.optimizer, values, config.batch_size, budget, seed, eval_every=config.eval_every,
                 target=config.target, target_metric=config.target_metric)
    extra = tuple(sorted({int(step) for step in keep if 0 < int(step) <= budget}))
    result = _reference_run(base, config.checkpoint_step, want_target, stages("reference run", budget), extra)
    kept = result.checkpoints
    snapshots = {step: kept[step] for step in extra if step in kept}
    name = f"the reference run ({config.optimizer}, batch {config.batch_size})"
    if result.status == "diverged" and (want_target or config.checkpoint_step not in kept):
        raise InputError(f"{name} diverged; lower its learning rate")
    if want_target and result.status != "reached":
        raise InputError(f"{name} did not reach {base.target_metric} <= {base.target:g} in {budget} "
                         "steps; raise the reference budget or give the loss at the target")
    initial_loss = measured_loss(workload, kept[0].params, loss_chunks)
    chosen = dict(base.prepared.values)
    if not want_target:
        snapshot = kept[config.checkpoint_step]
        return ReferenceRun(snapshot.params, int(config.checkpoint_step), initial_loss, float(config.target_loss),
                            None, {}, chosen, trials, checkpoint_state=snapshot.state, snapshots=snapshots)
    hit = kept[result.steps_to_target]
    if median is None:  # untuned: the median over seeds at the given hyperparameters
        median, curves = (hit.step, (result.curve,)) if len(seeds) == 1 else _median_steps(base, seeds, budget)
    snapshot = hit if config.checkpoint_step is None else kept[config.checkpoint_step]
    checkpoint, step = snapshot.params, snapshot.step
    metrics = {k: v for k, v in result.final_metrics.items() if k != "train_loss"}  # the evaluation's own
    anchor_steps = int(median) if math.isfinite(median) else hit.step
    return ReferenceRun(checkpoint, step, initial_loss, measured_loss(workload, hit.evaluated, loss_chunks),
                        hit.step, metrics, chosen, trials, anchor_steps, snapshot.state, snapshots,
                        loss_curve(curves, anchor_steps))


def reference_anchor(config: ReferenceConfig, run: ReferenceRun, proxy: Proxy | None = None) -> Anchor | None:
    """The tuned reference run as an NQM anchor, or ``None`` when the NQM has no counterpart.

    The reference optimizer maps to ``proxy`` if given (a run measured in its own preconditioned
    coordinates: the plain NQM kind), else to its study proxy
    (:data:`batchlab.calibrate.predict.PROXIES`; Nesterov to the NQM's Nesterov); weight averaging
    (``+ema``), learning-rate schedules and runs without a measured target step give no anchor.  A
    heavy-ball anchor in the optimizer's own coordinates (momentum, a measured Adam or K-FAC) keeps the
    run's momentum (``beta1`` for Adam): the run tuned its learning rate only, and so does the NQM's anchor.
    """
    values = run.hyperparameters or prepare(get_optimizer(config.optimizer), config.hyperparameters).values
    if run.target_step is None or "+" in config.optimizer or values.get("lr_schedule", "constant") != "constant":
        return None
    if proxy is None:
        proxy = Proxy("nesterov", 0.0) if config.optimizer == "nesterov" else PROXIES.get(config.optimizer)
    if proxy is None:
        return None
    momentum = None
    if proxy.kind == "momentum" and not proxy.precond:  # its momentum as it ran (only its rate was tuned)
        full = prepare(get_optimizer(config.optimizer), {**config.hyperparameters, **(run.hyperparameters or {})}).values
        value = full.get("momentum", full.get("beta1"))
        momentum = None if value is None else float(value)
    return Anchor(proxy.kind, proxy.precond, float(config.batch_size), int(run.median_steps or run.target_step),
                  momentum=momentum)
