"""The training loop: evaluation cadence, exact first hit by replay, divergence, pruning.

**Cadence and resolution.**  The run evaluates after 0 updates and then every ``eval_every`` updates
(also at ``max_steps`` and at ``prune_at_step``).  When an evaluation at step ``t_e`` first meets the
target, the run rewinds to the carry saved at the previous evaluation ``t_{e−1}`` and replays the
steps ``t_{e−1}+1, …, t_e`` one at a time — the same minibatches, since step ``t`` uses
``fold_in(key_data, t)`` — evaluating after each, so

    steps_to_target = min{ t ∈ (t_{e−1}, t_e] : metric(t) ≤ target }

exactly.  This equals the first step meeting the target when evaluating every step, unless the
metric met the target at some earlier step and rose above it again before the next evaluation
(then the reported step is the first hit in the interval where the metric is met *at* an
evaluation).  The replay runs the same compiled code one step per call (bitwise the same
trajectory); should it ever not reproduce the evaluation's hit, ``t_e`` is reported.  The replay costs at most ``eval_every − 1``
extra steps and evaluations, once per run (per EMA decay) and once at a divergence.

**Divergence.**  A NaN/inf minibatch loss, one above ``divergence_factor · max(|first loss|, 1)``, or
non-finite evaluation metrics end the run as ``diverged`` (never an exception); the interval before
the divergence is replayed, so a target met before the blow-up still counts.

**Stopping early.**  ``stop(step, metrics) -> bool`` is asked after every cadence evaluation, and
``TrainOptions.prune_at_step`` stops once that many steps pass without reaching the target: both give
``pruned``.

**Checkpoints.**  ``TrainOptions.checkpoints`` keeps the raw parameters and the optimizer state after
those numbers of updates (the run trains on to the last of them even once the target is reached) and
``keep_hit`` keeps them at the first hit: :attr:`TrainResult.checkpoints`.

**Validated once.**  :func:`setup` validates a run into a :class:`TrainSetup` and :func:`run` trains
one without checking it again (``train = run(setup(...))``); hyperparameters already validated where
they were made (a study's trials) reach :func:`train` as their :class:`~batchlab.optim.Prepared`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np

from batchlab.checks import check_integer
from batchlab.errors import InputError
from batchlab.optim import OptimizerSpec, Prepared, get_optimizer, prepare
from batchlab.train.compiled import Carry, Compiled, Monitor, compiled_for
from batchlab.train.result import EvalPoint, Snapshot, TrackResult, TrainOptions, TrainResult

__all__ = ["train", "setup", "run", "TrainSetup", "check_arguments", "ProgressFn", "StopFn", "MAX_BATCH_SIZE",
           "MAX_STEPS", "MAX_SEED"]

# Limits of one run.  The step counter is int32 on the device; one batch of 2^20 examples already
# needs gigabytes for most workloads; JAX's default PRNG keys take 32-bit seeds (larger ones wrap).
MAX_BATCH_SIZE = 2**20
MAX_STEPS = 2**31 - 1  # max_steps, eval_every and prune_at_step
MAX_SEED = 2**32 - 1

ProgressFn = Callable[[int, "Mapping[str, float] | None"], None]
StopFn = Callable[[int, Mapping[str, float]], bool]


@dataclasses.dataclass
class _Track:
    """Mutable bookkeeping of one evaluated parameter set during a run."""

    status: str = "running"
    hit: int | None = None
    curve: list[EvalPoint] = dataclasses.field(default_factory=list)
    final: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def freeze(self) -> TrackResult:
        return TrackResult(self.status, self.hit, tuple(sorted(self.curve, key=lambda p: p.step)), self.final)


@dataclasses.dataclass
class _Run:
    """One run's fixed context (workload, compiled code, target) and its tracks."""

    workload: Any
    compiled: Compiled
    target: float
    tracks: list[_Track]
    data: Any = None  # the workload's train_data(), an argument of every compiled call
    eval_time: float = 0.0
    diverged_at: int | None = None
    pending: list[int] = dataclasses.field(default_factory=list)  # checkpoint steps still to take, ascending
    keep_hit: bool = False
    snapshots: dict[int, Snapshot] = dataclasses.field(default_factory=dict)
    metric: str = ""  # the target's metric

    def evaluate(self, carry: Carry, which: list[int]) -> dict[int, dict[str, float]]:
        start = time.perf_counter()
        views = self.compiled.views(carry)
        out = {i: dict(self.workload.evaluate(views[i]) if self.metric == self.workload.target_metric
                       else self.workload.evaluate_for(views[i], self.metric)) for i in which}
        for metrics in out.values():
            if self.metric not in metrics:
                raise InputError(f"workload {self.workload.name}: its evaluation has no {self.metric!r} "
                                 f"(it returned {', '.join(sorted(metrics))})")
        self.eval_time += time.perf_counter() - start
        return out

    def met(self, metrics: Mapping[str, float]) -> bool:
        if self.metric == self.workload.target_metric:  # the old two-argument call (user workloads may override it)
            return self.workload.reached(metrics, self.target)
        return self.workload.reached(metrics, self.target, self.metric)

    def snapshot(self, carry: Carry, step: int) -> None:
        """Keep copies of the raw and evaluated parameters and the optimizer state after ``step`` updates
        (the carry is donated)."""
        params = jax.tree.map(lambda a: a.copy(), carry.params)
        evaluated = jax.tree.map(lambda a: a.copy(), self.compiled.views(carry)[0])
        state = jax.tree.map(lambda a: a.copy() if hasattr(a, "copy") else a, carry.opt_state)
        self.snapshots[step] = Snapshot(step, params, evaluated, state)

    def hit(self, i: int, step: int, metrics: Mapping[str, float], carry: Carry) -> None:
        """Track ``i`` first met the target after ``step`` updates (``carry``: the state there)."""
        track = self.tracks[i]
        track.status, track.hit, track.final = "reached", step, metrics
        if i == 0 and self.keep_hit:
            self.snapshot(carry, step)

    def running(self) -> list[int]:
        return [i for i, track in enumerate(self.tracks) if track.status == "running"]


