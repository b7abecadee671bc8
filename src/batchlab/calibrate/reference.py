"""The reference run: where the checkpoint comes from and how much loss the workload's target needs.

``batchlab.train.train`` returns metrics, not parameters, so the reference run is a small loop of its
own over the *same* pieces and conventions: the optimizer's :class:`~batchlab.optim.base.Stepper` from
the registry, ``key_data, key_init, key_opt = split(PRNGKey(seed), 3)``, initial parameters
``init_params(key=key_init)``, and at step ``t`` the minibatch ``sample_batch(key=fold_in(key_data, t))``
and optimizer key ``fold_in(key_opt, t)`` — the checkpoint after N steps is the parameters
``train(workload, optimizer, hyperparameters, batch_size, ·, seed)`` has after N steps.

By default the learning rate is tuned first (``tune_points`` rates over the optimizer's search space,
each run stopped once it can no longer beat the fastest so far) and the fastest run is the reference.
It records the checkpoint (raw parameters after ``checkpoint_step`` updates, by default at the first
step meeting the target), the *measured loss* at the initial parameters and at the first step meeting
the workload's target (evaluated every ``eval_every`` steps; on a hit the interval since the previous
evaluation is replayed step by step, as ``train`` does, so the step is exact).  The measured loss is
the expected training loss, the NQM's risk plus its floor: the mean training loss over a fixed
measurement batch, or, for ``loss_kind = "quadratic"`` (``nqm-sampled``), the exact
``evaluate(params)["risk"]`` (its minibatch loss adds zero-mean noise).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.calibrate.model import Anchor
from batchlab.calibrate.predict import PROXIES, Proxy
from batchlab.calibrate.progress import Stages, Tick, no_progress
from batchlab.errors import InputError
from batchlab.optim import bind, get_optimizer, prepare

__all__ = ["ReferenceConfig", "ReferenceRun", "run_reference", "measured_loss", "reference_anchor", "tuning_rates"]

DIVERGENCE = 1e3  # a minibatch loss this many times the first evaluated one (or NaN/inf) means diverged


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
    tune_points: int = 13
    seeds: int = 3

    def check(self) -> None:
        """Raise :class:`InputError` on the first invalid setting (cheap; trains nothing)."""
        for name, low in (("batch_size", 1), ("checkpoint_step", 0), ("max_steps", 1), ("eval_every", 1),
                          ("tune_points", 0), ("seeds", 1)):
            value = getattr(self, name)
            if name not in ("batch_size", "tune_points", "seeds") and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"reference {name} must be an integer >= {low}, got {value!r}")
        if self.target_loss is not None:
            if not math.isfinite(self.target_loss):
                raise InputError(f"the loss at the target must be finite, got {self.target_loss}")
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


def measured_loss(workload: Any, params: Any, chunks: list[Any]) -> float:
    """The expected training loss at ``params`` (see the module docstring)."""
    if workload.loss_kind == "quadratic":
        return float(workload.evaluate(params)["risk"])
    loss = jax.jit(workload.loss)
    return float(sum(float(loss(params, chunk)) for chunk in chunks) / len(chunks))


class _Hit(NamedTuple):
    params: Any
    view: Any
    step: int
    metrics: dict[str, float]


class _Outcome(NamedTuple):
    hit: _Hit | None
    checkpoint: Any
    diverged: bool


def _keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``key_data, key_init, key_opt`` of a run (``train``'s convention)."""
    key_data, key_init, key_opt = jax.random.split(jax.random.PRNGKey(seed), 3)
    return key_data, key_init, key_opt


