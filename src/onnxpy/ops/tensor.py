"""Indexing kernels: gathers and scatters, and the data-dependent selections (NonZero, OneHot,
Trilu, Compress, Unique, ReverseSequence)."""
from __future__ import annotations

import math

import numpy as np

from onnxpy.ops._helpers import normalize_axis, positions, zero_of
from onnxpy.registry import kernel

_REDUCTIONS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _element_index(shape, indices, axis, op):
    """The advanced index addressing ``x[..., indices[i], ...]`` (``indices`` along ``axis``,
    the position of each index elsewhere), for GatherElements and ScatterElements."""
    rank = len(shape)
    if rank == 0:
        raise ValueError(f"{op} needs data of rank >= 1, got a scalar")
    if indices.ndim != rank:
        raise ValueError(f"{op}: indices have rank {indices.ndim}, data has rank {rank}")
    axis = normalize_axis(axis, rank)
    if any(i > d for a, (i, d) in enumerate(zip(indices.shape, shape)) if a != axis):
        raise ValueError(f"{op}: indices shape {indices.shape} exceeds data shape {shape} off axis {axis}")
    index = [np.arange(n).reshape([-1 if a == d else 1 for a in range(rank)]) for d, n in enumerate(indices.shape)]
    index[axis] = positions(indices, shape[axis], op)
    return tuple(index)


def _nd_index(shape, indices, op):
    """The advanced index of ScatterND's k-tuples: one int64 array per leading data axis."""
    k = indices.shape[-1] if indices.ndim else 0
    if indices.ndim == 0 or k > len(shape):
        raise ValueError(f"{op}: indices of shape {indices.shape} do not index data of rank {len(shape)}")
    return tuple(positions(indices[..., j], shape[j], op) for j in range(k))


def _scatter(data, index, updates, reduction, op):
    """A copy of ``data`` with ``updates`` written (or reduced) at ``index``."""
    if reduction != "none" and reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of none, {', '.join(_REDUCTIONS)}; got {reduction!r}")
    if updates.dtype != data.dtype:
        raise TypeError(f"{op}: updates are {updates.dtype}, data is {data.dtype}")
    out = data.copy()
    if reduction == "none":
        out[index] = updates
    else:
        _REDUCTIONS[reduction].at(out, index, updates)
    return out


@kernel("Gather", since=1)
def gather(data, indices, *, axis=0):
    """Take entries of ``data`` along ``axis`` (negative indices count from the end)."""
    if data.ndim == 0:
        raise ValueError("Gather needs data of rank >= 1, got a scalar")
    axis = normalize_axis(axis, data.ndim)
    return np.take(data, positions(indices, data.shape[axis], "Gather"), axis=axis)


@kernel("GatherElements", since=11)
def gather_elements(data, indices, *, axis=0):
    """``out[i][j][k] = data[indices[i][j][k]][j][k]`` for axis 0, and likewise."""
    return data[_element_index(data.shape, indices, axis, "GatherElements")]


@kernel("GatherND", since=11)
def gather_nd_11(data, indices):
    """GatherND-11: no batch dimensions."""
    return gather_nd(data, indices)


@kernel("GatherND", since=12)
def gather_nd(data, indices, *, batch_dims=0):
    """Gather slices of ``data`` addressed by the k-tuples in the last axis of ``indices``,
    the first ``batch_dims`` axes being shared."""
    b = batch_dims
    if indices.ndim < 1 or b < 0 or b >= min(data.ndim, indices.ndim):
        raise ValueError(f"GatherND: batch_dims={b} needs data and indices of larger rank "
                         f"(shapes {data.shape}, {indices.shape})")
    if data.shape[:b] != indices.shape[:b]:
        raise ValueError(f"GatherND: batch dimensions differ: {data.shape[:b]} and {indices.shape[:b]}")
    k = indices.shape[-1]
    if b + k > data.ndim:
        raise ValueError(f"GatherND: index tuples of length {k} exceed data rank {data.ndim} after {b} batch dims")
    batch, rows = math.prod(data.shape[:b]), math.prod(indices.shape[b:-1])
    flat = data.reshape((batch,) + data.shape[b:])
    tuples = indices.reshape(batch, rows, k)
    index = (np.broadcast_to(np.arange(batch)[:, None], (batch, rows)),) + _nd_index(flat.shape[1:], tuples, "GatherND")
    return flat[index].reshape(indices.shape[:-1] + data.shape[b + k:])


