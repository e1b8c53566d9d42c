"""Kernels compiled with numba, for the loops numpy cannot express without extra passes over memory.

Depthwise convolution is one case: numpy needs one pass per kernel tap (or an im2col copy nine
times the input), while the loop below reads each input channel once into a small, cache-resident,
zero-padded buffer, accumulates every tap as one long contiguous multiply-add, and writes the
output once with bias and clamp applied. erf (and Gelu) is the other: its polynomial takes ~35
numpy passes, here one pass with the Horner steps on an L1-resident block. The module is imported on first use (numba's import
costs about 0.3 s) and compiled code is cached on disk by numba (``cache=True``).

Indices are unsigned on purpose: numba wraps negative signed indices around, and that check
stops LLVM from vectorising the inner loops.
"""
from __future__ import annotations

import numpy as np
from numba import njit, uint64


_CHUNK = uint64(1024)
_BLOCK = 512


@njit(cache=True, nogil=True)
def _depthwise2d(x, w, bias, strides, dilations, pads, lo, hi, out):  # pragma: no cover - compiled
    channels, height, width = x.shape[1:]
    m_out, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    k_h, k_w = w.shape[1], w.shape[2]
    s_h, s_w = strides[0], strides[1]
    mult = m_out // channels
    # the padded channel, split into s_h * s_w phase planes so that every tap is a contiguous run:
    # plane (r, c) row i, column j holds padded input (i * s_h + r, j * s_w + c)
    plane_h = out_h + ((k_h - 1) * dilations[0]) // s_h + 1
    plane_w = out_w + ((k_w - 1) * dilations[1]) // s_w + 1
    planes = np.zeros(s_h * s_w * plane_h * plane_w + plane_w, dtype=x.dtype)
    acc = np.empty(out_h * plane_w, dtype=x.dtype)
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    run = uint64(out_h * plane_w)
    taps = k_h * k_w
    tap_start = np.empty(taps, dtype=np.uint64)  # where each tap's run starts in ``planes``
    for ky in range(k_h):
        dy = ky * dilations[0]
        for kx in range(k_w):
            dx = kx * dilations[1]
            tap_start[ky * k_w + kx] = (((dy % s_h) * s_w + dx % s_w) * plane_h + dy // s_h) * plane_w + dx // s_w
    for item in range(x.shape[0] * channels):  # (batch, channel) pairs
        n, c = item // channels, item % channels
        src0 = uint64(item * height * width)
        for r in range(s_h):
            for q in range(s_w):
                i0 = max(0, -((r - pads[0]) // s_h))
                i1 = min(plane_h, (height - 1 - r + pads[0]) // s_h + 1)
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
            b = bias[m]
            for start in range(0, run, _CHUNK):  # a chunk of the accumulator stays in L1 over all taps
                size = min(_CHUNK, run - start)
                for p in range(size):
                    acc[start + p] = b
                for tap in range(taps):
                    wv = wf[m * taps + tap]
                    base = start + tap_start[tap]
                    for p in range(size):
                        acc[start + p] += wv * planes[base + p]
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


def depthwise2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, strides: list[int],
                dilations: list[int], begin: list[int], out_hw: list[int],
                clamp: tuple[float, float] | None) -> np.ndarray:
    """Depthwise 2-D convolution of x (N, C, H, W) by w (M, 1, kH, kW), M a multiple of C, with
    ``begin`` padding and output size ``out_hw`` (the end padding needs no data), plus the bias and
    an optional clamp ``(lo, hi)``; x and w share a float32 or float64 dtype."""
    out = np.empty(x.shape[:1] + w.shape[:1] + tuple(out_hw), dtype=x.dtype)
    t = x.dtype.type
    lo, hi = (-np.inf, np.inf) if clamp is None else clamp
    b = np.zeros(w.shape[0], dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    args = (np.ascontiguousarray(x), np.ascontiguousarray(w).reshape(w.shape[0], *w.shape[2:]), b,
            *(np.asarray(v, dtype=np.int64) for v in (strides, dilations, begin)), t(lo), t(hi))
    return _depthwise2d(*args, out)


@njit(cache=True, nogil=True)
def _erf(x, coefficients, radius, scale, pre, gelu, out):  # pragma: no cover - compiled
    one, half = x.dtype.type(1), x.dtype.type(0.5)
    z_block = np.empty(_BLOCK, dtype=x.dtype)
    t_block = np.empty(_BLOCK, dtype=x.dtype)
    for start in range(0, x.size, _BLOCK):  # a block at a time: every Horner step runs in L1
        size = min(_BLOCK, x.size - start)
        xb, ob = x[start:start + size], out[start:start + size]
        for i in range(size):
            z = min(max(xb[i] * pre, -radius), radius)
            z_block[i] = z
            t_block[i] = z * z * scale - one
            ob[i] = coefficients[0]
        for k in range(1, coefficients.size):
            c = coefficients[k]
            for i in range(size):
                ob[i] = ob[i] * t_block[i] + c
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
    ``coefficients`` highest first; with ``gelu``, x (1 + erf(x / sqrt 2)) / 2 in the same pass.
    x is float32 or float64, the dtype of ``coefficients``; NaN stays NaN."""
    t = x.dtype.type
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    _erf(flat, coefficients, t(radius), t(2 / (radius * radius)), t(np.sqrt(0.5) if gelu else 1), gelu, out)
    return out.reshape(x.shape)