def _copy(carry: Carry) -> Carry:
    return jax.tree.map(lambda a: a.copy(), carry)


def _advance(run: _Run, carry: Carry, start: int, count: int, progress: ProgressFn | None) -> Carry:
    """Run ``count`` steps from ``start``, taking the checkpoints that fall on the way."""
    end = start + count
    while run.pending and run.pending[0] <= end:
        step = run.pending.pop(0)
        carry = _advance_plain(run, carry, start, step - start, progress)
        run.snapshot(carry, step)
        start = step
    return _advance_plain(run, carry, start, end - start, progress)


def _advance_plain(run: _Run, carry: Carry, start: int, count: int, progress: ProgressFn | None) -> Carry:
    if count == 0:
        return carry
    if progress is None or run.compiled.loop == "device":
        return run.compiled.advance(carry, run.data, count)
    for step in range(start + 1, start + count + 1):  # dispatch is asynchronous: no device wait
        carry = run.compiled.advance(carry, run.data, 1)
        progress(step, None)
    return carry


def _replay(run: _Run, saved: Carry, start: int, end: int, candidates: list[int]) -> None:
    """Step from ``saved`` (at ``start``) to ``end`` one at a time, evaluating ``candidates``.

    Records each candidate's first step meeting the target.  ``end`` itself is evaluated only when
    the caller has not (divergence); callers pass ``end − 1`` when they already evaluated ``end``.
    """
    carry, pending = saved, list(candidates)
    for step in range(start + 1, end + 1):
        if not pending:
            return
        carry = run.compiled.advance(carry, run.data, 1)
        for i, metrics in run.evaluate(carry, pending).items():
            track = run.tracks[i]
            track.curve.append(EvalPoint(step, metrics))
            if run.met(metrics):
                run.hit(i, step, metrics, carry)
                pending.remove(i)


