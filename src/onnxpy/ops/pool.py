"""Pooling: MaxPool, AveragePool, LpPool, their global forms, MaxRoiPool and MaxUnpool.

Max, sum and p-norm windows are separable: the padded input is reduced one spatial axis at a time,
each tap of that axis an in-place ``maximum``/``add`` over a strided slice, so a k x k window costs
2(k - 1) whole-array ufunc calls instead of k^2 - 1 (and no slow reduction over a strided window
view). MaxPool's indices walk the taps of the window view. Geometry and padding come from ``conv``.
"""
from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from onnxpy.ops._helpers import (JIT_FLOATS, compute_dtype, jit, pad_spatial, per_axis, trailing_sums,
                                 window_geometry, windows)
from onnxpy.registry import kernel


class _Windows:
    """The windows of one pooling node: geometry and the padded input."""

    def __init__(self, x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, fill):
        if x.ndim < 3 or len(kernel_shape) != x.ndim - 2:
            raise ValueError(f"kernel_shape {list(kernel_shape)} does not fit an input of shape {x.shape}")
        n = x.ndim - 2
        self.in_shape = x.shape[2:]
        self.kernel = [int(k) for k in kernel_shape]
        self.strides = per_axis(strides, n, 1, "strides")
        self.dilations = per_axis(dilations, n, 1, "dilations")
        self.out, self.begin, self.end = window_geometry(self.in_shape, self.kernel, self.strides, self.dilations,
                                                         pads, auto_pad, ceil_mode)
        # ceil_mode windows may run past the end padding: extend it, without counting it as padding
        self.extra = [max(0, (o - 1) * s + (k - 1) * d + 1 - (i + b + e)) for o, s, k, d, i, b, e in
                      zip(self.out, self.strides, self.kernel, self.dilations, self.in_shape, self.begin, self.end)]
        self._x, self._fill = x, fill

    @functools.cached_property
    def padded(self) -> np.ndarray:
        return pad_spatial(self._x, self.begin, [e + extra for e, extra in zip(self.end, self.extra)], self._fill)

    def taps(self):
        """The (N, C, *out) slice of each kernel tap, in row-major tap order."""
        view = windows(self.padded, self.kernel, self.strides, self.dilations, self.out)
        for tap in itertools.product(*(range(k) for k in self.kernel)):
            yield view[(slice(None), slice(None)) + tap]

    def reduce(self, op: np.ufunc) -> np.ndarray:
        """``op`` folded over each window, axis by axis, into a new (N, C, *out) array."""
        y = self.padded
        for axis in range(2, y.ndim):
            y = self._reduce_axis(op, y, axis)
        return y

    def _reduce_axis(self, op: np.ufunc, y: np.ndarray, axis: int) -> np.ndarray:
        k, s, d, o = (v[axis - 2] for v in (self.kernel, self.strides, self.dilations, self.out))
        lead = (slice(None),) * axis
        taps = [y[lead + (slice(t * d, t * d + (o - 1) * s + 1, s),)] for t in range(k)]
        acc = taps[0].copy() if k == 1 else op(taps[0], taps[1])
        for tap in taps[2:]:
            op(acc, tap, out=acc)
        return acc

    def counts(self, include_pad: bool, dtype: np.dtype) -> np.ndarray:
        """Per output position (*out), how many taps fall on the input (or on input and pads): the
        product of the per-axis counts."""
        total = np.ones((), dtype=dtype)
        for d, (i, b, e) in enumerate(zip(self.in_shape, self.begin, self.end)):
            inside = np.zeros(self.padded.shape[2 + d], dtype=dtype)
            inside[0 if include_pad else b: i + b + e if include_pad else i + b] = 1
            shape = [1] * (2 + len(self.kernel))
            shape[2 + d] = -1
            total = total * self._reduce_axis(np.add, inside.reshape(shape), 2 + d)
        return total[0, 0]


def _max_pool(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order, strides, with_indices):
    fill = -np.inf if x.dtype.kind not in "iu" else np.iinfo(x.dtype).min
    win = _Windows(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, fill)
    if not with_indices and x.dtype in JIT_FLOATS and len(win.kernel) <= 2:  # one compiled pass
        row = [1] * (2 - len(win.kernel))  # a 1-D pool as a one-row image
        y = jit().max_pool2d(x.reshape(x.shape[:2] + (1,) * len(row) + x.shape[2:]), row + win.kernel,
                             row + win.strides, row + win.dilations, [0] * len(row) + win.begin, row + win.out)
        return y.reshape(x.shape[:2] + tuple(win.out))
    if not with_indices:
        return win.reduce(np.maximum)
    taps = win.taps()
    y = next(taps).copy()
    best = np.zeros(y.shape, dtype=np.int64)
    for i, t in enumerate(taps, start=1):
        better = t > y
        np.copyto(y, t, where=better)
        best[better] = i
    return y, _flat_indices(best, win, x.shape[:2], storage_order)


