"""The noisy quadratic model as a trainable workload (exact "infinite data" sampler).

In the eigenbasis of ``H`` (diagonal ``h``) with per-example noise variances ``c``, example ``j`` is a
standard normal vector ``z_j ∈ R^d`` and its loss is

    ℓ(θ; z_j) = ½ θᵀHθ + (√c ⊙ z_j)ᵀθ,

so the minibatch gradient is ``g = Hθ + ε`` with ``ε = √c ⊙ z̄``, ``z̄ = (1/B) Σ_j z_j`` and hence
``E ε = 0``, ``Cov(ε) = C / B`` exactly.  ``θ(0) ~ N(0, diag(s0))`` from the init key.  Evaluation
reports the NQM engine's risk ``½ θᵀHθ = Σ_i w_i ½ h_i θ_i²`` (float64), and ``relative_risk`` =
risk / expected initial risk ``Σ_i w_i ½ h_i s0_i``, which defines the target.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from batchlab.errors import InputError
from batchlab.nqm.spectrum import Problem, power_law
from batchlab.workloads.base import Batch, LossKind, Params, Workload
from batchlab.workloads.options import check_float, check_int

__all__ = ["NqmSampled", "expand_weights"]

MAX_DIM = 1_000_000


def expand_weights(problem: Problem) -> Problem:
    """An exact, unit-weight copy of ``problem``: entry ``i`` repeated ``w_i`` times (``w_i`` integers).

    Raises:
        InputError: a weight is not an integer (the problem cannot be realised as a parameter vector).
    """
    counts = np.rint(problem.weights).astype(np.int64)
    if not np.allclose(counts, problem.weights, rtol=0, atol=1e-9):
        raise InputError("nqm-sampled: the problem's weights must be integers (directions are parameters)")
    if int(counts.sum()) > MAX_DIM:
        raise InputError(f"nqm-sampled: the problem has {int(counts.sum())} directions, at most {MAX_DIM}")
    if np.all(counts == 1):
        return problem
    return Problem(h=np.repeat(problem.h, counts), c=np.repeat(problem.c, counts),
                   s0=np.repeat(problem.s0, counts), weights=1.0, name=f"{problem.name} expanded")


class _Arrays(NamedTuple):
    curvature: jax.Array  # h, float32
    noise_scale: jax.Array  # √c, float32
    initial_scale: jax.Array  # √s0, float32
    curvature64: np.ndarray  # h, float64, for the exact risk
    initial_risk: float


@dataclasses.dataclass(frozen=True)
class NqmSampled(Workload):
    """The NQM as a workload: parameters ``θ ∈ R^d``, examples ``z ~ N(0, I_d)`` (an infinite stream).

    Options:
        dim: number of directions of the power-law problem, 1 … 1,000,000 (default 100).
        exponent: ``h_i = i^-exponent``, ``c_i = h_i``, ``s0_i = 1`` (0 < exponent ≤ 10, default 1).
        problem: an explicit :class:`batchlab.nqm.Problem` (overrides dim and exponent; integer
            weights are expanded into repeated directions).

    Target: ``relative_risk ≤ 0.01`` (1 % of the expected initial risk, 2.59 → 0.0259 by default).
    With its optimal learning rate, SGD's exact expected risk (``batchlab.nqm.optimize``) reaches it in
    9,996 steps at B = 1, 649 at B = 16, 186 at B = 64 and 54 at B = 4,096 (perfect scaling up to
    B ≈ 64); single
    sampled runs at B = 64 (rate 0.81) first hit it after 138 … 155 steps, earlier than the expected
    risk does, because a first hit of a noisy curve precedes the crossing of its mean.

    Example:
        >>> workload = NqmSampled(dim=10)
        >>> theta = workload.init_params(key=jax.random.key(0))
        >>> round(workload.evaluate({"theta": 0 * theta["theta"]})["risk"], 3)
        0.0
    """

    dim: int = 100
    exponent: float = 1.0
    problem: Problem | None = None

    name: ClassVar[str] = "nqm-sampled"
    version: ClassVar[str] = "1"
    target_metric: ClassVar[str] = "relative_risk"
    target_value: ClassVar[float] = 0.01
    default_max_steps: ClassVar[int] = 20_000
    default_eval_every: ClassVar[int] = 1
    loss_kind: ClassVar[LossKind] = "quadratic"
    install_hint: ClassVar[str] = ""
    description: ClassVar[str] = "noisy quadratic model, h_i = c_i = 1/i, d = 100, sampled gradient noise"

    def __post_init__(self) -> None:
        check_int(self.name, "dim", self.dim, 1, MAX_DIM)
        check_float(self.name, "exponent", self.exponent, 0.0, 10.0, open_low=True)
        if self.problem is not None and not isinstance(self.problem, Problem):
            raise InputError(f"{self.name}: option problem must be a batchlab.nqm.Problem, got {self.problem!r}")

    @functools.cached_property
    def spectrum(self) -> Problem:
        """The unit-weight problem this workload realises."""
        source = self.problem if self.problem is not None else power_law(self.dim, self.exponent)
        return expand_weights(source)

    @property
    def arrays(self) -> _Arrays:
        def build() -> _Arrays:
            spectrum = self.spectrum
            return _Arrays(jnp.asarray(spectrum.h, jnp.float32), jnp.asarray(np.sqrt(spectrum.c), jnp.float32),
                           jnp.asarray(np.sqrt(spectrum.s0), jnp.float32), spectrum.h, spectrum.initial_risk())
        return self._memo("arrays", build)

    def load(self) -> None:
        self.arrays  # noqa: B018

    @property
    def num_train_examples(self) -> int:
        """0: examples are an infinite i.i.d. stream."""
        return 0

    def sample_batch(self, *, key: jax.Array, batch_size: int) -> Batch:
        """``{"inputs": z}`` with ``z ~ N(0, I)`` of shape ``(batch_size, d)``."""
        return {"inputs": jax.random.normal(key, (batch_size, self.spectrum.dim), jnp.float32)}

    def sample_reduced_batch(self, *, key: jax.Array, batch_size: int) -> Batch:
        """A one-row batch whose loss gradient has exactly the law of a ``batch_size`` batch's gradient.

        The row is ``z̄ ~ N(0, I / B)``, the mean of ``B`` standard normal rows: O(d) memory for any B.
        """
        return {"inputs": self.sample_batch(key=key, batch_size=1)["inputs"] * jnp.float32(batch_size ** -0.5)}

    def init_params(self, *, key: jax.Array) -> Params:
        """``{"theta": θ(0)}``, ``θ_i(0) ~ N(0, s0_i)``."""
        arrays = self.arrays
        return {"theta": jax.random.normal(key, arrays.initial_scale.shape, jnp.float32) * arrays.initial_scale}

    def apply(self, params: Params, inputs: jax.Array) -> jax.Array:
        """Per-example losses ``½ θᵀHθ + (√c ⊙ z_j)ᵀθ``, shape ``(batch,)``, for noise rows ``z``."""
        arrays = self.arrays
        theta = params["theta"]
        quadratic = 0.5 * jnp.sum(arrays.curvature * jnp.square(theta))
        return quadratic + jnp.dot(inputs, arrays.noise_scale * theta)

    def per_example_loss(self, params: Params, batch: Batch) -> jax.Array:
        return self.apply(params, batch["inputs"])

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        """``½ θᵀHθ + (√c ⊙ z̄)ᵀθ``; its gradient is ``Hθ + √c ⊙ z̄``."""
        return jnp.mean(self.per_example_loss(params, batch))

    def evaluate(self, params: Params) -> Mapping[str, float]:
        """``{"risk": ½ θᵀHθ, "relative_risk": risk / expected initial risk}`` in float64."""
        arrays = self.arrays
        theta = np.asarray(params["theta"], dtype=np.float64)
        risk = float(0.5 * np.dot(arrays.curvature64, np.square(theta)))
        return {"risk": risk, "relative_risk": risk / arrays.initial_risk}