def _start(run: _Run, prepared: Any, batch_size: int, max_steps: int, seed: int) -> Carry:
    key_data, key_init, key_opt = jax.random.split(jax.random.PRNGKey(seed), 3)
    compiled = run.compiled
    params = compiled.init_params(key_init)
    batch = None
    if compiled.stepper.traces_model:  # K-FAC traces the model with a real batch
        batch = compiled.sample(run.data, jax.random.fold_in(key_data, 0))
    hyper = prepared.arrays(max_steps=max_steps)
    opt_state = compiled.stepper.init(params, hyper, batch=batch, key=key_opt)
    monitor = Monitor(np.float32(0.0), np.int32(-1), np.float32(0.0), np.int32(0))
    return Carry(params, opt_state, np.int32(0), key_data, key_opt, monitor)


def _power_of_two(limit: int) -> str:
    """``2^20`` or ``2^31 - 1`` for a limit of that form."""
    return f"2^{(limit + 1).bit_length() - 1} - 1" if (limit + 1) & limit == 0 else f"2^{limit.bit_length() - 1}"


def _prepared(optimizer: str | OptimizerSpec | Prepared, hyperparameters: Mapping[str, Any],
              options: TrainOptions) -> Prepared:
    """Validate the hyperparameters, or take a :class:`~batchlab.optim.Prepared` as it is (it was
    validated where it was made) once it is the one ``hyperparameters`` and ``options`` describe."""
    if not isinstance(optimizer, Prepared):
        spec = get_optimizer(optimizer) if isinstance(optimizer, str) else optimizer
        return prepare(spec, hyperparameters, extra_ema_decays=tuple(options.ema_decays))
    extra = optimizer.ema_decays[1:] if optimizer.spec.ema else optimizer.ema_decays
    if dict(hyperparameters) != dict(optimizer.values) or tuple(map(float, options.ema_decays)) != extra:
        raise InputError(f"the prepared {optimizer.spec.name} hyperparameters differ from the hyperparameters "
                         "or EMA decays given with them")
    return optimizer


@dataclasses.dataclass(frozen=True)
class TrainSetup:
    """One validated training run: what :func:`run` trains (build it with :func:`setup`, which checks).

    Attributes:
        workload: the workload.
        prepared: the validated hyperparameters (:func:`batchlab.optim.prepare`), EMA decays included.
        batch_size, max_steps, seed: as in :func:`train`.
        target: the target value of ``target_metric`` (the workload's default filled in).
        eval_every: the evaluation cadence (the workload's default filled in).
        options: the less common settings.
        target_metric: the metric the target is on (the workload's ``target_metric`` filled in).
    """

    workload: Any
    prepared: Prepared
    batch_size: int
    max_steps: int
    seed: int
    target: float
    eval_every: int
    options: TrainOptions = TrainOptions()
    target_metric: str = ""


def _check_limits(
    workload: Any, batch_size: int, max_steps: int, eval_every: int, seed: int, options: TrainOptions,
    target: float | None,
    metric: str | None = None,
) -> None:
    limits = (("batch_size", batch_size, 1, MAX_BATCH_SIZE), ("max_steps", max_steps, 0, MAX_STEPS),
              ("eval_every", eval_every, 1, MAX_STEPS), ("seed", seed, 0, MAX_SEED))
    for name, value, low, high in limits:
        check_integer(value, name, low, numpy=True)
        if value > high:
            raise InputError(f"{name} must be at most {_power_of_two(high)}, got {value!r}")
    if options.prune_at_step is not None and not 0 <= options.prune_at_step <= MAX_STEPS:
        raise InputError(f"prune_at_step must be in [0, 2^31 - 1], got {options.prune_at_step}")
    for step in options.checkpoints:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 0 <= step <= max_steps:
            raise InputError(f"checkpoints must be integers in [0, max_steps = {max_steps}], got {step!r}")
    if target is not None:  # the default metric's check keeps the old one-argument call (user workloads)
        workload.check_target(target) if metric in (None, workload.target_metric) else workload.check_target(target, metric)
    if options.loop not in ("auto", "device", "python"):
        raise InputError(f"loop must be auto, device or python, got {options.loop!r}")


