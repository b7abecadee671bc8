"""Adam's NQM with a preconditioner per batch size: does it fix the measured-P prediction's slope?

The calibrated NQM of Adam (``batchlab calibrate``, measured preconditioner) holds Adam's
``P = diag(√ν̂ + ε)`` at its value in the reference run (B = 128) for every batch size.  But
``ν̂`` averages squared minibatch gradients, ``E[g_B²] = m² + s²/B`` per parameter (``m``: the mean
gradient, ``s²``: the per-example variance), and ``adam_preconditioner_vs_batch.py`` shows its shape
changes with B.  This builds, for each batch size B, Adam's NQM in the coordinates of

- ``fixed``:  the reference's ``P`` (what ``calibrate`` does today);
- ``model``:  ``ν̂_B = max(ν̂_ref − s²/B_ref, 0) + s²/B``, ``P_B = diag(√ν̂_B + ε)``: the reference's
  second moment with its noise part rescaled to B, ``s²`` the per-example gradient variance of each
  parameter at the checkpoint (``noise_examples`` examples).  Predictive: one reference run;
- ``oracle``: ``ν̂`` read from an Adam run at B itself (the learning rate the study's winners used
  at that B, median over its design seeds), at its first hit of the target: the preconditioner Adam
  actually has there.  Diagnostic only (it uses the study's learning rates).

Each NQM is measured exactly as ``calibrate`` measures (Lanczos top-k, SLQ bulk, per-example noise,
all in the ``P_B`` coordinates), built with the initial-state exponent fitted on the reference's own
NQM (its anchor: the reference's median steps at B_ref), tuned (heavy ball: β₁ as momentum) at B,
and compared with the measured steps of the seed-replicated ``stability-digits-loss`` study (median
of its design seeds, from ``results/calibration/stability-digits-loss/cells.csv``).

Usage (about 20 min on 2 cores; output in ``results/calibration/adam-per-batch/``)::

    PYTHONPATH=src python benchmarks/adam_batch_preconditioner.py --out results/calibration/adam-per-batch
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.calibrate.measure import MeasureConfig, measure
from batchlab.calibrate.model import ModelConfig, _initial, build_problem
from batchlab.calibrate.operators import chunk_batch, flat_model
from batchlab.calibrate.precondition import DiagonalBlock, Preconditioner, adam_preconditioner
from batchlab.calibrate.predict import Proxy
from batchlab.calibrate.reference import ReferenceConfig, reference_anchor, run_reference
from batchlab.critical import critical_batch_size
from batchlab.nqm.optimize import optimize
from batchlab.nqm.spectrum import Problem
from batchlab.workloads import get_workload

CELLS = Path("results/calibration/stability-digits-loss/cells.csv")


def per_parameter_variance(workload, params, chunks) -> np.ndarray:
    """Unbiased per-example gradient variance of every parameter (flat ``ravel_pytree`` order)."""
    model = flat_model(workload, params)

    def single(theta, example):
        return model.loss(theta, jax.tree.map(lambda a: a[None], example))

    @jax.jit
    def sums(theta, chunk):
        g = jax.vmap(jax.grad(single), in_axes=(None, 0))(theta, chunk)
        return g.sum(axis=0), (g * g).sum(axis=0)

    total, total_sq, n = np.zeros(model.dim), np.zeros(model.dim), 0
    for chunk in chunks:
        s, sq = sums(model.theta, chunk)
        total += np.asarray(s, np.float64)
        total_sq += np.asarray(sq, np.float64)
        n += int(jax.tree.leaves(chunk)[0].shape[0])
    mean = total / n
    return np.maximum(total_sq - n * mean**2, 0.0) / (n - 1)


def diagonal_preconditioner(diagonal: np.ndarray, summary: dict) -> Preconditioner:
    return Preconditioner("adam", diagonal.size, (DiagonalBlock(np.arange(diagonal.size), diagonal),), summary)


def measured_cells(path: Path) -> dict[int, dict]:
    """Median over the study's design seeds of the measured steps and learning rate per Adam cell."""
    rows = [r for r in csv.DictReader(path.open()) if r["optimizer"] == "adam" and r["study"].endswith("(default)")]
    out: dict[int, dict] = {}
    for b in sorted({int(r["batch_size"]) for r in rows}):
        cell = [r for r in rows if int(r["batch_size"]) == b]
        out[b] = {"steps": [float(r["measured_steps"]) for r in cell],
                  "low": [float(r["measured_low"]) for r in cell], "high": [float(r["measured_high"]) for r in cell],
                  "learning_rate": float(np.median([float(r["measured_learning_rate"]) for r in cell]))}
    return out


