"""Compiled training steps, their cache, and JAX's persistent compilation cache.

The training carry holds everything a step needs — parameters, optimizer state (with the
hyperparameters as arrays), the step counter, the data and optimizer keys, and a small divergence
monitor — so the compiled functions take just the carry and the workload's training arrays, and
every trial of a (workload, optimizer, static choices, number of EMA decays, batch size) reuses the
same executable.  Step ``t`` uses the
minibatch ``sample_batch(key=fold_in(key_data, t))`` and the optimizer key ``fold_in(key_opt, t)``:
a run can replay any stretch exactly from a saved carry.

Loop structure (measured, see ``benchmarks/bench_train.py`` and :func:`choose_loop`): models without
convolutions run each evaluation interval as ONE call of a device loop (``fori_loop`` with a traced
trip count, so one executable serves every interval length), which removes the per-call dispatch
cost that dominates small steps and is on par for large ones; models with convolutions run a Python
loop over a jitted step, because XLA:CPU runs convolutions inside a device loop 6–30× slower.  Fully
unrolling a k-step loop avoids the convolution problem but multiplies compile time (5 s instead of
1 s for 16 steps of a tiny MLP) and was slower than the rolled loop for small steps.  The carry is
donated.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.optim import Prepared, Stepper, bind

__all__ = [
    "Monitor",
    "Carry",
    "Compiled",
    "compiled_for",
    "step_body",
    "choose_loop",
    "clear_cache",
    "cache_size",
    "enable_compilation_cache",
]


class Monitor(NamedTuple):
    """Divergence and loss bookkeeping carried on the device (no host sync per step).

    Attributes:
        first_loss: the minibatch loss at step 0 (reference for "exploding").
        bad_step: first step whose loss was NaN/inf/exploding, −1 if none.
        loss_sum: sum of minibatch losses since the last reset; ``loss_count``: how many.
    """

    first_loss: jax.Array
    bad_step: jax.Array
    loss_sum: jax.Array
    loss_count: jax.Array


class Carry(NamedTuple):
    """Everything one training step reads and writes."""

    params: Any
    opt_state: Any
    step: jax.Array
    key_data: jax.Array
    key_opt: jax.Array
    monitor: Monitor


@dataclasses.dataclass(frozen=True)
class Compiled:
    """The compiled pieces for one cache key.

    Attributes:
        stepper: the optimizer bound to the workload.
        advance: ``advance(carry, data, n) -> carry`` runs ``n ≥ 1`` steps: one call of a device
            loop, or ``n`` calls of a jitted step (:attr:`loop` says which); ``data`` is the
            workload's ``train_data()``, passed as an argument so it is not baked into the code.
        views: ``views(carry) -> tuple of parameter trees`` to evaluate: the evaluated parameters,
            then one average per extra EMA decay.
        init_params: ``init_params(key) -> params`` (jitted; shared by every optimizer).
        sample: ``sample(data, key) -> batch`` (jitted), for optimizers that trace an example batch.
        loop: ``"device"`` or ``"python"``.
    """

    stepper: Stepper
    advance: Callable[[Carry, Any, int], Carry]
    views: Callable[[Carry], tuple[Any, ...]]
    init_params: Callable[[jax.Array], Any]
    sample: Callable[[Any, jax.Array], Any]
    loop: str


@dataclasses.dataclass(frozen=True)
class CacheKey:
    """What selects compiled code (hyperparameter *values* do not)."""

    workload: Any
    optimizer: str
    static: tuple[tuple[str, str], ...]
    num_ema: int
    batch_size: int
    loop: str
    divergence_factor: float


_CACHE: dict[CacheKey, Compiled] = {}
_CONVOLUTIONS = frozenset({"conv_general_dilated"})


def _primitives(jaxpr: Any) -> set[str]:
    """Names of every primitive in a jaxpr, sub-jaxprs (jit, scan, cond, custom rules) included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    names |= _primitives(inner)
    return names


