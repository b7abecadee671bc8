"""K-FAC blocks for layers that see the loss rows as several leading axes (sequence models).

kfac-jax normalises every block's statistics by the batch size it is given and asserts that the
layer's inputs and output tangents have that many rows (leading axis).  batchlab gives it the number
of *loss rows* (:func:`batchlab.optim.kfac._loss_rows`): for a sequence model with targets
``(B, T)`` that is ``B·T`` — every position is an example of the per-position cross-entropy, and the
dense layers (:func:`batchlab.workloads.layers.dense` flattens leading axes) see ``(B·T, d)``
inputs.  Two kinds of layer keep the ``(B, T, …)`` layout, and failed kfac-jax's assertion:

* ``scale_and_shift`` (a layer norm's scale and shift over ``(B, T, d)``);
* ``repeated_dense`` (a dense layer on ``(B, T, d)`` inputs matched without a reshape, such as the
  Transformer's one-hot token embedding, ``tensordot(onehot, E)``).

The blocks here merge the leading axes of the layer's inputs and outputs (primals and tangents)
into one of ``batch_size`` rows before kfac-jax's own statistics run — the same "every position is
an example" (KFAC-expand) treatment the flattened dense layers get.  For a row ``n`` with input
``x_n`` and output tangent ``dy_n`` (the sampled-loss gradient):

* scale and shift: ``diag F̂_scale = Σ_n (x_n ⊙ dy_n)² / N``, ``diag F̂_shift = Σ_n dy_n² / N``;
* repeated dense: ``A = Σ_n x_n x_nᵀ / N``, ``G = Σ_n dy_n dy_nᵀ / N`` (a plain dense block: each
  row is counted once, so kfac-jax's per-row repeat count is 1 and its zero-tangent masking, meant
  for padded positions, is off — batchlab's sequences have none).

A layer whose leading axis already has ``batch_size`` entries is passed through unchanged, so
image workloads (leading axis = examples = loss rows) are unaffected; a layer whose leading axes
cannot be merged into ``batch_size`` rows still fails kfac-jax's assertion.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import kfac_jax
import numpy as np

__all__ = ["RowsRepeatedDenseBlock", "RowsScaleAndShiftBlock", "merge_leading_axes", "row_block_ctors"]


def merge_leading_axes(array: jax.Array, rows: int) -> jax.Array:
    """``array`` with its first ``k`` axes merged into one of ``rows``, the smallest such ``k``.

    Returned unchanged when the first axis already has ``rows`` entries or no prefix of the shape
    multiplies to ``rows``.

    Example:
        >>> import jax.numpy as jnp
        >>> merge_leading_axes(jnp.zeros((2, 8, 16)), 16).shape
        (16, 16)
    """
    if array.ndim < 2 or array.shape[0] == rows:
        return array
    for k in range(2, array.ndim + 1):
        size = math.prod(array.shape[:k])
        if size == rows:
            return array.reshape((rows,) + array.shape[k:])
        if size > rows:
            break
    return array


def _merge_rows(data: kfac_jax.LayerData, rows: int) -> kfac_jax.LayerData:
    """Inputs and outputs (not parameters) of one side of a layer's VJP data, rows merged."""
    return dataclasses.replace(
        data,
        inputs=tuple(merge_leading_axes(x, rows) for x in data.inputs),
        outputs=tuple(merge_leading_axes(y, rows) for y in data.outputs),
    )


def _rows_data(estimation_data, batch_size):
    if not isinstance(batch_size, (int, np.integer)):  # static in kfac-jax 0.0.8; traced: leave alone
        return estimation_data
    batch_size = int(batch_size)
    return dataclasses.replace(
        estimation_data,
        primals=_merge_rows(estimation_data.primals, batch_size),
        tangents=_merge_rows(estimation_data.tangents, batch_size),
    )


class RowsScaleAndShiftBlock(kfac_jax.ScaleAndShiftDiagonal):
    """kfac-jax's diagonal scale-and-shift block on ``batch_size`` rows (see module docstring)."""

    def update_curvature_matrix_estimate(self, state, estimation_data, ema_old, ema_new,
                                         identity_weight, batch_size):
        return super().update_curvature_matrix_estimate(
            state, _rows_data(estimation_data, batch_size), ema_old, ema_new, identity_weight, batch_size)


class RowsRepeatedDenseBlock(kfac_jax.RepeatedDenseKroneckerFactored):
    """kfac-jax's repeated-dense block on ``batch_size`` rows, without zero-tangent masking."""

    def __init__(self, layer_tag_eq, **kwargs):
        kwargs.setdefault("use_masking", False)
        super().__init__(layer_tag_eq, **kwargs)

    def update_curvature_matrix_estimate(self, state, estimation_data, ema_old, ema_new,
                                         identity_weight, batch_size):
        return super().update_curvature_matrix_estimate(
            state, _rows_data(estimation_data, batch_size), ema_old, ema_new, identity_weight, batch_size)


@functools.cache
def row_block_ctors() -> dict[str, type]:
    """``layer_tag_to_block_ctor`` entries for the ``scale_and_shift`` and ``repeated_dense`` tags."""
    return {"scale_and_shift": RowsScaleAndShiftBlock, "repeated_dense": RowsRepeatedDenseBlock}
