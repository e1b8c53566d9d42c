"""Kernels compiled with numba, for the loops numpy cannot express without extra passes over memory.

Depthwise convolution (and dilated max pooling, the same sliding window with max for multiply-add;
undilated max pooling is separable, a row maximum then a column maximum, ``_max_pool_rows``): numpy
needs one pass per kernel tap (or an im2col copy nine times the input); the loop below reads each
input channel once into a small, cache-resident, padded buffer, accumulates the taps as long
contiguous multiply-adds, and writes the output once with bias and clamp applied. Small outputs
(7x7, 14x14) make those runs short, so there, and wherever there are many channels, a vector of
channels is the unit: a block of channels is transposed channels-last in registers and its pixels
accumulate in vector registers (``_depthwise_lanes``); for the others, at stride 1 with rows of up
to 32 (28x28) the padded rows cost loops of their own, so each tap runs over the whole output at
once (``_depthwise_flat``).
erf (and Gelu):
its polynomial takes ~35 numpy passes; here one pass, the Horner steps on an L1-resident block.
Sigmoid, Swish and Softmax in float32: one pass with a vectorised exp (numpy needs four or five,
each a trip through memory, and its exp alone costs more than the whole loop); HardSigmoid and
HardSwish in one pass instead of five. LayerNormalization: a row's statistics and its normalized,
scaled and shifted values in three passes over the row while it is in L1 (numpy makes six over
the whole tensor). Winograd F(2x2, 3x3): the tile transforms around its GEMMs. Convolutions of few
input channels (``_direct2d``): register-blocked with explicit SIMD vectors (``_simd``), where the
GEMM is skinny, and 1x1 convolutions (``_pointwise``): GEMMs with a short inner dimension (the
input channels) or few columns, where OpenBLAS's packing costs as much as the arithmetic. Arithmetic
by one value per row (``_per_row``): one pass where numpy makes an inner-loop call per row.
Matrix-vector products (``_matrix_vector``): split by columns as a compiled region, where BLAS runs
them on one thread; a squeeze-and-excitation gate (``_excitation``): means, two such products and
their activations in one call, where numpy makes a dozen.
Products by a packed constant matrix (``packed_matmul``, the ``pack_weights`` pass): 12-row tiles
of two vectors of columns accumulated in 24 registers, over weights packed once, where OpenBLAS packs
them on every call (a tenth of the time of a transformer's products at 64-128 tokens).
The module is imported on first use (numba's import costs about 0.3 s and ~60 MB, loading compiled
code as much again) and compiled code is cached on disk by numba (``cache=True``).

Indices are unsigned on purpose: numba wraps negative signed indices around, and that check
stops LLVM from vectorising the inner loops.
"""
from __future__ import annotations

import functools
import math
import weakref
from typing import Callable

import numpy as np
from numba import njit, uint64

from onnxpy import parallel
from onnxpy.ops import _simd as simd
from onnxpy.ops._helpers import (CLIP, FAST_GELU, GELU_TANH_ALPHA, GELU_TANH_CUBIC, HARD_SIGMOID, HARD_SWISH,
                                 LEAKY_RELU, PACKED_BAND, PACKED_COLUMNS, PACKED_DEPTH, RELU, SIGMOID, SWISH, TANH,
                                 erf_polynomial)

_CHUNK = uint64(1024)
# the time of one unit of work, in GEMM multiply-adds (measured), to size pieces for threads
# (``parallel.PASS_COST`` for an element of a few arithmetic operations)
_WINDOW_COST = 6  # a sliding-window tap
_TRANSCENDENTAL_COST = 40  # an element of erf, sigmoid or softmax
_STREAM_COST = 4  # an element of a matrix read once for a multiply-add (a matrix-vector product)
_BLOCK = 512
# depthwise convolutions with at least _LANES_MIN_CHANNELS channels and at most _LANES_MAX_OUTPUT output
# pixels per channel, or at least _LANES_WIDE_CHANNELS channels, run on vectors of channels
# (``_depthwise_lanes``). Measured per node at 1 thread, with the clamp, against the per-channel paths
# below: 576 ch 7x7 5x5 80-95 -> 44 us, 1152 ch 7x7 5x5 189 -> 83, 672 ch 14x14 5x5 254 -> 178 (stride
# 2: 510 -> 334), 480 ch 14x14 3x3 121 -> 89; best of 8 interleaved rounds: 144 ch 28x28 3x3 stride 2
# 259 -> 162, 240 ch 28x28 5x5 289 -> 195, 144 ch 56x56 3x3 378 -> 323, 96 ch 56x56 3x3 stride 2
# 494 -> 454, 32 ch 112x112 3x3 293 -> 302 (a tie: 248 -> 235 in another run); but with fewer channels
# on large outputs the transposes cost more than they save (16 ch 56x56 3x3 stride 2 59 -> 69, 24 ch
# 112x112 183 -> 217)
_LANES_MAX_OUTPUT = 16 * 16
_LANES_MIN_CHANNELS = 16
_LANES_WIDE_CHANNELS = 32
_LANE_PIXELS = 8  # output pixels of a row the channels-last kernel computes at a time
# stride-1 depthwise convolutions whose output has the input's size, and rows at most this long, run
# as flat runs (``_depthwise_flat``): there the sliding-window loop spends its time in row loops.
# Measured per node at 1 thread against ``_window2d``: 14x14 384 ch 3x3 288 -> 155 us, 672 ch 5x5
# 883 -> 616; 28x28 88 ch 3x3 145 -> 103, 240 ch 5x5 754 -> 669; 56x56 144 ch 3x3 787 -> 830
_FLAT_MAX_WIDTH = 32
# the direct convolution of few input channels (``_direct2d``): at most _DIRECT_MAX_INPUTS input
# channels (a network's stem), or for a kernel larger than 1x1 at most _DIRECT_SPATIAL_INPUTS, or up
# to twice as many with at most _DIRECT_NARROW output channels, where the GEMM is skinny. Measured at
# 1 thread against Winograd or im2col + GEMM: 3x3 8 -> 32 at 56x56 450 -> 201 us, 16 -> 64 at 55x55
# 947 -> 671, 24 -> 24 at 56x56 956 -> 683, 32 -> 9 at 224x224 10.7 -> 8.7 ms; but 32 -> 64 at 112x112
# 7985 -> 8347 us, and 1x1 kernels lose from 16 input channels (16 -> 96 at 112x112 916 -> 974).
# At least (and blocks of) _DIRECT_CHANNELS output channels; output rows in bands of _DIRECT_BAND.
_DIRECT_MAX_INPUTS = 4
_DIRECT_SPATIAL_INPUTS = 16
_DIRECT_NARROW = 32
_DIRECT_CHANNELS = 8
_DIRECT_BAND = 8
# 1x1 convolutions (``_pointwise``), against OpenBLAS plus the compiled epilogue, per node of
# mobilenet_v2 at 1 thread: 1.1-1.5x faster (24 -> 144 at 56x56 345 -> 220 us, 960 -> 320 at 7x7
# 406 -> 349; 16 -> 96 at 112x112 1.0-1.4x between runs). Output channels per register block;
# input channels per pass over a column block (64 a pass: 512 x 2048 at 7x7 1.05x slower than
# OpenBLAS; 256: 256 x 512 at 28x28 1.13x slower; 128: both 0.90-1.0x); outputs Swish'd at a time,
# while in cache
_POINTWISE_ROWS = 8
_POINTWISE_DEPTH = 128
_SWISH_BUDGET = 1 << 16
_PACKED_ROWS = 12  # rows of a packed product's tile (``_packed_tile``: 24 accumulator registers)
_TAIL_ROWS = 4  # rows of the tiles that finish a band whose last tile would be mostly padding (``_tail_tile``)
assert PACKED_BAND % _PACKED_ROWS == 0, "a band of a packed product is whole tiles (its scratch's size)"


def _ints(values) -> np.ndarray:
    """Strides, dilations or pads as the int64 array the kernels take, made once per distinct value
    (3 us a call otherwise; the kernels only read them)."""
    return _int64s(tuple(values))


