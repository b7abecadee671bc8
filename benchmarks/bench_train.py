"""Training-engine benchmarks: ratios measured in one process (never a timed test).

Sections (run all, or pick with ``--only``):

* ``overhead``: steps/s of :func:`batchlab.train.train` against a bare hand-written optax loop (a
  jitted ``value_and_grad`` + ``optax.sgd`` step in a Python loop) on the same workload and batch
  size, evaluation excluded from both.  Target: ``train`` ≥ 0.9× the bare loop.
* ``loop``: device loop (``fori_loop``) against a Python loop over a jitted step, per workload.
* ``eval``: evaluation time as a share of a run at the workload's default cadence.
* ``batch``: milliseconds per step per workload at B = 32 … 4096.
* ``vmap``: 16 trials (16 learning rates) trained at once with ``vmap`` against one after another.
* ``kfac``: K-FAC ms/step (and × SGD), with batchlab's convolution statistics and kfac-jax's own.

Usage (full run ≈ 40 min on the 2 shared cores, mostly the Transformer and B = 4096; ``--quick``
≈ 5 min)::

    PYTHONPATH=src python benchmarks/bench_train.py [--only overhead,vmap] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from batchlab.optim import bind, get_optimizer, prepare
from batchlab.optim.kfac import KfacConfig, kfac_stepper
from batchlab.train import TrainOptions, train
from batchlab.train.compiled import step_body
from batchlab.workloads.registry import get_workload

WORKLOADS = ("nqm-sampled", "fashion-mnist-mlp", "digits-cnn", "mnist1d-cnn", "fashion-mnist-cnn",
             "text-transformer")
STEP_SCALE = {"nqm-sampled": 2.5, "fashion-mnist-cnn": 0.5, "text-transformer": 0.05}  # keep each measurement ~1–3 s


def _steps(name: str, steps: int) -> int:
    return max(5, int(steps * STEP_SCALE.get(name, 1.0)))


Cost = tuple[float, float]  # (wall seconds, process CPU seconds) per step


def _interleaved(cases: dict[str, Callable[[], Cost]], repeats: int = 5) -> dict[str, Cost]:
    """Run the cases alternately ``repeats`` times; median wall and CPU time per step of each.

    Other processes share this machine's 2 cores: interleaving exposes every case to the same load,
    and CPU time (all threads of this process) is insensitive to it.
    """
    samples: dict[str, list[Cost]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            samples[name].append(case())
    return {name: (float(np.median([w for w, _ in v])), float(np.median([c for _, c in v])))
            for name, v in samples.items()}


def _train_case(workload: Any, steps: int, batch_size: int, **kwargs: Any) -> Callable[[], Cost]:
    """A warm ``train`` call's cost per step, evaluation excluded (it evaluates at 0 and the end)."""
    args = (workload, "sgd", {"learning_rate": 1e-3}, batch_size, steps)
    train(*args, 0, target=-1.0, eval_every=steps, **kwargs)  # compiles

    def case() -> Cost:
        wall, cpu = time.perf_counter(), time.process_time()
        result = train(*args, 1, target=-1.0, eval_every=steps, **kwargs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return (wall - result.eval_time) / steps, (cpu - result.eval_time) / steps

    return case


def _bare_case(workload: Any, steps: int, batch_size: int) -> Callable[[], Cost]:
    """A hand-written optax SGD loop: jitted step (key folded in inside, buffers donated) called
    from a Python loop; no evaluation, no divergence monitoring."""
    optimizer = optax.sgd(1e-3)
    data = workload.train_data()

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, data, key, t):
        batch = workload.sample_batch_from(data, key=jax.random.fold_in(key, t), batch_size=batch_size)
        loss, grads = jax.value_and_grad(workload.loss)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params = workload.init_params(key=jax.random.PRNGKey(0))
    state = optimizer.init(params)
    key = jax.random.PRNGKey(1)
    params, state, loss = step(params, state, data, key, jnp.int32(0))
    jax.block_until_ready(loss)

    def case() -> Cost:
        nonlocal params, state
        wall, cpu = time.perf_counter(), time.process_time()
        for t in range(steps):
            params, state, loss = step(params, state, data, key, t)
        jax.block_until_ready(loss)
        return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps

    return case


def _train_call(workload: Any, steps: int, batch_size: int) -> Callable[[], Cost]:
    """Wall and CPU seconds of a whole warm ``train`` call, evaluation time subtracted."""
    args = (workload, "sgd", {"learning_rate": 1e-3}, batch_size, steps)
    train(*args, 0, target=-1.0, eval_every=steps)  # compiles

    def case() -> Cost:
        wall, cpu = time.perf_counter(), time.process_time()
        result = train(*args, 1, target=-1.0, eval_every=steps)
        return (time.perf_counter() - wall - result.eval_time,
                time.process_time() - cpu - result.eval_time)

    return case


