"""Curvature and gradient-noise spectra of a workload at fixed parameters.

One call of :func:`measure` does, at the given parameters (deterministically in ``key``):

1. draws a fixed *curvature batch* (``curvature_examples``, with replacement, as training does) and builds
   the Hessian or Gauss–Newton operator of its mean loss (:mod:`batchlab.calibrate.operators`);
2. top-k eigenpairs by Lanczos with full reorthogonalisation (:func:`~batchlab.calibrate.lanczos.top_eigenpairs`);
3. the bulk: the SLQ spectral density of the operator deflated by the top-k eigenvectors, describing the
   other ``d − k`` eigenvalues;
4. gradient noise from ``noise_examples`` per-example gradients (an independent batch): ``c_i`` along each
   top eigenvector, ``tr Σ``, ``tr(HΣ)``, and the noise scales ``B_simple``, ``B_noise``
   (:mod:`batchlab.calibrate.noise`).

With ``preconditioner=P`` (an optimizer's measured preconditioner, :mod:`batchlab.calibrate.precondition`)
everything is measured in the optimizer's coordinates ``z = P^{1/2} θ``: the operator is
``M = P^{-1/2} H P^{-1/2}`` (:func:`~batchlab.calibrate.operators.preconditioned_operator`) and the
per-example gradients are ``P^{-1/2} g`` (noise covariance ``P^{-1/2} Σ P^{-1/2}``).  The same ``key``
draws the same batches, start vector, probes and signs as without.

Cost: ``lanczos_steps + slq_probes · slq_steps + sketches + 1`` operator products over the curvature
batch, plus one per-example-gradient pass over the noise batch.  Memory: the Lanczos basis
(``steps × d`` float64) and the ``sketches × d`` sketch, plus one chunk's forward/backward pass.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax

from batchlab.calibrate.lanczos import Eigenpairs, SpectralDensity, spectral_density, top_eigenpairs
from batchlab.calibrate.noise import NoiseStats, gradient_noise
from batchlab.calibrate.operators import Curvature, chunk_batch, curvature_operator, preconditioned_operator
from batchlab.calibrate.precondition import Preconditioner
from batchlab.calibrate.progress import Stages, no_progress
from batchlab.checks import check_integer
from batchlab.errors import InputError

__all__ = ["MeasureConfig", "Spectra", "measure"]


@dataclasses.dataclass(frozen=True)
class MeasureConfig:
    """What to measure and how hard.

    Attributes:
        top_k: number of top eigenpairs (the NQM's exact directions).
        curvature: ``"ggn"`` (default; Gauss–Newton, = Fisher for the softmax cross-entropy) or
            ``"hessian"``.  The NQM wants the GGN: it is positive semi-definite like the NQM's ``H``
            and equals the Fisher, matching the NQM's "noise ≈ curvature" assumption, whereas a
            network's Hessian bulk carries a large negative part that the NQM cannot represent (on
            digits-cnn at the target, +71 and −60 of bulk trace) and leaves the positive part overstated.
        lanczos_steps: Lanczos iterations for the top-k (default ``max(3k, k + 40)``, at most d).
        slq_probes, slq_steps: SLQ probes and Lanczos iterations per probe for the bulk density.
        curvature_examples: examples in the curvature batch (rounded up to a multiple of ``chunk_size``).
        noise_examples: per-example gradients for the noise statistics (same rounding).
        chunk_size: examples per jitted call (bounds memory).
        sketches: random-sign sketches for ``tr(HΣ)``.
    """

    top_k: int = 16
    curvature: Curvature = "ggn"
    lanczos_steps: int | None = None
    slq_probes: int = 6
    slq_steps: int = 64
    curvature_examples: int = 2048
    noise_examples: int = 1024
    chunk_size: int = 256
    sketches: int = 32

    def check(self) -> None:
        """Raise :class:`InputError` naming the first out-of-range field."""
        for name in ("top_k", "slq_probes", "slq_steps", "curvature_examples", "chunk_size"):
            check_integer(getattr(self, name), name, 1)
        if self.noise_examples < 4 or self.sketches < 2:
            raise InputError(f"noise_examples must be >= 4 and sketches >= 2, got {self.noise_examples}, "
                             f"{self.sketches}")
        if self.curvature not in ("hessian", "ggn"):
            raise InputError(f"curvature must be hessian or ggn, got {self.curvature!r}")

    def rounded(self, examples: int) -> tuple[int, int]:
        """``(examples rounded up to a multiple of the chunk, chunk)``; the chunk never exceeds them."""
        chunk = min(self.chunk_size, examples)
        return chunk * math.ceil(examples / chunk), chunk


@dataclasses.dataclass(frozen=True)
class Spectra:
    """Everything measured at one point.

    Attributes:
        curvature: which operator (``"hessian"`` or ``"ggn"``).
        dim: number of parameters d.
        top: the top-k eigenpairs (descending).
        bulk: SLQ density of the other ``d − k`` eigenvalues (deflated by ``top.vectors``).
        noise: per-example gradient statistics (``noise.noise[i]`` along ``top.vectors[i]``).
        curvature_examples: size of the curvature batch.
        preconditioner: description of the preconditioner ``P`` of a measurement in an optimizer's
            coordinates (then ``top``, ``bulk`` and ``noise`` are of ``P^{-1/2} H P^{-1/2}``), else ``None``.
    """

    curvature: str
    dim: int
    top: Eigenpairs
    bulk: SpectralDensity
    noise: NoiseStats
    curvature_examples: int
    preconditioner: Mapping[str, Any] | None = None

    @property
    def trace(self) -> float:
        """``tr H ≈ Σ_{i≤k} λ_i + (d − k) · mean(bulk)``."""
        return float(self.top.values.sum() + self.bulk.dim * self.bulk.moment(1))

    def as_dict(self) -> dict[str, Any]:
        """The spectra JSON (see :mod:`batchlab.calibrate`)."""
        noise = self.noise.as_dict()
        extra = {} if self.preconditioner is None else {"preconditioner": dict(self.preconditioner)}
        return extra | {
            "curvature": self.curvature,
            "dim": self.dim,
            "top_k": int(self.top.values.shape[0]),
            "eigenvalues": self.top.values.tolist(),
            "residuals": self.top.residuals.tolist(),
            "lanczos_steps": self.top.steps,
            "noise": self.noise.noise.tolist(),
            "noise_stderr": self.noise.noise_stderr.tolist(),
            "gradient_projections": self.noise.projections.tolist(),
            "trace": self.trace,
            "bulk_density": self.bulk.as_dict(),
            "curvature_examples": self.curvature_examples,
            "gradient_noise": noise,
            "b_simple": noise["b_simple"],
            "b_noise": noise["b_noise"],
        }


def measure(workload: Any, params: Any, config: MeasureConfig = MeasureConfig(), *, key: jax.Array,
            stages: Stages = no_progress, preconditioner: Preconditioner | None = None) -> Spectra:
    """Measure the curvature spectrum and gradient noise of ``workload`` at ``params``.

    Args:
        workload: a :class:`~batchlab.workloads.base.Workload` (data loaded on demand).
        params: the parameter pytree (e.g. a checkpoint of a reference run).
        config: sizes and the curvature kind.
        key: PRNG key; equal keys give identical results.
        stages: progress hook (see :mod:`batchlab.calibrate.progress`).
        preconditioner: measure in this optimizer preconditioner's coordinates (module docstring).

    Returns:
        :class:`Spectra`.

    Raises:
        InputError: invalid configuration, ``top_k`` larger than the number of parameters.

    Example:
        >>> spectra = measure(get_workload("digits-cnn"), params, MeasureConfig(top_k=8),
        ...                   key=jax.random.key(0))                               # doctest: +SKIP
        >>> spectra.top.values[:3], spectra.noise.b_noise                          # doctest: +SKIP
    """
    config.check()
    workload.load()
    k_curv, k_noise, k_top, k_slq, k_sketch = jax.random.split(key, 5)
    curv_n, curv_chunk = config.rounded(config.curvature_examples)
    noise_n, noise_chunk = config.rounded(config.noise_examples)
    curv_batch = workload.sample_batch(key=k_curv, batch_size=curv_n)
    op = curvature_operator(config.curvature, workload, params, curv_batch, chunk_size=curv_chunk)
    transform = None
    if preconditioner is not None:
        if preconditioner.dim != op.dim:
            raise InputError(f"the preconditioner has {preconditioner.dim} parameters, the model {op.dim}")
        transform = preconditioner.matrix_power(-0.5)
        op = preconditioned_operator(op, transform)
    if config.top_k >= op.dim:
        raise InputError(f"top_k must be < the number of parameters ({op.dim}), got {config.top_k}")
    steps = config.lanczos_steps or min(op.dim, max(3 * config.top_k, config.top_k + 40))
    top = top_eigenpairs(op, config.top_k, key=k_top, steps=steps, tick=stages("top-k eigenpairs", steps))
    probes, width = config.slq_probes, min(config.slq_steps, op.dim - top.values.shape[0])
    bulk = spectral_density(op, key=k_slq, probes=probes, steps=width, deflate=top.vectors,
                            tick=stages("bulk density (SLQ)", probes * width))
    noise_batch = workload.sample_batch(key=k_noise, batch_size=noise_n)
    noise = gradient_noise(workload, params, chunk_batch(noise_batch, noise_chunk), top, op, key=k_sketch,
                           sketches=config.sketches, transform=transform,
                           tick=stages("gradient noise", noise_n // noise_chunk + config.sketches + 1))
    described = None if preconditioner is None else preconditioner.as_dict()
    return Spectra(config.curvature, op.dim, top, bulk, noise, curv_n, described)