def choose_loop(workload: Any, batch_size: int) -> str:
    """``"python"`` if the model has convolutions, else ``"device"`` (a measured choice).

    Deterministic (it inspects the traced gradient, no timing).  Device-loop speed-up over a Python
    loop of jitted steps, measured on this 2-core CPU shared with other jobs (medians of
    interleaved repeats, ``benchmarks/bench_train.py``; wall time, CPU time in brackets):

    * convolutions, any size: 0.05–0.3× — XLA:CPU runs them 6–30× slower inside a loop;
    * small, dispatch-bound steps: 7× (228-parameter MLP), 1.7× (784-256-256 MLP at B = 4),
      1.3× (B = 16), 1.2–1.8× (nqm-sampled d = 100, B ≤ 128);
    * large dense steps: parity within the noise — MLP B = 64…512: 0.83–1.1× (1.03–1.09×),
      nqm-sampled B = 4096: 0.73× (0.98×), d = 10⁴ B = 128: 0.69–1.05× (0.85–0.90×),
      text-transformer B = 128: 0.67–2.5×, median 1.35× (1.26×).
    """
    workload.load()
    data = workload.train_data()
    params = jax.eval_shape(lambda: workload.init_params(key=jax.random.PRNGKey(0)))

    def gradient(params: Any, data: Any, key: jax.Array) -> Any:
        batch = workload.sample_batch_from(data, key=key, batch_size=batch_size)
        return jax.value_and_grad(workload.loss)(params, batch)

    jaxpr = jax.make_jaxpr(gradient)(params, data, jax.random.PRNGKey(0))
    return "python" if _primitives(jaxpr.jaxpr) & _CONVOLUTIONS else "device"


def step_body(workload: Any, stepper: Stepper, batch_size: int, factor: float) -> Callable[[Carry, Any], Carry]:
    """The uncompiled training step ``body(carry, data) -> carry``: one update plus the divergence monitor.

    Step ``t`` draws ``sample_batch_from(data, key=fold_in(key_data, t))`` and passes the optimizer
    ``fold_in(key_opt, t)``; the monitor records the first step whose loss is NaN/inf or exceeds
    ``factor · max(|first loss|, 1)``.  :func:`compiled_for` jits it (alone or in a device loop);
    benchmarks vmap it.
    """

    def body(carry: Carry, data: Any) -> Carry:
        t = carry.step
        batch = workload.sample_batch_from(
            data, key=jax.random.fold_in(carry.key_data, t), batch_size=batch_size
        )
        params, opt_state, loss = stepper.step(
            carry.params, carry.opt_state, batch, key=jax.random.fold_in(carry.key_opt, t)
        )
        m = carry.monitor
        loss = loss.astype(jnp.float32)
        first = jnp.where(t == 0, loss, m.first_loss)
        bad = ~jnp.isfinite(loss) | (jnp.abs(loss) > factor * jnp.maximum(jnp.abs(first), 1.0))
        bad_step = jnp.where((m.bad_step < 0) & bad, t, m.bad_step)
        monitor = Monitor(first, bad_step, m.loss_sum + loss, m.loss_count + 1)
        return Carry(params, opt_state, t + 1, carry.key_data, carry.key_opt, monitor)

    return body


def _advance(body: Callable[[Carry, Any], Carry], loop: str) -> Callable[[Carry, Any, int], Carry]:
    if loop == "device":
        many = jax.jit(
            lambda carry, data, n: jax.lax.fori_loop(0, n, lambda _, c: body(c, data), carry),
            donate_argnums=0,
        )
        return lambda carry, data, n: many(carry, data, np.int32(n))  # NumPy: no eager dispatch
    one = jax.jit(body, donate_argnums=0)

    def advance(carry: Carry, data: Any, n: int) -> Carry:
        for _ in range(n):
            carry = one(carry, data)
        return carry

    return advance