def _flat_indices(best: np.ndarray, win: _Windows, lead: tuple[int, int], storage_order: int) -> np.ndarray:
    """Indices into the flattened input (batch and channel included) of each window's chosen tap;
    storage_order 1 flattens the spatial axes column-major."""
    nsp = len(win.kernel)
    sizes = list(win.in_shape)
    order = range(nsp) if storage_order == 0 else reversed(range(nsp))
    place, step = [0] * nsp, 1
    for d in reversed(list(order)):
        place[d], step = step, step * sizes[d]
    taps = np.unravel_index(best, win.kernel)
    flat = np.arange(lead[0] * lead[1], dtype=np.int64).reshape(lead + (1,) * nsp) * math.prod(sizes)
    for d in range(nsp):
        origin = np.arange(win.out[d], dtype=np.int64) * win.strides[d] - win.begin[d]
        coord = origin.reshape((-1,) + (1,) * (nsp - 1 - d)) + taps[d] * win.dilations[d]
        flat = flat + coord * place[d]
    return flat


@kernel("MaxPool", since=10)
def max_pool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape, pads=None, storage_order=0,
             strides=None, ctx):
    """Max over sliding windows, with the flat argmax indices as optional second output
    (https://onnx.ai/onnx/operators/onnx__MaxPool.html)."""
    return _max_pool(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order, strides,
                     ctx.num_outputs > 1)


@kernel("MaxPool", since=8)
def max_pool_8(x, *, auto_pad="NOTSET", kernel_shape, pads=None, storage_order=0, strides=None, ctx):
    """MaxPool-8: no dilations or ceil_mode yet."""
    return _max_pool(x, auto_pad, 0, None, kernel_shape, pads, storage_order, strides, ctx.num_outputs > 1)


@kernel("MaxPool", since=1)
def max_pool_1(x, *, auto_pad="NOTSET", kernel_shape, pads=None, strides=None):
    """MaxPool-1: a single output."""
    return _max_pool(x, auto_pad, 0, None, kernel_shape, pads, 0, strides, False)


def _average_pool(x, auto_pad, ceil_mode, count_include_pad, dilations, kernel_shape, pads, strides):
    ct = compute_dtype(x.dtype)
    win = _Windows(x.astype(ct, copy=False), kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, 0)
    y = win.reduce(np.add)
    if any(win.extra) or (not count_include_pad and (any(win.begin) or any(win.end))):
        y /= win.counts(bool(count_include_pad), ct)
    else:
        y *= ct.type(1 / math.prod(win.kernel))
    return y.astype(x.dtype, copy=False)


@kernel("AveragePool", since=19)
def average_pool(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None, kernel_shape,
                 pads=None, strides=None):
    """Mean over sliding windows (https://onnx.ai/onnx/operators/onnx__AveragePool.html)."""
    return _average_pool(x, auto_pad, ceil_mode, count_include_pad, dilations, kernel_shape, pads, strides)


@kernel("AveragePool", since=10)
def average_pool_10(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, kernel_shape, pads=None,
                    strides=None):
    """AveragePool-10: no dilations yet."""
    return _average_pool(x, auto_pad, ceil_mode, count_include_pad, None, kernel_shape, pads, strides)


@kernel("AveragePool", since=7)
def average_pool_7(x, *, auto_pad="NOTSET", count_include_pad=0, kernel_shape, pads=None, strides=None):
    """AveragePool-7: no ceil_mode yet."""
    return _average_pool(x, auto_pad, 0, count_include_pad, None, kernel_shape, pads, strides)


@kernel("AveragePool", since=1)
def average_pool_1(x, *, auto_pad="NOTSET", kernel_shape, pads=None, strides=None):
    """AveragePool-1: padding never counts."""
    return _average_pool(x, auto_pad, 0, 0, None, kernel_shape, pads, strides)


def _lp_pool(x, auto_pad, ceil_mode, dilations, kernel_shape, p, pads, strides):
    ct = compute_dtype(x.dtype)
    xa = np.abs(x.astype(ct, copy=False))
    powered = xa * xa if p == 2 else xa ** ct.type(p)
    y = _Windows(powered, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, 0).reduce(np.add)
    return _root(y, p).astype(x.dtype, copy=False)


def _root(y: np.ndarray, p) -> np.ndarray:
    return np.sqrt(y, out=y) if p == 2 else np.power(y, y.dtype.type(1 / p), out=y)


@kernel("LpPool", since=18)
def lp_pool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape, p=2, pads=None, strides=None):
    """p-norm over sliding windows (https://onnx.ai/onnx/operators/onnx__LpPool.html)."""
    return _lp_pool(x, auto_pad, ceil_mode, dilations, kernel_shape, p, pads, strides)


@kernel("LpPool", since=2)
def lp_pool_2(x, *, auto_pad="NOTSET", kernel_shape, p=2, pads=None, strides=None):
    """LpPool-2 to 11: no ceil_mode or dilations."""
    return _lp_pool(x, auto_pad, 0, None, kernel_shape, p, pads, strides)


@kernel("LpPool", since=1)
def lp_pool_1(x, *, auto_pad="NOTSET", kernel_shape=None, p=2.0, pads=None, strides=None):
    """LpPool-1: p is a float and the schema leaves kernel_shape optional, though no window exists without it."""
    if kernel_shape is None:
        raise ValueError("LpPool needs the kernel_shape attribute")
    return _lp_pool(x, auto_pad, 0, None, kernel_shape, p, pads, strides)


