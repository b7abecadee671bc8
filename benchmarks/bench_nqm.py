"""NQM engine and solver benchmarks — ratios against baselines measured in the same process.

    python benchmarks/bench_nqm.py grid     # issue 2: risk at t = 10^6 on d = 10^4 for a 100 × 20 grid
    python benchmarks/bench_nqm.py curves   # issue 3: 4 p × 10 batch sizes × {SGD, momentum, EMA}, tuned
    python benchmarks/bench_nqm.py all

``grid`` times the exact engine on the full (learning rate, momentum) grid and, as the baseline, plain
step-by-step propagation of the per-direction second moments (the textbook method) on a slice of the
same work, extrapolated linearly in steps × settings; it prints both and their ratio.

``curves`` times the full set of tuned scaling curves behind the paper's steps-versus-batch-size
figures on the exact d = 10^4 spectrum (one line per curve), and as the in-process baseline one
binary search on the monotone-risk assumption per grid point for a single (p = 0, momentum, B = 1024)
100 × 20 grid — the authors' notebook's method — extrapolated to the same 120 optimizations.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from batchlab.nqm import build_system, expected_risk, heavy_ball, power_law
from batchlab.nqm.scaling import scaling_curves
from batchlab.nqm.solve import search_steps


def _step_by_step(problem, dyn, batch_size, steps: int) -> float:
    """Baseline: Σ ← M Σ Mᵀ + q u uᵀ for every direction and setting, one step at a time."""
    sys = build_system(problem, dyn, batch_size)
    E, u, a = sys.matrices()
    M = np.eye(E.shape[-1]) - E
    S = np.broadcast_to(sys.s0, sys.shape)[..., None, None] * a[..., :, None] * a[..., None, :]
    R = np.broadcast_to(sys.q, sys.shape)[..., None, None] * u[..., :, None] * u[..., None, :]
    Mt = np.swapaxes(M, -1, -2)
    for _ in range(steps):
        S = M @ S @ Mt + R
    return float((S[..., sys.out, sys.out] * sys.weight).sum())


def bench_grid(repeats: int = 3) -> None:
    problem = power_law(10_000)
    lr = np.logspace(-3, np.log10(3.5), 100)[:, None]
    mom = (1 - np.logspace(-5, 0, 20, endpoint=False))[None, :]
    dyn = heavy_ball(lr, mom)
    expected_risk(problem, heavy_ball(0.1, 0.9), batch_size=128, steps=[10])  # warm-up (imports)
    start = time.perf_counter()  # the first full call also starts the engine's worker processes
    expected_risk(problem, dyn, batch_size=128, steps=[10**6])
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        risk = expected_risk(problem, dyn, batch_size=128, steps=[10**6])
        times.append(time.perf_counter() - start)
    engine = min(times)
    # baseline on 4 settings × 2,000 steps, extrapolated to 2,000 settings × 10^6 steps
    sl_steps, sl_settings = 2_000, 4
    start = time.perf_counter()
    _step_by_step(problem, heavy_ball(lr[:sl_settings, 0], 0.9), 128, sl_steps)
    per_setting_step = (time.perf_counter() - start) / (sl_steps * sl_settings)
    baseline = per_setting_step * 2_000 * 10**6
    print(f"[grid] exact risk at t=1e6, d=1e4, 100x20 (lr, momentum) grid: {engine:.3f} s "
          f"(best of {repeats}; first call {first:.3f} s incl. starting worker processes); "
          f"finite entries {np.isfinite(risk).mean():.3f}")
    print(f"[grid] step-by-step baseline: {per_setting_step * 1e3:.3f} ms per setting-step "
          f"-> {baseline / 3600:.1f} h extrapolated; ratio {baseline / engine:,.0f}x")


def bench_curves(batches=tuple(4.0**k for k in range(1, 11)), workers: int | None = None) -> None:
    problem = power_law(10_000)
    specs = [(kind, p) for p in (0.0, 0.25, 0.5, 0.75) for kind in ("sgd", "momentum", "ema")]
    workers = workers or os.cpu_count() or 1
    start = time.perf_counter()
    curves = scaling_curves(problem, specs, batches, target=0.01, workers=workers)
    total = time.perf_counter() - start
    for curve in curves:
        print(f"[curves] p={curve.precond:<4g} {curve.kind:<8} {curve.seconds:6.1f} s  "
              f"B_noise={curve.critical.fit.b_noise:,.0f}  steps={[int(s) for s in curve.steps]}")
    print(f"[curves] sum of per-curve times {sum(c.seconds for c in curves):.1f} s; "
          f"wall time on {workers} worker process(es) {total:.1f} s")
    # baseline: the notebook's method (binary search per grid point, monotone assumption) for one
    # 100 x 20 momentum grid, extrapolated to the 120 optimizations above (80 2-D, 40 1-D: count 2-D)
    lr = np.logspace(-6, np.log10(4.0), 100)[:, None]
    mom = (1 - np.logspace(-5, 0, 20))[None, :]
    start = time.perf_counter()
    search_steps(problem, heavy_ball(lr[:10], mom), batch_size=1024, target=0.01)
    grid_time = (time.perf_counter() - start) * 10
    baseline = grid_time * 120
    print(f"[curves] wall {total:.1f} s for 120 tuned points; grid-search baseline "
          f"{grid_time:.1f} s per 100x20 grid -> {baseline / 60:.1f} min extrapolated; ratio {baseline / total:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="all", choices=["grid", "curves", "all"])
    args = parser.parse_args()
    if args.which in ("grid", "all"):
        bench_grid()
    if args.which in ("curves", "all"):
        bench_curves()


if __name__ == "__main__":
    main()
