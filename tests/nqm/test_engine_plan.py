"""Prepared evaluation (engine plans, companion plans) gives the one-shot engine's numbers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.nqm import _closed, _engine, expected_risk, heavy_ball, nesterov, power_law, sgd, with_ema
from batchlab.nqm.dynamics import _heavy_ball_companion

DYNAMICS = [
    sgd(np.array([0.1, 1.0, 1.9])),
    heavy_ball(np.array([0.05, 0.5, 2.5]), np.array([0.0, 0.9, 0.999])),
    nesterov(np.array([0.05, 0.5, 1.0]), 0.9),
    with_ema(sgd(np.array([0.1, 1.0, 1.5])), np.array([0.0, 0.9, 0.9999])),
    with_ema(heavy_ball(np.array([0.1, 0.5, 1.0]), 0.9), 0.99),
]


@pytest.mark.parametrize("dyn", DYNAMICS, ids=["sgd", "heavy_ball", "nesterov", "sgd_ema", "momentum_ema"])
def test_plan_matches_one_shot_evaluation_on_any_rows_and_steps(dyn):
    problem = power_law(500)
    B = np.array([1.0, 64.0, 4096.0])
    rng = np.random.default_rng(0)
    plan = _engine.Plan(problem, dyn, B)
    t = np.array([0, 1, 2, 17, 1000, 123457, 10**8])
    full = expected_risk(problem, dyn, batch_size=B, steps=t, per_direction=True)
    np.testing.assert_allclose(plan.risk(t, reduce=False), full, rtol=1e-12, atol=0)
    for _ in range(3):  # subsets of settings, steps per setting, repeated use of the same plan
        rows = np.sort(rng.choice(3, size=int(rng.integers(1, 4)), replace=False))
        tr = rng.integers(0, 10**6, size=(rows.size, 2))
        got = plan.risk(tr, rows, reduce=True)
        for i, r in enumerate(rows):
            one = _engine.evaluate(problem, dyn, B, np.broadcast_to(tr[i], (3, 2)), reduce=True)[r]
            np.testing.assert_allclose(got[i], one, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_companion_plan_rows_and_per_row_steps_equal_a_fresh_evaluation(seed):
    rng = np.random.default_rng(seed)
    k = 50
    x = 10 ** rng.uniform(-6, 0.5, k)
    beta = np.where(rng.random(k) < 0.2, 0.0, 1 - 10 ** rng.uniform(-5, 0, k))
    comp = _heavy_ball_companion(x, beta)
    q, s0 = 10 ** rng.uniform(-4, 0, k), rng.uniform(0, 2, k)
    plan = _closed.CompanionPlan(comp, q, s0)
    rows = rng.choice(k, size=int(rng.integers(1, k)), replace=False)
    t = rng.integers(0, 10**7, size=(rows.size, 3))
    got, cancel = plan.moment(t, rows)
    sub = type(comp)(*(f[rows] for f in comp))
    ref, ref_cancel = _closed.companion_moment(sub, q[rows], s0[rows], t)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(cancel, ref_cancel)


def test_sincos_reduction_matches_numpy_to_rounding():
    rng = np.random.default_rng(1)
    # small, large (up to 4e8, t φ at t = 10^8) and beyond the reduction's range (NumPy's own)
    x = np.concatenate([rng.uniform(-10, 10, 1000), 10 ** rng.uniform(0, 8.6, 20000), [0.0, 2**26 * 2 * np.pi * 1.1]])
    s, c = _closed._sincos(x)
    assert np.max(np.abs(s - np.sin(x))) <= 1e-15
    assert np.max(np.abs(c - np.cos(x))) <= 1e-15


def test_process_evaluation_equals_the_threaded_one(monkeypatch):
    """Large reduced evaluations go to worker processes (settings dealt round-robin); same numbers."""
    problem = power_law(400)
    dyn = heavy_ball(np.logspace(-3, 0.5, 13)[:, None], (1 - np.logspace(-4, 0, 5, endpoint=False))[None, :])
    t = np.array([1, 100, 10**5])
    monkeypatch.setenv("BATCHLAB_NQM_PROCESSES", "0")
    threaded = _engine.evaluate(problem, dyn, 64.0, t, reduce=True, threads=2)
    monkeypatch.setenv("BATCHLAB_NQM_PROCESSES", "1")
    monkeypatch.setattr(_engine, "PROCESS_ENTRIES", 1)
    used = []
    real = _engine._evaluate_on_processes
    monkeypatch.setattr(_engine, "_evaluate_on_processes", lambda *a: used.append(1) or real(*a))
    on_processes = _engine.evaluate(problem, dyn, 64.0, t, reduce=True, threads=2)
    assert used
    np.testing.assert_array_equal(on_processes, threaded)


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "forkserver"])
def test_worker_processes_do_not_rerun_an_unguarded_script(tmp_path, fork):
    """A script that calls the engine at top level, without a ``__main__`` guard, runs once, whether
    the workers are forked or started fresh from a forkserver (which would import the main script)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "import numpy as np\n"
        "from batchlab.nqm import _engine, heavy_ball, power_law\n"
        "_engine.PROCESS_ENTRIES = 1\n"
        f"_engine._fork_is_safe = lambda: {fork}\n"
        "print('top level', flush=True)\n"
        "r = _engine.evaluate(power_law(300), heavy_ball(np.linspace(0.1, 1, 8), 0.9), 8.0, np.array([10]),\n"
        "                     reduce=True, threads=2)\n"
        "print('done', r.shape, len(_engine._POOL), flush=True)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "BATCHLAB_NQM_PROCESSES": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("top level") == 1 and "done (8, 1) 1" in out.stdout  # one pool was used


def test_parallel_curves_from_an_unguarded_script(tmp_path):
    """``scaling_curves`` on worker processes from a script without a ``__main__`` guard: runs once."""
    import os
    import subprocess
    import sys

    script = tmp_path / "curves.py"
    script.write_text(
        "from batchlab.nqm import power_law\n"
        "from batchlab.nqm.scaling import scaling_curves\n"
        "print('top level', flush=True)\n"
        "c = scaling_curves(power_law(200), [('sgd', 0.0), ('sgd', 0.5)], [4, 64], target=0.01, workers=2)\n"
        "print('curves', len(c), flush=True)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("top level") == 1 and "curves 2" in out.stdout