def _spatial_axes(x: np.ndarray) -> tuple[int, ...]:
    if x.ndim < 3:
        raise ValueError(f"global pooling expects an input of rank >= 3, got shape {x.shape}")
    return tuple(range(2, x.ndim))


@kernel("GlobalAveragePool", since=1)
def global_average_pool(x):
    """Mean over all spatial axes, kept as size 1 (float32 and float64 summed by ``trailing_sums``)."""
    axes = _spatial_axes(x)
    size = math.prod(x.shape[2:])
    if x.dtype in JIT_FLOATS and size:
        sums = trailing_sums(np.ascontiguousarray(x), len(axes))
        return (sums / x.dtype.type(size)).reshape(x.shape[:2] + (1,) * len(axes))
    ct = compute_dtype(x.dtype)
    return np.mean(x, axis=axes, keepdims=True, dtype=ct).astype(x.dtype, copy=False)


@kernel("GlobalMaxPool", since=1)
def global_max_pool(x):
    """Max over all spatial axes, kept as size 1."""
    return np.max(x, axis=_spatial_axes(x), keepdims=True)


@kernel("GlobalLpPool", since=1)
def global_lp_pool(x, *, p=2):
    """p-norm over all spatial axes, kept as size 1 (p is a float in version 1, an int from 2)."""
    ct = compute_dtype(x.dtype)
    xa = np.abs(x.astype(ct, copy=False))
    y = np.sum(xa * xa if p == 2 else xa ** ct.type(p), axis=_spatial_axes(x), keepdims=True)
    return _root(y, p).astype(x.dtype, copy=False)


def _round_half_away(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _bins(start: int, end: int, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """[begin, end) of ``count`` float32-sized bins over the inclusive span start..end, clipped."""
    step = np.float32(max(end - start + 1, 1)) / np.float32(count)
    edges = np.arange(count + 1, dtype=np.float32) * step
    lo = np.clip(np.floor(edges[:-1]).astype(np.int64) + start, 0, size)
    hi = np.clip(np.ceil(edges[1:]).astype(np.int64) + start, 0, size)
    return lo, hi


@kernel("MaxRoiPool", since=1)
def max_roi_pool(x, rois, *, pooled_shape, spatial_scale=1.0):
    """Max over a pooled_shape grid of bins in each region of interest (batch_index, x1, y1, x2, y2),
    corners scaled by spatial_scale and rounded; empty bins give 0 (as onnxruntime's RoiPool)."""
    if x.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"MaxRoiPool expects X (N, C, H, W) and rois (R, 5), got {x.shape} and {rois.shape}")
    ph, pw = (int(v) for v in pooled_shape)
    height, width = x.shape[2:]
    y = np.zeros((rois.shape[0], x.shape[1], ph, pw), dtype=x.dtype)
    f32 = np.float32
    corners = _round_half_away(rois[:, 1:].astype(f32) * f32(spatial_scale)).astype(np.int64)
    for r, (batch, (x1, y1, x2, y2)) in enumerate(zip(rois[:, 0].astype(np.int64), corners)):
        hs, he = _bins(y1, y2, ph, height)
        ws, we = _bins(x1, x2, pw, width)
        for i in range(ph):
            if he[i] <= hs[i]:
                continue
            rows = x[batch, :, hs[i]:he[i]].max(axis=1)
            for j in range(pw):
                if we[j] > ws[j]:
                    y[r, :, i, j] = rows[:, ws[j]:we[j]].max(axis=1)
    return y


@kernel("MaxUnpool", since=9)
def max_unpool(x, i, output_shape=None, *, kernel_shape, pads=None, strides=None):
    """Scatter x to the flat positions ``i`` of a zero tensor shaped like the MaxPool input
    (https://onnx.ai/onnx/operators/onnx__MaxUnpool.html). The indices address the default
    shape; an explicit larger output_shape holds that result in its leading corner, as in the
    reference implementation."""
    n = x.ndim - 2
    strides = per_axis(strides, n, 1, "strides")
    pads = per_axis(pads, 2 * n, 0, "pads")
    inferred = x.shape[:2] + tuple((d - 1) * s - pads[a] - pads[n + a] + int(k)
                                   for a, (d, s, k) in enumerate(zip(x.shape[2:], strides, kernel_shape)))
    if i.shape != x.shape:
        raise ValueError(f"indices shape {i.shape} differs from X shape {x.shape}")
    flat = np.zeros(math.prod(inferred), dtype=x.dtype)
    flat[i.reshape(-1)] = x.reshape(-1)
    y = flat.reshape(inferred)
    if output_shape is None:
        return y
    shape = tuple(int(v) for v in output_shape)
    if len(shape) != x.ndim or any(s < d for s, d in zip(shape, inferred)):
        raise ValueError(f"output_shape {list(shape)} is smaller than the unpooled shape {list(inferred)}")
    out = np.zeros(shape, dtype=x.dtype)
    out[tuple(slice(0, d) for d in inferred)] = y
    return out
