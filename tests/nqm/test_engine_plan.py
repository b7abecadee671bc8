"""Prepared evaluation (engine plans, companion plans) gives the one-shot engine's numbers."""

from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.nqm import _closed, _engine, workers, expected_risk, heavy_ball, nesterov, power_law, sgd, with_ema
from batchlab.nqm.dynamics import heavy_ball_companion as _heavy_ball_companion

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


def _grid_setting():
    problem = power_law(400)
    dyn = heavy_ball(np.logspace(-3, 0.5, 13)[:, None], (1 - np.logspace(-4, 0, 5, endpoint=False))[None, :])
    return problem, dyn, np.array([1, 100, 10**5])


def _in_process(monkeypatch, problem, dyn, t):
    monkeypatch.setenv("BATCHLAB_NQM_PROCESSES", "0")
    out = _engine.evaluate(problem, dyn, 64.0, t, reduce=True, threads=2)
    monkeypatch.setenv("BATCHLAB_NQM_PROCESSES", "1")
    monkeypatch.setattr(_engine, "PROCESS_ENTRIES", 1)
    return out


def test_process_evaluation_equals_the_threaded_one(monkeypatch):
    """Large reduced evaluations go to worker processes (settings dealt round-robin); same numbers.
    The jobs must really run on the pool's worker processes: a silent in-process fallback fails here."""
    import os
    import warnings

    problem, dyn, t = _grid_setting()
    threaded = _in_process(monkeypatch, problem, dyn, t)
    futures, pools = [], []
    real_pool = workers._pool

    class SpyPool:
        def __init__(self, workers):
            self.pool = real_pool(workers)
            pools.append(self.pool)

        def submit(self, *args):
            futures.append(self.pool.submit(*args))
            return futures[-1]

    monkeypatch.setattr(workers, "_pool", SpyPool)
    with warnings.catch_warnings():
        warnings.simplefilter("error", _engine.NQMPoolWarning)
        on_processes = _engine.evaluate(problem, dyn, 64.0, t, reduce=True, threads=2)
    assert len(futures) == 2 and all(f.done() and f.exception() is None for f in futures)
    pool = workers._POOL[2]
    assert pools and all(p is pool for p in pools) and isinstance(pool, ProcessPoolExecutor)
    worker_pids = {pool.submit(os.getpid).result() for _ in range(4)}
    assert os.getpid() not in worker_pids
    np.testing.assert_array_equal(on_processes, threaded)


class _FailingPool:
    """A stand-in pool that fails on submit or on result, as a broken process pool does."""

    def __init__(self, error, on_submit):
        self.error, self.on_submit, self.submitted = error, on_submit, 0

    def submit(self, *args):
        self.submitted += 1
        if self.on_submit:
            raise self.error
        future = Future()
        future.set_exception(self.error)
        return future


def test_a_failing_pool_falls_back_visibly_with_the_same_numbers(monkeypatch):
    """A pool that raises: the evaluation runs in this process (exactly the in-process numbers) and an
    :class:`NQMPoolWarning` says so, once per cause."""
    problem, dyn, t = _grid_setting()
    expected = _in_process(monkeypatch, problem, dyn, t)
    monkeypatch.setattr(workers, "_WARNED", set())
    broken = _FailingPool(BrokenProcessPool("a worker was killed"), on_submit=False)
    monkeypatch.setattr(workers, "_pool", lambda workers: broken)
    with pytest.warns(_engine.NQMPoolWarning) as record:
        got = _engine.evaluate(problem, dyn, 64.0, t, reduce=True, threads=2)
        again = _engine.evaluate(problem, dyn, 64.0, t, reduce=True, threads=2)  # same cause: no 2nd warning
    assert broken.submitted == 4
    assert [str(w.message) for w in record] == [
        "NQM worker processes failed (BrokenProcessPool: a worker was killed); evaluating in this process "
        "instead (slower, results unchanged)"]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(again, expected)

    unstartable = _FailingPool(OSError("cannot start processes"), on_submit=True)
    monkeypatch.setattr(workers, "_pool", lambda workers: unstartable)
    with pytest.warns(_engine.NQMPoolWarning, match=r"\(OSError: cannot start processes\)") as record:
        got = _engine.evaluate(problem, dyn, 64.0, t, reduce=True, threads=2)
    assert len(record) == 1 and unstartable.submitted == 1
    np.testing.assert_array_equal(got, expected)


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
        "from batchlab.nqm import _engine, heavy_ball, power_law, workers\n"
        "_engine.PROCESS_ENTRIES = 1\n"
        f"workers._fork_is_safe = lambda: {fork}\n"
        "print('top level', flush=True)\n"
        "r = _engine.evaluate(power_law(300), heavy_ball(np.linspace(0.1, 1, 8), 0.9), 8.0, np.array([10]),\n"
        "                     reduce=True, threads=2)\n"
        "print('done', r.shape, len(workers._POOL), flush=True)\n"
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
