"""Shared fixtures: a tiny tanh MLP classifier (212 parameters) and its dense curvature matrices."""

import pathlib
import sys

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from toys import ToyClassifier  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    """(workload, params trained a little, a fixed batch of 64 examples)."""
    workload = ToyClassifier()
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=64)
    grad = jax.jit(jax.grad(workload.loss))
    for _ in range(20):  # move off the initialisation so the spectrum has structure
        params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grad(params, batch))
    return workload, params, batch


def dense_hessian(workload, params, batch) -> np.ndarray:
    """The full Hessian of the mean loss (float64 copy of a float32 computation)."""
    theta, unravel = ravel_pytree(params)
    matrix = jax.hessian(lambda t: workload.loss(unravel(t), batch))(theta)
    return np.asarray(matrix, np.float64)
