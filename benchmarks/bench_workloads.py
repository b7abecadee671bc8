"""Cost of one training step (sample + forward + backward + SGD update, jitted) per workload and batch size.

Also the cost of one full ``evaluate`` call and the first-call compile time.  A Python loop over a
jitted step with ``jax.block_until_ready``, as the training loop runs it; the training data enters
the step as an argument (``Workload.train_data``), not as a closed-over constant.  Besides wall time
per step it reports the process CPU time per step (all threads), which other jobs sharing the
cores inflate much less than wall time.

    python benchmarks/bench_workloads.py [--batch-sizes 32,128,1024] [--workloads a,b] [--seconds 2]
"""

from __future__ import annotations

import argparse
import time

import jax

from batchlab.workloads import get_workload, list_workloads


def make_step(workload, batch_size: int):
    """A jitted SGD step ``(params, data, key) -> (params, loss)``."""

    def step(params, data, key):
        batch = workload.sample_batch_from(data, key=key, batch_size=batch_size)
        loss, grads = jax.value_and_grad(workload.loss)(params, batch)
        return jax.tree.map(lambda p, g: p - 0.01 * g, params, grads), loss

    return jax.jit(step)


def time_workload(name: str, batch_sizes: list[int], seconds: float) -> list[dict[str, float]]:
    """Rows of ``{workload, batch_size, compile_s, step_ms, cpu_ms}``; ``batch_size`` 0 is ``evaluate``."""
    workload = get_workload(name)
    workload.load()
    data = workload.train_data()
    rows = []
    for batch_size in batch_sizes:
        step = make_step(workload, batch_size)
        params = workload.init_params(key=jax.random.key(0))
        start = time.perf_counter()
        params, loss = jax.block_until_ready(step(params, data, jax.random.key(1)))
        compile_s = time.perf_counter() - start
        count, start, cpu_start = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds or count < 5:
            params, loss = jax.block_until_ready(step(params, data, jax.random.key(count)))
            count += 1
        rows.append({"workload": name, "batch_size": batch_size, "compile_s": compile_s,
                     "step_ms": 1e3 * (time.perf_counter() - start) / count,
                     "cpu_ms": 1e3 * (time.process_time() - cpu_start) / count})
    params = workload.init_params(key=jax.random.key(0))
    start = time.perf_counter()
    workload.evaluate(params)
    first = time.perf_counter() - start
    count, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds or count < 3:
        workload.evaluate(params)
        count += 1
    rows.append({"workload": name, "batch_size": 0, "compile_s": first,
                 "step_ms": 1e3 * (time.perf_counter() - start) / count,
                 "cpu_ms": 1e3 * (time.process_time() - cpu_start) / count})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="32,128,1024")
    parser.add_argument("--workloads", default=",".join(list_workloads()))
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(f"{'workload':20s} {'batch':>6s} {'wall ms':>9s} {'cpu ms':>9s} {'compile s':>10s}")
    for name in args.workloads.split(","):
        for row in time_workload(name, batch_sizes, args.seconds):
            label = "eval" if row["batch_size"] == 0 else str(row["batch_size"])
            print(f"{row['workload']:20s} {label:>6s} {row['step_ms']:9.2f} {row['cpu_ms']:9.2f} "
                  f"{row['compile_s']:10.2f}", flush=True)


if __name__ == "__main__":
    main()