@functools.lru_cache(maxsize=256)
def _int64s(values: tuple[int, ...]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


@njit(inline="always")
def _larger(a, b):  # pragma: no cover - compiled
    """max(a, b), NaN where either is NaN (as np.maximum)."""
    return a if a > b or a != a else b


@njit(inline="always")
def _tap_weights(w, m_out, triples):  # pragma: no cover - compiled
    """Depthwise weights w (M, kH, kW) as (M, 3 * triples) taps in row-major order, the missing
    third taps of the last triple weighing 0."""
    k_h, k_w = w.shape[1], w.shape[2]
    weights = np.zeros((m_out, 3 * triples), dtype=w.dtype)
    for m in range(m_out):
        for tap in range(k_h * k_w):
            weights[m, tap] = w[m, tap // k_w, tap % k_w]
    return weights


@njit(inline="always")
def _add_taps3(acc, a0, planes, b0, b1, b2, w0, w1, w2, size):  # pragma: no cover - compiled
    """One accumulator pass for three taps: acc[a0 + p] += the taps' weighted runs of ``planes``."""
    for p in range(size):
        acc[a0 + p] += w0 * planes[b0 + p] + w1 * planes[b1 + p] + w2 * planes[b2 + p]


@njit(cache=True, nogil=True, fastmath={"contract"})
def _window2d(x, w, bias, strides, dilations, pads, lo, hi, maximum, first, stop, out):  # pragma: no cover
    """Depthwise convolution of x by w (M, kH, kW) plus bias, clamped to [lo, hi]; or, with
    ``maximum``, max pooling over kH x kW windows (w then only gives the window's shape); for the
    (batch, input channel) pairs [first, stop) in row-major order."""
    channels, height, width = x.shape[1:]
    m_out, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    k_h, k_w = w.shape[1], w.shape[2]
    s_h, s_w = strides[0], strides[1]
    mult = m_out // channels
    # the padded channel, split into s_h * s_w phase planes so that every tap is a contiguous run:
    # plane (r, c) row i, column j holds padded input (i * s_h + r, j * s_w + c)
    plane_h = out_h + ((k_h - 1) * dilations[0]) // s_h + 1
    plane_w = out_w + ((k_w - 1) * dilations[1]) // s_w + 1
    fill = -np.inf if maximum else 0  # the padding, written once: channels overwrite only the input
    run = uint64(out_h * plane_w)
    spare = uint64(s_h * s_w * plane_h * plane_w + plane_w)  # then a run of padding only: the missing
    # third taps read it (their weight 0 times an input's inf would be NaN)
    planes = np.full(spare + run, fill, dtype=x.dtype)
    acc = np.empty(out_h * plane_w, dtype=x.dtype)
    xf, of = x.reshape(-1), out.reshape(-1)
    taps = k_h * k_w
    groups = -(-taps // 3)  # taps are taken three at a time (one accumulator pass for three)
    tap_start = np.full(3 * groups, spare, dtype=np.uint64)  # where each tap's run starts in ``planes``
    for ky in range(k_h):
        dy = ky * dilations[0]
        for kx in range(k_w):
            dx = kx * dilations[1]
            tap_start[ky * k_w + kx] = (((dy % s_h) * s_w + dx % s_w) * plane_h + dy // s_h) * plane_w + dx // s_w
    tap_weight = _tap_weights(w, 0 if maximum else m_out, groups)
    phase = plane_h * plane_w
    # stride 2: input column 2t goes to column phase even_q, plane column t + even_j; 2t + 1 to odd_q, t + odd_j
    even_q, even_j = pads[1] % 2, pads[1] // 2
    odd_q, odd_j = (pads[1] + 1) % 2, (pads[1] + 1) // 2
    pairs = max(0, min(width // 2, plane_w - even_j, plane_w - odd_j))  # columns 2t, 2t + 1 both in the planes
    for item in range(first, stop):  # (batch, channel) pairs
        n, c = item // channels, item % channels
        src0 = uint64(item * height * width)
        for r in range(s_h):
            i0 = max(0, -((r - pads[0]) // s_h))  # the plane rows that hold input rows
            i1 = min(plane_h, (height - 1 - r + pads[0]) // s_h + 1)
            if s_w == 2:  # one pass per input row: its even and odd columns go to the two column phases
                for i in range(i0, i1):
                    src = src0 + uint64((i * s_h + r - pads[0]) * width)
                    base = (2 * r * plane_h + i) * plane_w
                    dst_even = uint64(base + even_q * phase + even_j)
                    dst_odd = uint64(base + odd_q * phase + odd_j)
                    for t in range(uint64(pairs)):
                        planes[dst_even + t] = xf[src + t + t]
                        planes[dst_odd + t] = xf[src + t + t + uint64(1)]
                    for col in range(2 * pairs, width):  # an odd width's last column, or past the pairs' planes
                        j = (col + pads[1]) // 2
                        if j < plane_w:
                            planes[uint64(base + (col + pads[1]) % 2 * phase + j)] = xf[src + uint64(col)]
                continue
            for q in range(s_w):  # other strides: a pass per plane row and column phase
                j0 = max(0, -((q - pads[1]) // s_w))
                j1 = min(plane_w, (width - 1 - q + pads[1]) // s_w + 1)
                if j1 <= j0:
                    continue
                count, step = uint64(j1 - j0), uint64(s_w)
                for i in range(i0, i1):
                    src = src0 + uint64((i * s_h + r - pads[0]) * width + j0 * s_w + q - pads[1])
                    dst = uint64(((r * s_w + q) * plane_h + i) * plane_w + j0)
                    for j in range(count):
                        planes[dst + j] = xf[src + j * step]
        for m in range(c * mult, (c + 1) * mult):
            b = fill if maximum else bias[m]
            for start in range(0, run, _CHUNK):  # a chunk of the accumulator stays in L1 over all taps
                size = min(_CHUNK, run - start)
                for p in range(size):
                    acc[start + p] = b
                for g in range(0, 3 * groups, 3):
                    b0, b1, b2 = start + tap_start[g], start + tap_start[g + 1], start + tap_start[g + 2]
                    if maximum:  # NaN wins, as in np.maximum
                        for p in range(size):
                            acc[start + p] = _larger(_larger(_larger(acc[start + p], planes[b0 + p]), planes[b1 + p]),
                                                     planes[b2 + p])
                    else:
                        _add_taps3(acc, start, planes, b0, b1, b2, tap_weight[m, g], tap_weight[m, g + 1],
                                   tap_weight[m, g + 2], size)
            dst0, width_out, row_in = uint64((n * m_out + m) * out_h * out_w), uint64(out_w), uint64(plane_w)
            for oy in range(uint64(out_h)):
                for ox in range(width_out):
                    v = acc[oy * row_in + ox]
                    if v < lo:
                        v = lo
                    if v > hi:
                        v = hi
                    of[dst0 + oy * width_out + ox] = v
    return out


@njit(cache=True, nogil=True, fastmath={"contract"})
def _depthwise_flat(x, w, bias, dilations, pads, lo, hi, first, stop, out):  # pragma: no cover - compiled
    """Depthwise convolution at stride 1 with an output of the input's size, of x by w (M, kH, kW)
    plus bias, clamped to [lo, hi], for the (batch, input channel) pairs [first, stop).

    Every tap is one run over the whole output, with no row loops: each input channel is copied
    whole into kW flat planes of the input's width, with zero rows above and below (and a margin
    at both ends). A tap dx columns to the left of the output pixel (right: dx > 0) reads its own
    plane, in which the last |dx| (first dx) columns of each row are zero: exactly the elements its
    run reaches where the window leaves the row, which would otherwise wrap onto the next row."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    m_out = out.shape[1]
    k_h, k_w = w.shape[1], w.shape[2]
    d_h, d_w, p_t, p_l = dilations[0], dilations[1], pads[0], pads[1]
    mult = m_out // channels
    hw = uint64(height * width)
    margin = max(p_l, (k_w - 1) * d_w - p_l)
    plane = uint64(margin + (height + (k_h - 1) * d_h) * width + margin)
    spare = uint64(k_w) * plane  # then a run of zeros: the missing third taps read it
    planes = np.zeros(spare + hw, dtype=x.dtype)
    taps = k_h * k_w
    triples = -(-taps // 3)
    tap_start = np.full(3 * triples, spare, dtype=np.uint64)
    for ky in range(k_h):
        for kx in range(k_w):
            tap_start[ky * k_w + kx] = kx * plane + margin + ky * d_h * width + kx * d_w - p_l
    tap_weight = _tap_weights(w, m_out, triples)
    acc = np.empty(_CHUNK, dtype=x.dtype)
    xf, of = x.reshape(-1), out.reshape(-1)
    top = uint64(margin + p_t * width)  # where the input's first row starts in a plane
    for item in range(first, stop):  # (batch, channel) pairs
        n, c = item // channels, item % channels
        src = uint64(item) * hw
        for kx in range(k_w):
            dst = uint64(kx) * plane + top
            for j in range(hw):
                planes[dst + j] = xf[src + j]
            dx = kx * d_w - p_l
            z0, z1 = (max(0, width + dx), width) if dx < 0 else (0, min(width, dx))
            for j in range(z0, z1):  # a column at a time: a loop per row costs more on short rows
                column = dst + uint64(j)
                for r in range(uint64(height)):
                    planes[column + r * uint64(width)] = 0
        for m in range(c * mult, (c + 1) * mult):
            dst0 = uint64(n * m_out + m) * hw
            for start in range(uint64(0), hw, _CHUNK):  # a chunk of the accumulator stays in L1
                size = min(_CHUNK, hw - start)
                acc[:size] = bias[m]
                for t in range(0, 3 * triples, 3):
                    _add_taps3(acc, uint64(0), planes, start + tap_start[t], start + tap_start[t + 1],
                               start + tap_start[t + 2], tap_weight[m, t], tap_weight[m, t + 1],
                               tap_weight[m, t + 2], size)
                for p in range(size):
                    v = acc[p]
                    v = lo if v < lo else v
                    of[dst0 + start + p] = hi if v > hi else v
    return out


def depthwise2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, strides: list[int],
                dilations: list[int], begin: list[int], out_hw: list[int], clamp: tuple[float, float] | None,
                activation: tuple[int, float] | None) -> tuple[Callable[[np.ndarray], np.ndarray], bool]:
    """Depthwise 2-D convolution of inputs of x's shape (N, C, H, W) by w (M, 1, kH, kW), M a
    multiple of C, with ``begin`` padding and output size ``out_hw`` (the end padding needs no
    data), plus the bias and an optional clamp ``(lo, hi)``, prepared: a function of x, and whether
    it applies the ``activation`` too (HARD_SWISH, on vectors of channels: measured 41 -> 34 us on
    576 ch 7x7 5x5; Swish there, its exp in a pass over the block's results, cost more than its own
    pass after the convolution). x and w share a float32 or float64 dtype."""
    lo, hi = (-np.inf, np.inf) if clamp is None else clamp
    b = np.zeros(w.shape[0], dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    channels = x.shape[1]
    if w.shape[0] == channels >= _LANES_MIN_CHANNELS and (out_hw[0] * out_hw[1] <= _LANES_MAX_OUTPUT
                                                          or channels >= _LANES_WIDE_CHANNELS):
        fused = activation is not None and activation[0] == HARD_SWISH
        run = _channel_blocks(x, w, b, strides, dilations, begin, out_hw, lo, hi, HARD_SWISH if fused else 0)
        return run, fused or activation is None
    taps = np.ascontiguousarray(w).reshape(w.shape[0], *w.shape[2:])
    return (lambda x: _windows(x, taps, b, strides, dilations, begin, out_hw, lo, hi, False)), activation is None


@njit(inline="always")
def _pooled(row, at, s_w, k_w):  # pragma: no cover - compiled
    """A vector of outputs from the max-pooled row buffer: the maximum over kW columns from ``at``
    (every other column at stride 2)."""
    acc = simd.load_even(row, at) if s_w == 2 else simd.load(row, at)
    for kx in range(1, k_w):
        acc = simd.maximum(acc, simd.load_even(row, at + kx) if s_w == 2 else simd.load(row, at + kx))
    return acc


@njit(cache=True, nogil=True)
def _max_pool_rows(x, k_h, k_w, s_h, s_w, p_t, p_l, first, stop, out):  # pragma: no cover - compiled
    """Max pooling (dilation 1) of x (N, C, H, W) into out (N, C, OH, OW), -inf beyond the input,
    for the (batch, channel) pairs [first, stop). Separable, in two vector passes over a channel:
    the maximum over each output row's kH input rows into its own -inf-padded row of a buffer, then,
    once the channel's rows are all there, over kW columns of them (every other column at stride 2;
    a row read back right after it was written was slower on short rows: 256 ch 27x27 3x3 stride 2,
    100 -> 74 us). A row's last vector overlaps the one before (the maximum is the same computed
    twice); a row shorter than a vector goes through a scratch vector."""
    height, width = x.shape[2], x.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    vec = simd.lanes(x)
    xf, of = x.reshape(-1), out.reshape(-1)
    lowest = x.dtype.type(-np.inf)
    size = max(p_l + width, (out_w + vec) * s_w + k_w) + 2 * vec  # the loads past a row's end read -inf
    rows = np.full(out_h * size, lowest, dtype=x.dtype)  # only the input's columns are ever written
    short = np.empty(vec, dtype=x.dtype)
    for item in range(first, stop):
        plane = item * height * width
        for oy in range(out_h):
            r0, r1 = max(0, oy * s_h - p_t), min(height, oy * s_h - p_t + k_h)
            src, at = plane + r0 * width, oy * size + p_l
            if width >= vec:
                for j in range(0, width, vec):
                    j = min(j, width - vec)
                    acc = simd.load(xf, src + j)
                    for r in range(1, r1 - r0):
                        acc = simd.maximum(acc, simd.load(xf, src + r * width + j))
                    simd.store(rows, at + j, acc)
            elif r1 > r0:
                for j in range(width):
                    v = xf[src + j]
                    for r in range(1, r1 - r0):
                        v = _larger(v, xf[src + r * width + j])
                    rows[at + j] = v
        for oy in range(out_h):
            dst, at = (item * out_h + oy) * out_w, oy * size
            if min(height, oy * s_h - p_t + k_h) <= max(0, oy * s_h - p_t):  # a window of padding only
                for o in range(out_w):
                    of[dst + o] = lowest
            elif s_w > 2:
                for o in range(out_w):
                    acc = rows[at + o * s_w]
                    for kx in range(1, k_w):
                        acc = _larger(acc, rows[at + o * s_w + kx])
                    of[dst + o] = acc
            elif out_w >= vec:
                for ox in range(0, out_w, vec):
                    ox = min(ox, out_w - vec)
                    simd.store(of, dst + ox, _pooled(rows, at + ox * s_w, s_w, k_w))
            else:
                simd.store(short, 0, _pooled(rows, at, s_w, k_w))
                for o in range(out_w):
                    of[dst + o] = short[o]
    return out


def max_pool2d(x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int], begin: list[int],
               out_hw: list[int]) -> np.ndarray:
    """2-D max pooling of a float32 or float64 x (N, C, H, W) with ``begin`` padding and output size
    ``out_hw``; NaN propagates. Without dilation, separable (``_max_pool_rows``: 1.6-2x faster than
    the sliding window's phase planes on squeezenet's and resnet's 3x3 stride-2 pools)."""
    if list(dilations) != [1, 1]:
        window = np.empty((1, *kernel), dtype=x.dtype)  # only its shape is read
        return _windows(x, window, np.zeros(1, dtype=x.dtype), strides, dilations, begin, out_hw, -np.inf, np.inf,
                        True)
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape[:2] + tuple(out_hw), dtype=x.dtype)
    parallel.in_ranges(x.shape[0] * x.shape[1], _WINDOW_COST * (x.size * kernel[0] + out.size * kernel[1]),
                       _max_pool_rows, (x, *kernel, *strides, *begin), (out,))
    return out


def _windows(x, w, bias, strides, dilations, begin, out_hw, lo, hi, maximum) -> np.ndarray:
    """``_window2d`` over the session's threads by (batch, channel) pairs; for a convolution at
    stride 1 whose output has the input's size and whose rows are short, ``_depthwise_flat``."""
    out = np.empty(x.shape[:1] + (x.shape[1] if maximum else w.shape[0],) + tuple(out_hw), dtype=x.dtype)
    t = x.dtype.type
    x = np.ascontiguousarray(x)
    if (not maximum and list(strides) == [1, 1] and list(out_hw) == list(x.shape[2:])
            and x.shape[3] <= _FLAT_MAX_WIDTH):
        kernel, head = _depthwise_flat, (x, w, bias, _ints(dilations), _ints(begin), t(lo), t(hi))
    else:
        kernel, head = _window2d, (x, w, bias, *[_ints(v) for v in (strides, dilations, begin)], t(lo), t(hi), maximum)
    parallel.in_ranges(x.shape[0] * x.shape[1], _WINDOW_COST * out.size * w.shape[1] * w.shape[2], kernel, head,
                       (out,))
    return out


@njit(cache=True, nogil=True, fastmath={"contract"})
def _depthwise_lanes(x, w, bias, strides, dilations, pads, lo, hi, act, first, stop, out):  # pragma: no cover
    """Depthwise convolution (multiplier 1) of x (N, C, H, W) by w (kH, kW, Cp), the weights
    channels-last and padded with zero channels to whole vectors, plus bias (C,), clamped to [lo, hi],
    then HardSwish'd when ``act`` is HARD_SWISH, into out (N, C, OH, OW), for the blocks [first,
    stop) of N * Cp / lanes (a vector of channels of one image), all in L1: the block's input is
    transposed channels-last (lanes x lanes blocks in registers) and copied into a zero-padded
    buffer; eight output pixels of a row at a time accumulate all taps in eight vector registers
    (eight chains hide the multiply-add's latency and share each tap's weight load); the results
    are transposed back channel by channel."""
    lanes = simd.lanes(x)
    step = uint64(lanes)
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    k_h, k_w, padded = w.shape[0], w.shape[1], uint64(w.shape[2])
    s_h, s_w, d_h, d_w, p_t, p_l = strides[0], strides[1], dilations[0], dilations[1], pads[0], pads[1]
    groups = -(-out_w // _LANE_PIXELS)  # blocks of eight output pixels per row
    rows = (out_h - 1) * s_h + (k_h - 1) * d_h + 1  # the padded input the taps reach
    cols = (groups * _LANE_PIXELS - 1) * s_w + (k_w - 1) * d_w + 1
    in_rows, in_cols = uint64(max(0, min(height, rows - p_t))), uint64(max(0, min(width, cols - p_l)))
    hw, pixels = uint64(height * width), uint64(out_h * out_w)
    staging = np.empty(hw * step, dtype=x.dtype)  # the block's input, channels-last, unpadded
    block = np.empty(rows * cols * lanes, dtype=x.dtype)  # padded: blocks overwrite the input only
    result = np.empty((pixels + _LANE_PIXELS) * step, dtype=x.dtype)  # a row's last eight may run over
    shift = np.zeros(lanes, dtype=x.dtype)
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    low, high, zero = simd.splat(lo), simd.splat(hi), simd.splat(x.dtype.type(0))
    sixth, half, one = simd.splat(x.dtype.type(1 / 6)), simd.splat(x.dtype.type(0.5)), simd.splat(x.dtype.type(1))
    for r in range(rows):  # the padding, once: zero rows, and the columns left and right of the input
        inside = p_t <= r < p_t + in_rows
        for col in range(cols):
            if not inside or col < p_l or col >= p_l + in_cols:
                simd.store(block, uint64(r * cols + col) * step, zero)
    blocks = w.shape[2] // lanes
    px = uint64(s_w) * step  # from one output pixel's input to the next's
    whole_in, whole_out = hw // step * step, pixels // step * step
    for item in range(first, stop):
        n, c0 = item // blocks, item % blocks * lanes
        used = uint64(min(lanes, channels - c0))
        src = uint64(n * channels + c0) * hw
        for lane in range(used):
            shift[lane] = bias[c0 + lane]
        for p in range(uint64(0), whole_in, step):
            simd.transpose(xf, src + p, hw, used, staging, p * step, step, step)
        for p in range(whole_in, hw):
            for lane in range(used):
                staging[p * step + lane] = xf[src + lane * hw + p]
        for iy in range(in_rows):
            dst = (uint64(iy + p_t) * uint64(cols) + uint64(p_l)) * step
            row = iy * uint64(width) * step
            for ix in range(in_cols):
                simd.store(block, dst + ix * step, simd.load(staging, row + ix * step))
        start = simd.load(shift, 0)
        for oy in range(out_h):  # in order: a row's last eight pixels may run into the next row's
            for ox in range(0, out_w, _LANE_PIXELS):
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = start
                for ky in range(k_h):
                    at = uint64((oy * s_h + ky * d_h) * cols + ox * s_w) * step
                    wat = uint64(ky * k_w) * padded + uint64(c0)
                    for kx in range(k_w):
                        g = simd.load(wf, wat + uint64(kx) * padded)
                        b = at + uint64(kx * d_w) * step
                        a0 = simd.fma(g, simd.load(block, b), a0)
                        a1 = simd.fma(g, simd.load(block, b + px), a1)
                        a2 = simd.fma(g, simd.load(block, b + 2 * px), a2)
                        a3 = simd.fma(g, simd.load(block, b + 3 * px), a3)
                        a4 = simd.fma(g, simd.load(block, b + 4 * px), a4)
                        a5 = simd.fma(g, simd.load(block, b + 5 * px), a5)
                        a6 = simd.fma(g, simd.load(block, b + 6 * px), a6)
                        a7 = simd.fma(g, simd.load(block, b + 7 * px), a7)
                r = uint64(oy * out_w + ox) * step
                simd.store(result, r, _activate(a0, low, high, act, sixth, half, zero, one))
                simd.store(result, r + step, _activate(a1, low, high, act, sixth, half, zero, one))
                simd.store(result, r + 2 * step, _activate(a2, low, high, act, sixth, half, zero, one))
                simd.store(result, r + 3 * step, _activate(a3, low, high, act, sixth, half, zero, one))
                simd.store(result, r + 4 * step, _activate(a4, low, high, act, sixth, half, zero, one))
                simd.store(result, r + 5 * step, _activate(a5, low, high, act, sixth, half, zero, one))
                simd.store(result, r + 6 * step, _activate(a6, low, high, act, sixth, half, zero, one))
                simd.store(result, r + 7 * step, _activate(a7, low, high, act, sixth, half, zero, one))
        dst = src // hw * pixels
        for p in range(uint64(0), whole_out, step):
            simd.transpose(result, p * step, step, step, of, dst + p, pixels, used)
        for p in range(whole_out, pixels):
            for lane in range(used):
                of[dst + lane * pixels + p] = result[p * step + lane]
    return out


def _lane_weights(w: np.ndarray) -> np.ndarray:
    """Depthwise weights (C, 1, kH, kW) as (kH, kW, Cp), channels padded with zeros to whole vectors."""
    c, lanes = w.shape[0], simd.BYTES // w.dtype.itemsize
    wl = np.zeros(w.shape[2:] + (-(-c // lanes) * lanes,), dtype=w.dtype)
    wl[:, :, :c] = w[:, 0].transpose(1, 2, 0)
    return wl


def _channel_blocks(x: np.ndarray, w: np.ndarray, bias: np.ndarray, strides: list[int], dilations: list[int],
                    begin: list[int], out_hw: list[int], lo: float, hi: float,
                    act: int) -> Callable[[np.ndarray], np.ndarray]:
    """``_depthwise_lanes`` over the session's threads by blocks of channels, prepared for inputs of
    x's shape (its weights channels-last once per read-only array)."""
    n, c = x.shape[:2]
    shape, dtype = (n, c, *out_hw), x.dtype
    wl = _derived(w, _lane_weights)
    t = dtype.type
    head = (wl, bias, *[_ints(v) for v in (strides, dilations, begin)], t(lo), t(hi), act)
    blocks = n * (wl.shape[2] * dtype.itemsize // simd.BYTES)
    work = _WINDOW_COST * math.prod(shape) * w.shape[2] * w.shape[3]

    def run(x: np.ndarray) -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        parallel.in_ranges(blocks, work, _depthwise_lanes, (np.ascontiguousarray(x), *head), (out,))
        return out

    return run


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _finish(y, bias, z, with_z, lo, hi, act, alpha, k0, k1, c0, c1):  # pragma: no cover - compiled
    """``finish`` on rows [k0, k1), columns [c0, c1), a block of columns at a time: bias, z, the clamp
    (only when a bound is finite) and HardSwish in one pass; Swish's exp in two more (see _sigmoid)."""
    one, zero, sixth, half = y.dtype.type(1), y.dtype.type(0), y.dtype.type(1 / 6), y.dtype.type(0.5)
    clamp = lo > -np.inf or hi < np.inf
    power = np.empty(_BLOCK, dtype=np.int32)  # swish's exp as in _sigmoid (float32 only)
    scale = power.view(np.float32)
    poly = np.empty(_BLOCK, dtype=np.float32)
    for k in range(k0, k1):
        row, extra, b = y[k], z[k], bias[k]
        for start in range(uint64(c0), uint64(c1), uint64(_BLOCK)):
            size = min(uint64(_BLOCK), uint64(c1) - start)
            for j in range(size):
                v = row[start + j] + (b + extra[start + j] if with_z else b)
                if clamp:
                    v = lo if v < lo else v
                    v = hi if v > hi else v
                if act == HARD_SWISH:
                    v = v * _hard_gate(v, sixth, half, zero, one)
                row[start + j] = v
            if act == SWISH:  # in the pass above, the exp's parts would stop it vectorising
                for j in range(size):
                    poly[j], power[j] = _clamped_exp_parts(np.float32(-alpha * row[start + j]))
                for j in range(size):
                    row[start + j] = row[start + j] / (one + poly[j] * scale[j])


def finish(y: np.ndarray, bias: np.ndarray, z: np.ndarray | None, clamp: tuple[float, float] | None,
           rows: tuple[int, int], cols: tuple[int, int], activation: tuple[int, float] | None = None) -> None:
    """The block ``rows`` x ``cols`` of the contiguous (M, L) GEMM output y, in place: plus bias
    (M,), plus z (of y's shape) when given, clamped to ``clamp`` when given (NaN stays NaN), then
    ``activation`` when given, (code, alpha): _helpers' HARD_SWISH, or SWISH ``y sigmoid(alpha y)``
    for float32 y, in one pass while the block is in cache."""
    lo, hi = (-np.inf, np.inf) if clamp is None else clamp
    code, alpha = (0, 0.0) if activation is None else activation  # 0: none
    t = y.dtype.type
    _finish(y, bias, y if z is None else z, z is not None, t(lo), t(hi), code, t(alpha), *rows, *cols)


@njit(inline="always")
def _activate(v, lo, hi, act, sixth, half, zero, one):  # pragma: no cover - compiled
    """A vector clamped to [lo, hi], then HardSwish'd when act is HARD_SWISH (as in ``_finish``)."""
    v = simd.clamp(v, lo, hi)
    if act == HARD_SWISH:
        v = simd.mul(v, simd.clamp(simd.fma(v, sixth, half), zero, one))
    return v


@njit(inline="always")
def _fma_pair(w, at, u, v, a, b):  # pragma: no cover - compiled
    """(w[at] u + a, w[at] v + b): one weight against two input vectors."""
    g = simd.splat_from(w, at)
    return simd.fma(g, u, a), simd.fma(g, v, b)


@njit(inline="always")
def _store_pair(out, at, a, b, width, lo, hi, act, sixth, half, zero, one):  # pragma: no cover - compiled
    """Two accumulator vectors, activated, to out[at:] and out[at + width:]."""
    simd.store(out, at, _activate(a, lo, hi, act, sixth, half, zero, one))
    simd.store(out, at + width, _activate(b, lo, hi, act, sixth, half, zero, one))


@njit(cache=True, nogil=True, error_model="numpy")
def _direct2d(x, w, bias, strides, pads, lo, hi, act, first, stop, out):  # pragma: no cover - compiled
    """Convolution of few input channels (one group, dilation 1, column stride 1 or 2) of x (N, C,
    H, W) by w (M, C, kH, kW), M >= _DIRECT_CHANNELS, plus bias, clamped to [lo, hi], HardSwish'd
    when act is HARD_SWISH, into out (N, M, OH, OW), OW >= two vectors; for the output rows
    [first, stop) of N * OH.

    The output columns are the vector lanes. A band of rows at a time, the input rows the band
    reads are copied with their padding into a small buffer, at column stride 2 as two phases (the
    even padded columns, then the odd ones, so that every tap reads contiguous vectors); then for
    each pair of output vectors and each block of _DIRECT_CHANNELS output channels, every tap loads
    its two input vectors once and multiply-adds them into 16 accumulators held in registers. The
    last vector pair and channel block overlap the ones before instead of running short (their
    shared outputs are computed twice, equally)."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    m_out, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    k_h, k_w = w.shape[2], w.shape[3]
    s_h, s_w, p_t, p_l = strides[0], strides[1], pads[0], pads[1]
    vec = simd.lanes(x)
    taps = channels * k_h * k_w
    phase = out_w + (k_w - 1) // s_w + 2 * vec  # a padded row's columns of one phase, and the 2-vector read at its end
    row_len = s_w * phase
    band_rows = (_DIRECT_BAND - 1) * s_h + k_h
    rows_in = np.empty(channels * band_rows * row_len, dtype=x.dtype)
    tap_start = np.empty(taps, dtype=np.int64)
    for c in range(channels):
        for ky in range(k_h):
            for kx in range(k_w):
                tap_start[(c * k_h + ky) * k_w + kx] = (c * band_rows + ky) * row_len + kx % s_w * phase + kx // s_w
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    lo_v, hi_v = simd.splat(lo), simd.splat(hi)
    t = x.dtype.type
    sixth, half, zero, one = simd.splat(t(1 / 6)), simd.splat(t(0.5)), simd.splat(t(0)), simd.splat(t(1))
    plane = out_h * out_w
    row = first
    while row < stop:  # a band: at most _DIRECT_BAND rows of one image
        n, oy0 = row // out_h, row % out_h
        oy1 = min(out_h, oy0 + _DIRECT_BAND, oy0 + stop - row)
        row += oy1 - oy0
        r0 = oy0 * s_h - p_t  # the input row of the band's first buffer row
        rows_in[:] = 0
        for c in range(channels):
            for i in range((oy1 - 1 - oy0) * s_h + k_h):
                if 0 <= r0 + i < height:
                    dst, src = (c * band_rows + i) * row_len, ((n * channels + c) * height + r0 + i) * width
                    count = min(width, row_len - p_l)
                    if s_w == 1:
                        rows_in[dst + p_l:dst + p_l + count] = xf[src:src + count]
                    else:  # input column j to phase (p_l + j) % 2, at (p_l + j) // 2: a vector of each at a time
                        evens = dst + p_l % 2 * phase + p_l // 2
                        odds = dst + (p_l + 1) % 2 * phase + (p_l + 1) // 2
                        k = 0  # columns of each phase filled
                        while 2 * k + 2 * vec < count:
                            simd.store(rows_in, evens + k, simd.load_even(xf, src + 2 * k))
                            simd.store(rows_in, odds + k, simd.load_even(xf, src + 2 * k + 1))
                            k += vec
                        for j in range(2 * k, count):
                            rows_in[(evens if j % 2 == 0 else odds) + j // 2] = xf[src + j]
        for oy in range(oy0, oy1):
            for pair in range(-(-out_w // (2 * vec))):
                ox = min(pair * 2 * vec, out_w - 2 * vec)
                at = (oy - oy0) * s_h * row_len + ox
                for block in range(-(-m_out // _DIRECT_CHANNELS)):
                    m0 = min(block * _DIRECT_CHANNELS, m_out - _DIRECT_CHANNELS)
                    a0, a1, a2, a3 = (simd.splat(bias[m0]), simd.splat(bias[m0 + 1]), simd.splat(bias[m0 + 2]),
                                      simd.splat(bias[m0 + 3]))
                    a4, a5, a6, a7 = (simd.splat(bias[m0 + 4]), simd.splat(bias[m0 + 5]), simd.splat(bias[m0 + 6]),
                                      simd.splat(bias[m0 + 7]))
                    b0, b1, b2, b3, b4, b5, b6, b7 = a0, a1, a2, a3, a4, a5, a6, a7
                    for tap in range(taps):
                        p = at + tap_start[tap]
                        u, v = simd.load(rows_in, p), simd.load(rows_in, p + vec)
                        wi = m0 * taps + tap
                        a0, b0 = _fma_pair(wf, wi, u, v, a0, b0)
                        a1, b1 = _fma_pair(wf, wi + taps, u, v, a1, b1)
                        a2, b2 = _fma_pair(wf, wi + 2 * taps, u, v, a2, b2)
                        a3, b3 = _fma_pair(wf, wi + 3 * taps, u, v, a3, b3)
                        a4, b4 = _fma_pair(wf, wi + 4 * taps, u, v, a4, b4)
                        a5, b5 = _fma_pair(wf, wi + 5 * taps, u, v, a5, b5)
                        a6, b6 = _fma_pair(wf, wi + 6 * taps, u, v, a6, b6)
                        a7, b7 = _fma_pair(wf, wi + 7 * taps, u, v, a7, b7)
                    d = (n * m_out + m0) * plane + oy * out_w + ox
                    _store_pair(of, d, a0, b0, vec, lo_v, hi_v, act, sixth, half, zero, one)
                    _store_pair(of, d + plane, a1, b1, vec, lo_v, hi_v, act, sixth, half, zero, one)
                    _store_pair(of, d + 2 * plane, a2, b2, vec, lo_v, hi_v, act, sixth, half, zero, one)
                    _store_pair(of, d + 3 * plane, a3, b3, vec, lo_v, hi_v, act, sixth, half, zero, one)
                    _store_pair(of, d + 4 * plane, a4, b4, vec, lo_v, hi_v, act, sixth, half, zero, one)
                    _store_pair(of, d + 5 * plane, a5, b5, vec, lo_v, hi_v, act, sixth, half, zero, one)
                    _store_pair(of, d + 6 * plane, a6, b6, vec, lo_v, hi_v, act, sixth, half, zero, one)
                    _store_pair(of, d + 7 * plane, a7, b7, vec, lo_v, hi_v, act, sixth, half, zero, one)
    return out


def direct_applies(x: np.ndarray, w: np.ndarray, strides: list[int], dilations: list[int], out_hw: list[int]) -> bool:
    """Whether ``direct2d`` serves this convolution (one group assumed): 2-D, float32 or float64,
    few input channels (see _DIRECT_MAX_INPUTS), at least _DIRECT_CHANNELS output channels, dilation
    1, column stride 1 or 2, and output rows of at least two vectors."""
    if x.ndim != 4 or w.ndim != 4 or x.dtype not in (np.float32, np.float64):
        return False
    c, m = x.shape[1], w.shape[0]
    few = c <= _DIRECT_MAX_INPUTS or (w.shape[2] * w.shape[3] > 1 and (
        c <= _DIRECT_SPATIAL_INPUTS or (c <= 2 * _DIRECT_SPATIAL_INPUTS and m <= _DIRECT_NARROW)))
    lanes = simd.BYTES // x.dtype.itemsize
    return (few and m >= _DIRECT_CHANNELS and list(dilations) == [1, 1] and strides[1] in (1, 2)
            and out_hw[1] >= 2 * lanes)


def direct2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, strides: list[int], begin: list[int],
             out_hw: list[int], clamp: tuple[float, float] | None, hard_swish: bool) -> np.ndarray:
    """The convolution ``direct_applies`` to, plus the bias, then clamped to ``clamp = (lo, hi)``
    and HardSwish'd, each when given (``_direct2d``), over the session's threads by output rows."""
    n, m = x.shape[0], w.shape[0]
    out = np.empty((n, m) + tuple(out_hw), dtype=x.dtype)
    t = x.dtype.type
    lo, hi = (t(-np.inf), t(np.inf)) if clamp is None else (t(clamp[0]), t(clamp[1]))
    b = np.zeros(m, dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    geometry = [_ints(v) for v in (strides, begin)]
    act = HARD_SWISH if hard_swish else 0
    parallel.in_ranges(n * out_hw[0], w[0].size * out.size, _direct2d, (x, w, b, *geometry, lo, hi, act), (out,))
    return out


@njit(inline="always")
def _fma_triple(w, at, u, v, t, a, b, c):  # pragma: no cover - compiled
    """(w[at] u + a, w[at] v + b, w[at] t + c): one weight against three input vectors."""
    g = simd.splat_from(w, at)
    return simd.fma(g, u, a), simd.fma(g, v, b), simd.fma(g, t, c)


@njit(inline="always")
def _put(out, at, a, bias, z, lo, hi, act, sixth, half, zero, one, skip):  # pragma: no cover - compiled
    """An accumulator vector plus (bias plus z[at:] when z is not None), activated, to out[at:],
    but for its first ``skip`` lanes (out keeps those). The sums in the order of a GEMM and
    ``_finish``, so that a 1x1 convolution rounds as onnxruntime's does."""
    extra = simd.splat(bias)
    if z is not None:  # None is a type of its own: the branch is resolved at compile time
        extra = simd.add(extra, simd.load(z, at))
    a = _activate(simd.add(a, extra), lo, hi, act, sixth, half, zero, one)
    if skip:
        a = simd.blend(simd.load(out, at), a, skip)
    simd.store(out, at, a)


@njit(inline="always")
def _put_triple(out, at, a, b, c, width, bias, z, lo, hi, act, sixth, half, zero, one):  # pragma: no cover
    """``_put`` for three vectors side by side."""
    _put(out, at, a, bias, z, lo, hi, act, sixth, half, zero, one, 0)
    _put(out, at + width, b, bias, z, lo, hi, act, sixth, half, zero, one, 0)
    _put(out, at + 2 * width, c, bias, z, lo, hi, act, sixth, half, zero, one, 0)


@njit(inline="always")
def _start(acc, at, width, zero):  # pragma: no cover - compiled
    """Three accumulator vectors: zeros, or acc[at:] (three vectors) when acc is not None."""
    if acc is not None:  # resolved at compile time, as in ``_put``
        return simd.load(acc, at), simd.load(acc, at + width), simd.load(acc, at + 2 * width)
    return zero, zero, zero


@njit(inline="always")
def _column_block(unit, length, width):  # pragma: no cover - compiled
    """Image, first column and end column of ``_pointwise``'s column block ``unit``: blocks of
    ``width`` columns, an image's last block taking the rest."""
    per_image = max(1, length // width)
    n, k = unit // per_image, unit % per_image
    return n, k * width, length if k == per_image - 1 else (k + 1) * width


@njit(cache=True, nogil=True, error_model="numpy")
def _pointwise_block(x, packed, bias, acc, z, lo, hi, act, unit, c0, c1, b_first, b_stop, out):  # pragma: no cover
    """``_pointwise`` for one column block ``unit`` and the input channels [c0, c1), the
    accumulators starting from zero, or from acc (the partial sums in out) when not None."""
    channels, length = x.shape[1], x.shape[2]
    m_out = out.shape[1]
    vec = simd.lanes(x)
    width = 3 * vec
    xf, of = x.reshape(-1), out.reshape(-1)
    lo_v, hi_v = simd.splat(lo), simd.splat(hi)
    t = x.dtype.type
    sixth, half, zero, one = simd.splat(t(1 / 6)), simd.splat(t(0.5)), simd.splat(t(0)), simd.splat(t(1))
    n, col, end = _column_block(unit, length, width)
    src = n * channels * length + col
    for block in range(b_first, b_stop):
        m0 = min(block * _POINTWISE_ROWS, m_out - _POINTWISE_ROWS)
        wb = block * channels * _POINTWISE_ROWS
        dst = (n * m_out + m0) * length + col
        if col + width <= length:
            a0, b0, c0_ = _start(acc, dst, vec, zero)
            a1, b1, c1_ = _start(acc, dst + length, vec, zero)
            a2, b2, c2 = _start(acc, dst + 2 * length, vec, zero)
            a3, b3, c3 = _start(acc, dst + 3 * length, vec, zero)
            a4, b4, c4 = _start(acc, dst + 4 * length, vec, zero)
            a5, b5, c5 = _start(acc, dst + 5 * length, vec, zero)
            a6, b6, c6 = _start(acc, dst + 6 * length, vec, zero)
            a7, b7, c7 = _start(acc, dst + 7 * length, vec, zero)
            for c in range(c0, c1):
                p = src + c * length
                u, v, s = simd.load(xf, p), simd.load(xf, p + vec), simd.load(xf, p + 2 * vec)
                wi = wb + c * _POINTWISE_ROWS
                a0, b0, c0_ = _fma_triple(packed, wi, u, v, s, a0, b0, c0_)
                a1, b1, c1_ = _fma_triple(packed, wi + 1, u, v, s, a1, b1, c1_)
                a2, b2, c2 = _fma_triple(packed, wi + 2, u, v, s, a2, b2, c2)
                a3, b3, c3 = _fma_triple(packed, wi + 3, u, v, s, a3, b3, c3)
                a4, b4, c4 = _fma_triple(packed, wi + 4, u, v, s, a4, b4, c4)
                a5, b5, c5 = _fma_triple(packed, wi + 5, u, v, s, a5, b5, c5)
                a6, b6, c6 = _fma_triple(packed, wi + 6, u, v, s, a6, b6, c6)
                a7, b7, c7 = _fma_triple(packed, wi + 7, u, v, s, a7, b7, c7)
            _put_triple(of, dst, a0, b0, c0_, vec, bias[m0], z, lo_v, hi_v, act, sixth, half, zero, one)
            _put_triple(of, dst + length, a1, b1, c1_, vec, bias[m0 + 1], z, lo_v, hi_v, act, sixth, half, zero, one)
            _put_triple(of, dst + 2 * length, a2, b2, c2, vec, bias[m0 + 2], z, lo_v, hi_v, act, sixth, half, zero, one)
            _put_triple(of, dst + 3 * length, a3, b3, c3, vec, bias[m0 + 3], z, lo_v, hi_v, act, sixth, half, zero, one)
            _put_triple(of, dst + 4 * length, a4, b4, c4, vec, bias[m0 + 4], z, lo_v, hi_v, act, sixth, half, zero, one)
            _put_triple(of, dst + 5 * length, a5, b5, c5, vec, bias[m0 + 5], z, lo_v, hi_v, act, sixth, half, zero, one)
            _put_triple(of, dst + 6 * length, a6, b6, c6, vec, bias[m0 + 6], z, lo_v, hi_v, act, sixth, half, zero, one)
            _put_triple(of, dst + 7 * length, a7, b7, c7, vec, bias[m0 + 7], z, lo_v, hi_v, act, sixth, half, zero, one)
        for j in range(col + width if col + width <= length else col, end, vec):  # the rest, a vector at a time
            start = min(j, length - vec)  # the vector's first column: it may overlap the columns before
            skip = j - start  # (already written by this pass: kept)
            d = dst + start - col
            a0, a1, a2, a3, a4, a5, a6, a7 = zero, zero, zero, zero, zero, zero, zero, zero
            if acc is not None:
                a0, a1, a2, a3 = simd.load(acc, d), simd.load(acc, d + length), simd.load(acc, d + 2 * length), \
                    simd.load(acc, d + 3 * length)
                a4, a5, a6, a7 = simd.load(acc, d + 4 * length), simd.load(acc, d + 5 * length), \
                    simd.load(acc, d + 6 * length), simd.load(acc, d + 7 * length)
            for c in range(c0, c1):
                u = simd.load(xf, src + start - col + c * length)
                wi = wb + c * _POINTWISE_ROWS
                a0 = simd.fma(simd.splat_from(packed, wi), u, a0)
                a1 = simd.fma(simd.splat_from(packed, wi + 1), u, a1)
                a2 = simd.fma(simd.splat_from(packed, wi + 2), u, a2)
                a3 = simd.fma(simd.splat_from(packed, wi + 3), u, a3)
                a4 = simd.fma(simd.splat_from(packed, wi + 4), u, a4)
                a5 = simd.fma(simd.splat_from(packed, wi + 5), u, a5)
                a6 = simd.fma(simd.splat_from(packed, wi + 6), u, a6)
                a7 = simd.fma(simd.splat_from(packed, wi + 7), u, a7)
            _put(of, d, a0, bias[m0], z, lo_v, hi_v, act, sixth, half, zero, one, skip)
            _put(of, d + length, a1, bias[m0 + 1], z, lo_v, hi_v, act, sixth, half, zero, one, skip)
            _put(of, d + 2 * length, a2, bias[m0 + 2], z, lo_v, hi_v, act, sixth, half, zero, one, skip)
            _put(of, d + 3 * length, a3, bias[m0 + 3], z, lo_v, hi_v, act, sixth, half, zero, one, skip)
            _put(of, d + 4 * length, a4, bias[m0 + 4], z, lo_v, hi_v, act, sixth, half, zero, one, skip)
            _put(of, d + 5 * length, a5, bias[m0 + 5], z, lo_v, hi_v, act, sixth, half, zero, one, skip)
            _put(of, d + 6 * length, a6, bias[m0 + 6], z, lo_v, hi_v, act, sixth, half, zero, one, skip)
            _put(of, d + 7 * length, a7, bias[m0 + 7], z, lo_v, hi_v, act, sixth, half, zero, one, skip)


@njit(cache=True, nogil=True)
def _pointwise(x, packed, bias, z, lo, hi, act, alpha, first, stop, b_first, b_stop, out):  # pragma: no cover
    """1x1 convolution (a GEMM per image) of x (N, C, L) by the weights ``packed`` by ``pack_rows``
    (M rows, M >= _POINTWISE_ROWS), plus bias, plus z (of out's size, flat) when not None, clamped
    to [lo, hi], then HardSwish'd, or Swish'd (float32) with ``alpha``, as act says, into out (N, M,
    L), L >= one vector; for the column blocks [first, stop) of N * max(1, L // three vectors) and the
    row blocks [b_first, b_stop).

    The output columns are the vector lanes: for three vectors of columns and _POINTWISE_ROWS
    output channels, each input channel loads its three vectors once and multiply-adds them into
    24 accumulators held in registers (``_pointwise_block``). An image's last block also takes the
    columns left over, one vector at a time, the last vector overlapping the one before; the last
    row block overlaps the one before (their shared outputs are computed twice, equally). Input
    channels are taken _POINTWISE_DEPTH at a time, so that a column block's inputs stay in L1
    across the row blocks: the partial sums go to out and come back for the next channels. Swish's
    exp runs after, on about _SWISH_BUDGET outputs at a time while they are in cache (``_finish``)."""
    channels, m_out, length = x.shape[1], out.shape[1], x.shape[2]
    width = 3 * simd.lanes(x)
    of = out.reshape(-1)
    t = x.dtype.type
    none, lowest, highest = 0, t(-np.inf), t(np.inf)
    r0, r1 = min(b_first * _POINTWISE_ROWS, m_out - _POINTWISE_ROWS), min(b_stop * _POINTWISE_ROWS, m_out)
    rows = r1 - r0
    no_bias = np.zeros(m_out, dtype=x.dtype)
    pending = first  # the first column block Swish has not run on
    for unit in range(first, stop):
        if channels <= _POINTWISE_DEPTH:
            _pointwise_block(x, packed, bias, None, z, lo, hi, act, unit, 0, channels, b_first, b_stop, out)
        else:
            _pointwise_block(x, packed, no_bias, None, None, lowest, highest, none, unit, 0, _POINTWISE_DEPTH, b_first,
                             b_stop, out)
            for c0 in range(_POINTWISE_DEPTH, channels - _POINTWISE_DEPTH, _POINTWISE_DEPTH):
                _pointwise_block(x, packed, no_bias, of, None, lowest, highest, none, unit, c0, c0 + _POINTWISE_DEPTH,
                                 b_first, b_stop, out)
            last = (channels - 1) // _POINTWISE_DEPTH * _POINTWISE_DEPTH
            _pointwise_block(x, packed, bias, of, z, lo, hi, act, unit, last, channels, b_first, b_stop, out)
        n, _, end = _column_block(unit, length, width)
        if act == SWISH and (end == length or unit == stop - 1 or (unit + 1 - pending) * width * rows >= _SWISH_BUDGET):
            y = out[n].reshape(m_out, length)
            first_column = _column_block(pending, length, width)[1]
            _finish(y, no_bias, y, False, lowest, highest, SWISH, alpha, r0, r1, first_column, end)
            pending = unit + 1
    return out


def _pack_rows(w: np.ndarray) -> np.ndarray:
    """The 1x1 weights w (M, C, 1...) as blocks of _POINTWISE_ROWS output channels, each (C,
    _POINTWISE_ROWS) and flat, the last block overlapping the one before (M >= _POINTWISE_ROWS)."""
    m = w.shape[0]
    starts = np.minimum(np.arange(-(-m // _POINTWISE_ROWS)) * _POINTWISE_ROWS, m - _POINTWISE_ROWS)
    rows = w.reshape(m, -1)[starts[:, None] + np.arange(_POINTWISE_ROWS)]
    return np.ascontiguousarray(rows.transpose(0, 2, 1)).reshape(-1)


def pointwise_applies(x: np.ndarray, w: np.ndarray, begin: list[int], end: list[int], out_shape: list[int]) -> bool:
    """Whether ``pointwise`` serves this convolution (one group assumed): at least a vector of
    output positions, a 1x1 kernel without padding, float32 or float64, at least _POINTWISE_ROWS
    output channels, and a multiple of them where the input channels take more than one pass (an
    overlapping last row block would add a pass's sums twice)."""
    if x.dtype not in (np.float32, np.float64) or math.prod(out_shape) < simd.BYTES // x.dtype.itemsize:
        return False
    m, c = w.shape[:2]
    return (m >= _POINTWISE_ROWS and math.prod(w.shape[2:]) == 1 and (c <= _POINTWISE_DEPTH or m % _POINTWISE_ROWS == 0)
            and not any(begin) and not any(end))


def pointwise(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, strides: list[int], out_shape: list[int],
              clamp: tuple[float, float] | None, activation: tuple[int, float] | None
              ) -> tuple[Callable[[np.ndarray, np.ndarray | None], np.ndarray], bool]:
    """The 1x1 convolution ``pointwise_applies`` to, prepared for inputs of x's shape and dtype: a
    function of (x, z) giving the convolution plus the bias, plus z (of the output's shape) when
    given, then clamped to ``clamp = (lo, hi)``, then given an ``activation`` (HARD_SWISH, or SWISH
    in float32), each when given (``_pointwise``), over the session's threads by column blocks or,
    for few of them, row blocks; and whether it applies the activation."""
    n, c, m, length = x.shape[0], x.shape[1], w.shape[0], math.prod(out_shape)
    dtype, vec = x.dtype, simd.BYTES // x.dtype.itemsize
    window = (...,) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out_shape, strides))
    strided = any(s != 1 for s in strides)
    shape = (n, m) + tuple(out_shape)
    t = dtype.type
    lo, hi = (t(-np.inf), t(np.inf)) if clamp is None else (t(clamp[0]), t(clamp[1]))
    b = np.zeros(m, dtype=dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
    packed = _derived(w, _pack_rows)
    code, alpha = (0, 0.0) if activation is None else activation
    fused = code == HARD_SWISH or (code == SWISH and dtype == np.float32)
    act, alpha = code if fused else 0, t(alpha)
    units, blocks = n * max(1, length // (3 * vec)), -(-m // _POINTWISE_ROWS)
    work = n * m * c * length

    def run(x: np.ndarray, z: np.ndarray | None) -> np.ndarray:
        x = np.ascontiguousarray(x[window] if strided else x).reshape(n, c, length)
        out = np.empty(shape, dtype=dtype)
        zf = None if z is None else np.ascontiguousarray(z, dtype=dtype).reshape(-1)
        regions = parallel.compiled()
        count = parallel.pieces(work, units * blocks, regions=regions)
        args = (x, packed, b, zf, lo, hi, act, alpha)
        # by column blocks where there are enough to balance the pieces (an image's last block is the
        # widest: 3 column blocks of 13x13 cut 48 | 121), else by row blocks unless they would overlap
        # across pieces (a race)
        if count == 1 or count * 4 <= units or m % _POINTWISE_ROWS:
            parallel.in_pieces(units, count, _pointwise, args, (0, blocks, out), regions)
        else:
            parallel.in_pieces(blocks, count, _pointwise, (*args, 0, units), (out,), regions)
        return out

    return run, fused or activation is None


@njit(cache=True, nogil=True)
def _im2col2d(x, k_h, k_w, strides, dilations, pads, r0, r1, cols):  # pragma: no cover - compiled
    """cols[c, ky, kx, r, :] = row ``r0 + r`` of the zero-padded input of channel c seen by tap
    (ky, kx), for output rows [r0, r1) of a 2-D convolution of x (C, H, W)."""
    channels, height, width = x.shape
    out_w = cols.shape[4]
    s_h, s_w = strides[0], strides[1]
    for c in range(channels):
        for ky in range(k_h):
            for kx in range(k_w):
                shift = kx * dilations[1] - pads[1]  # input column of output column 0
                lo = min(out_w, max(0, -(shift // s_w)))  # output columns inside the input
                hi = max(lo, min(out_w, (width - 1 - shift) // s_w + 1))
                for r in range(r1 - r0):
                    dst = cols[c, ky, kx, r]
                    iy = (r0 + r) * s_h + ky * dilations[0] - pads[0]
                    if iy < 0 or iy >= height:
                        dst[:] = 0
                        continue
                    dst[:lo] = 0
                    dst[hi:] = 0
                    src = x[c, iy]
                    start, step = uint64(lo * s_w + shift), uint64(s_w)
                    for j in range(uint64(hi - lo)):
                        dst[uint64(lo) + j] = src[start + j * step]
    return cols


def im2col2d(x: np.ndarray, kernel: tuple[int, int], strides: list[int], dilations: list[int], begin: list[int],
             r0: int, r1: int, cols: np.ndarray) -> np.ndarray:
    """Fill ``cols`` (C, kH, kW, rows, out_w) with the patches of output rows [r0, r1) of the 2-D
    convolution of x (C, H, W) padded by ``begin`` (the end padding needs no data)."""
    return _im2col2d(x, kernel[0], kernel[1], *(_ints(v) for v in (strides, dilations, begin)),
                     r0, r1, cols)


@njit(cache=True, nogil=True, fastmath={"contract"})
def _erf(whole, coefficients, radius, scale, pre, gelu, first, stop, into):  # pragma: no cover - compiled
    x, out = whole[first:stop], into[first:stop]
    one, half = x.dtype.type(1), x.dtype.type(0.5)
    z_block = np.empty(_BLOCK, dtype=x.dtype)
    t_block = np.empty(_BLOCK, dtype=x.dtype)
    for start in range(0, x.size, _BLOCK):  # a block at a time: every Horner pass runs in L1
        size = min(_BLOCK, x.size - start)
        xb, ob = x[start:start + size], out[start:start + size]
        for i in range(size):
            z = xb[i] * pre
            z = -radius if z < -radius else z  # NaN passes both tests and is restored below
            z = radius if z > radius else z
            z_block[i] = z
            t_block[i] = z * z * scale - one
            ob[i] = coefficients[0]
        for k in range(1, coefficients.size, 4):  # four Horner steps a pass, in registers
            c1, c2, c3, c4 = coefficients[k], coefficients[k + 1], coefficients[k + 2], coefficients[k + 3]
            for i in range(size):
                t = t_block[i]
                ob[i] = (((ob[i] * t + c1) * t + c2) * t + c3) * t + c4
        if gelu:
            for i in range(size):
                v = xb[i]
                ob[i] = (v + v * ob[i] * z_block[i]) * half if v == v else v
        else:
            for i in range(size):
                ob[i] = ob[i] * z_block[i] if xb[i] == xb[i] else xb[i]
    return out


def erf(x: np.ndarray, coefficients: np.ndarray, radius: float, gelu: bool) -> np.ndarray:
    """erf(x) = z P(2 z² / radius² - 1), z = x clipped to ±radius, P given by its power
    ``coefficients`` highest first (1 + 4k of them); with ``gelu``, x (1 + erf(x / sqrt 2)) / 2 in
    the same pass. x is float32 or float64, the dtype of ``coefficients``; NaN stays NaN."""
    t = x.dtype.type
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    consts = (coefficients, t(radius), t(2 / (radius * radius)), t(np.sqrt(0.5) if gelu else 1), gelu)
    parallel.in_ranges(flat.size, _TRANSCENDENTAL_COST * flat.size, _erf, (flat, *consts), (out,))
    return out.reshape(x.shape)


# exp in float32 for the sigmoid family: Cody-Waite reduction exp(t) = 2^n exp(r), |r| <= ln2 / 2,
# with Cephes' degree-6 polynomial (about 1 ulp) and 2^n written straight into the exponent bits.
# t is clamped to [-87.3, 89]: at the bottom exp is below float32's rounding of 1 + exp; at the top
# n reaches 128, whose exponent bits are those of +inf, so exp overflows where numpy's does
# (sigmoid -> 0, -inf * sigmoid(-inf) -> NaN). NaN stays NaN through the arithmetic.
_EXP_LO, _EXP_HI = np.float32(-87.3), np.float32(89.0)
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_ROUND = np.float32(12582912.0)  # 1.5 * 2^23: adding and subtracting it rounds to the nearest integer
_EXP_POLY = np.array([1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                      1.6666665459e-1, 5.0000001201e-1], dtype=np.float32)


@njit(inline="always")
def _exp_parts(t):  # pragma: no cover - compiled
    """exp(t), t in [_EXP_LO, _EXP_HI] (or NaN), as (mantissa, bits): the mantissa times the float32
    whose bits are ``bits`` (2^n). Separate, so that loops store the bits in an int32 array and
    multiply by its float32 view in a second pass: both passes vectorise."""
    n = (t * _LOG2E + _ROUND) - _ROUND
    r = t - n * _LN2_HI - n * _LN2_LO
    p = ((((_EXP_POLY[0] * r + _EXP_POLY[1]) * r + _EXP_POLY[2]) * r + _EXP_POLY[3]) * r + _EXP_POLY[4]) * r
    one = np.float32(1)
    return ((p + _EXP_POLY[5]) * r + one) * r + one, (np.int32(n) + np.int32(127)) << np.int32(23)


@njit(inline="always")
def _clamped_exp_parts(t):  # pragma: no cover - compiled
    """``_exp_parts`` of t clamped to [_EXP_LO, _EXP_HI] (the limits' exp is 0 or inf to float32)."""
    t = _EXP_LO if t < _EXP_LO else t
    return _exp_parts(_EXP_HI if t > _EXP_HI else t)


@njit(inline="always")
def _sigmoid_lanes(v, times_x, cubic, k):  # pragma: no cover - compiled
    """``_sigmoid`` of one vector, with k its constants as vectors (``_sigmoid``)."""
    low, high, log2e, shift, ln2_hi, ln2_lo, p0, p1, p2, p3, p4, p5, one, factor, cube = k
    u = v if cubic == 0 else simd.fma(simd.mul(simd.mul(v, v), v), cube, v)  # (not cubic x^3: NaN at inf)
    t = simd.clamp(simd.mul(u, factor), low, high)  # exp(t) = 2^n exp(r), as in _exp_parts
    n = simd.sub(simd.fma(t, log2e, shift), shift)
    r = simd.sub(simd.sub(t, simd.mul(n, ln2_hi)), simd.mul(n, ln2_lo))
    p = simd.fma(simd.fma(simd.fma(simd.fma(simd.fma(p0, r, p1), r, p2), r, p3), r, p4), r, p5)
    e = simd.mul(simd.fma(simd.fma(p, r, one), r, one), simd.pow2(n))
    return simd.div(v if times_x else one, simd.add(one, e))


@njit(inline="always")
def _sigmoid_constants(alpha, cubic):  # pragma: no cover - compiled
    """``_sigmoid_lanes``'s constants as vectors, for sigmoid(alpha (x + cubic x^3))."""
    return (simd.splat(_EXP_LO), simd.splat(_EXP_HI), simd.splat(_LOG2E), simd.splat(_ROUND), simd.splat(_LN2_HI),
            simd.splat(_LN2_LO), simd.splat(_EXP_POLY[0]), simd.splat(_EXP_POLY[1]), simd.splat(_EXP_POLY[2]),
            simd.splat(_EXP_POLY[3]), simd.splat(_EXP_POLY[4]), simd.splat(_EXP_POLY[5]), simd.splat(np.float32(1)),
            simd.splat(np.float32(-alpha)), simd.splat(np.float32(cubic)))


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _sigmoid(whole, alpha, cubic, times_x, first, stop, into):  # pragma: no cover - compiled
    """out = sigmoid(alpha (x + cubic x^3)), times x with ``times_x``, in float32, for x, out the
    elements [first, stop) of whole, into: a vector at a time with explicit SIMD vectors (the exp of
    ``_exp_parts``, its 2^n made from the exponent bits in the register: 1.3x faster than that
    function's two vectorised passes over an L1 block), the last partial vector through a scratch."""
    x, out = whole[first:stop], into[first:stop]
    lanes = simd.lanes(x)
    k = _sigmoid_constants(alpha, cubic)
    whole_vectors = x.size - x.size % lanes
    for i in range(0, whole_vectors, lanes):
        simd.store(out, i, _sigmoid_lanes(simd.load(x, i), times_x, cubic, k))
    if whole_vectors < x.size:
        scratch = np.zeros(lanes, dtype=np.float32)
        for j in range(x.size - whole_vectors):
            scratch[j] = x[whole_vectors + j]
        simd.store(scratch, 0, _sigmoid_lanes(simd.load(scratch, 0), times_x, cubic, k))
        for j in range(x.size - whole_vectors):
            out[whole_vectors + j] = scratch[j]
    return out


def sigmoid(x: np.ndarray, alpha: float, times_x: bool, cubic: float = 0.0) -> np.ndarray:
    """``sigmoid(alpha (x + cubic x^3))``, times x with ``times_x``, of a float32 array, in one pass."""
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    a, c = np.float32(alpha), np.float32(cubic)
    parallel.in_ranges(flat.size, _TRANSCENDENTAL_COST * flat.size, _sigmoid, (flat, a, c, times_x), (out,))
    return out.reshape(x.shape)


@njit(cache=True, nogil=True)
def _row_max(x):  # pragma: no cover - compiled
    """Max of a non-empty row, NaN skipped: eight independent running maxima keep the comparisons
    in flight (one running max waits on each compare; numpy's reduction is as slow)."""
    n = x.size
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = x[0]
    full = n - n % 8
    for i in range(0, full, 8):
        m0 = x[i] if x[i] > m0 else m0
        m1 = x[i + 1] if x[i + 1] > m1 else m1
        m2 = x[i + 2] if x[i + 2] > m2 else m2
        m3 = x[i + 3] if x[i + 3] > m3 else m3
        m4 = x[i + 4] if x[i + 4] > m4 else m4
        m5 = x[i + 5] if x[i + 5] > m5 else m5
        m6 = x[i + 6] if x[i + 6] > m6 else m6
        m7 = x[i + 7] if x[i + 7] > m7 else m7
    for i in range(full, n):
        m0 = x[i] if x[i] > m0 else m0
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _row_sum(x):  # pragma: no cover - compiled
    """Sum of a row in vector lanes (a reassociated order, like numpy's pairwise one)."""
    total = x.dtype.type(0)
    for i in range(x.size):
        total += x[i]
    return total


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _matrix_vector(x, b, by_rows, first, stop, out):  # pragma: no cover - compiled
    """``out[first:stop]`` of the product of the vector x with b, given as rows (``by_rows``: b[n] is
    column n of the matrix, each a dot product in vector lanes) or as the matrix itself (row k of b
    scaled by x[k] into the columns [first, stop) of out, in L1)."""
    zero = b.dtype.type(0)
    if by_rows:  # four rows at a time: each element of x loaded once for four multiply-adds
        n = first
        while n + 4 <= stop:
            r0, r1, r2, r3 = b[n], b[n + 1], b[n + 2], b[n + 3]
            t0 = t1 = t2 = t3 = zero
            for i in range(x.size):
                v = x[i]
                t0 += r0[i] * v
                t1 += r1[i] * v
                t2 += r2[i] * v
                t3 += r3[i] * v
            out[n], out[n + 1], out[n + 2], out[n + 3] = t0, t1, t2, t3
            n += 4
        for m in range(n, stop):
            row, total = b[m], zero
            for i in range(x.size):
                total += row[i] * x[i]
            out[m] = total
        return out
    columns = out[first:stop]  # four rows of b at a time: each element of out loaded once for four
    columns[:] = zero
    k = 0
    while k + 4 <= x.size:
        s0, s1, s2, s3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        r0, r1, r2, r3 = b[k, first:stop], b[k + 1, first:stop], b[k + 2, first:stop], b[k + 3, first:stop]
        for j in range(columns.size):
            columns[j] += s0 * r0[j] + s1 * r1[j] + s2 * r2[j] + s3 * r3[j]
        k += 4
    for m in range(k, x.size):
        scale, row = x[m], b[m, first:stop]
        for j in range(columns.size):
            columns[j] += scale * row[j]
    return out


def matrix_vector(x: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """``x @ b`` of a vector x (K,) and a matrix b (K, N), both float32 or both float64, b C-contiguous
    or the transpose of one (Gemm's transB), as a compiled region over the pool's threads by
    columns; None where it would not split (numpy's BLAS call is as fast on one thread). A product
    of this shape streams b through once for a multiply-add an element: BLAS runs it on one thread,
    and split as Python jobs it does not repay their cost. At 2 threads, against numpy: 576 -> 1024
    32 -> 25 us, 1280 -> 1000 61 -> 38 us (in cache); 197 -> 170 and 318 -> 218 us (from memory)."""
    count = parallel.pieces(_STREAM_COST * b.size, b.shape[1], regions=True)
    if count < 2 or not parallel.compiled():
        return None
    by_rows = not b.flags.c_contiguous
    out = np.empty(b.shape[1], dtype=b.dtype)
    parallel.in_pieces(b.shape[1], count, _matrix_vector,
                       (np.ascontiguousarray(x), np.ascontiguousarray(b.T if by_rows else b), by_rows), (out,), True)
    return out


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _softmax(whole, empty_rows_zero, first, stop, into):  # pragma: no cover - compiled
    """Softmax of each float32 row [first, stop): max, exp(x - max) with the vectorised exp, sum, scale."""
    rows, out = whole[first:stop], into[first:stop]
    one, zero = np.float32(1), np.float32(0)
    n = rows.shape[1]
    power = np.empty(n, dtype=np.int32)
    scale = power.view(np.float32)
    for r in range(rows.shape[0]):
        x, o = rows[r], out[r]
        peak = _row_max(x)  # a NaN in the row makes it NaN through exp below
        if empty_rows_zero and peak == -np.inf:
            peak = zero  # then every exp is 0, and so is the row
        for i in range(n):
            t = x[i] - peak  # <= 0, or NaN
            below = t < _EXP_LO  # exp rounds to 0 (and -inf minus a finite max)
            mantissa, power[i] = _exp_parts(_EXP_LO if below else t)
            o[i] = zero if below else mantissa
        for i in range(n):
            o[i] *= scale[i]
        total = _row_sum(o)
        inverse = zero if empty_rows_zero and total == zero else one / total
        for i in range(n):
            o[i] *= inverse
    return out


@njit(inline="always", error_model="numpy")
def _gate_activation(v, activation, zero, one):  # pragma: no cover - compiled
    """``activation`` (code, p0, p1) of the scalar v: the code one of ``_helpers.GATE_ACTIVATIONS``
    (0: none), with its parameters p0, p1; NaN passed on as numpy's forms do."""
    code, p0, p1 = activation
    if code == RELU:
        return zero if v < zero else v
    if code == SIGMOID:
        return one / (one + np.exp(-v))
    if code == SWISH:
        return v / (one + np.exp(-p0 * v))
    if code == HARD_SIGMOID or code == HARD_SWISH:
        y = _hard_gate(v, p0, p1, zero, one)
        return y * v if code == HARD_SWISH else y
    if code == LEAKY_RELU:
        return v if v >= zero else v * p0
    if code == CLIP:
        return p0 if v < p0 else (p1 if v > p1 else v)
    if code == TANH:
        return np.tanh(v)
    return v


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _excitation(x, w1, b1, act1, w2, b2, act2, scale, out):  # pragma: no cover - compiled
    """For each image of x (N, C, S): the gate act2(w2 @ act1(w1 @ mean(x) + b1) + b2) of its C
    channels, each act a (code, p0, p1) triple; times x into out (with ``scale``), or the gates
    themselves into out (N, C, 1)."""
    channels, inner = x.shape[1], w1.shape[0]
    pooled, gates = np.empty(channels, dtype=x.dtype), np.empty(channels, dtype=x.dtype)
    hidden = np.empty(inner, dtype=x.dtype)
    zero, one = x.dtype.type(0), x.dtype.type(1)
    share = one / x.dtype.type(x.shape[2])
    for n in range(x.shape[0]):
        for c in range(channels):
            pooled[c] = _row_sum(x[n, c]) * share
        _matrix_vector(pooled, w1, True, 0, inner, hidden)
        for r in range(inner):
            hidden[r] = _gate_activation(hidden[r] + b1[r], act1, zero, one)
        _matrix_vector(hidden, w2, True, 0, channels, gates)
        for c in range(channels):
            gate = _gate_activation(gates[c] + b2[c], act2, zero, one)
            if scale:
                row, into = x[n, c], out[n, c]
                for i in range(row.size):
                    into[i] = row[i] * gate
            else:
                out[n, c, 0] = gate
    return out


def excitation(x: np.ndarray, w1: np.ndarray, b1: np.ndarray, act1: tuple, w2: np.ndarray, b2: np.ndarray,
               act2: tuple, scale: bool) -> np.ndarray:
    """A squeeze-and-excitation block's gate, in one compiled call: the mean of each channel of x
    (N, C, S), C-contiguous float32 or float64, through the layers (w1 (R, C), b1) and (w2 (C, R),
    b2), of x's dtype, each followed by its activation ``(code, p0, p1)``; the gates (N, C, 1), or
    with ``scale`` x times them (N, C, S). numpy takes a dozen calls of 3-10 us for it: the whole
    node at 1 thread, against those, 96 channels 14x14 24 -> 11 us, 576 channels 7x7 52 -> 32 us."""
    out = np.empty(x.shape if scale else x.shape[:2] + (1,), dtype=x.dtype)
    return _excitation(x, w1, b1, act1, w2, b2, act2, scale, out)


def softmax_rows(rows: np.ndarray, empty_rows_zero: bool) -> np.ndarray:
    """Softmax along the rows of a C-contiguous 2-D float32 array with at least one column, into a
    new one; a row with a NaN gives NaN, an entirely -inf row NaN too, or zeros with
    ``empty_rows_zero``."""
    out = np.empty_like(rows)
    parallel.in_ranges(rows.shape[0], _TRANSCENDENTAL_COST * rows.size, _softmax, (rows, empty_rows_zero), (out,))
    return out


@njit(cache=True, nogil=True)
def _hard_sigmoid(whole, alpha, beta, times_x, first, stop, into):  # pragma: no cover - compiled
    """out = max(0, min(1, alpha x + beta)), times x with ``times_x``, for x, out the elements
    [first, stop) of whole, into."""
    x, out = whole[first:stop], into[first:stop]
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for i in range(x.size):
        v = x[i]
        y = _hard_gate(v, alpha, beta, zero, one)
        out[i] = y * v if times_x else y
    return out


@njit(inline="always")
def _hard_gate(v, alpha, beta, zero, one):  # pragma: no cover - compiled
    """max(0, min(1, alpha v + beta)) of a scalar; NaN passes both tests, as through np.maximum /
    np.minimum."""
    y = v * alpha + beta
    y = zero if y < zero else y
    return one if y > one else y


def hard_sigmoid(x: np.ndarray, alpha: float, beta: float, times_x: bool) -> np.ndarray:
    """``max(0, min(1, alpha x + beta))``, times x with ``times_x`` (HardSwish), of a float32 or
    float64 array, in one pass."""
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    a, b = x.dtype.type(alpha), x.dtype.type(beta)
    parallel.in_ranges(flat.size, parallel.PASS_COST * flat.size, _hard_sigmoid, (flat, a, b, times_x), (out,))
    return out.reshape(x.shape)


# ufuncs served by ``per_row``, and their codes in ``_per_row``
_ROW_OPS = {np.add: 0, np.subtract: 1, np.multiply: 2, np.divide: 3}


@njit(cache=True, nogil=True, error_model="numpy")
def _per_row(x, s, op, s_first, first, stop, out):  # pragma: no cover - compiled
    """For the rows [first, stop) of x (R, L): out[r] = x[r] (op) s[r], or s[r] (op) x[r] with
    ``s_first``; op 0 adds, 1 subtracts, 2 multiplies, 3 divides. One loop per case, so that each
    vectorises."""
    xf, of = x.reshape(-1), out.reshape(-1)
    length = uint64(x.shape[1])
    for r in range(first, stop):
        v, base = s[r], uint64(r) * length
        if op == 0:
            for j in range(base, base + length):
                of[j] = xf[j] + v
        elif op == 2:
            for j in range(base, base + length):
                of[j] = xf[j] * v
        elif op == 1 and not s_first:
            for j in range(base, base + length):
                of[j] = xf[j] - v
        elif op == 1:
            for j in range(base, base + length):
                of[j] = v - xf[j]
        elif not s_first:
            for j in range(base, base + length):
                of[j] = xf[j] / v
        else:
            for j in range(base, base + length):
                of[j] = v / xf[j]
    return out


def per_row(ufunc: np.ufunc, x: np.ndarray, s: np.ndarray, s_first: bool) -> np.ndarray:
    """``ufunc(x, s)`` (``ufunc(s, x)`` with ``s_first``) for a C-contiguous x whose leading axes
    hold as many values as s, each value of s applying to one trailing block (a row) of x: numpy
    makes an inner-loop call per row, 3-5x slower than a copy on rows of 7x7 to 28x28."""
    rows = x.reshape(s.size, -1)
    out = np.empty_like(rows)
    flat, op = np.ascontiguousarray(s).reshape(-1), _ROW_OPS[ufunc]
    parallel.in_ranges(rows.shape[0], parallel.PASS_COST * x.size, _per_row, (rows, flat, op, s_first), (out,))
    return out.reshape(x.shape)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _row_stats(row, simplified):  # pragma: no cover - compiled
    """(mean, mean of squared deviations) of a row, in its dtype, summed in vector lanes; the
    mean is 0 if simplified."""
    total = row.dtype.type(0)
    if not simplified:
        for j in range(uint64(row.size)):
            total += row[j]
    count = row.dtype.type(row.size)
    mean = total / count
    square = row.dtype.type(0)
    for j in range(uint64(row.size)):
        d = row[j] - mean
        square += d * d
    return mean, square / count


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _layer_norm(x, scale, bias, epsilon, simplified, first, stop, out, means, inv_stds):  # pragma: no cover
    one = x.dtype.type(1)
    for r in range(first, stop):
        row, dst = x[r], out[r]
        mean, var = _row_stats(row, simplified)
        inv = one / np.sqrt(var + epsilon)
        means[r], inv_stds[r] = mean, inv
        for j in range(uint64(row.size)):
            dst[j] = (row[j] - mean) * inv * scale[j] + bias[j]


def layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, epsilon: float,
               simplified: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer normalization (RMS normalization with ``simplified``) of the rows of a 2-D float32 or
    float64 array, times ``scale`` plus ``bias`` (one value per column): ``(y, mean, inv_std)``,
    the statistics per row in the array's dtype."""
    rows = np.ascontiguousarray(x)
    out = np.empty_like(rows)
    means, inv_stds = np.empty(rows.shape[0], rows.dtype), np.empty(rows.shape[0], rows.dtype)
    s = np.ascontiguousarray(scale, dtype=rows.dtype).reshape(-1)
    b = np.zeros_like(s) if bias is None else np.ascontiguousarray(bias, dtype=rows.dtype).reshape(-1)
    parallel.in_ranges(rows.shape[0], parallel.PASS_COST * rows.size, _layer_norm,
                       (rows, s, b, rows.dtype.type(epsilon), simplified), (out, means, inv_stds))
    return out, means, inv_stds


# Winograd F(2x2, 3x3): a 3x3 stride-1 convolution as 16 GEMMs over 4x4 input tiles (2x2 output
# tiles), 2.25 times fewer multiply-adds than im2col + GEMM. The transforms below are the add/sub
# forms of B^T d B (input) and A^T m A (output) for the standard points 0, 1, -1.
_WINOGRAD_BUDGET = 1 << 19  # elements of transformed input per band of tile rows
# bands per thread where the convolution splits: handed out one at a time, two each absorb a helper's
# late start (one conv + Relu session at 2 threads, median of 60: 64 ch 56x56 1.03-1.08 -> 0.87-0.89
# ms, 256 ch 14x14 1.17-1.24 -> 0.94-1.01, 128 ch 28x28 0.92-0.99 -> 0.90-0.97; three or more each
# lose it again)
_WINOGRAD_SHARES = 2
_WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


@njit(cache=True, nogil=True)
def _winograd_input(x, pad_top, pad_left, first, stop, tiles_w, v):  # pragma: no cover - compiled
    channels, height, width = x.shape
    plane_w = 2 * tiles_w + 2
    plane = np.zeros((2 * (stop - first) + 2) * plane_w, dtype=x.dtype)
    rows = np.empty((4, plane_w), dtype=x.dtype)
    count_w = uint64(tiles_w)
    i0 = max(0, 2 * first - pad_top)  # input rows the tile rows [first, stop) read
    i1 = min(height, 2 * stop + 2 - pad_top)
    for c in range(channels):
        for i in range(i0, i1):  # the channel's rows into the zero-padded plane
            dst = uint64((i + pad_top - 2 * first) * plane_w + pad_left)
            src = x[c, i]
            for j in range(uint64(width)):
                plane[dst + j] = src[j]
        for ti in range(stop - first):
            base = uint64(2 * ti * plane_w)
            for j in range(uint64(plane_w)):  # B^T along the tile's rows
                r0, r1 = plane[base + j], plane[base + uint64(plane_w) + j]
                r2, r3 = plane[base + uint64(2 * plane_w) + j], plane[base + uint64(3 * plane_w) + j]
                rows[0, j] = r0 - r2
                rows[1, j] = r1 + r2
                rows[2, j] = r2 - r1
                rows[3, j] = r1 - r3
            for a in range(4):  # then B along its columns
                t = rows[a]
                out0, out1 = v[4 * a, c, ti * tiles_w:], v[4 * a + 1, c, ti * tiles_w:]
                out2, out3 = v[4 * a + 2, c, ti * tiles_w:], v[4 * a + 3, c, ti * tiles_w:]
                for tj in range(count_w):
                    c0, c1, c2, c3 = t[2 * tj], t[2 * tj + 1], t[2 * tj + 2], t[2 * tj + 3]
                    out0[tj] = c0 - c2
                    out1[tj] = c1 + c2
                    out2[tj] = c2 - c1
                    out3[tj] = c1 - c3
        for i in range(i0, i1):  # leave the padding zero for the next channel
            dst = uint64((i + pad_top - 2 * first) * plane_w + pad_left)
            for j in range(uint64(width)):
                plane[dst + j] = 0
    return v


@njit(cache=True, nogil=True)
def _winograd_output(m, bias, lo, hi, tile_row0, tiles_w, y):  # pragma: no cover - compiled
    m_out, out_h, out_w = y.shape
    tiles = m.shape[2]
    x0 = np.empty((4, tiles_w), dtype=m.dtype)
    x1 = np.empty((4, tiles_w), dtype=m.dtype)
    count_w = uint64(tiles_w)
    for k in range(m_out):
        b = bias[k]
        for ti in range(tiles // tiles_w):
            first = ti * tiles_w
            for col in range(4):  # A^T along the tile's rows
                s0, s1 = m[col, k, first:first + tiles_w], m[4 + col, k, first:first + tiles_w]
                s2, s3 = m[8 + col, k, first:first + tiles_w], m[12 + col, k, first:first + tiles_w]
                for tj in range(count_w):
                    x0[col, tj] = s0[tj] + s1[tj] + s2[tj]
                    x1[col, tj] = s1[tj] - s2[tj] - s3[tj]
            for r in range(2):  # then A along its columns, bias and clamp, into output rows
                oy = 2 * (tile_row0 + ti) + r
                if oy >= out_h:
                    break
                xr = x0 if r == 0 else x1
                row = y[k, oy]
                for tj in range(count_w):
                    left = xr[0, tj] + xr[1, tj] + xr[2, tj] + b
                    right = xr[1, tj] - xr[2, tj] - xr[3, tj] + b
                    left = lo if left < lo else left
                    left = hi if left > hi else left
                    right = lo if right < lo else right
                    right = hi if right > hi else right
                    ox = 2 * tj
                    row[ox] = left
                    if ox + 1 < out_w:
                        row[ox + 1] = right
    return y


_TRANSFORMED: dict[tuple[int, Callable], tuple[weakref.ref, np.ndarray]] = {}  # (id(w), build) -> (w, build(w))


def _derived(w: np.ndarray, build: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``build(w)``, computed once per read-only array (a session's initializers) and on every call
    for a writeable one."""
    key = (id(w), build)
    hit = _TRANSFORMED.get(key)
    if hit is not None and hit[0]() is w:
        return hit[1]
    u = build(w)
    if not w.flags.writeable:
        _TRANSFORMED[key] = (weakref.ref(w, lambda _, key=key: _TRANSFORMED.pop(key, None)), u)
    return u


def _winograd_weights(w: np.ndarray) -> np.ndarray:
    """The (16, M, C) transformed weights G g G^T of w (M, C, 3, 3) (once per read-only w)."""
    return _derived(w, _winograd_transform)


def _winograd_transform(w: np.ndarray) -> np.ndarray:
    kron = np.kron(_WINOGRAD_G, _WINOGRAD_G).astype(w.dtype)  # (16, 9): vec(G g G^T) = kron vec(g)
    return np.ascontiguousarray((w.reshape(-1, 9) @ kron.T).T.reshape(16, *w.shape[:2]))


def winograd3x3(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, begin: list[int], out_hw: list[int],
                clamp: tuple[float, float] | None) -> np.ndarray:
    """3x3 stride-1 convolution of x (N, C, H, W) by w (M, C, 3, 3) with ``begin`` padding and
    output size ``out_hw``, plus bias and an optional clamp, by Winograd F(2x2, 3x3)."""
    n, c = x.shape[:2]
    m_out = w.shape[0]
    tiles_h, tiles_w = -(-out_hw[0] // 2), -(-out_hw[1] // 2)
    u = _winograd_weights(w)
    t = x.dtype.type
    lo, hi = (-np.inf, np.inf) if clamp is None else clamp
    b = np.zeros(m_out, dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    y = np.empty((n, m_out) + tuple(out_hw), dtype=x.dtype)
    x = np.ascontiguousarray(x)
    band = max(1, min(tiles_h, _WINOGRAD_BUDGET // (16 * c * tiles_w)))  # tile rows transformed at a time
    count = parallel.pieces(16 * m_out * c * tiles_h * tiles_w, n * tiles_h)
    wanted = -(-count * (_WINOGRAD_SHARES if count > 1 else 1) // n)  # per image
    bands = [(i, lo_hi) for i in range(n) for lo_hi in parallel.split(tiles_h, max(wanted, -(-tiles_h // band)))]
    band = max(stop - first for _, (first, stop) in bands)
    scratch = parallel.Scratch(lambda: np.empty((16, c, band * tiles_w), dtype=x.dtype))

    def transform(task: int) -> None:
        i, (first, stop) = bands[task]
        vb = scratch.get()[:, :, :(stop - first) * tiles_w]
        _winograd_input(x[i], begin[0], begin[1], first, stop, tiles_w, vb)
        _winograd_output(np.matmul(u, vb), b, t(lo), t(hi), first, tiles_w, y[i])

    parallel.for_each(transform, len(bands))
    return y


@njit(inline="always")
def _tile_row(c, at, lanes, x, y, bias, bias_at, first):  # pragma: no cover - compiled
    """A tile row's two accumulator vectors stored at c[at:]: plus the bias (first block of the
    inner dimension) or plus what c holds (the blocks after)."""
    if first:
        simd.store(c, at, simd.add(x, simd.load(bias, bias_at)))
        simd.store(c, at + lanes, simd.add(y, simd.load(bias, bias_at + lanes)))
    else:
        simd.store(c, at, simd.add(x, simd.load(c, at)))
        simd.store(c, at + lanes, simd.add(y, simd.load(c, at + lanes)))


@njit(inline="always")
def _step(bp, b_at, lanes, k, ahead):  # pragma: no cover - compiled
    """Step k's two vectors of a packed column block at bp[b_at:], prefetching those ``ahead``
    elements on (the next column block's)."""
    q = b_at + 2 * lanes * k
    simd.prefetch(bp, q + ahead)
    simd.prefetch(bp, q + ahead + lanes)
    return simd.load(bp, q), simd.load(bp, q + lanes)


@njit(inline="always")
def _four_steps(ap, p, u, v, x0, y0, x1, y1, x2, y2, x3, y3):  # pragma: no cover - compiled
    """One step of four of a tile's rows: packed rows ap[p:p + 4] against the step's vectors."""
    x0, y0 = _fma_pair(ap, p, u, v, x0, y0)
    x1, y1 = _fma_pair(ap, p + 1, u, v, x1, y1)
    x2, y2 = _fma_pair(ap, p + 2, u, v, x2, y2)
    x3, y3 = _fma_pair(ap, p + 3, u, v, x3, y3)
    return x0, y0, x1, y1, x2, y2, x3, y3


@njit(inline="always")
def _four_rows(c, c_at, ldc, rows, lanes, x0, y0, x1, y1, x2, y2, x3, y3, bias, bias_at, first):  # pragma: no cover
    """The first ``rows`` (at most four; one at least) of four of a tile's rows stored to c from
    c[c_at] on by _tile_row."""
    _tile_row(c, c_at, lanes, x0, y0, bias, bias_at, first)
    if rows > 1:
        _tile_row(c, c_at + ldc, lanes, x1, y1, bias, bias_at, first)
    if rows > 2:
        _tile_row(c, c_at + 2 * ldc, lanes, x2, y2, bias, bias_at, first)
    if rows > 3:
        _tile_row(c, c_at + 3 * ldc, lanes, x3, y3, bias, bias_at, first)


@njit(inline="always")
def _packed_tile(ap, a_at, bp, b_at, depth, c, c_at, ldc, rows, bias, bias_at, first, ahead):  # pragma: no cover
    """A tile of 12 rows by two vectors of columns: ``depth`` steps of the packed rows (12 a step,
    from ap[a_at]) times the packed columns (two vectors a step, from bp[b_at]), accumulated in 24
    vector registers, then its first ``rows`` rows stored to c (row stride ``ldc``) by _tile_row.
    Each step also prefetches the packed columns ``ahead`` elements on (the next column block's)."""
    lanes = simd.lanes(bp)
    z = simd.splat(bp[b_at] - bp[b_at])
    x0 = y0 = x1 = y1 = x2 = y2 = x3 = y3 = x4 = y4 = x5 = y5 = z
    x6 = y6 = x7 = y7 = x8 = y8 = x9 = y9 = x10 = y10 = x11 = y11 = z
    for k in range(depth):
        u, v = _step(bp, b_at, lanes, k, ahead)
        p = a_at + _PACKED_ROWS * k
        x0, y0, x1, y1, x2, y2, x3, y3 = _four_steps(ap, p, u, v, x0, y0, x1, y1, x2, y2, x3, y3)
        x4, y4, x5, y5, x6, y6, x7, y7 = _four_steps(ap, p + 4, u, v, x4, y4, x5, y5, x6, y6, x7, y7)
        x8, y8, x9, y9, x10, y10, x11, y11 = _four_steps(ap, p + 8, u, v, x8, y8, x9, y9, x10, y10, x11, y11)
    _four_rows(c, c_at, ldc, rows, lanes, x0, y0, x1, y1, x2, y2, x3, y3, bias, bias_at, first)
    if rows > 4:
        _four_rows(c, c_at + 4 * ldc, ldc, rows - 4, lanes, x4, y4, x5, y5, x6, y6, x7, y7, bias, bias_at, first)
    if rows > 8:
        _four_rows(c, c_at + 8 * ldc, ldc, rows - 8, lanes, x8, y8, x9, y9, x10, y10, x11, y11, bias, bias_at, first)


@njit(inline="always")
def _tail_tile(ap, a_at, bp, b_at, depth, c, c_at, ldc, rows, bias, bias_at, first, ahead):  # pragma: no cover
    """``_packed_tile`` for at most _TAIL_ROWS rows (8 accumulators), reading the first of them at
    ap[a_at] in a panel of _PACKED_ROWS rows: at 64 rows, five tiles of 12 and one of 4 make 64 rows
    of multiply-adds where six tiles of 12 made 72 (the kernel at 64 x 768 x 3072, 1 thread: 3.8 ->
    3.5 ms)."""
    lanes = simd.lanes(bp)
    z = simd.splat(bp[b_at] - bp[b_at])
    x0 = y0 = x1 = y1 = x2 = y2 = x3 = y3 = z
    for k in range(depth):
        u, v = _step(bp, b_at, lanes, k, ahead)
        p = a_at + _PACKED_ROWS * k
        x0, y0, x1, y1, x2, y2, x3, y3 = _four_steps(ap, p, u, v, x0, y0, x1, y1, x2, y2, x3, y3)
    _four_rows(c, c_at, ldc, rows, lanes, x0, y0, x1, y1, x2, y2, x3, y3, bias, bias_at, first)


@njit(inline="always")
def _panel_tiles(ap, a_at, bp, b_at, depth, c, c_at, ldc, rows, bias, bias_at, first, ahead):  # pragma: no cover
    """The ``rows`` rows of one packed panel (at most _PACKED_ROWS) times a column block: one
    _packed_tile, or where that tile would compute more than _TAIL_ROWS - 1 padding rows, _tail_tiles."""
    if rows > _PACKED_ROWS - _TAIL_ROWS:
        _packed_tile(ap, a_at, bp, b_at, depth, c, c_at, ldc, rows, bias, bias_at, first, ahead)
        return
    for r in range(0, rows, _TAIL_ROWS):
        _tail_tile(ap, a_at + r, bp, b_at, depth, c, c_at + r * ldc, ldc, min(_TAIL_ROWS, rows - r), bias, bias_at,
                   first, ahead)


@njit(inline="always")
def _pack_band(af, k, r_first, r_stop, k0, depth, ap):  # pragma: no cover - compiled
    """Rows [r_first, r_stop) of the flat (M, K) matrix af, columns [k0, k0 + depth), into ap as
    _packed_tile reads them: a panel of _PACKED_ROWS rows after another, each ``depth`` steps of one
    value per row (rows past r_stop as zeros)."""
    step, width = uint64(_PACKED_ROWS), uint64(k)
    for r0 in range(uint64(r_first), uint64(r_stop), step):
        rows = min(step, uint64(r_stop) - r0)
        at = (r0 - uint64(r_first)) * uint64(depth)
        src = r0 * width + uint64(k0)
        for j in range(uint64(depth)):
            to = at + j * step
            for r in range(rows):
                ap[to + r] = af[src + r * width + j]
            for r in range(rows, step):
                ap[to + r] = 0


@njit(inline="always")
def _activate_rows(c, at, ldc, rows, act, k, coefficients, erf_k):  # pragma: no cover - compiled
    """A packed product's activation ``act`` (RELU, GELU or FAST_GELU) on the two vectors of each of
    ``rows`` rows at c[at:] (row stride ``ldc``), while they are in L1: FAST_GELU through
    ``_sigmoid_lanes`` (constants k), GELU as x (1 + erf(x / sqrt 2)) / 2 with ``_erf``'s polynomial
    (erf_k: radius, scale, 1 / sqrt 2, one, half, zero as vectors), in vectors; NaN stays NaN."""
    lanes = simd.lanes(c)
    radius, scale, pre, one, half, zero = erf_k
    for r in range(rows):
        for h in range(2):
            i = at + r * ldc + h * lanes
            v = simd.load(c, i)
            if act == RELU:
                v = simd.maximum(v, zero)
            elif act == FAST_GELU:
                v = _sigmoid_lanes(v, True, GELU_TANH_CUBIC, k)
            else:
                z = simd.clamp(simd.mul(v, pre), simd.sub(zero, radius), radius)
                t = simd.sub(simd.mul(simd.mul(z, z), scale), one)
                p = simd.splat_from(coefficients, 0)
                for j in range(1, coefficients.size):
                    p = simd.fma(p, t, simd.splat_from(coefficients, j))
                v = simd.mul(simd.fma(simd.mul(v, p), z, v), half)
            simd.store(c, i, v)


@njit(cache=True, nogil=True, fastmath={"contract"})
def _packed_product(a, bp, bias, c, groups, depth_block, band, act, poly, radius, lo, hi):  # pragma: no cover
    """c (M, N) = a (M, K) times the matrix packed by ``linalg.pack_columns`` plus bias (padded to
    whole column blocks), then activated by ``act`` (0: none; ``_activate_rows``, GELU with the erf
    polynomial ``poly`` clipped at ``radius``), for the units [lo, hi): unit u is the band u //
    groups of ``band`` rows by the group u % groups of the column blocks (``groups`` near-equal
    groups). For each block of ``depth_block`` of the inner dimension the band's rows are packed
    (they then stay in L2) and every column block of the group runs over them (its packed block, in
    L1, serving every tile of the band); a partial last column block goes through a scratch tile.
    After the last block of the inner dimension, each tile is activated as soon as it is stored."""
    m, k = a.shape
    n = c.shape[1]
    width = 2 * simd.lanes(bp)
    blocks = -(-n // width)
    columns_padded = blocks * width
    af, cf = a.reshape(-1), c.reshape(-1)
    ap = np.empty(band * depth_block, dtype=a.dtype)
    tile = np.empty(_PACKED_ROWS * width, dtype=c.dtype)
    sigmoid_k = _sigmoid_constants(GELU_TANH_ALPHA, GELU_TANH_CUBIC)
    erf_k = (simd.splat(radius), simd.splat(np.float32(2 / (radius * radius))), simd.splat(np.float32(np.sqrt(0.5))),
             simd.splat(np.float32(1)), simd.splat(np.float32(0.5)), simd.splat(np.float32(0)))
    for unit in range(lo, hi):
        i0, group = unit // groups * band, unit % groups
        i1 = min(m, i0 + band)
        for k0 in range(0, k, depth_block):
            depth = min(depth_block, k - k0)
            first, last = k0 == 0, k0 + depth == k
            _pack_band(af, k, i0, i1, k0, depth, ap)
            for block in range(blocks * group // groups, blocks * (group + 1) // groups):
                col = block * width
                cols = min(width, n - col)
                b_at = k0 * columns_padded + block * depth * width
                ahead = depth * width if block + 1 < blocks else 0  # the next column block's packed rows
                for r0 in range(i0, i1, _PACKED_ROWS):
                    rows = min(_PACKED_ROWS, i1 - r0)
                    a_at = (r0 - i0) * depth
                    if cols == width:
                        _panel_tiles(ap, a_at, bp, b_at, depth, cf, r0 * n + col, n, rows, bias, col, first, ahead)
                        if last and act:
                            _activate_rows(cf, r0 * n + col, n, rows, act, sigmoid_k, poly, erf_k)
                        continue
                    if not first:
                        for r in range(rows):
                            tile[r * width:r * width + cols] = cf[(r0 + r) * n + col:(r0 + r) * n + col + cols]
                    _panel_tiles(ap, a_at, bp, b_at, depth, tile, 0, width, rows, bias, col, first, ahead)
                    if last and act:
                        _activate_rows(tile, 0, width, rows, act, sigmoid_k, poly, erf_k)
                    for r in range(rows):
                        cf[(r0 + r) * n + col:(r0 + r) * n + col + cols] = tile[r * width:r * width + cols]
    return c


def packed_matmul(a: np.ndarray, packed: np.ndarray, bias: np.ndarray, n: int, activation: int = 0) -> np.ndarray:
    """``a @ w + bias`` for float32 a (M, K) and w (K, N) packed by ``linalg.pack_columns``, bias
    padded likewise, then ``activation`` (0, or one of ``_helpers.PRODUCT_ACTIVATIONS``), as a
    compiled region over the pool's threads: by bands of rows, and where there are fewer bands than
    threads, by groups of column blocks as well (each group packing the band's rows again, a small
    cost beside the product's)."""
    m, k = a.shape
    c = np.empty((m, n), dtype=np.float32)
    bands = -(-m // PACKED_BAND)
    threads = parallel.threads()
    groups = 1 if bands >= threads else min(-(-threads // bands), -(-n // PACKED_COLUMNS))
    radius, poly = erf_polynomial(np.dtype(np.float32))
    parallel.in_ranges(bands * groups, m * k * n, _packed_product,
                       (np.ascontiguousarray(a), packed, bias, c, groups, PACKED_DEPTH, PACKED_BAND, activation, poly,
                        np.float32(radius)), ())
    return c
