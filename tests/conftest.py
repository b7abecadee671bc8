"""Shared test configuration: hypothesis profiles, headless matplotlib."""

import os

import matplotlib
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")

# XLA's CPU backend spends most of a small model's compile time in LLVM's optimisation passes (e.g. the
# 1-block text transformer's gradient: 5.0 s at the default level, 1.6 s at level 0), and the suite
# compiles hundreds of small programs that then run for a few steps.  Level 0 changes how fast the
# compiled code runs, not the program (the same optimised HLO; at most float rounding differs, as
# between CPUs).  Every assertion is unchanged; the whole suite passes at either level.  Set before JAX
# creates its CPU client; subprocesses (the CLI and Dask worker tests) inherit it.  An explicit
# level in the caller's XLA_FLAGS wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
