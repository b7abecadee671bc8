"""nqm-sampled: the minibatch gradient has mean Hθ and covariance C/B; init and risk are exact."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from batchlab.errors import InputError
from batchlab.nqm.spectrum import binned, from_arrays, power_law
from batchlab.workloads import NqmSampled, get_workload

PROBLEM = from_arrays([2.0, 1.0, 0.5, 0.1, 0.02], c=[3.0, 0.2, 1.0, 0.05, 0.5], s0=[1.0, 2.0, 0.5, 4.0, 1.0])
SAMPLES = 40_000


def _gradient_moments(workload, sampler, batch_size: int):
    theta = {"theta": jnp.asarray([0.7, -1.2, 2.0, 0.3, -0.5], jnp.float32)}

    def gradient(key):
        return jax.grad(workload.loss)(theta, sampler(key=key, batch_size=batch_size))["theta"]

    grads = np.asarray(jax.jit(jax.vmap(gradient))(jax.random.split(jax.random.key(0), SAMPLES)), np.float64)
    return np.asarray(theta["theta"], np.float64), grads.mean(axis=0), np.cov(grads, rowvar=False)


@pytest.mark.parametrize("reduced", [False, True], ids=["full-batch", "reduced-batch"])
def test_gradient_mean_is_h_theta_and_covariance_is_c_over_b(reduced):
    workload = NqmSampled(problem=PROBLEM)
    batch_size = 4
    sampler = workload.sample_reduced_batch if reduced else workload.sample_batch
    theta, mean, covariance = _gradient_moments(workload, sampler, batch_size)
    h, c = PROBLEM.h, PROBLEM.c
    noise = c / batch_size
    assert np.all(np.abs(mean - h * theta) <= 4 * np.sqrt(noise / SAMPLES))
    expected = np.diag(noise)
    standard_error = np.sqrt((np.outer(noise, noise) + expected**2) / (SAMPLES - 1))
    assert np.all(np.abs(covariance - expected) <= 4 * standard_error)


def test_initial_parameters_have_variance_s0():
    workload = NqmSampled(problem=PROBLEM)
    keys = jax.random.split(jax.random.key(1), SAMPLES)
    thetas = np.asarray(jax.vmap(lambda k: workload.init_params(key=k)["theta"])(keys), np.float64)
    variance = (thetas**2).mean(axis=0)
    assert np.all(np.abs(variance - PROBLEM.s0) <= 4 * PROBLEM.s0 * np.sqrt(2 / SAMPLES))


def test_risk_is_half_theta_h_theta_relative_to_expected_initial_risk():
    workload = NqmSampled(problem=PROBLEM)
    ones = {"theta": jnp.ones(5, jnp.float32)}
    metrics = workload.evaluate(ones)
    assert metrics["risk"] == pytest.approx(0.5 * PROBLEM.h.sum(), rel=1e-12)
    assert metrics["relative_risk"] == pytest.approx(metrics["risk"] / PROBLEM.initial_risk(), rel=1e-12)
    assert workload.evaluate({"theta": jnp.zeros(5, jnp.float32)})["risk"] == 0.0


def test_default_problem_is_the_power_law():
    workload = get_workload("nqm-sampled", dim=50, exponent=1.5)
    np.testing.assert_array_equal(workload.spectrum.h, power_law(50, 1.5).h)
    assert workload.init_params(key=jax.random.key(0))["theta"].shape == (50,)


def test_binned_problems_expand_into_repeated_directions():
    problem = binned(power_law(300), bins=10)
    workload = NqmSampled(problem=problem)
    assert workload.spectrum.dim == 300
    assert workload.spectrum.initial_risk() == pytest.approx(problem.initial_risk(), rel=1e-12)
    theta = jnp.ones(300, jnp.float32)
    expected = float(np.sum(problem.weights * 0.5 * problem.h))
    assert workload.evaluate({"theta": theta})["risk"] == pytest.approx(expected, rel=1e-9)


def test_fractional_weights_are_rejected():
    problem = from_arrays([1.0, 0.5], weights=[1.0, 2.5])
    with pytest.raises(InputError):
        NqmSampled(problem=problem).spectrum  # noqa: B018


def test_mean_risk_of_sampled_sgd_runs_matches_the_exact_engine():
    from batchlab.nqm import expected_risk, sgd

    workload = NqmSampled(dim=100)
    learning_rate, batch_size, steps, runs = 0.5, 8, 30, 256

    def one_run(key):
        init_key, noise_key = jax.random.split(key)
        params = workload.init_params(key=init_key)

        def step(params, t):
            batch = workload.sample_batch(key=jax.random.fold_in(noise_key, t), batch_size=batch_size)
            grads = jax.grad(workload.loss)(params, batch)
            params = jax.tree.map(lambda p, g: p - jnp.float32(learning_rate) * g, params, grads)
            theta = params["theta"]
            return params, 0.5 * jnp.sum(workload.arrays.curvature * theta * theta)

        return jax.lax.scan(step, params, jnp.arange(steps))[1]

    risks = np.asarray(jax.jit(jax.vmap(one_run))(jax.random.split(jax.random.key(3), runs)), np.float64)
    exact = expected_risk(workload.spectrum, sgd(learning_rate), batch_size=batch_size, steps=np.arange(1, steps + 1))
    standard_error = risks.std(axis=0, ddof=1) / np.sqrt(runs)
    assert np.all(np.abs(risks.mean(axis=0) - exact) <= 4 * standard_error)
