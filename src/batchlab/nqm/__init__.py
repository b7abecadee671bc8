"""The noisy quadratic model (NQM): exact expected-risk engine, solvers and Monte Carlo.

Pure NumPy, float64, no I/O.

Example:
    >>> from batchlab.nqm import power_law, heavy_ball, expected_risk
    >>> problem = power_law(10_000)                     # h_i = 1/i, c = h, s0 = 1
    >>> risk = expected_risk(problem, heavy_ball(0.5, 0.9), batch_size=256, steps=[10, 100, 1000])
"""

from batchlab.nqm.dynamics import (
    EMA, SGD, Dynamics, HeavyBall, Nesterov, build_system, heavy_ball, max_stable_learning_rate,
    nesterov, sgd, stability_limit, with_ema,
)
from batchlab.nqm.risk import expected_risk, is_stable, steady_state_risk, theorem1_bound, theorem2_bound
from batchlab.nqm.spectrum import Problem, binned, from_arrays, power_law

__all__ = [
    "Problem", "binned", "from_arrays", "power_law",
    "SGD", "HeavyBall", "Nesterov", "EMA", "Dynamics",
    "sgd", "heavy_ball", "nesterov", "with_ema", "build_system", "stability_limit",
    "max_stable_learning_rate",
    "expected_risk", "steady_state_risk", "theorem1_bound", "theorem2_bound", "is_stable",
]
