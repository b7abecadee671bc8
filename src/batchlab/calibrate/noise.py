"""Gradient-noise statistics from per-example gradients, and McCandlish et al.'s gradient noise scales.

With per-example gradients ``g_1 … g_n`` (``jax.vmap(jax.grad)``, computed a chunk at a time so at most
one ``(chunk, d)`` block is alive), their mean ``Ḡ`` and the per-example covariance ``Σ`` (a minibatch of
B examples has gradient covariance ``Σ / B`` — the NQM's ``C = Σ``):

- noise along a unit direction ``q`` (a top eigenvector): ``c_q = qᵀΣq``, the sample variance of the
  projections ``qᵀg_j`` (``n − 1`` in the denominator); its standard error
  ``√((m₄ − s⁴ (n − 3)/(n − 1)) / n)`` with ``m₄`` the fourth central sample moment;
- ``tr Σ = (Σ_j ‖g_j‖² − n‖Ḡ‖²) / (n − 1)`` (unbiased);
- ``|G|² = ‖Ḡ‖² − tr Σ / n`` and ``GᵀHG = ḠᵀHḠ − tr(HΣ) / n`` (unbiased: ``E‖Ḡ‖² = |G|² + tr Σ / n``);
- ``tr(HΣ) = Σ_j (g_j − Ḡ)ᵀ H (g_j − Ḡ) / (n − 1)``, split along the top-k eigenvectors ``Q``:
  ``tr(HΣ) = Σ_i λ_i c_i + tr(H P⊥ Σ P⊥)`` (``P⊥ = I − QᵀQ``; exact when ``Q`` are eigenvectors).  The
  first part is exact from the projections; the second is estimated with a random-sign sketch rather
  than n Hessian products: for Rademacher signs ``r_j`` and ``u = n^{-1/2} P⊥ Σ_j r_j (g_j − Ḡ)``,
  ``E_r[uᵀHu] = (1/n) Σ_j (g_j − Ḡ)ᵀP⊥HP⊥(g_j − Ḡ)``.  ``R`` sketches cost ``R`` Hessian products; the
  reported standard error is their spread (it excludes the sampling error of the n examples).

Gradient noise scales (McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
Training"): ``B_simple = tr Σ / |G|²`` and ``B_noise = tr(HΣ) / (GᵀHG)``; ``None`` when the unbiased
denominator is not positive (gradient indistinguishable from noise).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.calibrate.lanczos import Eigenpairs
from batchlab.calibrate.operators import CurvatureOperator, flat_model
from batchlab.checks import finite_or_none
from batchlab.errors import InputError

__all__ = ["NoiseStats", "chunk_stats", "gradient_noise", "variance_stderr"]

Tick = Callable[[], None]


@dataclasses.dataclass(frozen=True)
class NoiseStats:
    """Per-example gradient statistics at one point (see the module docstring for the estimators).

    Attributes:
        examples: n, the number of per-example gradients.
        noise: ``c_i = q_iᵀΣq_i`` per direction; ``noise_stderr``: their standard errors.
        projections: ``q_iᵀḠ`` per direction.
        trace_sigma: ``tr Σ``.
        gradient_norm_sq: ``|G|²`` (bias-corrected; may be ≤ 0 when noise dominates).
        trace_h_sigma: ``tr(HΣ)``; ``trace_h_sigma_stderr``: its sketch standard error.
        g_h_g: ``GᵀHG`` (bias-corrected).
    """

    examples: int
    noise: np.ndarray
    noise_stderr: np.ndarray
    projections: np.ndarray
    trace_sigma: float
    gradient_norm_sq: float
    trace_h_sigma: float
    trace_h_sigma_stderr: float
    g_h_g: float

    @property
    def b_simple(self) -> float | None:
        """``tr Σ / |G|²``."""
        return self.trace_sigma / self.gradient_norm_sq if self.gradient_norm_sq > 0 else None

    @property
    def b_noise(self) -> float | None:
        """``tr(HΣ) / GᵀHG``."""
        return self.trace_h_sigma / self.g_h_g if self.g_h_g > 0 else None

    def as_dict(self) -> dict[str, Any]:
        names = ("trace_sigma", "gradient_norm_sq", "trace_h_sigma", "trace_h_sigma_stderr", "g_h_g", "b_simple",
                 "b_noise")
        return {"examples": self.examples} | {name: finite_or_none(getattr(self, name)) for name in names}


def variance_stderr(samples: np.ndarray) -> np.ndarray:
    """Standard error of the unbiased sample variance of each column of ``samples`` (n ≥ 4 rows)."""
    n = samples.shape[0]
    centred = samples - samples.mean(axis=0)
    s2 = np.sum(centred**2, axis=0) / (n - 1)
    m4 = np.mean(centred**4, axis=0)
    return np.sqrt(np.maximum(m4 - s2**2 * (n - 3) / (n - 1), 0.0) / n)


def chunk_stats(workload: Any, params: Any, transform: Callable[[jax.Array], jax.Array] | None = None
                ) -> tuple[Any, Callable]:
    """Per-example gradient sums of one chunk, the building block of :func:`gradient_noise`.

    With ``transform`` (a linear map on flat gradients, e.g. ``P^{-1/2}``) every per-example gradient
    is transformed first: the statistics are those of ``transform(g)``.

    Returns:
        ``(model, stats)``: the flat model at ``params`` (:func:`~batchlab.calibrate.operators.flat_model`)
        and a jitted ``stats(theta, chunk, directions, signs) -> (Σ g, Σ‖g‖², projections, signsᵀ g)``
        over the chunk's per-example gradients ``g``.
    """
    model = flat_model(workload, params)

    def single(theta, example):
        return model.loss(theta, jax.tree.map(lambda a: a[None], example))

    per_example = jax.vmap(jax.grad(single), in_axes=(None, 0))

    @jax.jit
    def stats(theta, chunk, directions, signs):
        g = per_example(theta, chunk)
        if transform is not None:
            g = jax.vmap(transform)(g)
        return g.sum(axis=0), jnp.sum(g * g), g @ directions.T, signs.T @ g

    return model, stats


def gradient_noise(workload: Any, params: Any, chunks: list[Any], top: Eigenpairs, op: CurvatureOperator, *,
                   key: jax.Array, sketches: int = 32, tick: Tick | None = None,
                   transform: Callable[[jax.Array], jax.Array] | None = None) -> NoiseStats:
    """Per-example gradient-noise statistics of the examples in ``chunks`` at ``params``.

    Args:
        workload: provides ``loss(params, batch)``.
        params: the parameter pytree.
        chunks: the ``n`` examples as equal-size batches (see :func:`~batchlab.calibrate.operators.chunk_batch`).
        top: top eigenpairs of ``op``: the noise is measured along ``top.vectors``, and their part of
            ``tr(HΣ)`` is computed exactly as ``Σ_i λ_i c_i`` (the sketch covers the complement only,
            which removes most of its variance).
        op: the curvature operator ``H`` for ``tr(HΣ)`` and ``GᵀHG``.
        key: PRNG key of the sketch signs.
        sketches: number ``R`` of random-sign sketches for ``tr(HΣ)`` (≥ 2).
        tick: called after every chunk and every operator product.
        transform: a linear map ``T`` on flat gradients: the statistics are those of the gradients
            ``T g`` (``T = P^{-1/2}`` gives the noise in an optimizer's preconditioned coordinates,
            covariance ``T Σ Tᵀ``; then ``top`` and ``op`` must be of ``T H Tᵀ``).

    Returns:
        :class:`NoiseStats`.

    Raises:
        InputError: fewer than 4 examples or fewer than 2 sketches.
    """
    chunk_size = int(jax.tree.leaves(chunks[0])[0].shape[0])
    n = len(chunks) * chunk_size
    if n < 4 or sketches < 2:
        raise InputError(f"noise statistics need >= 4 examples and >= 2 sketches, got {n} and {sketches}")
    directions = top.vectors
    model, stats = chunk_stats(workload, params, transform)
    dtype = model.theta.dtype
    dirs = jnp.asarray(directions, dtype)
    total, total_sq = np.zeros(model.dim), 0.0
    sketch, sign_sums = np.zeros((sketches, model.dim)), np.zeros(sketches)
    projections = []
    for index, chunk in enumerate(chunks):
        signs = jax.random.rademacher(jax.random.fold_in(key, index), (chunk_size, sketches)).astype(dtype)
        g_sum, g_sq, proj, signed = stats(model.theta, chunk, dirs, signs)
        total += np.asarray(g_sum, np.float64)
        total_sq += float(g_sq)
        projections.append(np.asarray(proj, np.float64))
        sketch += np.asarray(signed, np.float64)
        sign_sums += np.asarray(signs, np.float64).sum(axis=0)
        if tick:
            tick()
    mean = total / n
    samples = np.concatenate(projections)
    trace_sigma = (total_sq - n * float(mean @ mean)) / (n - 1)
    noise = np.var(samples, axis=0, ddof=1)
    values = []
    for r in range(sketches):
        u = (sketch[r] - sign_sums[r] * mean) / math.sqrt(n)
        u -= directions.T @ (directions @ u)  # the top-k part is exact below
        values.append(float(u @ op.matvec(u)))
        if tick:
            tick()
    scale = n / (n - 1)
    trace_h_sigma = float(top.values @ noise) + scale * float(np.mean(values))
    g_h_g_biased = float(mean @ op.matvec(mean))
    if tick:
        tick()
    return NoiseStats(
        examples=n,
        noise=noise,
        noise_stderr=variance_stderr(samples),
        projections=directions @ mean,
        trace_sigma=trace_sigma,
        gradient_norm_sq=float(mean @ mean) - trace_sigma / n,
        trace_h_sigma=trace_h_sigma,
        trace_h_sigma_stderr=scale * float(np.std(values, ddof=1) / math.sqrt(sketches)),
        g_h_g=g_h_g_biased - trace_h_sigma / n,
    )