@functools.lru_cache(maxsize=64)
def _init_params(workload: Any) -> Callable[[jax.Array], Any]:
    return jax.jit(lambda key: workload.init_params(key=key))


@functools.lru_cache(maxsize=64)
def _sampler(workload: Any, batch_size: int) -> Callable[[Any, jax.Array], Any]:
    return jax.jit(lambda data, key: workload.sample_batch_from(data, key=key, batch_size=batch_size))


@functools.lru_cache(maxsize=256)
def _loop_for(workload: Any, batch_size: int) -> str:
    return choose_loop(workload, batch_size)


def compiled_for(
    workload: Any, prepared: Prepared, batch_size: int, *, loop: str, factor: float
) -> Compiled:
    """The (cached) compiled pieces for a trial; equal keys share executables.

    Args:
        workload: the workload (hashable; frozen dataclasses are).
        prepared: the trial's validated hyperparameters (only their static part matters here).
        batch_size: minibatch size.
        loop: ``"device"``, ``"python"`` or ``"auto"`` (:func:`choose_loop`).
        factor: the divergence factor (see :class:`~batchlab.train.result.TrainOptions`).

    Returns:
        A :class:`Compiled`.
    """
    if loop == "auto":
        loop = _loop_for(workload, batch_size)
    key = CacheKey(
        workload, prepared.spec.name, prepared.static, len(prepared.ema_decays), batch_size, loop, factor
    )
    if key in _CACHE:
        return _CACHE[key]
    stepper = bind(prepared, workload)
    extra_start = 1 if prepared.spec.ema else 0
    num_extra = len(prepared.ema_decays) - extra_start

    def views(carry: Carry) -> tuple[Any, ...]:  # eager: cheap indexing, saves a compilation
        primary = stepper.evaluation_params(carry.params, carry.opt_state)
        averages = carry.opt_state.averages if prepared.ema_decays else None
        extra = tuple(
            jax.tree.map(lambda a, i=i: a[extra_start + i], averages) for i in range(num_extra)
        )
        return (primary,) + extra

    compiled = Compiled(
        stepper=stepper,
        advance=_advance(step_body(workload, stepper, batch_size, factor), loop),
        views=views,
        init_params=_init_params(workload),
        sample=_sampler(workload, batch_size),
        loop=loop,
    )
    _CACHE[key] = compiled
    return compiled


def clear_cache() -> None:
    """Forget every cached compiled step (frees their executables)."""
    _CACHE.clear()
    for cached in (_init_params, _sampler, _loop_for):
        cached.cache_clear()


def cache_size() -> int:
    """Number of cached (workload, optimizer, static choices, EMA count, batch size, …) entries."""
    return len(_CACHE)


def enable_compilation_cache(path: str | os.PathLike | None = None) -> pathlib.Path:
    """Turn on JAX's persistent compilation cache (call explicitly; never done at import).

    Compiled steps then survive the process: a second ``batchlab train`` of the same configuration
    skips XLA compilation (K-FAC on digits-cnn: 22.5 s → 11.1 s wall, measured).  Caveats seen with
    jax 0.9.0 on CPU: loading an entry logs ``cpu_aot_loader`` "machine feature mismatch" lines on
    stderr (pseudo-features ``+prefer-no-scatter``/``+prefer-no-gather``; harmless on the machine
    that wrote the entry), and a cache folder shared by machines with different CPUs could load
    code the host cannot run — give each machine type its own folder.

    Args:
        path: cache folder; default ``$BATCHLAB_CACHE/jax`` or ``~/.cache/batchlab/jax``.

    Returns:
        The folder used.

    Example:
        >>> from batchlab.train import enable_compilation_cache
        >>> folder = enable_compilation_cache("/tmp/batchlab-jax-cache")
    """
    if path is None:
        root = os.environ.get("BATCHLAB_CACHE") or pathlib.Path.home() / ".cache" / "batchlab"
        path = pathlib.Path(root) / "jax"
    folder = pathlib.Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