def bench_overhead(names: tuple[str, ...], steps: int) -> None:
    print("\n## overhead: train() vs a bare optax loop (B = 128, evaluation excluded, medians of 5")
    print("## interleaved repeats).  train's per-step cost is the slope between runs of N and 2N steps;")
    print("## 'per call' is the rest (init, copies, bookkeeping).  speed = bare / train (> 1: train faster)")
    print(f"{'workload':20s} {'N':>5s} {'bare ms':>8s} {'train ms':>9s} {'speed wall':>11s} {'speed CPU':>10s} "
          f"{'per call ms':>12s}")
    for name in names:
        workload = get_workload(name)
        workload.load()
        count = _steps(name, steps)
        cost = _interleaved({"bare": _bare_case(workload, count, 128),
                             "short": _train_call(workload, count, 128),
                             "long": _train_call(workload, 2 * count, 128)})
        (bw, bc), (sw, sc), (lw, lc) = cost["bare"], cost["short"], cost["long"]
        tw, tc = (lw - sw) / count, (lc - sc) / count
        fixed = sw - count * tw
        print(f"{name:20s} {count:5d} {bw * 1e3:8.3f} {tw * 1e3:9.3f} {bw / tw:10.2f}x {bc / tc:9.2f}x "
              f"{fixed * 1e3:12.1f}")


def bench_loop(names: tuple[str, ...], steps: int) -> None:
    print("\n## loop structure: device loop vs Python loop over a jitted step (B = 128; medians)")
    print(f"{'workload':20s} {'python ms':>10s} {'device ms':>10s} {'device speedup wall':>20s} {'CPU':>6s}")
    for name in names:
        workload = get_workload(name)
        workload.load()
        count = max(5, _steps(name, steps) // (10 if "cnn" in name else 1))  # conv device loops are slow
        cost = _interleaved({loop: _train_case(workload, count, 128, options=TrainOptions(loop=loop))
                             for loop in ("python", "device")}, repeats=3)
        (pw, pc), (dw, dc) = cost["python"], cost["device"]
        print(f"{name:20s} {pw * 1e3:10.3f} {dw * 1e3:10.3f} {pw / dw:19.2f}x {pc / dc:5.2f}x")


def bench_eval(names: tuple[str, ...], steps: int) -> None:
    print("\n## evaluation share of a run at the default cadence (B = 128)")
    print(f"{'workload':20s} {'eval every':>10s} {'eval s':>8s} {'run s':>8s} {'share':>7s}")
    for name in names:
        workload = get_workload(name)
        workload.load()
        cadence = workload.default_eval_every
        total = max(_steps(name, steps), 4 * cadence)
        args = (workload, "sgd", {"learning_rate": 1e-3}, 128, total)
        train(*args, 0, target=-1.0)  # compile
        result = train(*args, 1, target=-1.0)
        print(f"{name:20s} {cadence:10d} {result.eval_time:8.2f} {result.wall_time:8.2f} "
              f"{result.eval_time / result.wall_time:6.1%}")


def bench_batch(names: tuple[str, ...], sizes: tuple[int, ...], steps: int) -> None:
    print("\n## ms per SGD step by batch size (train(), warm, evaluation excluded)")
    print(f"{'workload':20s} " + " ".join(f"{f'B={b}':>9s}" for b in sizes))
    for name in names:
        workload = get_workload(name)
        workload.load()
        cells = []
        for size in sizes:
            if name == "text-transformer" and size > 512:  # ~0.5 s/step at B = 128 already
                cells.append(float("nan"))
                continue
            count = max(3, _steps(name, steps) * 128 // size)
            cells.append(_interleaved({"train": _train_case(workload, count, size)}, 3)["train"][0] * 1e3)
        print(f"{name:20s} " + " ".join(f"{c:9.2f}" for c in cells))


def _carry_for(workload: Any, stepper: Any, prepared: Any, seed: int) -> Any:
    from batchlab.train.compiled import Carry, Monitor

    key_data, key_init, key_opt = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = workload.init_params(key=key_init)
    state = stepper.init(params, prepared.arrays(max_steps=1000))
    monitor = Monitor(jnp.float32(0), jnp.int32(-1), jnp.float32(0), jnp.int32(0))
    return Carry(params, state, jnp.int32(0), key_data, key_opt, monitor)


def bench_vmap(names: tuple[str, ...], steps: int, trials: int = 16) -> None:
    print(f"\n## {trials} trials at once (vmap over learning rates) vs one after another (B = 128, momentum)")
    print(f"{'workload':20s} {'sequential ms/trial-step':>25s} {'vmap ms/trial-step':>19s} {'vmap speedup':>13s} {'CPU':>9s}")
    for name in names:
        workload = get_workload(name)
        workload.load()
        data = workload.train_data()
        spec = get_optimizer("momentum")
        rates = np.geomspace(1e-3, 1e-1, trials)
        prepared = [prepare(spec, {"learning_rate": float(r)}) for r in rates]
        stepper = bind(prepared[0], workload)
        body = step_body(workload, stepper, 128, 1e3)
        carries = [_carry_for(workload, stepper, p, i) for i, p in enumerate(prepared)]
        single = jax.jit(body, donate_argnums=0)
        batched = jax.jit(jax.vmap(body, in_axes=(0, None)), donate_argnums=0)
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *carries)
        carries = [single(c, data) for c in carries]
        stacked = batched(stacked, data)
        jax.block_until_ready((carries, stacked))

        def sequential() -> Cost:
            nonlocal carries
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                carries = [single(c, data) for c in carries]
            jax.block_until_ready(carries)
            return ((time.perf_counter() - wall) / (steps * trials),
                    (time.process_time() - cpu) / (steps * trials))

        def vectorised() -> Cost:
            nonlocal stacked
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                stacked = batched(stacked, data)
            jax.block_until_ready(stacked)
            return ((time.perf_counter() - wall) / (steps * trials),
                    (time.process_time() - cpu) / (steps * trials))

        cost = _interleaved({"sequential": sequential, "vmap": vectorised}, repeats=3)
        (sw, sc), (vw, vc) = cost["sequential"], cost["vmap"]
        print(f"{name:20s} {sw * 1e3:25.3f} {vw * 1e3:19.3f} {sw / vw:12.2f}x {sc / vc:8.2f}x")


def _kfac_ms(workload: Any, *, fast: bool, steps: int) -> tuple[float, float]:
    prepared = prepare(get_optimizer("kfac"), {})
    stepper = kfac_stepper(workload, adaptive=False, schedule="constant",
                           config=KfacConfig(fast_conv_statistics=fast))
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=128)
    state = stepper.init(params, prepared.arrays(max_steps=100), batch=batch, key=jax.random.PRNGKey(2))
    step = jax.jit(stepper.step)
    start = time.perf_counter()
    params, state, loss = step(params, state, batch, key=jax.random.PRNGKey(3))
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for t in range(steps):  # includes one factor inversion every 5 steps
        params, state, loss = step(params, state, batch, key=jax.random.PRNGKey(t))
    jax.block_until_ready(loss)
    return (time.perf_counter() - start) / steps, compile_s