def setup(
    workload: Any,
    optimizer: str | OptimizerSpec | Prepared,
    hyperparameters: Mapping[str, Any],
    batch_size: int,
    max_steps: int,
    seed: int = 0,
    *,
    target: float | None = None,
    eval_every: int | None = None,
    options: TrainOptions | None = None,
    check_target: bool = False,
    target_metric: str | None = None,
) -> TrainSetup:
    """Validate the arguments of :func:`train` (cheap; loads no data) into a :class:`TrainSetup`.

    ``optimizer`` may be a :class:`~batchlab.optim.Prepared` (see :func:`train`): its hyperparameters
    are not validated again.  Limits: ``1 ≤ batch_size ≤ 2^20``, ``0 ≤ max_steps ≤ 2^31 − 1``,
    ``1 ≤ eval_every ≤ 2^31 − 1``,
    ``0 ≤ seed ≤ 2^32 − 1``, checkpoints in ``[0, max_steps]``; with ``check_target`` a given
    ``target`` must be valid for the workload's metric
    (:meth:`~batchlab.workloads.base.Workload.check_target`; :func:`train` does not check it, so that
    e.g. ``-1`` runs the whole budget).  ``target_metric`` (default: the workload's) must be one of
    the workload's :meth:`~batchlab.workloads.base.Workload.target_metrics`; another than the default
    needs a ``target``.

    Raises:
        InputError: the first problem found, as one line.

    Example:
        >>> from batchlab.workloads.registry import get_workload
        >>> run_setup = setup(get_workload("nqm-sampled", dim=10), "sgd", {"learning_rate": 0.3}, 16, 100, 1)
        >>> run_setup.target, run_setup.eval_every, run_setup.prepared.values["learning_rate"]
        (0.01, 1, 0.3)
    """
    options = options or TrainOptions()
    cadence = workload.default_eval_every if eval_every is None else eval_every
    metric = workload.target_metric if target_metric is None else workload.check_target_metric(target_metric)
    if target is None and metric != workload.target_metric:
        raise InputError(f"target_metric {metric} needs a target value (the workload's default "
                         f"{workload.target_value:g} is on {workload.target_metric})")
    _check_limits(workload, batch_size, max_steps, cadence, seed, options, target if check_target else None, metric)
    prepared = _prepared(optimizer, hyperparameters, options)
    goal = workload.target_value if target is None else float(target)
    return TrainSetup(workload, prepared, batch_size, max_steps, seed, goal, cadence, options, metric)


def check_arguments(
    workload: Any,
    optimizer: str | OptimizerSpec,
    hyperparameters: Mapping[str, Any],
    batch_size: int,
    max_steps: int,
    *,
    eval_every: int | None = None,
    options: TrainOptions | None = None,
    seed: int | None = None,
    target: float | None = None,
    target_metric: str | None = None,
) -> Prepared:
    """Validate the arguments of :func:`train` without training (cheap; loads no data).

    :func:`setup` with ``check_target=True`` (a given ``target`` must suit the workload's metric).

    Returns:
        The validated hyperparameters (:class:`~batchlab.optim.Prepared`).

    Raises:
        InputError: the first problem found, as one line.
    """
    return setup(workload, optimizer, hyperparameters, batch_size, max_steps, 0 if seed is None else seed,
                 target=target, eval_every=eval_every, options=options, check_target=True,
                 target_metric=target_metric).prepared


