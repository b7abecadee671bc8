"""Why ``batchlab calibrate --drift`` models K-FAC and not Adam: Adam's early preconditioner against its checkpoint's.

``--drift kfac`` replaces the NQM's "the checkpoint's preconditioner ``P_c`` from update 0" with the one
the reference run applied at each update ``t`` before its checkpoint, through the multipliers
``m_{t,i} = u_iᵀ P_c^{1/2} P_t⁻¹ P_c^{1/2} u_i`` along the top eigenvectors ``u_i`` of the preconditioned
curvature (:func:`batchlab.calibrate.precondition.drift_multipliers`).  That presumes a ``P_t`` that does
not depend on the gradient it divides, as K-FAC's refreshed inverses of curvature estimates do.  Adam's
``P_t = √v̂_t + ε`` is built from the same gradients: at update 0 it is ``|g₀| + ε`` (a sign step).  This
runs the calibration's Adam reference (digits-cnn, B = 128, learning rate 0.01, seed 0, to the
checkpoint ``batchlab calibrate --target-metric train_set_loss --target 0.07`` measured at, update 37),
measures the top-k eigenvectors of ``P_c^{-1/2} H P_c^{-1/2}`` there and prints, for updates on a
geometric grid, the median, smallest and largest ``m`` over the top-k directions and the mean over the
other directions.

Usage (about 2 minutes on 2 cores; output in ``results/calibration/drift/adam_drift.txt``)::

    PYTHONPATH=src python benchmarks/adam_drift.py
"""

from __future__ import annotations

import jax
import numpy as np

from batchlab.calibrate.measure import MeasureConfig, measure
from batchlab.calibrate.operators import chunk_batch
from batchlab.calibrate.precondition import adam_preconditioner, drift_multipliers
from batchlab.calibrate.reference import ReferenceConfig, run_reference
from batchlab.workloads import get_workload

CHECKPOINT = 37  # the Adam reference's first hit of train_set_loss <= 0.07 (results/calibration/digits/drift)
UPDATES = (0, 1, 2, 3, 4, 6, 8, 10, 12, 15, 19, 24, 30, 36)


def main() -> None:
    workload = get_workload("digits-cnn")
    chunks = chunk_batch(workload.sample_batch(key=jax.random.key(1), batch_size=512), 256)
    config = ReferenceConfig(optimizer="adam", hyperparameters={"learning_rate": 0.01}, batch_size=128,
                             checkpoint_step=CHECKPOINT, tune_points=0, seeds=1, target_loss=0.07)
    run = run_reference(workload, config, seed=0, loss_chunks=chunks, keep=tuple(t + 1 for t in UPDATES))
    checkpoint = adam_preconditioner(run.checkpoint_state)
    spectra = measure(workload, run.checkpoint, MeasureConfig(), key=jax.random.key(5), preconditioner=checkpoint)
    print(f"digits-cnn, Adam (lr 0.01, B 128, seed 0), checkpoint after {CHECKPOINT} updates; "
          f"top-{len(spectra.top.values)} eigenvalues of P^-1/2 H P^-1/2: {spectra.top.values[0]:.3g} "
          f"… {spectra.top.values[-1]:.3g}")
    print("m = u^T P_c^1/2 P_t^-1 P_c^1/2 u (1 = the checkpoint's preconditioner)")
    print(f"{'update t':>8}  {'top-k median':>12}  {'top-k min':>10}  {'top-k max':>10}  {'other mean':>10}  "
          f"{'P_t median':>10}")
    for t in UPDATES:
        applied = adam_preconditioner(run.snapshots[t + 1].state)
        top, bulk = drift_multipliers(checkpoint, applied, spectra.top.vectors)
        (block,) = applied.blocks
        print(f"{t:>8}  {np.median(top):>12.4g}  {top.min():>10.4g}  {top.max():>10.4g}  {bulk:>10.4g}  "
              f"{np.median(block.diagonal):>10.3g}")
    (block,) = checkpoint.blocks
    print(f"checkpoint P_c median {np.median(block.diagonal):.3g}; share of parameters with |g| < 1e-6 at "
          f"update 0: {np.mean(adam_preconditioner(run.snapshots[1].state).blocks[0].diagonal < 1e-6):.3f}")


if __name__ == "__main__":
    main()
