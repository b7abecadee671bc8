"""Measured preconditioners: the matrix ``P`` an optimizer divides the gradient by, at a checkpoint.

A preconditioned optimizer updates ``θ' = θ − α P⁻¹ g`` (plus momentum).  In the coordinates
``z = P^{1/2} θ`` this is plain gradient descent, ``z' = z − α g̃`` with ``g̃ = P^{-1/2} g``, on the
curvature ``M = P^{-1/2} H P^{-1/2}`` with gradient-noise covariance ``P^{-1/2} Σ P^{-1/2}``; holding
``P`` fixed at its value at the checkpoint, the NQM of the optimizer is the plain NQM of ``M``
(:func:`batchlab.calibrate.measure.measure` with ``preconditioner=``).

**Adam** (``optax.scale_by_adam``): after ``N ≥ 1`` updates the state holds the second moment ``ν`` and
the count ``N``, and the last update divided the bias-corrected first moment by

    D = √(ν / (1 − β₂ᴺ)) + ε        (``eps_root = 0``; β₂, ε: the run's hyperparameters),

so ``P = diag(D)`` (the update is ``−α m̂ / D``).  β₁ acts as momentum (heavy ball in velocity form with
``β = β₁`` and step ``α(1 − β₁)``); ``m``'s bias correction, which fades after a few ``1 / (1 − β₁)``
updates but lasts a whole large-batch run, is modelled as a per-update step and momentum
(:data:`BIAS_CORRECTED`, :mod:`batchlab.nqm.drift`).

**K-FAC** (kfac-jax 0.0.8, as :mod:`batchlab.optim.kfac` configures it): the curvature estimator keeps
per layer an EMA of Kronecker factors ``A`` (inputs, ``din × din``, a trailing 1 for the bias) and
``G`` (output gradients, ``dout × dout``), or a diagonal for layers without a Kronecker block.  With the
damping ``λ`` (the run's ``damping``; kfac-jax's adapted value when ``adaptive = on``) and the block's
scale ``s`` (``fixed_scale · state_dependent_scale``: the number of locations of a convolution, 1 for a
dense layer), kfac-jax preconditions a layer's gradient, arranged as the matrix ``X`` (``din × dout``,
kernel rows then the bias row), with the inverse of

    P_layer = s · (A_λ ⊗ G_λ),   X ↦ s · A_λ X G_λ,   (A_λ, G_λ) = π-adjusted factored damping of
                                                       (A, G) with ``λ / s`` (Martens & Grosse 2015 §6.3;
                                                       ``kfac_jax.utils.pi_adjusted_kronecker_factors``),

and a diagonal block with ``P = s · f + λ`` (``f``: its diagonal estimate).  The factors are those of
the estimator state at the checkpoint, i.e. the inverse kfac-jax computes at its next inverse update
(it refreshes the cached inverses every ``inverse_update_period`` = 5 steps, so the inverse it applied
last may lag by up to 4 EMA updates of decay 0.95).  What it applied before the checkpoint (the inverses of earlier estimates,
from initialisation on) is measured against ``P`` by :func:`applied_updates` and :func:`drift_multipliers`
for the NQM's drift (:mod:`batchlab.nqm.drift`).  ``P^e`` for any power ``e`` is applied blockwise
from eigendecompositions of the small factors (float64): ``X ↦ s^e · A_λ^e X G_λ^e``.

Example:
    >>> from batchlab.calibrate.precondition import DiagonalBlock, Preconditioner
    >>> import numpy as np
    >>> p = Preconditioner("adam", 3, (DiagonalBlock(np.arange(3), np.array([1.0, 4.0, 16.0])),), {})
    >>> np.asarray(p.matrix_power(-0.5)(np.ones(3, np.float32))).tolist()
    [1.0, 0.5, 0.25]
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from batchlab.errors import InputError

__all__ = ["MEASURED", "DRIFTING", "BIAS_CORRECTED", "KroneckerBlock", "DiagonalBlock", "Preconditioner", "adam_preconditioner",
           "kfac_preconditioner", "extract_preconditioner", "check_drifting", "applied_updates", "relative_trace",
           "drift_multipliers"]

MEASURED = ("adam", "kfac")  # study optimizers whose preconditioner can be measured


@dataclasses.dataclass(frozen=True)
class KroneckerBlock:
    """``P`` on one layer: ``X ↦ scale · left · X · right`` for the layer's parameters arranged as
    ``X = v[indices]`` (``indices``: ``(rows, cols)`` flat positions; ``left``, ``right``: symmetric
    positive definite, float64)."""

    indices: np.ndarray
    left: np.ndarray
    right: np.ndarray
    scale: float


@dataclasses.dataclass(frozen=True)
class DiagonalBlock:
    """``P`` on some parameters: ``v[indices] ↦ diagonal · v[indices]`` (``diagonal > 0``, float64)."""

    indices: np.ndarray
    diagonal: np.ndarray


def _sym_power(matrix: np.ndarray, exponent: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(np.asarray(matrix, np.float64))
    if values.min() <= 0:
        raise InputError(f"preconditioner factor is not positive definite (smallest eigenvalue {values.min():g})")
    return (vectors * values**exponent) @ vectors.T


@dataclasses.dataclass(frozen=True)
class Preconditioner:
    """An optimizer's preconditioner ``P`` at a checkpoint (see the module docstring), block diagonal
    over the flat parameter vector (:func:`jax.flatten_util.ravel_pytree` order).

    Attributes:
        optimizer: ``"adam"`` or ``"kfac"``.
        dim: number of parameters d.
        blocks: :class:`KroneckerBlock` and :class:`DiagonalBlock` covering every parameter once.
        summary: JSON-ready description (hyperparameters read, ranges of ``P``'s eigenvalues).
    """

    optimizer: str
    dim: int
    blocks: tuple[KroneckerBlock | DiagonalBlock, ...]
    summary: Mapping[str, Any]

    def __post_init__(self) -> None:
        covered = np.concatenate([np.ravel(b.indices) for b in self.blocks]) if self.blocks else np.zeros(0, int)
        if not np.array_equal(np.sort(covered), np.arange(self.dim)):
            raise InputError(f"{self.optimizer} preconditioner: its blocks do not cover the {self.dim} parameters "
                             "exactly once")

    def matrix_power(self, exponent: float) -> Callable[[jax.Array], jax.Array]:
        """``v ↦ P^exponent v`` on flat float32 vectors of length d: linear, jittable, vmappable (the
        factors' powers are computed once here, in float64, and applied in float32)."""
        diagonal = np.zeros(self.dim)
        kron = []
        for block in self.blocks:
            if isinstance(block, DiagonalBlock):
                diagonal[block.indices] = block.diagonal**exponent
            else:
                kron.append((jnp.asarray(block.indices, jnp.int32),
                             jnp.asarray(block.scale**exponent * _sym_power(block.left, exponent), jnp.float32),
                             jnp.asarray(_sym_power(block.right, exponent), jnp.float32)))
        diag = jnp.asarray(diagonal, jnp.float32)

        def apply(v: jax.Array) -> jax.Array:
            out = diag * v
            for indices, left, right in kron:
                out = out.at[indices].set(left @ v[indices] @ right)
            return out

        return apply

    def eigenvalue_range(self) -> tuple[float, float]:
        """Smallest and largest eigenvalue of ``P``."""
        low, high = np.inf, -np.inf
        for block in self.blocks:
            if isinstance(block, DiagonalBlock):
                values = block.diagonal
            else:
                values = block.scale * np.outer(np.linalg.eigvalsh(block.left), np.linalg.eigvalsh(block.right))
            low, high = min(low, float(values.min())), max(high, float(values.max()))
        return low, high

    def as_dict(self) -> dict[str, Any]:
        low, high = self.eigenvalue_range()
        return {"optimizer": self.optimizer, **self.summary, "eigenvalue_min": low, "eigenvalue_max": high}


def _adam_state(state: Any) -> optax.ScaleByAdamState:
    found = [leaf for leaf in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
             if isinstance(leaf, optax.ScaleByAdamState)]
    if len(found) != 1:
        raise InputError("adam preconditioner: the optimizer state holds no (or several) optax Adam states")
    return found[0]


def adam_preconditioner(state: Any) -> Preconditioner:
    """Adam's ``P = diag(√(ν / (1 − β₂ᴺ)) + ε)`` from a :class:`~batchlab.optim.gradient.GradientState`
    of ``batchlab.optim.adam`` (hyperparameters read from the state).

    Raises:
        InputError: no Adam state, or ``N = 0`` (no update yet: ``ν`` is still empty).
    """
    adam = _adam_state(state)
    count = int(adam.count)
    if count < 1:
        raise InputError("adam preconditioner: the checkpoint is before the first update (measure at step >= 1)")
    beta2, epsilon = float(state.hyper["beta2"]), float(state.hyper["epsilon"])
    nu = np.asarray(ravel_pytree(adam.nu)[0], np.float64)
    diagonal = np.sqrt(nu / (1.0 - beta2**count)) + epsilon
    summary = {"definition": "diag(sqrt(nu / (1 - beta2^count)) + epsilon)", "count": count, "beta2": beta2,
               "epsilon": epsilon, "beta1": float(state.hyper["beta1"]),
               "diagonal_quantiles": dict(zip(("min", "q10", "median", "q90", "max"),
                                              np.quantile(diagonal, [0, 0.1, 0.5, 0.9, 1.0]).tolist()))}
    return Preconditioner("adam", int(nu.shape[0]), (DiagonalBlock(np.arange(nu.shape[0]), diagonal),), summary)


def kfac_preconditioner(workload: Any, params: Any, state: Any, *, batch: Any, adaptive: bool = False,
                        key: jax.Array | None = None) -> Preconditioner:
    """K-FAC's damped Kronecker-factored ``P`` from a :class:`~batchlab.optim.kfac.KfacState` at ``params``.

    Args:
        workload: the workload (its model is traced once to recover kfac-jax's blocks).
        params: the parameters of the checkpoint (shapes only matter).
        state: the K-FAC optimizer state at the checkpoint.
        batch: an example batch for the trace.
        adaptive: the run used kfac-jax's adaptive damping (then ``λ`` is the state's damping).
        key: PRNG key of the trace (irrelevant to the result).

    Raises:
        InputError: a block kind without a Kronecker or diagonal form, or a factor that is not
            positive definite after damping.
    """
    import kfac_jax

    from batchlab.optim.kfac import curvature_estimator

    estimator = curvature_estimator(workload, params, batch, key=jax.random.PRNGKey(0) if key is None else key,
                                    adaptive=adaptive)
    damping = float(state.inner.damping if adaptive else state.hyper["damping"])
    leaves, tree = jax.tree_util.tree_flatten(params)
    offsets = np.cumsum([0] + [leaf.size for leaf in leaves])
    index_tree = jax.tree_util.tree_unflatten(tree, [np.arange(offsets[i], offsets[i + 1], dtype=np.int32)
                                                     .reshape(leaf.shape) for i, leaf in enumerate(leaves)])
    blocks: list[KroneckerBlock | DiagonalBlock] = []
    described = []
    block_states = state.inner.estimator_state.blocks_states
    for block, block_state, indices in zip(estimator.blocks, block_states,
                                           estimator.params_vector_to_blocks_vectors(index_tree)):
        scale = float(block.fixed_scale()) * float(block.state_dependent_scale(block_state))
        name = type(block).__name__
        if isinstance(block, kfac_jax.KroneckerFactored) and len(block_state.factors) == 2:
            first, second = (f.value for f in block_state.factors)
            left, right = kfac_jax.utils.pi_adjusted_kronecker_factors(first, second, damping=damping / scale)
            matrix = np.asarray(block.parameters_shaped_list_to_array(indices))
            blocks.append(KroneckerBlock(matrix, np.asarray(left, np.float64), np.asarray(right, np.float64), scale))
            described.append({"block": name, "shape": list(matrix.shape), "scale": scale})
        elif isinstance(block, kfac_jax.Diagonal):
            for index, factor in zip(indices, block_state.diagonal_factors):
                values = scale * np.asarray(factor.value, np.float64).ravel() + damping
                blocks.append(DiagonalBlock(np.asarray(index).ravel(), values))
            described.append({"block": name, "shape": [int(np.asarray(i).size) for i in indices], "scale": scale})
        else:
            raise InputError(f"kfac preconditioner: kfac-jax block {name} has no Kronecker or diagonal form")
    summary = {"definition": "per layer s * (A_damped kron G_damped) (pi-adjusted damping), diagonal s * f + damping",
               "damping": damping, "adaptive": adaptive, "count": int(state.count), "blocks": described}
    return Preconditioner("kfac", int(offsets[-1]), tuple(blocks), summary)


def extract_preconditioner(optimizer: str, workload: Any, params: Any, state: Any, *,
                           hyperparameters: Mapping[str, Any], batch: Any) -> Preconditioner:
    """The measured preconditioner of study optimizer ``optimizer`` (one of :data:`MEASURED`) from its
    reference run's checkpoint (``params``, optimizer ``state``, its ``hyperparameters``).

    Raises:
        InputError: an optimizer without a measured preconditioner, or see the extractors.
    """
    if optimizer == "adam":
        return adam_preconditioner(state)
    if optimizer == "kfac":
        if int(state.count) < 1:
            raise InputError("kfac preconditioner: the checkpoint is before the first update (measure at step >= 1)")
        return kfac_preconditioner(workload, params, state, batch=batch,
                                   adaptive=hyperparameters.get("adaptive", "off") == "on")
    raise InputError(f"no measured preconditioner for {optimizer!r}; measured: {', '.join(MEASURED)}")


# ---------------------------------------------------------------------------------------------------------
# The preconditioner a run applies before the checkpoint (its drift, batchlab.nqm.drift)

DRIFTING = ("kfac",)  # measured optimizers whose preconditioner before the checkpoint can be modelled
BIAS_CORRECTED = ("adam",)  # measured optimizers whose momentum is divided by 1 − β₁^{t+1} (optax.scale_by_adam)


def check_drifting(optimizer: str) -> None:
    """Raise :class:`InputError` unless the drift of ``optimizer``'s preconditioner is modelled
    (:data:`DRIFTING`; why not Adam: :func:`applied_updates`)."""
    if optimizer not in DRIFTING:
        raise InputError(f"the preconditioner's drift is modelled for {', '.join(DRIFTING)} only, not {optimizer!r} "
                         "(Adam's early preconditioner is built from the gradients it divides)")


def applied_updates(optimizer: str, checkpoint_step: int) -> tuple[int, ...]:
    """The updates ``t < checkpoint_step`` at which the optimizer starts applying another preconditioner,
    each applied until the next: K-FAC (registry settings) refreshes its inverses at updates ``0, k, 2k, …``
    (``k = inverse_update_period``) from its curvature estimate after that update's, so the state after
    update ``t`` (snapshot ``t + 1``) holds the factors it inverts.

    Adam is not modelled: its ``√v̂ + ε`` is built from the very gradients it divides (at update 0 it is
    ``|g| + ε``, a sign step), so its ratio to the checkpoint's says nothing about a linear model's
    gradient (``benchmarks/adam_drift.py`` measures it on digits-cnn).

    Raises:
        InputError: another optimizer than :data:`DRIFTING` (:func:`check_drifting`).
    """
    check_drifting(optimizer)
    from batchlab.optim.kfac import KfacConfig

    return tuple(range(0, int(checkpoint_step), KfacConfig().inverse_update_period))


def relative_trace(checkpoint: Preconditioner, applied: Preconditioner) -> float:
    """``tr(P_c P_a⁻¹)`` (``P_c``: ``checkpoint``, ``P_a``: ``applied``, the same block structure), the trace
    of ``R = P_c^{1/2} P_a⁻¹ P_c^{1/2}``, exactly and blockwise: ``(s_c / s_a) tr(L_c L_a⁻¹) tr(R_c R_a⁻¹)``
    for a Kronecker block, ``Σ d_c / d_a`` for a diagonal one."""
    if checkpoint.dim != applied.dim or len(checkpoint.blocks) != len(applied.blocks):
        raise InputError("the two preconditioners have different block structures")
    total = 0.0
    for c, a in zip(checkpoint.blocks, applied.blocks):
        if type(c) is not type(a) or not np.array_equal(c.indices, a.indices):
            raise InputError("the two preconditioners have different block structures")
        if isinstance(c, DiagonalBlock):
            total += float(np.sum(c.diagonal / a.diagonal))
        else:
            total += (c.scale / a.scale) * float(np.trace(np.linalg.solve(a.left, c.left))) \
                * float(np.trace(np.linalg.solve(a.right, c.right)))
    return total


def drift_multipliers(checkpoint: Preconditioner, applied: Preconditioner, vectors: Any) -> tuple[np.ndarray, float]:
    """Along the checkpoint coordinates' top eigenvectors ``u_i`` (rows of ``vectors``, orthonormal, length
    d), ``m_i = u_iᵀ R u_i`` with ``R = P_c^{1/2} P_a⁻¹ P_c^{1/2}``: how much larger the gradient step the
    applied preconditioner takes than the checkpoint's; and the mean of ``R`` over the other ``d − k``
    directions, ``(tr R − Σ m_i) / (d − k)`` (:func:`relative_trace`).  ``m = 1`` when ``P_a = P_c``."""
    u = np.asarray(vectors, np.float64)
    half, inverse = checkpoint.matrix_power(0.5), applied.matrix_power(-1.0)
    top = np.array([float(np.dot(row, np.asarray(half(inverse(half(jnp.asarray(row, jnp.float32)))), np.float64)))
                    for row in u])
    rest = checkpoint.dim - u.shape[0]
    bulk = (relative_trace(checkpoint, applied) - float(top.sum())) / rest if rest > 0 else 1.0
    return top, bulk