def train(
    workload: Any,
    optimizer: str | OptimizerSpec | Prepared,
    hyperparameters: Mapping[str, Any],
    batch_size: int,
    max_steps: int,
    seed: int,
    *,
    target: float | None = None,
    eval_every: int | None = None,
    progress: ProgressFn | None = None,
    stop: StopFn | None = None,
    options: TrainOptions | None = None,
    target_metric: str | None = None,
) -> TrainResult:
    """Train ``workload`` with ``optimizer`` until it reaches the target, diverges or runs out.

    Step ``t`` (``t = 0 … max_steps − 1``) draws ``sample_batch(key=fold_in(key_data, t))`` where
    ``key_data, key_init, key_opt = split(PRNGKey(seed), 3)``; parameters start at
    ``init_params(key=key_init)``.  Equal arguments give identical results.  Trials that agree
    in (workload, optimizer, choice hyperparameters, number of EMA decays, batch size) reuse one
    compiled step: numeric hyperparameters are arrays in the optimizer state.

    ``train(...)`` is ``run(setup(...))``: callers that validated the hyperparameters already pass
    their ``Prepared`` (a study's trials), or call :func:`run` with a :class:`TrainSetup`.

    Args:
        workload: a :class:`~batchlab.workloads.base.Workload` instance.
        optimizer: a registry name (e.g. ``"momentum+ema"``), an ``OptimizerSpec``, or a
            :class:`~batchlab.optim.Prepared` validated where it was made (a study's trial): used as it
            is, ``hyperparameters`` and ``options.ema_decays`` must be its values and extra decays.
        hyperparameters: name → value; defaults fill the rest.
        batch_size: minibatch size (1 … 2^20).
        max_steps: step budget (0 … 2^31 − 1).
        seed: the run's seed (0 … 2^32 − 1).
        target: target value of ``workload.target_metric`` (default: the workload's); not checked
            here, so that e.g. ``-1`` runs the whole budget — user input goes through
            ``check_arguments(..., target=...)`` (:meth:`~batchlab.workloads.base.Workload.check_target`).
        eval_every: evaluation cadence in steps (default: the workload's).
        progress: ``progress(step, metrics or None)`` after every compiled call and evaluation.
        stop: ``stop(step, metrics) -> bool`` after every evaluation; ``True`` ends the run as
            ``pruned``.
        options: less common settings (extra EMA decays, step-limit pruning, checkpoints, …).
        target_metric: the metric the target is on (default: the workload's ``target_metric``; one of
            its :meth:`~batchlab.workloads.base.Workload.target_metrics`, another needs a ``target``).

    Returns:
        A :class:`~batchlab.train.result.TrainResult`.

    Raises:
        InputError: unknown optimizer/hyperparameter, invalid value, bad sizes, missing data.

    Example:
        >>> from batchlab.workloads.registry import get_workload   # doctest: +SKIP
        >>> result = train(get_workload("digits-cnn"), "momentum",
        ...                {"learning_rate": 0.05, "momentum": 0.9}, 128, 2000, 0)  # doctest: +SKIP
        >>> result.status, result.steps_to_target  # doctest: +SKIP
        ('reached', 412)
    """
    checked = setup(workload, optimizer, hyperparameters, batch_size, max_steps, seed,
                    target=target, eval_every=eval_every, options=options, target_metric=target_metric)
    return run(checked, progress=progress, stop=stop)


