"""K-FAC with its factor inverses recomputed every step (``inverse_update_period = 1``), as an import
reference for study specs in ``studies/``: ``[optimizers."optimizers/kfac_period1.py:SPEC"]`` (relative to the
spec file).

The registry's ``kfac`` recomputes them every 5 steps.  At large batch sizes on digits-cnn a run reaches
the target in about 10 steps, so half of them use inverses from initialisation or step 5; the
calibrated NQM of K-FAC holds the checkpoint's factors fixed from step 0.  This variant measures what
the stale inverses cost (``benchmarks/preconditioner_freshness.py``, ``studies/stability-digits-loss-kfac-period1.toml``).
"""

from __future__ import annotations

from batchlab.optim import kfac

SPEC = kfac.spec_with(kfac.KfacConfig(inverse_update_period=1), "kfac-period1",
                      "K-FAC (kfac-jax) with its factor inverses recomputed every step")
