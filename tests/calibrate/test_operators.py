"""Hessian- and Gauss-Newton-vector products against explicit matrices on a tiny network."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from batchlab.calibrate.operators import chunk_batch, curvature_operator, ggn_operator, hessian_operator
from batchlab.errors import InputError
from batchlab.workloads.layers import softmax_cross_entropy
from batchlab.workloads.registry import get_workload

from .conftest import dense_hessian


def _columns(op, count=None):
    eye = np.eye(op.dim)
    return np.stack([op.matvec(eye[i]) for i in range(count or op.dim)], axis=1)


def test_hessian_products_equal_the_dense_hessian_and_do_not_depend_on_chunking(tiny):
    workload, params, batch = tiny
    dense = dense_hessian(workload, params, batch)
    rng = np.random.default_rng(0)
    v = rng.normal(size=dense.shape[0])
    whole = hessian_operator(workload, params, batch, chunk_size=64)
    chunked = hessian_operator(workload, params, batch, chunk_size=16)
    scale = np.abs(dense @ v).max()
    np.testing.assert_allclose(whole.matvec(v), dense @ v, atol=1e-5 * scale)
    np.testing.assert_allclose(chunked.matvec(v), whole.matvec(v), atol=1e-5 * scale)


def test_ggn_products_equal_explicit_jacobian_products(tiny):
    workload, params, batch = tiny
    theta, unravel = ravel_pytree(params)
    op = ggn_operator(workload, params, batch, chunk_size=32)
    outputs = lambda t: workload.apply(unravel(t), batch["inputs"])  # noqa: E731
    jacobian = np.asarray(jax.jacfwd(outputs)(theta), np.float64)  # (n, K, d)
    logits = outputs(theta)
    n, classes = logits.shape
    out_loss = lambda z: jnp.mean(softmax_cross_entropy(z.reshape(n, classes), batch["targets"]))  # noqa: E731
    h_out = np.asarray(jax.hessian(out_loss)(logits.reshape(-1)), np.float64)  # (nK, nK)
    J = jacobian.reshape(n * classes, -1)
    explicit = J.T @ h_out @ J
    # closed form of the softmax output Hessian: diag(p) − ppᵀ per example, / n
    p = np.asarray(jax.nn.softmax(logits), np.float64)
    blocks = [np.diag(p[j]) - np.outer(p[j], p[j]) for j in range(n)]
    closed = sum(jacobian[j].T @ blocks[j] @ jacobian[j] for j in range(n)) / n
    np.testing.assert_allclose(explicit, closed, atol=1e-6 * np.abs(closed).max())
    matrix = _columns(op)
    np.testing.assert_allclose(matrix, explicit, atol=1e-5 * np.abs(explicit).max())
    assert np.linalg.eigvalsh(0.5 * (matrix + matrix.T)).min() > -1e-5 * np.abs(explicit).max()  # PSD


def test_ggn_of_the_quadratic_workload_is_its_hessian():
    workload = get_workload("nqm-sampled", dim=20)
    params = workload.init_params(key=jax.random.PRNGKey(0))
    batch = workload.sample_batch(key=jax.random.PRNGKey(1), batch_size=8)
    op = curvature_operator("ggn", workload, params, batch, chunk_size=8)
    assert op.kind == "ggn"
    np.testing.assert_allclose(np.diag(_columns(op)), workload.spectrum.h, rtol=1e-6)


def test_ggn_refuses_losses_without_an_output_form(tiny):
    workload, params, batch = tiny

    @dataclasses.dataclass(frozen=True)
    class Regression(type(workload)):
        loss_kind = "huber"

    with pytest.raises(InputError, match="output-space"):
        ggn_operator(Regression(), params, batch, chunk_size=64)
    with pytest.raises(InputError, match="unknown curvature"):
        curvature_operator("fisher", workload, params, batch, chunk_size=64)
    with pytest.raises(InputError, match="chunks"):
        chunk_batch(batch, 48)