def run(config: TrainSetup, *, progress: ProgressFn | None = None, stop: StopFn | None = None) -> TrainResult:
    """Train a validated :class:`TrainSetup` (see :func:`train`; nothing is validated again).

    Raises:
        DataMissingError: the workload's data is not installed.
    """
    workload, prepared, options = config.workload, config.prepared, config.options
    spec = prepared.spec
    workload.load()
    started = time.perf_counter()
    compiled = compiled_for(
        workload, prepared, config.batch_size,
        loop=options.loop, factor=options.divergence_factor,
    )
    num_tracks = 1 + len(prepared.ema_decays) - (1 if spec.ema else 0)
    job = _Run(workload, compiled, config.target, [_Track() for _ in range(num_tracks)], workload.train_data(),
               pending=sorted({int(step) for step in options.checkpoints}), keep_hit=options.keep_hit,
               metric=config.target_metric or workload.target_metric)
    carry = _start(job, prepared, config.batch_size, config.max_steps, config.seed)
    steps_run = _loop(job, carry, config.max_steps, config.eval_every, progress, stop, options)
    tracks = [track.freeze() for track in job.tracks]
    primary = tracks[0]
    extra = dict(zip(prepared.ema_decays[1:] if spec.ema else prepared.ema_decays, tracks[1:]))
    ema_results = ({prepared.ema_decays[0]: primary} if spec.ema else {}) | extra
    return TrainResult(
        status=primary.status,
        steps_to_target=primary.steps_to_target,
        curve=primary.curve,
        final_metrics=primary.final_metrics,
        wall_time=time.perf_counter() - started,
        eval_time=job.eval_time,
        steps_run=steps_run,
        diverged_at=job.diverged_at,
        target=config.target,
        target_metric=job.metric,
        ema_results=ema_results,
        checkpoints=dict(sorted(job.snapshots.items())),
    )


def _record(run: _Run, step: int, metrics: dict[int, dict[str, float]]) -> list[int]:
    """Append cadence evaluations; mark non-finite ones diverged; return the tracks that met."""
    met = []
    for i, values in metrics.items():
        track = run.tracks[i]
        track.curve.append(EvalPoint(step, values))
        track.final = values
        if not math.isfinite(values[run.metric]):
            track.status = "diverged"
            run.diverged_at = step if run.diverged_at is None else run.diverged_at
        elif run.met(values):
            met.append(i)
    return met


def _loop(
    run: _Run, carry: Carry, max_steps: int, eval_every: int,
    progress: ProgressFn | None, stop: StopFn | None, options: TrainOptions,
) -> int:
    """The main loop; returns the number of steps run (replays not counted)."""
    if run.pending and run.pending[0] == 0:
        run.snapshot(carry, run.pending.pop(0))
    for i in _record(run, 0, run.evaluate(carry, run.running())):
        run.hit(i, 0, run.tracks[i].final, carry)
    t, limit = 0, options.prune_at_step
    while run.running() and t < max_steps:
        end = min(t + eval_every, max_steps)
        if limit is not None and t < limit:
            end = min(end, limit)
        saved = _copy(carry) if options.replay and end - t > 1 else None  # nothing to replay in 1 step
        carry = _advance(run, carry, t, end - t, progress)
        monitor = jax.device_get(carry.monitor)
        if int(monitor.bad_step) >= 0:
            run.diverged_at = int(monitor.bad_step)
            if saved is not None:
                _replay(run, saved, t, run.diverged_at, run.running())
            for i in run.running():
                run.tracks[i].status = "diverged"
            return end
        train_loss = float(monitor.loss_sum) / max(int(monitor.loss_count), 1)
        carry = carry._replace(monitor=carry.monitor._replace(  # NumPy zeros: no eager dispatch
            loss_sum=np.float32(0.0), loss_count=np.int32(0)))
        metrics = run.evaluate(carry, run.running())
        for values in metrics.values():
            values["train_loss"] = train_loss
        met = _record(run, end, metrics)
        if met and saved is not None and end - t > 1:
            _replay(run, saved, t, end - 1, met)
        for i in met:  # no earlier hit in the interval: the evaluation's step
            if run.tracks[i].status == "running":
                run.hit(i, end, metrics[i], carry)
        t = end
        shown = metrics.get(0) or next(iter(metrics.values()), None)
        if progress is not None:
            progress(t, shown)
        if run.running() and shown is not None and (
            (stop is not None and stop(t, shown)) or (limit is not None and t >= limit)
        ):
            for i in run.running():
                run.tracks[i].status = "pruned"
    for i in run.running():
        run.tracks[i].status = "budget"
    if run.pending:  # finished early: train on (without evaluating) to the last checkpoint
        last = run.pending[-1]
        _advance(run, carry, t, last - t, progress)
        t = last
        if progress is not None:
            progress(t, None)
    return t
