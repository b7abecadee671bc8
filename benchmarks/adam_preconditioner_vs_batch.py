"""Does Adam's preconditioner depend on the batch size?  Its diagonal after N updates at several B.

The calibrated NQM of Adam (``batchlab calibrate``, measured preconditioner) holds Adam's
``P = diag(√ν̂ + ε)`` fixed at its value in the reference run, at the reference's batch size.  But
``ν`` averages the squared minibatch gradient, ``E[g_B²] = m² + s²/B`` per parameter (``m``: the mean
gradient, ``s²``: the per-example variance), so its *shape* across parameters should change with B:
noise-dominated at small B, signal-dominated at large B.  This trains Adam on digits-cnn at
B = 16, 128 and 1024 (the learning rates the ``stability-digits-loss`` study picked at those sizes,
other hyperparameters at their defaults, seed 0) for 20 and 60 updates, reads the diagonal, and prints
for each run its median, the correlation of ``log D`` with the reference (B = 128, 60 updates: the
default calibration's batch size) and the quantiles of ``log(D / D_ref)`` over parameters.

Usage (about 30 s; output in ``results/calibration/digits/adam_preconditioner_vs_batch.txt``)::

    PYTHONPATH=src python benchmarks/adam_preconditioner_vs_batch.py
"""

from __future__ import annotations

import jax
import numpy as np

from batchlab.calibrate.operators import chunk_batch
from batchlab.calibrate.precondition import adam_preconditioner
from batchlab.calibrate.reference import ReferenceConfig, run_reference
from batchlab.workloads import get_workload

RUNS = ((16, 0.0039), (128, 0.0106), (1024, 0.0163))  # (B, learning rate)
STEPS = (20, 60)
REFERENCE = (128, 60)


def main() -> None:
    workload = get_workload("digits-cnn")
    chunks = chunk_batch(workload.sample_batch(key=jax.random.key(1), batch_size=512), 256)
    diagonals = {}
    for batch_size, rate in RUNS:
        for steps in STEPS:
            config = ReferenceConfig(optimizer="adam", hyperparameters={"learning_rate": rate}, batch_size=batch_size,
                                     checkpoint_step=steps, tune_points=0, target_loss=0.07)
            run = run_reference(workload, config, seed=0, loss_chunks=chunks)
            [block] = adam_preconditioner(run.checkpoint_state).blocks
            diagonals[(batch_size, steps)] = block.diagonal
    reference = np.log(diagonals[REFERENCE])
    print(f"Adam's diagonal D = sqrt(nu_hat) + eps on digits-cnn ({reference.size:,} parameters); "
          f"reference B = {REFERENCE[0]}, {REFERENCE[1]} updates")
    print(f"{'B':>5s} {'updates':>8s} {'median D':>9s} {'corr(log D, ref)':>17s} "
          f"{'log(D / D_ref): q10':>20s} {'q50':>6s} {'q90':>6s}")
    for (batch_size, steps), diagonal in diagonals.items():
        ratio = np.log(diagonal) - reference
        q10, q50, q90 = np.quantile(ratio, [0.1, 0.5, 0.9])
        print(f"{batch_size:5d} {steps:8d} {np.median(diagonal):9.2e} {np.corrcoef(np.log(diagonal), reference)[0, 1]:17.3f} "
              f"{q10:20.2f} {q50:6.2f} {q90:6.2f}")


if __name__ == "__main__":
    main()
