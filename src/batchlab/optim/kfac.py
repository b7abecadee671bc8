"""K-FAC (Martens & Grosse 2015) through kfac-jax, behind the same ``Stepper`` interface.

kfac-jax registers the model's layers automatically by tracing the loss; the loss itself is
registered here according to the workload's ``loss_kind`` (softmax cross-entropy or squared error;
the NQM's ``quadratic`` loss has no layers and is rejected).  With ``F̂`` the Kronecker-factored
Fisher (block-diagonal per layer, an EMA of minibatch estimates with decay ``curvature_ema``, inverted
every ``inverse_update_period`` steps) and the previous update ``v`` (kfac-jax's velocity)::

    Δ = −α_t (F̂ + λ I)^{-1} g + β v,      θ' = θ + Δ,      v' = Δ

with learning rate ``α_t`` (scheduled), momentum ``β`` and damping ``λ`` passed per step as traced
arrays.  With ``adaptive = "on"`` kfac-jax instead picks ``α`` and ``β`` by minimising its quadratic
model every step and adapts ``λ`` by the Levenberg–Marquardt rule every step, starting from
``damping`` (the schedule and the ``learning_rate``/``momentum`` values are then unused).

Conventions: no curvature burn-in (the first step's estimate is that minibatch's), ``multi_device``
off, no weight decay.  Convolutions use :mod:`batchlab.optim.kfac_conv`'s block, which computes the
input statistics without kfac-jax's per-tap while loop (slow on XLA:CPU).

kfac-jax's batch size is the number of loss rows (``B·T`` for a sequence model: every position is an
example).  Layers that keep the ``(B, T, …)`` layout — a layer norm's scale and shift, a dense
layer matched as ``repeated_dense`` (the Transformer's one-hot embedding) — use
:mod:`batchlab.optim.kfac_rows`'s blocks, which merge those leading axes into the rows.  Parameters
kfac-jax's pattern matcher cannot place in a layer get its ``generic`` block (a diagonal
estimate from the batch gradient).

Example:
    >>> from batchlab.optim import get_optimizer
    >>> sorted(hp.name for hp in get_optimizer("kfac").search_space())
    ['damping', 'learning_rate', 'momentum']
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import kfac_jax

from batchlab.errors import InputError
from batchlab.optim.base import HyperArrays, Model, OptimizerSpec, Stepper
from batchlab.optim.hyperparameters import (
    MOMENTUM,
    POSITIVE,
    SCHEDULE_HYPERPARAMETERS,
    Hyperparameter,
    learning_rate,
)
from batchlab.optim.kfac_rows import row_block_ctors
from batchlab.optim.schedules import learning_rate_factor

__all__ = ["HYPERPARAMETERS", "KfacConfig", "KfacState", "SPEC", "SUPPORTED_LOSSES", "curvature_estimator",
           "kfac_stepper", "spec_with", "split_batch"]

HYPERPARAMETERS = (
    learning_rate(0.03, (1e-3, 3.0)),
    dataclasses.replace(MOMENTUM, default=0.5),
    Hyperparameter("damping", 1e-2, "log", (1e-6, 1.0), POSITIVE, "damping λ added to the curvature"),
    Hyperparameter(
        "adaptive", "off", "choice", None, ("off", "on"),
        "kfac-jax's adaptive learning rate, momentum and damping (static)", tunable=False,
    ),
)


@dataclasses.dataclass(frozen=True)
class KfacConfig:
    """Fixed (non-tuned) K-FAC settings.

    Attributes:
        curvature_ema: decay of the curvature estimate's moving average.
        inverse_update_period: recompute the factor inverses every this many steps.  It matters at
            large batch sizes, where runs are short: on digits-cnn (training loss 0.07) K-FAC retuned
            with period 1 needs 4-6.5 steps at B = 1024 instead of 8.5-11.5 and its critical batch
            size is about 3x larger, while small batch sizes hardly change
            (``results/stability-digits-loss-kfac-period1/``); on fashion-mnist-mlp it needs 19 steps
            instead of 38 at B = 4096 (``results/paper-fashion-mnist-kfac-period1/``).
            :func:`spec_with` builds such a variant (``studies/optimizers/kfac_period1.py``).
            ``batchlab calibrate`` models the registry's period (``batchlab.nqm.drift``).
        estimation_mode: kfac-jax's curvature estimator (sampled Fisher by default).
        fast_conv_statistics: use :mod:`batchlab.optim.kfac_conv` for convolution layers.
    """

    curvature_ema: float = 0.95
    inverse_update_period: int = 5
    estimation_mode: str = "fisher_gradients"
    fast_conv_statistics: bool = True


SUPPORTED_LOSSES = ("softmax_cross_entropy", "squared_error")
_SUPPORTED = SUPPORTED_LOSSES


class KfacState(NamedTuple):
    """State: update count, hyperparameter arrays, kfac-jax's own state."""

    count: jax.Array
    hyper: dict[str, jax.Array]
    inner: Any