@dataclasses.dataclass(frozen=True)
class _Trainer:
    """One compiled update for every learning rate and seed (hyperparameters live in the state, keys
    are arguments)."""

    workload: Any
    stepper: Any
    update: Callable
    batch_size: int
    cadence: int
    budget: int

    @classmethod
    def build(cls, workload: Any, prepared: Any, config: ReferenceConfig, budget: int) -> "_Trainer":
        stepper = bind(prepared, workload)
        size = config.batch_size

        @jax.jit
        def update(params, state, t, data, key_data, key_opt):
            batch = workload.sample_batch_from(data, key=jax.random.fold_in(key_data, t), batch_size=size)
            return stepper.step(params, state, batch, key=jax.random.fold_in(key_opt, t))

        cadence = config.eval_every or workload.default_eval_every
        return cls(workload, stepper, update, size, cadence, budget)

    def start(self, prepared: Any, seed: int, data: Any) -> tuple[Any, Any]:
        key_data, key_init, key_opt = _keys(seed)
        params = self.workload.init_params(key=key_init)
        first = None
        if self.stepper.traces_model:
            first = self.workload.sample_batch_from(data, key=jax.random.fold_in(key_data, 0),
                                                    batch_size=self.batch_size)
        return params, self.stepper.init(params, prepared.arrays(max_steps=self.budget), batch=first, key=key_opt)

    def evaluate(self, params: Any, state: Any) -> tuple[Any, dict[str, float]]:
        view = self.stepper.evaluation_params(params, state)
        return view, dict(self.workload.evaluate(view))

    def first_hit(self, saved: tuple, end: int, data: Any, keys: tuple) -> _Hit | None:
        """Replay from the previous evaluation one step at a time: the first step meeting the target."""
        params, state, t = saved
        while t < end - 1:
            params, state, _ = self.update(params, state, jnp.int32(t), data, *keys)
            t += 1
            view, metrics = self.evaluate(params, state)
            if self.workload.reached(metrics):
                return _Hit(params, view, t, metrics)
        return None

    def run(self, prepared: Any, *, seed: int, limit: int, checkpoint_step: int | None, want_target: bool,
            tick: Tick | None = None) -> _Outcome:
        """Train until the target is met (if wanted) and the checkpoint is taken, or ``limit`` steps."""
        data = self.workload.train_data()
        key_data, _, key_opt = _keys(seed)
        params, state = self.start(prepared, seed, data)
        checkpoint = params if checkpoint_step == 0 else None
        hit: _Hit | None = None
        saved, t, first = (params, state, 0), 0, None
        while t < limit and ((checkpoint is None and checkpoint_step is not None) or (want_target and hit is None)):
            params, state, loss = self.update(params, state, jnp.int32(t), data, key_data, key_opt)
            t += 1
            if tick:
                tick()
            if t == 1:
                first = float(loss)  # the loss at the initial parameters
            if t == checkpoint_step:
                checkpoint = params
            if want_target and hit is None and (t % self.cadence == 0 or t == limit):
                value = float(loss)
                view, metrics = self.evaluate(params, state)
                if not (math.isfinite(value) and abs(value) <= DIVERGENCE * max(abs(first), 1.0)
                        and math.isfinite(metrics[self.workload.target_metric])):
                    return _Outcome(None, checkpoint, True)
                if self.workload.reached(metrics):
                    hit = self.first_hit(saved, t, data, (key_data, key_opt)) or _Hit(params, view, t, metrics)
                saved = (params, state, t)
        return _Outcome(hit, checkpoint, False)

    def median_steps(self, prepared: Any, seeds: list[int], limit: int) -> float:
        """Lower median over ``seeds`` of the first step meeting the target; runs stop after ``limit``
        steps (stopped or diverged runs count as infinite, which leaves a median below ``limit`` exact)."""
        steps = []
        for seed in seeds:
            outcome = self.run(prepared, seed=seed, limit=limit, checkpoint_step=None, want_target=True)
            steps.append(math.inf if outcome.hit is None else outcome.hit.step)
        return float(sorted(steps)[(len(steps) - 1) // 2])


def tuning_rates(optimizer: str, points: int) -> np.ndarray:
    """``points`` learning rates, log-spaced over the optimizer's learning-rate search space, descending."""
    low, high = get_optimizer(optimizer).hyperparameter("learning_rate").search
    return np.geomspace(high, low, points)


def _sweep(trainer: _Trainer, config: ReferenceConfig, seeds: list[int], tick: Tick
           ) -> tuple[dict[str, Any], tuple[tuple[float, float], ...], float | None]:
    """The learning rate with the fewest (median over seeds) steps to the target; runs stop once
    they can no longer win."""
    best: tuple[float, float] | None = None
    trials = []
    for rate in tuning_rates(config.optimizer, config.tune_points):
        tick()
        values = {**config.hyperparameters, "learning_rate": float(rate)}
        limit = trainer.budget if best is None else int(best[0])
        steps = trainer.median_steps(prepare(get_optimizer(config.optimizer), values), seeds, limit)
        trials.append((float(rate), steps))
        if math.isfinite(steps) and (best is None or steps < best[0]):
            best = (steps, float(rate))
    if best is None:
        return dict(config.hyperparameters), tuple(trials), None
    return {**config.hyperparameters, "learning_rate": best[1]}, tuple(trials), best[0]


def run_reference(workload: Any, config: ReferenceConfig, *, seed: int, loss_chunks: list[Any],
                  stages: Stages = no_progress) -> ReferenceRun:
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
    spec = get_optimizer(config.optimizer)
    trainer = _Trainer.build(workload, prepare(spec, config.hyperparameters), config, budget)
    want_target = config.target_loss is None
    seeds = [seed + i for i in range(config.seeds)]
    values, trials, median = dict(config.hyperparameters), (), None
    if want_target and config.tune_points > 0:
        values, trials, median = _sweep(trainer, config, seeds, stages("reference tuning", config.tune_points))
    prepared = prepare(spec, values)
    outcome = trainer.run(prepared, seed=seed, limit=budget, checkpoint_step=config.checkpoint_step,
                          want_target=want_target, tick=stages("reference run", budget))
    name = f"the reference run ({config.optimizer}, batch {config.batch_size})"
    if outcome.diverged:
        raise InputError(f"{name} diverged; lower its learning rate")
    if want_target and outcome.hit is None:
        raise InputError(f"{name} did not reach {workload.target_metric} <= {workload.target_value:g} in {budget} "
                         "steps; raise the reference budget or give the loss at the target")
    initial_loss = measured_loss(workload, trainer.start(prepared, seed, workload.train_data())[0], loss_chunks)
    chosen = dict(prepared.values)
    hit = outcome.hit
    if hit is None:
        return ReferenceRun(outcome.checkpoint, int(config.checkpoint_step), initial_loss,
                            float(config.target_loss), None, {}, chosen, trials)
    if median is None:  # untuned: the median over seeds at the given hyperparameters
        median = hit.step if len(seeds) == 1 else trainer.median_steps(prepared, seeds, budget)
    checkpoint = hit.params if outcome.checkpoint is None else outcome.checkpoint
    step = hit.step if config.checkpoint_step is None else config.checkpoint_step
    return ReferenceRun(checkpoint, step, initial_loss, measured_loss(workload, hit.view, loss_chunks),
                        hit.step, hit.metrics, chosen, trials, int(median) if math.isfinite(median) else hit.step)


def reference_anchor(config: ReferenceConfig, run: ReferenceRun) -> Anchor | None:
    """The tuned reference run as an NQM anchor, or ``None`` when the NQM has no counterpart.

    The reference optimizer maps to its study proxy (:data:`batchlab.calibrate.predict.PROXIES`;
    Nesterov to the NQM's Nesterov); weight averaging (``+ema``), learning-rate schedules and runs
    without a measured target step give no anchor.
    """
    values = run.hyperparameters or prepare(get_optimizer(config.optimizer), config.hyperparameters).values
    if run.target_step is None or "+" in config.optimizer or values.get("lr_schedule", "constant") != "constant":
        return None
    proxy = Proxy("nesterov", 0.0) if config.optimizer == "nesterov" else PROXIES.get(config.optimizer)
    if proxy is None:
        return None
    return Anchor(proxy.kind, proxy.precond, float(config.batch_size), int(run.median_steps or run.target_step))
