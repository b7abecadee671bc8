"""Evidence for the workloads' target values: heavy-ball SGD runs at one batch size, evaluation curves.

Runs ``optax.sgd(learning_rate, momentum)`` (constant rate) on a workload for each learning rate and
prints one JSON line per evaluation: ``{"workload", "learning_rate", "momentum", "step", metrics…}``.
A target is then chosen as a value that the best of these runs first reaches within a few thousand
steps (see the workload docstrings and the report).

    python benchmarks/measure_targets.py fashion-mnist-cnn --learning-rates 0.01,0.03,0.1 --steps 5000
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import optax

from batchlab.workloads import get_workload


def run(workload, learning_rate: float, momentum: float, batch_size: int, steps: int, eval_every: int, seed: int):
    """Yield ``(step, metrics, seconds)`` every ``eval_every`` steps of one constant-rate run."""
    optimizer = optax.sgd(learning_rate, momentum=momentum or None)
    data = workload.train_data()

    @jax.jit
    def step(params, state, data, key):
        batch = workload.sample_batch_from(data, key=key, batch_size=batch_size)
        loss, grads = jax.value_and_grad(workload.loss)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    root = jax.random.key(seed)
    init_key, root = jax.random.split(root)
    params = workload.init_params(key=init_key)
    state = optimizer.init(params)
    start = time.perf_counter()
    for t in range(1, steps + 1):
        params, state, loss = step(params, state, data, jax.random.fold_in(root, t))
        if t % eval_every == 0:
            metrics = dict(workload.evaluate(params))
            metrics["train_loss"] = float(loss)
            yield t, metrics, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("--learning-rates", default="0.01,0.03,0.1")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], help="NAME=INT workload option")
    args = parser.parse_args()
    options = {name: int(value) for name, value in (item.split("=") for item in args.option)}
    workload = get_workload(args.workload, **options)
    for learning_rate in (float(x) for x in args.learning_rates.split(",")):
        for step, metrics, seconds in run(workload, learning_rate, args.momentum, args.batch_size,
                                          args.steps, args.eval_every, args.seed):
            record = {"workload": args.workload, "learning_rate": learning_rate, "momentum": args.momentum,
                      "batch_size": args.batch_size, "step": step, "seconds": round(seconds, 2)}
            record.update({key: round(value, 5) for key, value in metrics.items()})
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