@kernel("Scatter", since=9)
@kernel("ScatterElements", since=11)
def scatter_elements_11(data, indices, updates, *, axis=0):
    """ScatterElements-11 and 13 (and the deprecated Scatter): overwrite, no reduction."""
    return scatter_elements(data, indices, updates, axis=axis)


@kernel("ScatterElements", since=16)
def scatter_elements(data, indices, updates, *, axis=0, reduction="none"):
    """Write ``updates`` into a copy of ``data`` at the GatherElements positions of ``indices``;
    ``reduction`` combines with the existing value (max/min from opset 18)."""
    if updates.shape != indices.shape:
        raise ValueError(f"ScatterElements: updates shape {updates.shape} differs from indices shape {indices.shape}")
    index = _element_index(data.shape, indices, axis, "ScatterElements")
    return _scatter(data, index, updates, reduction, "ScatterElements")


@kernel("ScatterND", since=11)
def scatter_nd_11(data, indices, updates):
    """ScatterND-11 and 13: overwrite, no reduction."""
    return scatter_nd(data, indices, updates)


@kernel("ScatterND", since=16)
def scatter_nd(data, indices, updates, *, reduction="none"):
    """Write ``updates`` into a copy of ``data`` at the k-tuples of ``indices``' last axis."""
    index = _nd_index(data.shape, indices, "ScatterND")
    expected = indices.shape[:-1] + data.shape[len(index):]
    if updates.shape != expected:
        raise ValueError(f"ScatterND: updates shape {updates.shape} should be {expected}")
    return _scatter(data, index, updates, reduction, "ScatterND")


@kernel("TensorScatter", since=24)
def tensor_scatter(past_cache, update, write_indices=None, *, axis=-2, mode="linear"):
    """A copy of the cache with ``update`` written along ``axis`` from each batch entry's
    write index (wrapping around in ``circular`` mode)."""
    axis = normalize_axis(axis, past_cache.ndim)
    if axis == 0:
        raise ValueError("TensorScatter axis cannot be the batch axis 0")
    cache, upd = past_cache.shape, update.shape
    if len(upd) != len(cache) or upd[axis] > cache[axis] or any(
            u != c for a, (u, c) in enumerate(zip(upd, cache)) if a != axis):
        raise ValueError(f"TensorScatter: update shape {upd} does not fit cache shape {cache} on axis {axis}")
    if mode not in ("linear", "circular"):
        raise ValueError(f"TensorScatter mode must be 'linear' or 'circular', got {mode!r}")
    batch, length = cache[0], cache[axis]
    starts = np.zeros(batch, np.int64) if write_indices is None else write_indices.astype(np.int64).reshape(-1)
    if starts.shape != (batch,):
        raise ValueError(f"TensorScatter: write_indices must have {batch} entries, got {write_indices.shape}")
    pos = starts[:, None] + np.arange(upd[axis])
    if mode == "circular":
        pos %= length
    elif pos.size and (pos.min() < 0 or pos.max() >= length):
        raise ValueError(f"TensorScatter: write positions {pos.min()}..{pos.max()} leave the cache length {length}")
    out = past_cache.copy()
    np.moveaxis(out, axis, 1)[np.arange(batch)[:, None], pos] = np.moveaxis(update, axis, 1)
    return out


@kernel("NonZero", since=9)
def non_zero(X):
    """The indices of the non-zero elements, shape ``[rank, count]`` (a scalar counts as rank 1)."""
    return np.array(np.nonzero(X.reshape(1) if X.ndim == 0 else X), dtype=np.int64)


def _one_hot(indices, depth, values, axis, negative):
    if np.asarray(depth).size != 1:
        raise ValueError(f"OneHot depth must have one element, got shape {np.shape(depth)}")
    depth = int(np.asarray(depth).reshape(()).astype(np.int64))
    if depth < 0:
        raise ValueError(f"OneHot depth must be non-negative, got {depth}")
    if values.shape != (2,):
        raise ValueError(f"OneHot values must be [off_value, on_value], got shape {values.shape}")
    idx = indices.astype(np.int64, copy=False)
    if negative:
        idx = np.where(idx < 0, idx + depth, idx)
    rank = idx.ndim + 1
    axis = normalize_axis(axis, rank)
    classes = np.arange(depth).reshape([-1 if a == axis else 1 for a in range(rank)])
    return np.where(np.expand_dims(idx, axis) == classes, values[1, ...], values[0, ...])


