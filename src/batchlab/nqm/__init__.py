"""The noisy quadratic model (NQM): exact expected-risk engine, solvers and Monte Carlo.

Pure NumPy, float64, no I/O.  See ``docs`` in the README and the module docstrings.
"""

from batchlab.nqm.spectrum import Problem, binned, from_arrays, power_law

__all__ = ["Problem", "binned", "from_arrays", "power_law"]
