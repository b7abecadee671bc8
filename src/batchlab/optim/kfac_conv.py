"""Faster K-FAC input statistics for 2-D convolutions on XLA:CPU.

kfac-jax computes a convolution layer's input factor ``A = E[p pᵀ]`` (``p`` = an input patch,
flattened in the order (kernel rows, kernel columns, channels), plus a trailing 1 for the bias) with
one convolution per kernel tap inside a ``while`` loop; XLA:CPU runs convolutions inside loops very
slowly (~14 s per step for a 28×28 CNN).  Here the patches are gathered with ``kh·kw`` strided slices
of the padded input (no convolution) and ``A`` is one matrix product::

    P = [patches of every example and output location]            (N·H'·W', kh·kw·C)
    A = [[PᵀP, Pᵀ1], [1ᵀP, N·H'·W']] / (N·H'·W')

which equals kfac-jax's result (checked in the tests) for convolutions without dilation, grouping
or per-example weighting; other layers fall back to kfac-jax's own code.

Measured K-FAC step at B = 128 on the 2 shared cores (kfac-jax's statistics → these), averaged over
inversion and non-inversion steps: fashion-mnist-cnn 779 → 55 ms (quiet machine), 1,166 → 214 ms
(loaded); digits-cnn 116 → 22 ms (quiet), 118 → 81 ms (loaded; there the 513×513 factor inversion
every 5 steps dominates).  Compilation also shrinks (digits: 4.9 → 2.7 s).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import kfac_jax

__all__ = ["FastConv2DBlock", "conv_block_ctors", "patch_matrix"]


def patch_matrix(
    inputs: jax.Array,
    kernel_shape: tuple[int, int],
    strides: tuple[int, int],
    padding: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
    """All input patches of an NHWC batch as rows, ordered (kernel row, kernel column, channel).

    Args:
        inputs: ``(N, H, W, C)``.
        kernel_shape: ``(kh, kw)``.
        strides: ``(sh, sw)``.
        padding: ``((top, bottom), (left, right))`` zero padding.

    Returns:
        ``(N · H' · W', kh · kw · C)`` with ``H' = ⌊(H + top + bottom − kh) / sh⌋ + 1`` (same for W').
    """
    (kh, kw), (sh, sw) = kernel_shape, strides
    padded = jnp.pad(inputs, ((0, 0), padding[0], padding[1], (0, 0)))
    out_h = (padded.shape[1] - kh) // sh + 1
    out_w = (padded.shape[2] - kw) // sw + 1
    taps = [
        padded[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    patches = jnp.stack(taps, axis=3)  # (N, H', W', kh·kw, C)
    return patches.reshape(-1, kh * kw * inputs.shape[-1])


class FastConv2DBlock(kfac_jax.Conv2DTwoKroneckerFactored):
    """kfac-jax's convolution block with :func:`patch_matrix`-based input statistics."""

    def _simple(self) -> bool:
        params = self._layer_tag_eq.params
        plain = all(params.get(name) in (None, 1, (1, 1)) for name in ("lhs_dilation", "rhs_dilation"))
        grouped = params.get("feature_group_count", 1) != 1 or params.get("batch_group_count", 1) != 1
        return plain and not grouped and not isinstance(params["padding"], str)

    def compute_inputs_stats(self, inputs: jax.Array, weighting_array: jax.Array | None = None) -> jax.Array:
        if weighting_array is not None or not self._simple():
            return super().compute_inputs_stats(inputs, weighting_array)
        params = self._layer_tag_eq.params
        lhs_spec = params["dimension_numbers"].lhs_spec  # (batch, channel, spatial...)
        nhwc = jnp.transpose(inputs, (lhs_spec[0], lhs_spec[2], lhs_spec[3], lhs_spec[1]))
        padding = tuple(tuple(int(p) for p in pair) for pair in params["padding"])
        patches = patch_matrix(nhwc, tuple(self.weights_spatial_shape),
                               tuple(params["window_strides"]), padding)
        count = patches.shape[0]  # = batch size · num_locations, kfac-jax's normaliser
        second = patches.T @ patches / count
        if self.number_of_parameters == 1:
            return second
        first = jnp.sum(patches, axis=0) / count
        top = jnp.concatenate([second, first[:, None]], axis=1)
        bottom = jnp.concatenate([first, jnp.ones([1], first.dtype)])[None, :]
        return jnp.concatenate([top, bottom], axis=0)


@functools.cache
def conv_block_ctors() -> dict[str, type]:
    """``layer_tag_to_block_ctor`` for ``kfac_jax.Optimizer``: fast blocks for ``conv2d`` tags."""
    return {"conv2d": FastConv2DBlock}
