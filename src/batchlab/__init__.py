"""batchlab: which algorithmic choices matter at which batch sizes.

Layers (lower never imports higher)::

    nqm  <-  optim, workloads  <-  train  <-  study  <-  analysis  <-  plots, report  <-  cli

``batchlab.nqm`` is the exact noisy quadratic model engine (pure NumPy, float64).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