def bench_kfac(names: tuple[str, ...], steps: int) -> None:
    print("\n## K-FAC ms/step at B = 128 (averaged over inversion and non-inversion steps)")
    print(f"{'workload':20s} {'sgd ms':>8s} {'kfac ms':>8s} {'x sgd':>6s} {'compile s':>9s} "
          f"{'kfac-jax conv ms':>17s} {'speedup':>8s}")
    for name in names:
        workload = get_workload(name)
        workload.load()
        sgd = _interleaved({"sgd": _bare_case(workload, 20, 128)}, 3)["sgd"][0]
        fast, compile_s = _kfac_ms(workload, fast=True, steps=steps)
        has_conv = "cnn" in name
        slow = _kfac_ms(workload, fast=False, steps=5)[0] if has_conv else float("nan")
        print(f"{name:20s} {sgd * 1e3:8.2f} {fast * 1e3:8.1f} {fast / sgd:6.1f} {compile_s:9.1f} "
              f"{slow * 1e3:17.1f} {slow / fast:7.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="overhead,loop,eval,batch,vmap,kfac")
    parser.add_argument("--quick", action="store_true", help="fewer steps and workloads")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    steps = 50 if args.quick else 200
    names = WORKLOADS[:3] if args.quick else WORKLOADS
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; steps per measurement ~{steps}")
    if "overhead" in sections:
        bench_overhead(names, steps)
    if "loop" in sections:
        bench_loop(names, steps)
    if "eval" in sections:
        bench_eval(names, steps)
    if "batch" in sections:
        bench_batch(names, (32, 128, 512, 2048, 4096), steps // 4)
    if "vmap" in sections:
        bench_vmap(("fashion-mnist-mlp", "digits-cnn") + (() if args.quick else ("fashion-mnist-cnn",)), steps // 4)
    if "kfac" in sections:
        bench_kfac(("fashion-mnist-mlp", "digits-cnn") + (() if args.quick else ("fashion-mnist-cnn",)), 20)


if __name__ == "__main__":
    main()
