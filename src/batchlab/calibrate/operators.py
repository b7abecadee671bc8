"""Curvature operators of a workload's training loss at fixed parameters: Hessian and Gauss–Newton.

Parameters are flattened with :func:`jax.flatten_util.ravel_pytree` into ``θ ∈ R^d``.  An operator is a
matrix-free product ``v ↦ M v`` on NumPy float64 vectors (the Lanczos recurrences run in float64; the
products themselves run in the parameters' dtype, jitted, one fixed-shape chunk of examples at a time,
so memory is bounded by one chunk's forward/backward pass — the d×d matrix is never formed).

For a fixed measurement batch of ``n`` examples split into equal chunks ``b_1 … b_m`` and the mean loss
``L(θ) = (1/n) Σ_j ℓ_j(θ)``:

- **Hessian**: ``H v = Σ_c (|b_c|/n) ∂/∂ε ∇L_c(θ + εv)`` — forward-over-reverse ``jax.jvp(jax.grad(L_c))``.
- **Gauss–Newton** (GGN): with model outputs ``z = f(θ)`` and the loss as a function of outputs
  ``L(θ) = ℓ_out(f(θ))``, ``G v = Jᵀ H_out J v`` where ``J = ∂f/∂θ`` and ``H_out = ∇²_z ℓ_out``:
  ``J v`` by ``jax.jvp`` of ``f``, ``H_out (J v)`` by ``jax.jvp`` of ``∇_z ℓ_out``, and ``Jᵀ(·)`` by
  ``jax.vjp`` of ``f``.  ``G`` is positive semi-definite.  For the softmax cross-entropy it equals the
  (true, model-sampled) Fisher information matrix.  For ``loss_kind = "quadratic"`` (``nqm-sampled``)
  the loss is quadratic in θ, so the GGN is the Hessian itself.
- **Preconditioned** (:func:`preconditioned_operator`): ``M v = P^{-1/2} H P^{-1/2} v`` for an optimizer's
  preconditioner ``P`` (:mod:`batchlab.calibrate.precondition`), the curvature in the coordinates
  ``z = P^{1/2} θ`` in which the optimizer is plain gradient descent.

Example:
    >>> op = hessian_operator(workload, params, batch, chunk_size=256)   # doctest: +SKIP
    >>> op.matvec(np.ones(op.dim))                                        # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from batchlab.errors import InputError
from batchlab.workloads.layers import softmax_cross_entropy

__all__ = ["Curvature", "CurvatureOperator", "FlatModel", "flat_model", "chunk_batch", "hessian_operator",
           "ggn_operator", "curvature_operator", "output_loss", "preconditioned_operator"]

Curvature = Literal["hessian", "ggn"]
MatVec = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class CurvatureOperator:
    """A symmetric d×d matrix given by its products.

    Attributes:
        matvec: ``v ↦ M v`` on float64 vectors of length ``dim`` (returns float64).
        dim: number of parameters d.
        kind: ``"hessian"``, ``"ggn"`` or a label for custom operators (tests).
    """

    matvec: MatVec
    dim: int
    kind: str = "custom"


@dataclasses.dataclass(frozen=True)
class FlatModel:
    """A workload's loss as a function of the flat parameter vector.

    Attributes:
        theta: the flat parameters (a JAX array of the parameters' dtype).
        unravel: flat vector → parameter pytree.
        loss: ``loss(theta, batch)``: the workload's mean training loss.
    """

    theta: jax.Array
    unravel: Callable[[jax.Array], Any]
    loss: Callable[[jax.Array, Any], jax.Array]

    @property
    def dim(self) -> int:
        return int(self.theta.shape[0])


def flat_model(workload: Any, params: Any) -> FlatModel:
    """Flatten ``params`` and wrap ``workload.loss`` to take the flat vector."""
    theta, unravel = ravel_pytree(params)
    return FlatModel(theta, unravel, lambda flat, batch: workload.loss(unravel(flat), batch))


def chunk_batch(batch: Any, chunk_size: int) -> list[Any]:
    """Split a batch (leading axis = examples) into equal chunks of ``chunk_size`` examples.

    Raises:
        InputError: the batch size is not a multiple of ``chunk_size``.
    """
    size = int(jax.tree.leaves(batch)[0].shape[0])
    if chunk_size < 1 or size % chunk_size:
        raise InputError(f"batch of {size} examples does not split into chunks of {chunk_size}")
    return [jax.tree.map(lambda a, s=start: a[s:s + chunk_size], batch) for start in range(0, size, chunk_size)]


def _summed(product: Callable[..., jax.Array], theta: jax.Array, chunks: list[Any]) -> MatVec:
    """``v ↦ mean over chunks of product(theta, v, chunk)`` as a float64 NumPy operator.

    ``theta`` and the chunks are arguments of the jitted product (not constants baked into it).
    """
    dtype = theta.dtype

    def matvec(v: np.ndarray) -> np.ndarray:
        vector = jnp.asarray(v, dtype)
        total = np.zeros(theta.shape[0], np.float64)
        for chunk in chunks:
            total += np.asarray(product(theta, vector, chunk), np.float64)
        return total / len(chunks)

    return matvec


def hessian_operator(workload: Any, params: Any, batch: Any, *, chunk_size: int) -> CurvatureOperator:
    """The Hessian of the mean loss over ``batch`` at ``params``, ``v ↦ H v`` (forward-over-reverse).

    Args:
        workload: provides ``loss(params, batch)``.
        params: the parameter pytree.
        batch: the measurement batch (split into chunks of ``chunk_size`` examples).
        chunk_size: examples per product call (bounds memory).

    Returns:
        A :class:`CurvatureOperator` of kind ``"hessian"``.
    """
    model = flat_model(workload, params)
    gradient = jax.grad(model.loss)

    @jax.jit
    def product(theta, v, chunk):
        return jax.jvp(lambda t: gradient(t, chunk), (theta,), (v,))[1]

    return CurvatureOperator(_summed(product, model.theta, chunk_batch(batch, chunk_size)), model.dim, "hessian")


def output_loss(loss_kind: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The mean training loss as a function of model outputs and targets, for the GGN.

    ``softmax_cross_entropy``: mean of ``−log softmax(z)[y]`` over every position;
    ``squared_error``: mean over every element of ``(z − y)²`` (the convention of ``batchlab.optim.kfac``).

    Raises:
        InputError: a loss kind without an output-space form.
    """
    if loss_kind == "softmax_cross_entropy":
        return lambda outputs, targets: jnp.mean(softmax_cross_entropy(outputs, targets))
    if loss_kind == "squared_error":
        return lambda outputs, targets: jnp.mean(jnp.square(outputs - targets.reshape(outputs.shape)))
    raise InputError(f"Gauss-Newton products need an output-space loss; loss kind {loss_kind!r} has none")


def ggn_operator(workload: Any, params: Any, batch: Any, *, chunk_size: int) -> CurvatureOperator:
    """The generalised Gauss–Newton matrix ``G = Jᵀ H_out J`` of the mean loss over ``batch``.

    For ``loss_kind = "quadratic"`` this is the Hessian (see the module docstring).

    Raises:
        InputError: the loss kind has no output-space form, or ``loss(apply(·))`` does not reproduce
            the workload's loss (the GGN would describe a different function).
    """
    if workload.loss_kind == "quadratic":
        op = hessian_operator(workload, params, batch, chunk_size=chunk_size)
        return dataclasses.replace(op, kind="ggn")
    model = flat_model(workload, params)
    out_loss = output_loss(workload.loss_kind)
    chunks = chunk_batch(batch, chunk_size)
    first = chunks[0]
    ours = float(out_loss(workload.apply(params, first["inputs"]), first["targets"]))
    theirs = float(workload.loss(params, first))
    if abs(ours - theirs) > 1e-4 * max(1.0, abs(theirs)):
        raise InputError(f"{workload.name}: loss(apply(params)) = {ours:.6g} differs from the workload's "
                         f"loss {theirs:.6g}; Gauss-Newton products are not available")

    @jax.jit
    def product(theta, v, chunk):
        def outputs(t):
            return workload.apply(model.unravel(t), chunk["inputs"])

        z, pullback = jax.vjp(outputs, theta)
        jv = jax.jvp(outputs, (theta,), (v,))[1]
        grad_out = jax.grad(lambda o: out_loss(o, chunk["targets"]))
        h_jv = jax.jvp(grad_out, (z,), (jv,))[1]
        return pullback(h_jv)[0]

    return CurvatureOperator(_summed(product, model.theta, chunks), model.dim, "ggn")


def curvature_operator(kind: Curvature, workload: Any, params: Any, batch: Any, *, chunk_size: int
                       ) -> CurvatureOperator:
    """``hessian_operator`` or ``ggn_operator`` by name.

    Raises:
        InputError: unknown kind.
    """
    builders = {"hessian": hessian_operator, "ggn": ggn_operator}
    if kind not in builders:
        raise InputError(f"unknown curvature {kind!r}; valid: {', '.join(builders)}")
    return builders[kind](workload, params, batch, chunk_size=chunk_size)


def preconditioned_operator(op: CurvatureOperator, inverse_root: Callable[[jax.Array], jax.Array]
                            ) -> CurvatureOperator:
    """``v ↦ P^{-1/2} M P^{-1/2} v`` for ``op = M`` and ``inverse_root = (v ↦ P^{-1/2} v)``.

    ``inverse_root`` is a linear, jittable map on flat float32 vectors (e.g.
    :meth:`batchlab.calibrate.precondition.Preconditioner.matrix_power` with ``-1/2``), applied in
    float32 like the curvature products; the result is float64.  Symmetric when ``P`` is.
    """
    apply = jax.jit(inverse_root)

    def matvec(v: np.ndarray) -> np.ndarray:
        inner = np.asarray(apply(jnp.asarray(v, jnp.float32)), np.float64)
        return np.asarray(apply(jnp.asarray(op.matvec(inner), jnp.float32)), np.float64)

    return CurvatureOperator(matvec, op.dim, op.kind)
