"""Calibration benchmarks — cost of the pipeline, ratios against in-process baselines, prediction quality.

    python benchmarks/bench_calibrate.py pipeline   # wall time of calibrate() on digits-cnn, per stage
    python benchmarks/bench_calibrate.py noise      # chunked vmap per-example gradients vs a Python loop;
                                                    # tr(HΣ) by sketch vs n exact Hessian products
    python benchmarks/bench_calibrate.py study      # measured critical batch size of SGD (or momentum) on
                                                    # digits-cnn vs the calibrated prediction (~25 min on 2 cores)
    python benchmarks/bench_calibrate.py all        # pipeline + noise (what ./dev.sh bench runs)

``study`` tunes each batch size like a (small) study: a 13-point learning-rate grid, 3 seeds, the median
steps to target per rate and the best rate per batch size; then fits the critical batch size with
:func:`batchlab.critical.critical_batch_size` and prints predicted / measured.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.calibrate import CalibrationConfig, MeasureConfig, calibrate, hessian_operator, top_eigenpairs
from batchlab.calibrate.noise import chunk_stats, gradient_noise
from batchlab.calibrate.operators import chunk_batch
from batchlab.critical import critical_batch_size
from batchlab.train import train
from batchlab.workloads.registry import get_workload

SIZES = (4, 16, 64, 256, 1024)


def _stages():
    marks: list[tuple[str, float]] = []

    def stage(name: str, total: int):
        marks.append((name, time.perf_counter()))
        return lambda: None

    return marks, stage


def bench_pipeline(curvature: str = "ggn") -> dict:
    workload = get_workload("digits-cnn")
    workload.load()
    marks, stage = _stages()
    start = time.perf_counter()
    config = CalibrationConfig(measure=MeasureConfig(curvature=curvature), batch_sizes=SIZES)
    result = calibrate(workload, config, seed=0, stages=stage)
    total = time.perf_counter() - start
    marks.append(("end", start + total))
    print(f"[pipeline] calibrate(digits-cnn, {curvature}, defaults): {total:.1f} s")
    for (name, t0), (_, t1) in zip(marks, marks[1:]):
        print(f"    {name:<22} {t1 - t0:7.1f} s")
    return result.prediction_dict()


def bench_noise(examples: int = 256, chunk: int = 64) -> None:
    workload = get_workload("digits-cnn")
    workload.load()
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=examples)
    op = hessian_operator(workload, params, batch, chunk_size=examples)
    top = top_eigenpairs(op, 4, key=jax.random.PRNGKey(2), steps=20)
    model, stats = chunk_stats(workload, params)
    directions, signs = jnp.asarray(top.vectors, jnp.float32), jnp.ones((chunk, 32), jnp.float32)
    chunks = chunk_batch(batch, chunk)
    jax.block_until_ready(stats(model.theta, chunks[0], directions, signs))  # compile
    start = time.perf_counter()
    jax.block_until_ready([stats(model.theta, c, directions, signs) for c in chunks])
    ours = time.perf_counter() - start
    single = jax.jit(jax.grad(lambda t, x, y: model.loss(t, {"inputs": x[None], "targets": y[None]})))
    single(model.theta, batch["inputs"][0], batch["targets"][0])
    start = time.perf_counter()
    grads = np.stack([np.asarray(single(model.theta, batch["inputs"][j], batch["targets"][j]), np.float64)
                      for j in range(examples)])
    loop = time.perf_counter() - start
    print(f"[noise] {examples} per-example gradients (+ projections and sketches), vmap in chunks of {chunk}: "
          f"{ours:.3f} s; baseline Python loop over single-example gradients: {loop:.3f} s "
          f"(ratio {loop / ours:.1f}x)")
    start = time.perf_counter()
    noise = gradient_noise(workload, params, chunks, top, op, key=jax.random.PRNGKey(3), sketches=32)
    sketched = time.perf_counter() - start
    centred = grads - grads.mean(axis=0)
    start = time.perf_counter()
    exact = sum(float(g @ op.matvec(g)) for g in centred) / (examples - 1)
    products = time.perf_counter() - start
    print(f"[noise] tr(HΣ): sketch (32 products) {noise.trace_h_sigma:.5g} ± {noise.trace_h_sigma_stderr:.2g} "
          f"in {sketched:.2f} s (whole noise pass); exact from {examples} products {exact:.5g} in {products:.2f} s "
          f"(ratio {products / sketched:.1f}x)")


def measured_study(optimizer: str = "sgd", seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Min over a learning-rate grid of the median steps to target over seeds, per batch size."""
    workload = get_workload("digits-cnn")
    workload.load()
    rates = np.geomspace(0.01, 1.0, 13) if optimizer == "sgd" else np.geomspace(0.001, 0.3, 13)
    best: dict[int, float] = {}
    for size in SIZES:
        incumbent = math.inf
        for rate in rates:
            hp = {"learning_rate": float(rate)} | ({"momentum": 0.9} if optimizer == "momentum" else {})
            steps = []
            for seed in seeds:
                result = train(workload, optimizer, hp, size, 4000, seed, eval_every=10,
                               stop=lambda step, _m, b=incumbent: step > 3 * b)
                steps.append(result.steps_to_target if result.status == "reached" else math.inf)
            incumbent = min(incumbent, float(np.median(steps)))
        best[size] = incumbent
        print(f"    B={size:<5} best median steps {incumbent:g}", flush=True)
    return best


def bench_study(optimizer: str, prediction: str | None) -> None:
    entries = (json.loads(Path(prediction).read_text()) if prediction else bench_pipeline())["optimizers"]
    predicted = entries[optimizer]
    best = measured_study(optimizer)
    measured = critical_batch_size(list(best), list(best.values()))
    critical = predicted["critical_batch_size"]
    print(json.dumps({"measured_steps": best, "measured": measured.as_dict(),
                      "predicted_steps": dict(zip(predicted["batch_sizes"], predicted["steps"])),
                      "predicted": critical}))
    for key, value in (("hyperbola fit", measured.fit.b_noise), ("20% overhead", measured.overhead)):
        mine = critical["b_noise" if key == "hyperbola fit" else "overhead"]
        print(f"[study] {optimizer} on digits-cnn: critical batch size ({key}) predicted {mine:.3g}, "
              f"measured {value:.3g}, ratio {mine / value:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="?", default="all", choices=("pipeline", "noise", "study", "all"))
    parser.add_argument("--optimizer", default="sgd", choices=("sgd", "momentum"))
    parser.add_argument("--prediction", help="compare with this prediction.json instead of calibrating first")
    args = parser.parse_args()
    if args.which in ("pipeline", "all"):
        bench_pipeline()
    if args.which in ("noise", "all"):
        bench_noise()
    if args.which == "study":
        bench_study(args.optimizer, args.prediction)
