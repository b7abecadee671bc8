"""Lanczos top eigenpairs and SLQ densities against dense linear algebra."""

import jax
import numpy as np
import pytest

from batchlab.calibrate.lanczos import hutchinson_trace, lanczos, spectral_density, top_eigenpairs
from batchlab.calibrate.operators import CurvatureOperator, hessian_operator
from batchlab.errors import InputError

from .conftest import dense_hessian


def test_top_eigenpairs_match_dense_eigh_of_a_tiny_network(tiny):
    workload, params, batch = tiny
    op = hessian_operator(workload, params, batch, chunk_size=64)
    dense = dense_hessian(workload, params, batch)
    dense = 0.5 * (dense + dense.T)
    exact, vectors = np.linalg.eigh(dense)
    exact, vectors = exact[::-1], vectors[:, ::-1]
    top = top_eigenpairs(op, 6, key=jax.random.PRNGKey(0), steps=60)
    scale = abs(exact[0])
    np.testing.assert_allclose(top.values, exact[:6], rtol=0, atol=2e-5 * scale)
    gaps = np.abs(np.diff(exact[:7]))
    for i in range(6):
        if min(gaps[i], gaps[i - 1] if i else np.inf) > 1e-3 * scale:  # well separated: vector is defined
            assert abs(top.vectors[i] @ vectors[:, i]) > 0.999
        actual = np.linalg.norm(dense @ top.vectors[i] - top.values[i] * top.vectors[i])
        assert actual <= top.residuals[i] + 1e-4 * scale  # reported residuals are honest


def test_lanczos_is_exact_in_float64_on_a_dense_matrix():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(150, 150)))
    eigenvalues = np.concatenate([[9.0, 5.0, 4.0, 3.5], rng.uniform(-0.5, 1.0, 146)])
    matrix = (q * eigenvalues) @ q.T
    top = top_eigenpairs(CurvatureOperator(lambda v: matrix @ v, 150), 4, key=jax.random.PRNGKey(3))
    np.testing.assert_allclose(top.values, [9.0, 5.0, 4.0, 3.5], rtol=1e-10)
    assert np.all(top.residuals < 1e-8)
    np.testing.assert_allclose(np.abs(np.sum(top.vectors * q[:, :4].T, axis=1)), 1.0, atol=1e-9)
    np.testing.assert_allclose(top.vectors @ top.vectors.T, np.eye(4), atol=1e-10)


def test_lanczos_is_deterministic_in_its_key_and_stops_on_breakdown():
    h = np.repeat([3.0, 2.0, 1.0], 10)  # 3 distinct eigenvalues: the Krylov space has dimension 3
    op = CurvatureOperator(lambda v: h * v, h.size)
    first = top_eigenpairs(op, 3, key=jax.random.PRNGKey(7))
    again = top_eigenpairs(op, 3, key=jax.random.PRNGKey(7))
    np.testing.assert_array_equal(first.values, again.values)
    np.testing.assert_allclose(first.values, [3.0, 2.0, 1.0], rtol=1e-12)
    assert first.steps == 3
    run = lanczos(op, np.ones(h.size), 20)
    assert run.steps == 3


def test_slq_density_integrates_to_one_and_its_mean_matches_hutchinson(tiny):
    workload, params, batch = tiny
    op = hessian_operator(workload, params, batch, chunk_size=64)
    density = spectral_density(op, key=jax.random.PRNGKey(1), probes=12, steps=30)
    nodes, mass = density.atoms()
    assert mass.sum() == pytest.approx(1.0, abs=1e-12)
    grid, smooth = density.smoothed()
    assert np.trapezoid(smooth, grid) == pytest.approx(1.0, abs=1e-3)
    exact = np.trace(dense_hessian(workload, params, batch)) / op.dim
    estimate, stderr = hutchinson_trace(op, key=jax.random.PRNGKey(2), probes=24)
    combined = np.hypot(density.moment_stderr(1), stderr / op.dim)
    assert abs(density.moment(1) - estimate / op.dim) < 4 * combined
    assert abs(density.moment(1) - exact) < 4 * density.moment_stderr(1)


def test_deflated_slq_describes_the_bulk():
    rng = np.random.default_rng(1)
    h = np.concatenate([[50.0, 20.0, 10.0], rng.uniform(0.01, 1.0, 497)])
    q, _ = np.linalg.qr(rng.normal(size=(500, 500)))
    matrix = (q * h) @ q.T
    op = CurvatureOperator(lambda v: matrix @ v, 500)
    top = top_eigenpairs(op, 3, key=jax.random.PRNGKey(0))
    bulk = spectral_density(op, key=jax.random.PRNGKey(1), probes=8, steps=40, deflate=top.vectors)
    assert bulk.dim == 497
    nodes, mass = bulk.atoms()
    assert nodes.max() < 1.0 + 1e-6 and nodes.min() > 0.01 - 1e-6  # no outlier leaks into the bulk
    assert bulk.moment(1) == pytest.approx(h[3:].mean(), abs=4 * bulk.moment_stderr(1) + 1e-9)
    assert bulk.moment(2) == pytest.approx(np.mean(h[3:] ** 2), abs=4 * bulk.moment_stderr(2) + 1e-9)


def test_bad_arguments_are_input_errors():
    op = CurvatureOperator(lambda v: v, 5)
    with pytest.raises(InputError):
        top_eigenpairs(op, 0, key=jax.random.PRNGKey(0))
    with pytest.raises(InputError):
        top_eigenpairs(op, 3, key=jax.random.PRNGKey(0), steps=2)
    with pytest.raises(InputError):
        spectral_density(op, key=jax.random.PRNGKey(0), probes=0)
    with pytest.raises(InputError):
        lanczos(op, np.zeros(5), 3)
