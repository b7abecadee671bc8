"""Gradient-noise statistics: nqm-sampled (known spectrum) and brute force on a tiny network."""

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from batchlab.calibrate.lanczos import top_eigenpairs
from batchlab.calibrate.measure import MeasureConfig, measure
from batchlab.calibrate.noise import gradient_noise, variance_stderr
from batchlab.calibrate.operators import chunk_batch, hessian_operator
from batchlab.errors import InputError
from batchlab.workloads.registry import get_workload

from .conftest import dense_hessian


@pytest.fixture(scope="module")
def nqm_measured():
    workload = get_workload("nqm-sampled", dim=300)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    config = MeasureConfig(top_k=8, curvature_examples=64, noise_examples=4096, chunk_size=512, slq_probes=4,
                           slq_steps=24)
    return workload, params, measure(workload, params, config, key=jax.random.PRNGKey(1))


def test_nqm_sampled_top_eigenvalues_within_two_percent(nqm_measured):
    workload, _, spectra = nqm_measured
    h = workload.spectrum.h
    np.testing.assert_allclose(spectra.top.values, h[:8], rtol=0.02)
    # eigenvectors are the coordinate axes (up to sign)
    np.testing.assert_allclose(np.abs(spectra.top.vectors[np.arange(8), np.arange(8)]), 1.0, atol=1e-3)


def test_nqm_sampled_noise_within_monte_carlo_error(nqm_measured):
    workload, _, spectra = nqm_measured
    c = workload.spectrum.c[:8]
    z = (spectra.noise.noise - c) / spectra.noise.noise_stderr
    assert np.all(np.abs(z) < 4), z
    # the standard error is the Monte Carlo one: √(2/n) c for Gaussian projections
    np.testing.assert_allclose(spectra.noise.noise_stderr, np.sqrt(2 / 4096) * c, rtol=0.15)


def test_nqm_sampled_noise_scales_match_their_exact_values(nqm_measured):
    workload, params, spectra = nqm_measured
    h, c = workload.spectrum.h, workload.spectrum.c
    theta = np.asarray(params["theta"], np.float64)
    gradient = h * theta
    noise = spectra.noise
    n = noise.examples
    assert noise.trace_sigma == pytest.approx(c.sum(), abs=4 * np.sqrt(2 * np.sum(c**2) / n))
    assert noise.trace_h_sigma == pytest.approx(np.sum(h * c), abs=4 * np.sqrt(2 * np.sum((h * c) ** 2) / n))
    assert noise.gradient_norm_sq == pytest.approx(gradient @ gradient, rel=0.05)
    assert noise.b_simple == pytest.approx(c.sum() / (gradient @ gradient), rel=0.08)
    assert noise.b_noise == pytest.approx(np.sum(h * c) / (gradient @ (h * gradient)), rel=0.08)
    assert spectra.trace == pytest.approx(h.sum(), rel=1e-6)  # deflated SLQ of a diagonal matrix is exact


def test_noise_statistics_equal_brute_force_per_example_gradients(tiny):
    workload, params, _ = tiny
    batch = workload.sample_batch(key=jax.random.PRNGKey(5), batch_size=128)
    op = hessian_operator(workload, params, batch, chunk_size=64)
    top = top_eigenpairs(op, 3, key=jax.random.PRNGKey(0))
    stats = gradient_noise(workload, params, chunk_batch(batch, 32), top, op, key=jax.random.PRNGKey(2),
                           sketches=64)
    theta, unravel = ravel_pytree(params)
    single = jax.jit(jax.grad(lambda t, x, y: workload.loss(unravel(t), {"inputs": x[None], "targets": y[None]})))
    g = np.stack([np.asarray(single(theta, batch["inputs"][j], batch["targets"][j]), np.float64)
                  for j in range(128)])
    mean = g.mean(axis=0)
    centred = g - mean
    dense = dense_hessian(workload, params, batch)
    projections = g @ top.vectors.T
    np.testing.assert_allclose(stats.noise, projections.var(axis=0, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(stats.noise_stderr, variance_stderr(projections), rtol=1e-3)
    np.testing.assert_allclose(stats.projections, top.vectors @ mean, rtol=1e-4, atol=1e-7)
    trace_sigma = np.sum(centred**2) / 127
    assert stats.trace_sigma == pytest.approx(trace_sigma, rel=1e-4)
    assert stats.gradient_norm_sq == pytest.approx(mean @ mean - trace_sigma / 128, rel=1e-3, abs=1e-6)
    exact = np.einsum("jd,de,je->", centred, dense, centred) / 127
    assert abs(stats.trace_h_sigma - exact) < 4 * stats.trace_h_sigma_stderr + 1e-4 * abs(exact)
    assert stats.g_h_g == pytest.approx(mean @ dense @ mean - exact / 128, abs=4 * stats.trace_h_sigma_stderr / 128
                                        + 1e-4 * abs(mean @ dense @ mean))


def test_noise_needs_examples_and_sketches(tiny):
    workload, params, batch = tiny
    op = hessian_operator(workload, params, batch, chunk_size=64)
    top = top_eigenpairs(op, 2, key=jax.random.PRNGKey(0))
    with pytest.raises(InputError):
        gradient_noise(workload, params, chunk_batch(batch, 64), top, op, key=jax.random.PRNGKey(0), sketches=1)


def test_measurements_are_deterministic_in_the_key():
    workload = get_workload("nqm-sampled", dim=50)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    config = MeasureConfig(top_k=4, curvature_examples=16, noise_examples=64, chunk_size=32, slq_probes=2,
                           slq_steps=8, sketches=4)
    first, again = (measure(workload, params, config, key=jax.random.PRNGKey(4)) for _ in range(2))
    other = measure(workload, params, config, key=jax.random.PRNGKey(5))
    assert first.as_dict() == again.as_dict()
    assert first.as_dict()["noise"] != other.as_dict()["noise"]
