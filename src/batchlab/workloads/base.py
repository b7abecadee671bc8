"""The workload interface: data, model, loss, evaluation metric and target (AlgoPerf-style).

A workload owns everything that makes "steps to reach the target" well defined: its data (train and
evaluation splits, loaded from locally installed files only), its model and initialisation, its training
loss, its evaluation metrics, the metric that defines the target and the default target value, and a
default step budget and evaluation cadence.

Batches are drawn **with replacement** from the training split: the batch at step ``t`` of a run with
seed ``s`` is ``sample_batch(key=fold_in(PRNGKey(s), t), batch_size=B)``.  This makes any batch size
valid (also larger than the data set), makes every run deterministic given its seed, lets a run replay
any step exactly, and matches the i.i.d. gradient-noise assumption of the noisy quadratic model.

Adding a workload: one module under ``batchlab/workloads/`` defining a subclass of :class:`Workload`
(decorated ``@final`` in spirit: do not subclass concrete workloads) and one line in
``batchlab/workloads/registry.py``.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, Callable, ClassVar, Literal, Mapping, TypeVar

import jax

from batchlab.checks import finite_or_none
from batchlab.errors import InputError

__all__ = ["Batch", "Params", "Workload", "LossKind"]

Params = Any  # a pytree of jax arrays
Batch = Any  # a pytree of jax arrays whose leading axis is the batch axis
LossKind = Literal["softmax_cross_entropy", "squared_error", "quadratic"]
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class Workload(abc.ABC):
    """Abstract workload.  Concrete workloads are frozen dataclasses whose fields are their options.

    Class attributes every concrete workload sets:
        name: registry name, e.g. ``"fashion-mnist-mlp"``.
        version: bump whenever data, model, loss or metric change; it enters every trial id.
        target_metric: key of :meth:`evaluate`'s result that defines the target, e.g. ``"error"``.
        target_value: default target; a run reaches it when ``metric <= target_value``
            (all batchlab target metrics are "lower is better").
        default_max_steps: default step budget for one training run.
        default_eval_every: default evaluation cadence in steps.
        loss_kind: what the training loss is, so curvature methods (K-FAC) can register it.
        install_hint: the command that installs the workload's data, shown when it is missing.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    target_metric: ClassVar[str]
    target_value: ClassVar[float]
    default_max_steps: ClassVar[int]
    default_eval_every: ClassVar[int]
    loss_kind: ClassVar[LossKind]
    install_hint: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: metrics a study or run may put its target on (``target_metric`` first); a workload that offers
    #: more than :meth:`evaluate` returns computes the others in :meth:`evaluate_for`
    extra_target_metrics: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def target_metrics(cls) -> tuple[str, ...]:
        """The metrics a target may be set on: :attr:`target_metric`, then :attr:`extra_target_metrics`."""
        return (cls.target_metric, *(m for m in cls.extra_target_metrics if m != cls.target_metric))

    def check_target_metric(self, metric: Any) -> str:
        """``metric`` if a target may be set on it (:meth:`target_metrics`), else a one-line InputError."""
        allowed = self.target_metrics()
        if metric not in allowed:
            raise InputError(f"target_metric: {self.name} offers {', '.join(allowed)}, got {metric!r}")
        return metric

    # --- data -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def load(self) -> None:
        """Load (and cache) the data; raise :class:`batchlab.errors.DataMissingError` if not installed.

        Idempotent and cheap after the first call.  Everything else may call it.
        """

    @property
    @abc.abstractmethod
    def num_train_examples(self) -> int:
        """Size of the training split (``0`` for an infinite stream such as ``nqm-sampled``)."""

    @abc.abstractmethod
    def sample_batch(self, *, key: jax.Array, batch_size: int) -> Batch:
        """Draw ``batch_size`` training examples with replacement.  Jittable; deterministic in ``key``.

        Batches are dicts: ``{"inputs": ..., "targets": ...}`` for supervised workloads (inputs go to
        :meth:`apply`), ``{"inputs": ...}`` when there are no targets.
        """

    def train_data(self) -> Any:
        """The device arrays :meth:`sample_batch` reads, as a pytree (``None`` if it reads none).

        Pass them into a jitted step as an argument and sample with :meth:`sample_batch_from`:
        arrays a jitted function merely closes over are embedded in the compiled program as
        constants (on XLA:CPU the 47 MB Fashion-MNIST training images add ~1.7 s per compilation).
        """
        return None

    def sample_batch_from(self, train_data: Any, *, key: jax.Array, batch_size: int) -> Batch:
        """:meth:`sample_batch` reading the training arrays from ``train_data`` (see :meth:`train_data`).

        ``sample_batch_from(train_data(), key=k, batch_size=B)`` equals ``sample_batch(key=k, batch_size=B)``.
        """
        del train_data
        return self.sample_batch(key=key, batch_size=batch_size)

    # --- model --------------------------------------------------------------------------------------
    @abc.abstractmethod
    def init_params(self, *, key: jax.Array) -> Params:
        """Initial parameters (float32 pytree)."""

    @abc.abstractmethod
    def apply(self, params: Params, inputs: jax.Array) -> jax.Array:
        """Model outputs (logits, predictions) for a batch of inputs.  Jittable."""

    @abc.abstractmethod
    def loss(self, params: Params, batch: Batch) -> jax.Array:
        """Mean training loss over the batch (a scalar).  Jittable."""

    def per_example_loss(self, params: Params, batch: Batch) -> jax.Array:
        """Per-example training losses, shape ``(batch_size,)``; used for per-example gradients."""
        return jax.vmap(lambda ex: self.loss(params, jax.tree.map(lambda a: a[None], ex)))(batch)

    # --- evaluation -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def evaluate(self, params: Params) -> Mapping[str, float]:
        """Metrics on the evaluation split, e.g. ``{"loss": 0.41, "error": 0.147}``.

        Must contain :attr:`target_metric`.  Deterministic.
        """

    def evaluate_for(self, params: Params, metric: str) -> Mapping[str, float]:
        """:meth:`evaluate`'s metrics, plus ``metric`` when a target is set on one of
        :attr:`extra_target_metrics` that :meth:`evaluate` does not compute (the training loop calls
        this; only runs targeting such a metric pay for it)."""
        del metric
        return self.evaluate(params)

    # --- per-instance memo ----------------------------------------------------------------------------
    def _memo(self, name: str, make: Callable[[], _T]) -> _T:
        """Per-instance memo for loaded data and jitted helpers.

        Workloads are frozen dataclasses whose fields are their options; loaded state lives outside
        the fields (so it never enters equality, hashing or ``repr``) and is dropped when pickling.
        """
        memo = self.__dict__.setdefault("_memo_", {})
        if name not in memo:
            memo[name] = make()
        return memo[name]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_memo_", None)  # device arrays and compiled functions are rebuilt on demand
        return state

    def check_target(self, target: Any, metric: str | None = None) -> float:
        """``target`` as a float if it is a valid value of ``metric`` (default :attr:`target_metric`),
        else InputError.

        Losses and risks are ``> 0`` (finite); workloads whose metric is a fraction narrow this
        (classification: an error rate in ``[0, 1]``).
        """
        metric = self.target_metric if metric is None else metric
        value = finite_or_none(target)
        if value is None or value <= 0:
            raise InputError(f"target: {metric} must be a finite number > 0, got {target!r}")
        return value

    def reached(self, metrics: Mapping[str, float], target: float | None = None, metric: str | None = None) -> bool:
        """Whether ``metrics`` meet ``target`` (default: the workload's ``target_value``): a finite
        ``metric`` (default :attr:`target_metric`) ``<= target``.  The training loop asks this; it does
        not re-implement it."""
        goal = self.target_value if target is None else target
        value = float(metrics[self.target_metric if metric is None else metric])
        return math.isfinite(value) and value <= goal


