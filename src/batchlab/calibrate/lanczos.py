"""Lanczos with full reorthogonalisation: top eigenpairs and stochastic Lanczos quadrature (SLQ).

**Lanczos.**  From a unit vector ``q₁``, for ``j = 1 … m``::

    w = A q_j − β_{j−1} q_{j−1},   α_j = q_jᵀ w,   w ← w − α_j q_j,
    w ← w − Q_j (Q_jᵀ w)  (twice: full reorthogonalisation, "twice is enough"),
    β_j = ‖w‖,   q_{j+1} = w / β_j,

which builds an orthonormal basis ``Q_m`` of the Krylov space with ``Q_mᵀ A Q_m = T_m``, the symmetric
tridiagonal matrix with diagonal ``α`` and off-diagonal ``β``.  With ``T_m = S Θ Sᵀ`` the Ritz pairs
``(θ_i, Q_m s_i)`` approximate the extreme eigenpairs of ``A``; the residual of a Ritz pair is exactly
``‖A y_i − θ_i y_i‖ = β_m |S_{m,i}|``.  The recurrence runs in NumPy float64 on vectors returned by the
(float32, jitted) operator; a breakdown ``β_j ≤ 1e-10 · max|α|`` means an invariant subspace was found
and the recurrence stops early (exact answers).

**SLQ** (Golub & Meurant; Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019).  For a probe ``v``
with ``‖v‖ = 1``, ``vᵀ f(A) v ≈ Σ_l τ_l f(θ_l)`` with Ritz values ``θ_l`` of the Lanczos run started at
``v`` and weights ``τ_l = S_{1,l}²`` (the ``m``-point Gauss rule, exact for polynomials of degree
``≤ 2m − 1``).  Averaging over Rademacher probes ``v = r/√d`` (``E[vvᵀ] = I/d``) gives the spectral
density

    φ(λ) = (1/d) Σ_i δ(λ − λ_i)  ≈  (1/P) Σ_p Σ_l τ_{p,l} δ(λ − θ_{p,l}),

a probability measure (``Σ_l τ_{p,l} = 1``) whose moments estimate ``tr(A^k)/d``.  With ``deflate=Q``
(orthonormal rows) probes and iterates are projected onto the complement of ``span(Q)``, giving the
density of the remaining ``d − k`` eigenvalues (the *bulk*, without the top-k outliers).

Example:
    >>> import numpy as np, jax
    >>> op = CurvatureOperator(lambda v: np.arange(1.0, 101.0) * v, 100)
    >>> top = top_eigenpairs(op, 3, key=jax.random.key(0))
    >>> np.round(top.values, 6).tolist()
    [100.0, 99.0, 98.0]
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np
from scipy.linalg import eigh_tridiagonal

from batchlab.calibrate.operators import CurvatureOperator
from batchlab.checks import check_at_least
from batchlab.errors import InputError

__all__ = ["Tridiagonal", "Eigenpairs", "SpectralDensity", "lanczos", "top_eigenpairs", "spectral_density",
           "hutchinson_trace"]

Tick = Callable[[], None]
_BREAKDOWN = 1e-10


@dataclasses.dataclass(frozen=True)
class Tridiagonal:
    """A Lanczos run: ``T`` (diagonal ``alphas``, off-diagonal ``betas[:-1]``), the last ``β`` and basis."""

    alphas: np.ndarray
    betas: np.ndarray
    basis: np.ndarray | None

    @property
    def steps(self) -> int:
        return int(self.alphas.shape[0])

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and the eigenvectors ``S`` of ``T``."""
        if self.steps == 1:
            return self.alphas.copy(), np.ones((1, 1))
        return eigh_tridiagonal(self.alphas, self.betas[:-1])


