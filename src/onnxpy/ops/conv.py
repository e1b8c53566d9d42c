"""Convolutions: Conv, ConvTranspose, DeformConv, Col2Im and CausalConvWithState.

Convolution is im2col plus GEMM: for each batch item, a band of output rows at a time, the strided
patch view of the padded input is copied into a small, cache-resident ``(group, C/group * K, band)``
buffer and multiplied by the ``(group, M/group, C/group * K)`` weights in one batched matmul written
straight into the output. Unpadded 1x1 convolutions skip the copy; in float32/float64 with one group
they run a compiled kernel whose accumulators stay in SIMD registers (``_jit.pointwise``), as do
convolutions of few input channels (``_jit.direct2d``). Depthwise convolution
(``C/group == 1``, 1-D or 2-D) has no GEMM worth the name: a compiled loop (``_jit``) does it in
one pass, with bias and a fused clamp. Large 3x3 stride-1 convolutions run as Winograd F(2x2, 3x3)
(``_jit``): 16 GEMMs over transformed 4x4 tiles, 2.25 times fewer multiply-adds.
The window geometry, shared with the pooling ops, lives in ``_helpers``.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Callable, Sequence

import numpy as np

from onnxpy import parallel
from onnxpy.ops._helpers import (HARD_SWISH, JIT_FLOATS, JIT_MIN_SIZE, compute_dtype, jit, late_activation,
                                 pad_spatial, per_axis, window_geometry, windows)
from onnxpy.registry import KernelContext, kernel

# output channels per input channel from which a one-group-per-channel convolution (a single input
# channel's, above all) runs as im2col + GEMM, not the sliding-window loop (which makes one pass per
# output channel and splits over input channels only). Measured, 1 thread / 2: 1 -> 64 channels 5x5
# at 224x224 5821 / 5850 us as windows, 5281 / 3528 as a GEMM; 1 -> 16 3x3 679 / 714 against 1102 / 827
_MAX_WINDOW_MULTIPLIER = 32
_WINOGRAD_MIN_TILES = 25  # 2x2 output tiles below which 3x3 Winograd loses to im2col + GEMM (measured: 16
# tiles of 512 channels lose by 1.3x, 25 tiles of 256 win by 1.2x, 49 tiles of 64-256 by 1.4-2.4x)
_COLS_BUDGET = 1 << 20  # elements of the im2col buffer: a band of output rows at a time stays in cache
_GROUPED_COLS_BUDGET = 1 << 18  # smaller for grouped convs: many small GEMMs reread the band
_MIN_GEMM_COLUMNS = 256  # but each GEMM gets at least this many output positions
_EPILOGUE_BUDGET = 1 << 20  # output elements of a 1x1 convolution's GEMM band, finished while in cache
_PREPARED_SHAPES = 8  # input shapes a node keeps prepared convolutions for (more: it starts afresh)


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, group: int, strides: list[int],
          dilations: list[int], begin: list[int], end: list[int], out: list[int],
          clamp: tuple[float, float] | None = None, z: np.ndarray | None = None,
          activation: tuple[int, float] | None = None) -> np.ndarray:
    """Grouped N-D convolution of x (N, C, ...) by w (M, C/group, ...) plus bias b, plus ``z`` (of
    the output's shape) when given, then clamped to ``clamp = (lo, hi)`` when given, then given an
    ``activation`` (``_helpers.HARD_SWISH`` or ``SWISH``, alpha), in x's dtype (float32 or wider)."""
    return _prepare(x, w, b, group, strides, dilations, begin, end, out, clamp, z is not None, activation)(x, z)


def _prepare(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, group: int, strides: list[int],
             dilations: list[int], begin: list[int], end: list[int], out: list[int],
             clamp: tuple[float, float] | None, has_z: bool,
             activation: tuple[int, float] | None) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """``_conv`` for inputs of x's shape and dtype (x itself is not kept), with or without z: the
    path chosen, and the compiled paths' weights, bias and constants made, once; a function of (x, z)."""
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    if cg * group != c or m % group:
        raise ValueError(f"X has {c} channels and W shape {w.shape}: expected C == W.shape[1] * group "
                         f"and M divisible by group (group={group})")
    if cg == 1 and m // c < _MAX_WINDOW_MULTIPLIER and len(out) <= 2 and x.dtype in JIT_FLOATS:
        row = (1,) * (2 - len(out))  # a 1-D convolution as a one-row image
        image = x.shape[:2] + row + x.shape[2:]
        shape = (n, m) + tuple(out)
        depthwise, activated = jit().depthwise2d(
            x.reshape(image), w.reshape(w.shape[:2] + row + w.shape[2:]), b, [*row, *strides], [*row, *dilations],
            [0] * len(row) + begin, [*row, *out], None if has_z else clamp, None if has_z else activation)
        later = None if activated and not has_z else activation

        def run_depthwise(x: np.ndarray, z: np.ndarray | None) -> np.ndarray:
            y = depthwise(x.reshape(image)).reshape(shape)
            return late_activation(y if z is None else _epilogue(y, None, z, clamp), later)

        return run_depthwise
    if group == 1:
        _jit = jit()
        if _jit.pointwise_applies(x, w, begin, end, out):
            pointwise, activated = _jit.pointwise(x, w, b, strides, out, clamp, activation)
            if activated:
                return pointwise
            return lambda x, z: late_activation(pointwise(x, z), activation)
        if not has_z and _jit.direct_applies(x, w, strides, dilations, out):
            hard_swish = activation is not None and activation[0] == HARD_SWISH
            later = None if hard_swish else activation
            return lambda x, z: late_activation(_jit.direct2d(x, w, b, strides, begin, out, clamp, hard_swish), later)
    if (group == 1 and w.shape[2:] == (3, 3) and strides == [1, 1] and dilations == [1, 1] and c >= 8
            and x.dtype in JIT_FLOATS and -(-out[0] // 2) * -(-out[1] // 2) >= _WINOGRAD_MIN_TILES):
        def winograd(x: np.ndarray, z: np.ndarray | None) -> np.ndarray:
            y = jit().winograd3x3(x, w, b, begin, out, clamp if z is None else None)
            return late_activation(y if z is None else _epilogue(y, None, z, clamp), activation)

        return winograd
    return lambda x, z: _gemm_conv(x, w, b, z, clamp, activation, group, strides, dilations, begin, end, out)


def _epilogue(y: np.ndarray, b: np.ndarray | None, z: np.ndarray | None,
              clamp: tuple[float, float] | None) -> np.ndarray:
    """``y`` plus b (broadcast), plus z, clamped to ``clamp``: each when given, in place. The clamp
    is an np.maximum and an np.minimum, each only for a finite bound: they propagate NaN as np.clip
    does, and take 3 us together on a small tensor where np.clip takes 6."""
    if b is not None:
        y += b
    if z is not None:
        y += z
    if clamp is not None:
        lo, hi = clamp
        if lo != -np.inf:
            np.maximum(y, y.dtype.type(lo), out=y)
        if hi != np.inf:
            np.minimum(y, y.dtype.type(hi), out=y)
    return y


@functools.lru_cache(maxsize=1024)
def _gemm_tasks(n: int, c: int, m: int, ksize: int, group: int, out: tuple[int, ...], one_by_one: bool,
                threads: int) -> tuple[list[tuple[int, tuple[int, int], tuple[int, int]]], int, int]:
    """How a GEMM convolution is cut: tasks ``(image, output channels [k0, k1), band [lo, hi))``,
    the band in output columns (1x1) or output rows, plus the most rows of a band and the columns
    per output row. Cut by columns while the bands stay wide, else (one group) by output channels."""
    length = math.prod(out)
    wanted = -(-parallel.pieces(n * m * c // group * ksize * length, n * length * m, threads) // n)  # per image
    inner = length // out[0]
    if one_by_one:
        natural = -(-length // max(_MIN_GEMM_COLUMNS, _EPILOGUE_BUDGET // m))
        most, unit = length // _MIN_GEMM_COLUMNS, 1
    else:
        budget = _COLS_BUDGET if group == 1 else _GROUPED_COLS_BUDGET
        rows = min(out[0], max(budget // (c * ksize * inner), -(-_MIN_GEMM_COLUMNS // inner)))
        natural, most, unit = -(-out[0] // rows), min(out[0], length // _MIN_GEMM_COLUMNS), inner
    bands = parallel.split(length // unit, max(natural, min(wanted, most)))
    # output channels split only for one group (a grouped GEMM's block (0, m) is all of each group's)
    channel_blocks = parallel.split(m, max(1, min(-(-wanted // len(bands)), m // 32))) if group == 1 else [(0, m)]
    tasks = [(i, ks, band) for i in range(n) for ks in channel_blocks for band in bands]
    return tasks, max(hi - lo for lo, hi in bands), inner


def _gemm_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, z: np.ndarray | None,
               clamp: tuple[float, float] | None, activation: tuple[int, float] | None, group: int,
               strides: list[int], dilations: list[int], begin: list[int], end: list[int],
               out: list[int]) -> np.ndarray:
    """im2col + GEMM a block of output channels by a band of output columns at a time, each block
    finished (bias, z, clamp, activation) while it is still in cache; the blocks are spread over the
    session's threads (``_gemm_tasks``)."""
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    k_shape = w.shape[2:]
    ksize, length = math.prod(k_shape), math.prod(out)
    wg = w.reshape(group, m // group, cg * ksize)
    compiled = x.dtype in JIT_FLOATS
    # the epilogue's swish is float32 (its exp); other activations, or dtypes, follow the convolution
    fused = activation if compiled and (activation is None or activation[0] == HARD_SWISH
                                        or x.dtype == np.float32) else None
    later = None if fused is not None else activation
    one_by_one = ksize == 1 and not any(begin) and not any(end)
    small = (one_by_one and n == 1 and group == 1 and strides.count(1) == len(strides)
             and m * length <= _EPILOGUE_BUDGET and parallel.serial(m * c * length))
    if small:  # one GEMM, none of the cutting below; finished by numpy below the compiled size
        y = np.matmul(wg[0], x.reshape(c, length))
        z2 = None if z is None else z.reshape(m, length)
        if not compiled or y.size < JIT_MIN_SIZE:
            y = _epilogue(y, None if b is None else b.reshape(m, 1), z2, clamp)
            return late_activation(y, activation).reshape((1, m) + tuple(out))
    if compiled:
        _jit = jit()
    bias = np.zeros(m, x.dtype) if b is None and compiled else b
    bias = None if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    if small:
        _jit.finish(y, bias, None if z2 is None else np.ascontiguousarray(z2), clamp, (0, m), (0, length), fused)
        return late_activation(y, later).reshape((1, m) + tuple(out))
    y = np.empty((n, m) + tuple(out), dtype=x.dtype)
    z = None if z is None else np.ascontiguousarray(z)
    tasks, rows, inner = _gemm_tasks(n, c, m, ksize, group, tuple(out), one_by_one, parallel.threads())

    def finish(i: int, ks: tuple[int, int], c0: int, c1: int) -> None:
        yi, zi = y[i].reshape(m, length), None if z is None else z[i].reshape(m, length)
        if compiled:
            _jit.finish(yi, bias, zi, clamp, ks, (c0, c1), fused)
        else:
            _epilogue(yi[ks[0]:ks[1], c0:c1], None if bias is None else bias[ks[0]:ks[1], None],
                      None if zi is None else zi[ks[0]:ks[1], c0:c1], clamp)

    if one_by_one:
        xs = x[(...,) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, strides))]

        def gemm(task: int) -> None:
            i, (k0, k1), (c0, c1) = tasks[task]
            xi, yi = xs[i].reshape(group, cg, length), y[i].reshape(group, m // group, length)
            np.matmul(wg[:, k0:k1], xi[:, :, c0:c1], out=yi[:, k0:k1, c0:c1])
            finish(i, (k0, k1), c0, c1)

        parallel.for_each(gemm, len(tasks))
        return late_activation(y, later)
    gathered = compiled and len(k_shape) == 2
    if not gathered:
        win = windows(pad_spatial(x, begin, end), k_shape, strides, dilations, out)
    scratch = parallel.Scratch(lambda: np.empty((c,) + tuple(k_shape) + (rows,) + tuple(out[1:]), dtype=x.dtype))
    row_axis = (slice(None),) * (1 + len(k_shape))

    def gemm(task: int) -> None:
        i, (k0, k1), (r0, r1) = tasks[task]
        cols = scratch.get()
        if gathered:  # the patches gathered straight from the unpadded input
            _jit.im2col2d(x[i], k_shape, strides, dilations, begin, r0, r1, cols)
        else:
            np.copyto(cols[row_axis + (slice(0, r1 - r0),)], win[i][row_axis + (slice(r0, r1),)])
        flat = cols.reshape(group, cg * ksize, rows * inner)[:, :, : (r1 - r0) * inner]
        yi = y[i].reshape(group, m // group, length)
        np.matmul(wg[:, k0:k1], flat, out=yi[:, k0:k1, r0 * inner:r1 * inner])
        finish(i, (k0, k1), r0 * inner, r1 * inner)

    parallel.for_each(gemm, len(tasks))
    return late_activation(y, later)


def _col2im(cols: np.ndarray, strides: list[int], dilations: list[int], begin: list[int],
            out: list[int]) -> np.ndarray:
    """Sum patches cols (N, C, *kernel, *blocks) into an image whose block (0, ..) starts at
    ``-begin``; returns the (N, C, *out) image (begin may be negative: zeros before the patches)."""
    nsp = len(out)
    k_shape, blocks = cols.shape[2:2 + nsp], cols.shape[2 + nsp:]
    span = [(b - 1) * s + (k - 1) * d + 1 for b, s, k, d in zip(blocks, strides, k_shape, dilations)]
    lo = [min(0, b) for b in begin]
    size = [max(sp, b + o) - l for sp, b, o, l in zip(span, begin, out, lo)]
    img = np.zeros(cols.shape[:2] + tuple(size), dtype=cols.dtype)
    for tap in itertools.product(*(range(k) for k in k_shape)):
        dst = tuple(slice(t * d - l, t * d - l + (b - 1) * s + 1, s)
                    for t, d, l, b, s in zip(tap, dilations, lo, blocks, strides))
        img[(...,) + dst] += cols[(slice(None), slice(None)) + tap]
    return np.ascontiguousarray(img[(...,) + tuple(slice(b - l, b - l + o) for b, l, o in zip(begin, lo, out))])


def _add_bias(y: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    if b is not None:
        y += b.astype(y.dtype, copy=False).reshape((-1,) + (1,) * (y.ndim - 2))
    return y


def _check_kernel_shape(kernel_shape: Sequence[int] | None, w: np.ndarray) -> None:
    if kernel_shape is not None and tuple(kernel_shape) != w.shape[2:]:
        raise ValueError(f"kernel_shape {list(kernel_shape)} does not match the weight shape {w.shape}")


@kernel("Conv", since=1)
def conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
         strides=None, ctx=None):
    """N-D grouped convolution (https://onnx.ai/onnx/operators/onnx__Conv.html)."""
    return convolve(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                    pads=pads, strides=strides, ctx=ctx)


def _ints(values: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if values is None else tuple(values)


@functools.lru_cache(maxsize=1024)
def _geometry(in_shape: tuple[int, ...], k_shape: tuple[int, ...], strides: tuple[int, ...] | None,
              dilations: tuple[int, ...] | None, pads: tuple[int, ...] | None,
              auto_pad: str) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """strides, dilations, output spatial shape, begin and end padding of a convolution (computed
    once per geometry: the lists are shared, and read only)."""
    n = len(in_shape)
    strides = per_axis(strides, n, 1, "strides")
    dilations = per_axis(dilations, n, 1, "dilations")
    return (strides, dilations, *window_geometry(in_shape, k_shape, strides, dilations, pads, auto_pad))


def convolve(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
             strides=None, clamp: tuple[float, float] | None = None, z: np.ndarray | None = None,
             activation: tuple[int, float] | None = None, ctx: KernelContext | None = None) -> np.ndarray:
    """Conv, plus ``z`` (a residual of the output's shape), then clamped to ``clamp = (lo, hi)``,
    then given an ``activation`` (``_helpers.HARD_SWISH`` or ``SWISH``, alpha), each when given,
    while each band of the output is still in cache where the path allows (FusedConv).

    With a node's ``ctx``, float32 and float64 convolutions of read-only (initializer) weights and
    bias are prepared once per input shape (``_prepare``) and kept in the node's cache: a run then
    skips the checks, geometry and path choice, and the compiled paths' argument building."""
    prepared = None if ctx is None else ctx.memo("convolutions", dict)
    if prepared is not None:
        hit = prepared.get((x.shape, x.dtype, z is None))
        if hit is not None and hit[0] is w and hit[1] is b and (z is None or z.shape == hit[3]):
            return hit[2](x, z)
    if x.ndim < 3 or w.ndim != x.ndim:
        raise ValueError(f"Conv expects X and W of the same rank >= 3, got {x.shape} and {w.shape}")
    _check_kernel_shape(kernel_shape, w)
    strides, dilations, out, begin, end = _geometry(x.shape[2:], w.shape[2:], _ints(strides), _ints(dilations),
                                                    _ints(pads), auto_pad)
    out_shape = (x.shape[0], w.shape[0], *out)
    if z is not None and z.shape != out_shape:
        raise ValueError(f"the sum input Z has shape {z.shape}, expected the output's {out_shape}")
    ct = compute_dtype(x.dtype)
    if (prepared is not None and x.dtype in JIT_FLOATS and w.dtype == x.dtype and not w.flags.writeable
            and (b is None or not b.flags.writeable)):
        if len(prepared) >= _PREPARED_SHAPES:
            prepared.clear()
        run = _prepare(x, w, b, group, strides, dilations, begin, end, out, clamp, z is not None, activation)
        prepared[x.shape, x.dtype, z is None] = (w, b, run, out_shape)
        return run(x, z)
    return _conv(x.astype(ct, copy=False), w.astype(ct, copy=False), b, group, strides, dilations, begin, end,
                 out, clamp, z, activation).astype(x.dtype, copy=False)


@kernel("ConvTranspose", since=1)
def conv_transpose(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                   output_padding=None, output_shape=None, pads=None, strides=None):
    """N-D grouped transposed convolution (https://onnx.ai/onnx/operators/onnx__ConvTranspose.html).

    With output_shape or SAME_*, the total padding is the full output size minus the requested one;
    its smaller half goes first for SAME_UPPER, last otherwise. Version 1's formula reads the other
    way round, but its attribute text and onnxruntime agree with version 11."""
    if x.ndim < 3 or w.ndim != x.ndim:
        raise ValueError(f"ConvTranspose expects X and W of the same rank >= 3, got {x.shape} and {w.shape}")
    _check_kernel_shape(kernel_shape, w)
    n, c = x.shape[:2]
    if w.shape[0] != c or c % group:
        raise ValueError(f"X has {c} channels and W shape {w.shape}: expected W.shape[0] == C, "
                         f"divisible by group {group}")
    nsp = x.ndim - 2
    strides = per_axis(strides, nsp, 1, "strides")
    dilations = per_axis(dilations, nsp, 1, "dilations")
    output_padding = per_axis(output_padding, nsp, 0, "output_padding")
    in_shape, k_shape = x.shape[2:], w.shape[2:]
    full = [s * (i - 1) + p + (k - 1) * d + 1
            for s, i, p, k, d in zip(strides, in_shape, output_padding, k_shape, dilations)]
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = ([s * i for s, i in zip(strides, in_shape)] if output_shape is None
               else [int(v) for v in output_shape][-nsp:])
        total = [f - o for f, o in zip(full, out)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
    else:
        pads = per_axis(pads if auto_pad == "NOTSET" else None, 2 * nsp, 0, "pads")
        begin = pads[:nsp]
        out = [f - b - e for f, b, e in zip(full, begin, pads[nsp:])]
    if min(out) < 1:
        raise ValueError(f"ConvTranspose output spatial shape {out} is empty")
    ct = compute_dtype(x.dtype)
    cg, mg = c // group, w.shape[1]
    ksize, length = math.prod(k_shape), math.prod(in_shape)
    wt = np.swapaxes(w.astype(ct, copy=False).reshape(group, cg, mg * ksize), 1, 2)
    cols = np.matmul(wt, x.astype(ct, copy=False).reshape(n, group, cg, length))
    y = _col2im(cols.reshape((n, group * mg) + k_shape + in_shape), strides, dilations, begin, out)
    return _add_bias(y, b).astype(x.dtype, copy=False)


@kernel("Col2Im", since=18)
def col2im(x, image_shape, block_shape, *, dilations=None, pads=None, strides=None):
    """Sum sliding blocks (N, C * prod(block_shape), L) back into images
    (https://onnx.ai/onnx/operators/onnx__Col2Im.html)."""
    image = [int(v) for v in image_shape]
    block = [int(v) for v in block_shape]
    nsp = len(image)
    strides = per_axis(strides, nsp, 1, "strides")
    dilations = per_axis(dilations, nsp, 1, "dilations")
    blocks, begin, _ = window_geometry(image, block, strides, dilations, pads, "NOTSET")
    n, ck, length = x.shape
    if ck % math.prod(block) or length != math.prod(blocks):
        raise ValueError(f"Col2Im input shape {x.shape} does not fit block_shape {block} and the "
                         f"{blocks} sliding blocks of image_shape {image}")
    ct = compute_dtype(x.dtype)
    cols = x.astype(ct, copy=False).reshape((n, ck // math.prod(block)) + tuple(block) + tuple(blocks))
    return _col2im(cols, strides, dilations, begin, image).astype(x.dtype, copy=False)


def _sample(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Multilinear samples of x (N, G, Cg, *spatial) at positions pos (N, G, P, nsp), zero outside:
    returns (N, G, Cg, P)."""
    spatial = x.shape[3:]
    flat_x = x.reshape(x.shape[:3] + (-1,))
    base = np.floor(pos)
    frac = pos - base
    base = base.astype(np.int64)
    dims = np.asarray(spatial)
    place = np.cumprod((spatial[1:] + (1,))[::-1])[::-1]
    acc = np.zeros(flat_x.shape[:3] + pos.shape[2:3], dtype=x.dtype)
    for corner in itertools.product((0, 1), repeat=len(spatial)):
        idx = base + np.asarray(corner)
        weight = np.prod(np.where(np.asarray(corner, dtype=bool), frac, 1 - frac), axis=-1)
        inside = np.all((idx >= 0) & (idx < dims), axis=-1)
        flat = np.where(inside, idx @ place, 0)
        vals = np.take_along_axis(flat_x, flat[:, :, None, :], axis=-1)
        acc += vals * np.where(inside, weight, 0).astype(x.dtype)[:, :, None, :]
    return acc


@kernel("DeformConv", since=19)
def deform_conv(x, w, offset, b=None, mask=None, *, dilations=None, group=1, kernel_shape=None,
                offset_group=1, pads=None, strides=None):
    """N-D deformable convolution (https://onnx.ai/onnx/operators/onnx__DeformConv.html): each
    kernel tap samples the input, multilinearly, at its grid position plus a learned offset."""
    _check_kernel_shape(kernel_shape, w)
    nsp = x.ndim - 2
    strides = per_axis(strides, nsp, 1, "strides")
    dilations = per_axis(dilations, nsp, 1, "dilations")
    k_shape = w.shape[2:]
    out, begin, _ = window_geometry(x.shape[2:], k_shape, strides, dilations, pads, "NOTSET")
    n, c = x.shape[:2]
    ksize, length = math.prod(k_shape), math.prod(out)
    if c % offset_group or offset.shape != (n, offset_group * ksize * nsp, *out):
        raise ValueError(f"offset shape {offset.shape} does not match (N, offset_group * prod(kernel) * {nsp}, "
                         f"*{out}) with offset_group={offset_group} and C={c}")
    ct = compute_dtype(x.dtype)
    axes = np.meshgrid(*(np.arange(k, dtype=ct) * d for k, d in zip(k_shape, dilations)),
                       *(np.arange(o, dtype=ct) * s - p for o, s, p in zip(out, strides, begin)), indexing="ij")
    grid = np.stack([axes[d] + axes[nsp + d] for d in range(nsp)], axis=-1)  # (*kernel, *out, nsp)
    moved = np.moveaxis(offset.astype(ct, copy=False).reshape(n, offset_group, ksize, nsp, length), 3, -1)
    pos = (grid.reshape(ksize, length, nsp) + moved).reshape(n, offset_group, ksize * length, nsp)
    xg = x.astype(ct, copy=False).reshape((n, offset_group, c // offset_group) + x.shape[2:])
    cols = _sample(xg, pos)
    if mask is not None:
        cols *= mask.astype(ct, copy=False).reshape(n, offset_group, 1, ksize * length)
    m, cg = w.shape[:2]
    wg = w.astype(ct, copy=False).reshape(group, m // group, cg * ksize)
    y = np.matmul(wg, cols.reshape(n, group, cg * ksize, length)).reshape(n, m, *out)
    return _add_bias(y, b).astype(x.dtype, copy=False)


@kernel("CausalConvWithState", since=27)
def causal_conv_with_state(x, weight, bias=None, past_state=None, *, activation="none"):
    """Causal depthwise 1-D convolution carrying the last k-1 positions as state
    (https://onnx.ai/onnx/operators/onnx__CausalConvWithState.html)."""
    if activation not in ("none", "silu", "swish"):
        raise ValueError(f"activation must be 'none', 'silu' or 'swish', not {activation!r}")
    if x.ndim != 3 or weight.ndim != 3 or weight.shape[:2] != (x.shape[1], 1):
        raise ValueError(f"expected input (B, C, L) and weight (C, 1, k), got {x.shape} and {weight.shape}")
    bsz, c, length = x.shape
    k = weight.shape[2]
    ct = compute_dtype(x.dtype)
    state = np.zeros((bsz, c, k - 1), dtype=x.dtype) if past_state is None else past_state
    padded = np.concatenate([state, x], axis=2)
    y = _conv(padded.astype(ct, copy=False), weight.astype(ct, copy=False), bias, c, [1], [1], [0], [0], [length])
    if activation != "none":
        y /= 1 + np.exp(-y)
    return y.astype(x.dtype, copy=False), np.ascontiguousarray(padded[:, :, padded.shape[2] - (k - 1):])