def nqm_steps(spectra, *, run, anchor, exponent: float | None, batch_size: float, model: ModelConfig):
    """The tuned heavy-ball NQM steps at ``batch_size`` on ``spectra`` (initial exponent fixed if given)."""
    built = build_problem(spectra, initial_loss=run.initial_loss, target_loss=run.target_loss,
                          anchor=anchor if exponent is None else None,
                          config=model if exponent is None else dataclasses.replace(model, initial="isotropic"))
    problem = built.problem
    if exponent is not None:
        risk0 = run.initial_loss - model.loss_floor
        problem = Problem(h=problem.h, c=problem.c, s0=_initial(problem.h, problem.weights, risk0, exponent),
                          weights=problem.weights, name=problem.name)
    target = built.relative_target * problem.initial_risk()
    best = optimize(problem, "momentum", batch_size=batch_size, target=target)
    return built, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", default="16,64,256,1024")
    parser.add_argument("--reference-lr", type=float, default=0.01)
    parser.add_argument("--reference-batch", type=int, default=128)
    parser.add_argument("--target", type=float, default=0.07, help="train_set_loss target (the study's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    cells = measured_cells(CELLS)
    workload = get_workload("digits-cnn")
    workload.load()
    mconf, model = MeasureConfig(), ModelConfig()
    k_loss, k_measure = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(args.seed), 1))
    loss_n, loss_chunk = mconf.rounded(4096)
    loss_chunks = chunk_batch(workload.sample_batch(key=k_loss, batch_size=loss_n), loss_chunk)
    started = time.perf_counter()

    def reference(batch_size: int, rate: float, seeds: int) -> tuple:
        config = ReferenceConfig(optimizer="adam", hyperparameters={"learning_rate": rate}, batch_size=batch_size,
                                 tune_points=0, seeds=seeds, target=args.target, target_metric="train_set_loss")
        return config, run_reference(workload, config, seed=args.seed, loss_chunks=loss_chunks)

    ref_config, ref = reference(args.reference_batch, args.reference_lr, 3)
    fixed = adam_preconditioner(ref.checkpoint_state)
    [block] = fixed.blocks
    beta2, eps, count = fixed.summary["beta2"], fixed.summary["epsilon"], fixed.summary["count"]
    nu_ref = (block.diagonal - eps) ** 2
    noise_n, noise_chunk = mconf.rounded(mconf.noise_examples)
    noise_chunks = chunk_batch(workload.sample_batch(key=jax.random.fold_in(k_measure, 7), batch_size=noise_n),
                               noise_chunk)
    s2 = per_parameter_variance(workload, ref.checkpoint, noise_chunks)
    signal = np.maximum(nu_ref - s2 / args.reference_batch, 0.0)
    noise_share = float(np.median(np.minimum(s2 / args.reference_batch / nu_ref, 10.0)))
    print(f"reference: adam lr {args.reference_lr} B {args.reference_batch}, checkpoint step {ref.checkpoint_step}, "
          f"median steps {ref.median_steps}, loss {ref.initial_loss:.3f} -> {ref.target_loss:.4f}; "
          f"median (s^2/B_ref)/nu_ref = {noise_share:.2f}, signal clipped at 0 for "
          f"{np.mean(nu_ref < s2 / args.reference_batch):.0%} of parameters", flush=True)

    anchor = reference_anchor(ref_config, ref, Proxy("momentum", 0.0))
    spectra_ref = measure(workload, ref.checkpoint, mconf, key=k_measure, preconditioner=fixed)
    built_ref, _ = nqm_steps(spectra_ref, run=ref, anchor=anchor, exponent=None, batch_size=args.reference_batch,
                             model=model)
    exponent = built_ref.initial_exponent
    print(f"fixed-P NQM: initial exponent {exponent:.3f} ({built_ref.initial_rule}), anchor steps "
          f"{built_ref.anchor_steps} vs {anchor.steps}", flush=True)
    problem_ref = built_ref.problem
    rows = []
    for b in batch_sizes:
        row = {"batch_size": b, "measured_steps": cells.get(b, {}).get("steps"),
               "measured_low": cells.get(b, {}).get("low"), "measured_high": cells.get(b, {}).get("high")}
        fixed_best = optimize(problem_ref, "momentum", batch_size=b, target=built_ref.target)
        row["fixed"] = {"steps": fixed_best.steps, "lr": fixed_best.learning_rate, "momentum": fixed_best.momentum}
        nu_b = signal + s2 / b
        diag_b = np.sqrt(nu_b) + eps
        precond_b = diagonal_preconditioner(diag_b, {"definition": "model", "batch_size": b})
        spectra_b = measure(workload, ref.checkpoint, mconf, key=k_measure, preconditioner=precond_b)
        _, best = nqm_steps(spectra_b, run=ref, anchor=None, exponent=exponent, batch_size=b, model=model)
        row["model"] = {"steps": best.steps, "lr": best.learning_rate, "momentum": best.momentum,
                        "corr_log_d": float(np.corrcoef(np.log(diag_b), np.log(block.diagonal))[0, 1]),
                        "lambda1": float(spectra_b.top.values[0]), "b_noise_grad": spectra_b.noise.b_noise}
        if not args.no_oracle and b in cells:
            _, run_b = reference(b, cells[b]["learning_rate"], 1)
            oracle = adam_preconditioner(run_b.checkpoint_state)
            spectra_o = measure(workload, run_b.checkpoint, mconf, key=k_measure, preconditioner=oracle)
            _, best_o = nqm_steps(spectra_o, run=ref, anchor=None, exponent=exponent, batch_size=b, model=model)
            row["oracle"] = {"steps": best_o.steps, "lr": best_o.learning_rate, "momentum": best_o.momentum,
                             "run_steps": run_b.target_step, "run_lr": cells[b]["learning_rate"],
                             "corr_log_d": float(np.corrcoef(np.log(oracle.blocks[0].diagonal),
                                                             np.log(block.diagonal))[0, 1]),
                             "corr_log_d_model": float(np.corrcoef(np.log(oracle.blocks[0].diagonal),
                                                                   np.log(diag_b))[0, 1])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"reference": {"batch_size": args.reference_batch, "learning_rate": args.reference_lr,
                             "checkpoint_step": ref.checkpoint_step, "median_steps": ref.median_steps,
                             "initial_loss": ref.initial_loss, "target_loss": ref.target_loss,
                             "initial_exponent": exponent, "beta2": beta2, "count": count},
               "median_noise_share": noise_share, "rows": rows, "seconds": time.perf_counter() - started}
    for variant in ("fixed", "model", "oracle"):
        points = [(r["batch_size"], r[variant]["steps"]) for r in rows if variant in r]
        if len(points) >= 3:
            bs, steps = zip(*points)
            crit = critical_batch_size(np.array(bs, float), np.array(steps, float))
            summary[f"b_noise_{variant}"] = crit
    (args.out / "adam_per_batch.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    lines = [f"Adam's NQM per batch size on digits-cnn (target train_set_loss <= {args.target}); reference adam "
             f"lr {args.reference_lr}, B {args.reference_batch}: {ref.median_steps} steps (median of 3 seeds), "
             f"initial exponent {exponent:.2f}",
             f"median share of noise in the reference's nu: {noise_share:.2f}",
             f"{'B':>6s} {'measured (3 design seeds)':>28s} {'fixed P':>8s} {'model P_B':>10s} {'oracle P_B':>11s}"]
    for r in rows:
        meas = "/".join(f"{s:g}" for s in r["measured_steps"] or [])
        lines.append(f"{r['batch_size']:6d} {meas:>28s} {r['fixed']['steps']:8.1f} {r['model']['steps']:10.1f} "
                     f"{r['oracle']['steps'] if 'oracle' in r else float('nan'):11.1f}")
    for variant in ("fixed", "model", "oracle"):
        if f"b_noise_{variant}" in summary:
            lines.append(f"B_noise ({variant}): {summary[f'b_noise_{variant}']}")
    lines.append(f"wall time {summary['seconds']:.0f} s")
    (args.out / "adam_per_batch.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