def split_batch(batch: Any) -> tuple[jax.Array, jax.Array]:
    """``(inputs, targets)`` of a batch given as a dict or an ``(inputs, targets)`` pair."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        for inputs, targets in (("inputs", "targets"), ("inputs", "labels"), ("x", "y")):
            if inputs in batch and targets in batch:
                return batch[inputs], batch[targets]
    raise InputError("kfac: cannot find inputs and targets in the workload's batch")


def _registered_loss(model: Model) -> Callable[[Any, Any], jax.Array]:
    """The training loss recomputed from the model outputs, with the loss registered for kfac-jax."""
    kind = model.loss_kind

    def value(params, batch):
        inputs, targets = split_batch(batch)
        outputs = model.apply(params, inputs)
        if kind == "softmax_cross_entropy":
            logits = outputs.reshape(-1, outputs.shape[-1])
            if jnp.issubdtype(targets.dtype, jnp.integer):
                labels = targets.reshape(-1)
                log_p = jax.nn.log_softmax(logits)
                loss = -jnp.take_along_axis(log_p, labels[:, None], axis=-1).mean()
            else:
                labels = targets.reshape(logits.shape)
                loss = -(labels * jax.nn.log_softmax(logits)).sum(-1).mean()
            kfac_jax.register_softmax_cross_entropy_loss(logits, labels)
            return loss
        if kind == "squared_error":
            # mean over all elements of (y - t)^2 = (2 / D) * [sum over batch of ½|y - t|² / B]
            flat = outputs.reshape(outputs.shape[0], -1)
            kfac_jax.register_squared_error_loss(flat, targets.reshape(flat.shape),
                                                 weight=2.0 / flat.shape[1])
            return jnp.mean((flat - targets.reshape(flat.shape)) ** 2)
        raise AssertionError(kind)  # checked in kfac_stepper

    return value


def _loss_rows(model: Model) -> Callable[[Any], int]:
    """kfac-jax's batch size: the number of registered loss rows.

    For sequence models (targets of shape ``(B, T)``) every position is a row — the workload's
    dense layers see ``(B·T, d)`` inputs, and kfac-jax requires their leading axis to match.
    """

    def rows(batch: Any) -> int:
        _, targets = split_batch(batch)
        if model.loss_kind == "softmax_cross_entropy":
            integer = jnp.issubdtype(targets.dtype, jnp.integer)
            return int(targets.size if integer else targets.size // targets.shape[-1])
        return int(targets.shape[0])

    return rows


def _check_loss(model: Model, value: Callable, params: Any, batch: Any) -> None:
    ours, theirs = float(value(params, batch)), float(model.loss(params, batch))
    if abs(ours - theirs) > 1e-4 * max(1.0, abs(theirs)):
        raise InputError(
            f"kfac: the workload's loss ({theirs:.6g}) is not the plain {model.loss_kind} of its "
            f"outputs ({ours:.6g}); K-FAC would optimise a different objective"
        )


def _optimizer(model: Model, value: Callable, *, adaptive: bool, config: KfacConfig) -> kfac_jax.Optimizer:
    """The kfac-jax optimizer of :func:`kfac_stepper` (its estimator is finalized by ``init``)."""
    blocks = dict(row_block_ctors())
    if config.fast_conv_statistics:
        from batchlab.optim.kfac_conv import conv_block_ctors

        blocks.update(conv_block_ctors())
    return kfac_jax.Optimizer(
        value_and_grad_func=jax.value_and_grad(value),
        l2_reg=0.0,
        use_adaptive_learning_rate=adaptive,
        use_adaptive_momentum=adaptive,
        use_adaptive_damping=adaptive,
        initial_damping=1.0 if adaptive else None,
        damping_adaptation_interval=1,
        num_burnin_steps=0,
        estimation_mode=config.estimation_mode,
        curvature_ema=config.curvature_ema,
        inverse_update_period=config.inverse_update_period,
        layer_tag_to_block_ctor=blocks,
        batch_size_extractor=_loss_rows(model),
        multi_device=False,
    )


def kfac_stepper(model: Model, *, adaptive: bool, schedule: str, config: KfacConfig) -> Stepper:
    """Bind K-FAC to ``model`` (see module docstring for the update).

    Args:
        model: a workload with ``apply``, ``loss`` and ``loss_kind``.
        adaptive: use kfac-jax's adaptive learning rate, momentum and damping.
        schedule: the static learning-rate schedule shape (unused when adaptive).
        config: fixed K-FAC settings.

    Returns:
        A :class:`~batchlab.optim.base.Stepper`; ``init`` must run outside ``jit`` (kfac-jax
        traces the model there), ``step`` is jittable.

    Raises:
        InputError: an unsupported ``loss_kind`` or a workload loss K-FAC cannot reproduce.
    """
    if model.loss_kind not in _SUPPORTED:
        raise InputError(
            f"kfac needs a network workload with a {' or '.join(_SUPPORTED)} loss; "
            f"got loss_kind {model.loss_kind!r}"
        )
    value = _registered_loss(model)
    optimizer = _optimizer(model, value, adaptive=adaptive, config=config)

    checked = []  # the model is checked once per bound optimizer, not per trial

    def init(params, hyper: HyperArrays, *, batch, key) -> KfacState:
        hyper = {name: jnp.asarray(v, jnp.float32) for name, v in hyper.items()}
        inner = optimizer.init(params, key, batch)
        if adaptive:
            inner.damping = hyper["damping"].astype(inner.damping.dtype)
        state = KfacState(jnp.zeros((), jnp.int32), hyper, inner)
        if not checked:
            _check_loss(model, value, params, batch)
            try:  # trace one step: kfac-jax asserts on layers it cannot handle
                jax.eval_shape(functools.partial(step, key=key), params, state, batch)
            except AssertionError as error:
                raise InputError(
                    "kfac: kfac-jax cannot build the curvature blocks of this model (a registered "
                    "layer's leading axes do not merge into the number of loss rows); use another "
                    "optimizer"
                ) from error
            checked.append(True)
        return state

    def step(params, state: KfacState, batch, *, key):
        hyper = state.hyper
        if adaptive:
            rates = dict(learning_rate=None, momentum=None, damping=None)
        else:
            factor = learning_rate_factor(state.count, hyper, schedule=schedule)
            rates = dict(learning_rate=hyper["learning_rate"] * factor,
                         momentum=hyper["momentum"], damping=hyper["damping"])
        with optimizer.staging_context():  # run kfac-jax's staged methods inline in our trace
            params, inner, stats = optimizer._step(  # noqa: SLF001 (pinned kfac-jax 0.0.8)
                params, state.inner, key, batch, None,
                rates["learning_rate"], rates["momentum"], rates["damping"], True, adaptive,
            )
        return params, KfacState(state.count + 1, hyper, inner), stats["loss"]

    return Stepper(init, step, lambda params, state: params, traces_model=True)


def curvature_estimator(model: Model, params: Any, batch: Any, *, key: jax.Array, adaptive: bool = False,
                        config: KfacConfig = KfacConfig()) -> Any:
    """The kfac-jax curvature estimator that :func:`kfac_stepper` builds for ``model``, finalized.

    Its ``blocks`` (per layer: a Kronecker-factored or a diagonal block, in kfac-jax's order) read a
    :class:`KfacState`'s ``inner.estimator_state.blocks_states``: calibrations use it to extract the
    preconditioner K-FAC applies at a checkpoint (:mod:`batchlab.calibrate.precondition`).  Tracing
    the model with ``batch`` is deterministic, so the blocks match those of every run of ``model``.

    Raises:
        InputError: an unsupported ``loss_kind``.
    """
    if model.loss_kind not in _SUPPORTED:
        raise InputError(f"kfac needs a network workload with a {' or '.join(_SUPPORTED)} loss; "
                         f"got loss_kind {model.loss_kind!r}")
    optimizer = _optimizer(model, _registered_loss(model), adaptive=adaptive, config=config)
    optimizer.init(params, key, batch)  # traces the model and finalizes the estimator
    return optimizer._estimator  # noqa: SLF001 (pinned kfac-jax 0.0.8: no public accessor)


def spec_with(config: KfacConfig, name: str = "kfac",
              description: str = "K-FAC (kfac-jax): Kronecker-factored natural gradient with momentum",
              ) -> OptimizerSpec:
    """The K-FAC registry entry with the fixed settings ``config`` (``SPEC`` is ``spec_with(KfacConfig())``).

    Give another ``config`` another ``name``: compiled steps are cached by the entry's name.

    Example:
        >>> fresh = spec_with(KfacConfig(inverse_update_period=1), "kfac-period1")
        >>> fresh.name, fresh.hyperparameters == SPEC.hyperparameters
        ('kfac-period1', True)
    """

    def bind(model: Model, static: tuple[tuple[str, str], ...]) -> Stepper:
        choices = dict(static)
        return kfac_stepper(model, adaptive=choices["adaptive"] == "on", schedule=choices["lr_schedule"],
                            config=config)

    return OptimizerSpec(name=name, hyperparameters=HYPERPARAMETERS + SCHEDULE_HYPERPARAMETERS, bind=bind,
                         description=description)


SPEC = spec_with(KfacConfig())