@kernel("OneHot", since=9)
def one_hot_9(indices, depth, values, *, axis=-1):
    """OneHot-9: indices outside ``[0, depth)`` give all ``off_value``."""
    return _one_hot(indices, depth, values, axis, negative=False)


@kernel("OneHot", since=11)
def one_hot(indices, depth, values, *, axis=-1):
    """One-hot along a new ``axis``; negative indices count from ``depth``."""
    return _one_hot(indices, depth, values, axis, negative=True)


@kernel("Trilu", since=14)
def trilu(input, k=None, *, upper=1):
    """Keep the upper (or lower) triangle of the last two axes from diagonal ``k``; zero the rest."""
    if input.ndim < 2:
        raise ValueError(f"Trilu needs rank >= 2, got shape {input.shape}")
    diag = 0 if k is None else int(np.asarray(k).reshape(()))
    n, m = input.shape[-2:]
    keep = ~np.tri(n, m, diag - 1, dtype=bool) if upper else np.tri(n, m, diag, dtype=bool)
    return np.where(keep, input, zero_of(input.dtype))


@kernel("Compress", since=9)
def compress(input, condition, *, axis=None):
    """Select slices along ``axis`` (or elements of the flattened input) where ``condition``;
    entries of ``condition`` past the axis length are ignored, as onnxruntime does."""
    data = input.reshape(-1) if axis is None else input
    axis = 0 if axis is None else normalize_axis(axis, input.ndim)
    cond = np.asarray(condition).reshape(-1)[: data.shape[axis]].astype(bool, copy=False)
    return np.compress(cond, data, axis=axis)


@kernel("Unique", since=11)
def unique(X, *, axis=None, sorted=1):
    """Unique elements (or slices along ``axis``), sorted or in order of first occurrence,
    with first indices, inverse indices and counts."""
    stats = {"return_index": True, "return_inverse": True, "return_counts": True}
    if axis is None:
        ax = 0
        y, first, inverse, counts = np.unique(X, **stats)
    else:
        ax = normalize_axis(axis, X.ndim)
        # compare slices by each element's rank among the values: numpy's unique along an axis
        # does not take every dtype (strings, bfloat16), and ranks sort slices in the same order
        ranks = np.unique(X, return_inverse=True)[1].reshape(X.shape)
        _, first, inverse, counts = np.unique(ranks, axis=ax, **stats)
        y = np.take(X, first, axis=ax)
    inverse = inverse.reshape(-1)
    if not sorted:
        order = np.argsort(first, kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(order.size)
        y, first, counts, inverse = np.take(y, order, axis=ax), first[order], counts[order], position[inverse]
    return y, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)


@kernel("ReverseSequence", since=10)
def reverse_sequence(input, sequence_lens, *, batch_axis=1, time_axis=0):
    """Reverse the first ``sequence_lens[b]`` steps along ``time_axis`` of each batch entry."""
    if input.ndim < 2 or {batch_axis, time_axis} != {0, 1}:
        raise ValueError(f"ReverseSequence needs rank >= 2 and batch/time axes 0 and 1, got "
                         f"shape {input.shape}, batch_axis={batch_axis}, time_axis={time_axis}")
    steps, batch = input.shape[time_axis], input.shape[batch_axis]
    lens = sequence_lens.astype(np.int64).reshape(-1)
    if lens.shape != (batch,) or (lens.size and (lens.min() < 0 or lens.max() > steps)):
        raise ValueError(f"ReverseSequence sequence_lens {lens.tolist()} must be {batch} lengths in [0, {steps}]")
    t = np.arange(steps)[:, None]
    source = np.where(t < lens, lens - 1 - t, t)
    if batch_axis == 0:
        source = source.T
    return np.take_along_axis(input, source.reshape(source.shape + (1,) * (input.ndim - 2)), axis=time_axis)