def _project(w: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return w if rows is None or rows.shape[0] == 0 else w - rows.T @ (rows @ w)


def lanczos(op: CurvatureOperator, start: np.ndarray, steps: int, *, deflate: np.ndarray | None = None,
            keep_basis: bool = True, tick: Tick | None = None) -> Tridiagonal:
    """``steps`` Lanczos iterations of ``op`` from ``start`` with full reorthogonalisation.

    Args:
        op: the symmetric operator.
        start: starting vector (any nonzero norm; normalised here).
        steps: number of iterations ``m`` (stops earlier on breakdown).
        deflate: optional ``(k, d)`` orthonormal rows to project out of every iterate.
        keep_basis: return the ``(m, d)`` basis (needed for Ritz vectors).
        tick: called after every operator product (progress bars).

    Returns:
        The :class:`Tridiagonal` (``betas[j]`` couples iterates ``j`` and ``j + 1``).

    Raises:
        InputError: ``steps < 1`` or a zero starting vector.
    """
    check_at_least(steps, "Lanczos steps", 1)
    q = _project(np.asarray(start, np.float64), deflate)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm == 0.0:
        raise InputError("Lanczos: the starting vector is zero (after deflation)")
    basis = np.zeros((min(steps, op.dim), op.dim))
    alphas, betas = [], []
    q, previous, beta = q / norm, np.zeros(op.dim), 0.0
    for j in range(basis.shape[0]):
        basis[j] = q
        w = _project(op.matvec(q), deflate) - beta * previous
        alpha = float(q @ w)
        w -= alpha * q
        for _ in range(2):
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(np.linalg.norm(w))
        alphas.append(alpha)
        betas.append(beta)
        if tick:
            tick()
        if beta <= _BREAKDOWN * max(abs(a) for a in alphas) or j + 1 == basis.shape[0]:
            break
        previous, q = q, w / beta
    m = len(alphas)
    return Tridiagonal(np.array(alphas), np.array(betas), basis[:m] if keep_basis else None)


@dataclasses.dataclass(frozen=True)
class Eigenpairs:
    """Top eigenpairs, descending.

    Attributes:
        values: eigenvalues ``λ_1 ≥ … ≥ λ_k``.
        vectors: ``(k, d)`` orthonormal rows.
        residuals: ``‖A y_i − λ_i y_i‖`` of each pair (exact for Ritz pairs).
        steps: Lanczos iterations used.
    """

    values: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    steps: int


def _start(key: jax.Array, dim: int) -> np.ndarray:
    return np.asarray(jax.random.normal(key, (dim,)), np.float64)


def top_eigenpairs(op: CurvatureOperator, k: int, *, key: jax.Array, steps: int | None = None,
                   tick: Tick | None = None) -> Eigenpairs:
    """The ``k`` algebraically largest eigenpairs of ``op`` by Lanczos (seeded Gaussian start).

    Args:
        op: the symmetric operator.
        k: number of pairs (``1 ≤ k ≤ d``).
        key: PRNG key of the starting vector.
        steps: Lanczos iterations (default ``min(d, max(3k, k + 40))``).
        tick: called after every operator product.

    Returns:
        :class:`Eigenpairs` (fewer than ``k`` if the Krylov space is smaller, e.g. on breakdown).

    Raises:
        InputError: ``k`` out of range or ``steps < k``.
    """
    if not 1 <= k <= op.dim:
        raise InputError(f"top-k must be in [1, {op.dim}], got {k}")
    steps = min(op.dim, max(3 * k, k + 40)) if steps is None else steps
    if steps < k:
        raise InputError(f"Lanczos steps ({steps}) must be >= top-k ({k})")
    run = lanczos(op, _start(key, op.dim), steps, tick=tick)
    theta, s = run.ritz()
    order = np.argsort(theta)[::-1][:k]
    vectors = (run.basis.T @ s[:, order]).T
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    residuals = np.abs(run.betas[-1] * s[-1, order])
    return Eigenpairs(theta[order], vectors, residuals, run.steps)


@dataclasses.dataclass(frozen=True)
class SpectralDensity:
    """An SLQ spectral density: per probe, Gauss nodes and weights (each probe's weights sum to 1).

    Attributes:
        nodes: ``(P, m)`` Ritz values (rows padded with weight-0 nodes after a breakdown).
        weights: ``(P, m)`` quadrature weights ``τ``.
        dim: number of eigenvalues the density describes (``d``, or ``d − k`` when deflated).
    """

    nodes: np.ndarray
    weights: np.ndarray
    dim: int

    def moment(self, power: int) -> float:
        """``∫ λ^power φ(λ) dλ`` ≈ ``tr(A^power) / dim``."""
        return float(np.mean(np.sum(self.weights * self.nodes**power, axis=1)))

    def moment_stderr(self, power: int) -> float:
        """Standard error of :meth:`moment` over probes."""
        per_probe = np.sum(self.weights * self.nodes**power, axis=1)
        return float(np.std(per_probe, ddof=1) / np.sqrt(len(per_probe))) if len(per_probe) > 1 else float("nan")

    def atoms(self) -> tuple[np.ndarray, np.ndarray]:
        """All nodes and their masses ``τ/P`` (summing to 1), flattened, weight-0 padding removed."""
        nodes, mass = self.nodes.ravel(), self.weights.ravel() / self.nodes.shape[0]
        keep = mass > 0
        return nodes[keep], mass[keep]

    def smoothed(self, points: int = 512, width: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian-smoothed density ``φ_σ(t) = Σ mass · N(t; node, σ²)`` on a uniform grid.

        ``σ`` defaults to 1% of the node range; the grid spans the nodes ± 5σ, so it integrates to 1.
        """
        nodes, mass = self.atoms()
        span = float(nodes.max() - nodes.min()) or max(abs(float(nodes.max())), 1.0)
        sigma = 0.01 * span if width is None else float(width)
        grid = np.linspace(nodes.min() - 5 * sigma, nodes.max() + 5 * sigma, points)
        z = (grid[:, None] - nodes[None, :]) / sigma
        density = (np.exp(-0.5 * z**2) @ mass) / (sigma * np.sqrt(2 * np.pi))
        return grid, density

    def as_dict(self) -> dict:
        grid, density = self.smoothed()
        return {"dim": self.dim, "nodes": self.nodes.tolist(), "weights": self.weights.tolist(),
                "mean": self.moment(1), "mean_stderr": self.moment_stderr(1),
                "grid": grid.tolist(), "density": density.tolist()}


def spectral_density(op: CurvatureOperator, *, key: jax.Array, probes: int = 8, steps: int = 48,
                     deflate: np.ndarray | None = None, tick: Tick | None = None) -> SpectralDensity:
    """SLQ density of ``op`` (of the complement of ``deflate``'s rows if given) from Rademacher probes.

    Args:
        op: the symmetric operator.
        key: PRNG key of the probes (probe ``p`` uses ``fold_in(key, p)``).
        probes: number of probes ``P`` (≥ 1).
        steps: Lanczos iterations per probe ``m``.
        deflate: ``(k, d)`` orthonormal rows to exclude (the top-k eigenvectors).
        tick: called after every operator product.

    Returns:
        A :class:`SpectralDensity` describing ``d`` (or ``d − k``) eigenvalues.

    Raises:
        InputError: ``probes < 1`` or ``steps < 1``.
    """
    check_at_least(probes, "SLQ probes", 1)
    removed = 0 if deflate is None else int(deflate.shape[0])
    width = min(steps, op.dim - removed)
    nodes, weights = np.zeros((probes, width)), np.zeros((probes, width))
    for p in range(probes):
        probe = np.asarray(jax.random.rademacher(jax.random.fold_in(key, p), (op.dim,)), np.float64)
        run = lanczos(op, probe, width, deflate=deflate, keep_basis=False, tick=tick)
        theta, s = run.ritz()
        nodes[p, : run.steps], weights[p, : run.steps] = theta, s[0] ** 2
    return SpectralDensity(nodes, weights, op.dim - removed)


def hutchinson_trace(op: CurvatureOperator, *, key: jax.Array, probes: int = 32) -> tuple[float, float]:
    """Hutchinson's estimate ``tr(A) ≈ (1/P) Σ_p r_pᵀ A r_p`` (Rademacher ``r_p``) and its standard error."""
    values = np.array([
        float(r @ op.matvec(r))
        for r in (np.asarray(jax.random.rademacher(jax.random.fold_in(key, p), (op.dim,)), np.float64)
                  for p in range(probes))
    ])
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(probes)) if probes > 1 else float("nan")
