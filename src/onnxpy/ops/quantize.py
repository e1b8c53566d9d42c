"""Linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear and the integer and
quantized-linear MatMul and Conv kernels."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from onnxpy import ir
from onnxpy.ops._helpers import normalize_axis
from onnxpy.ops.conv import conv
from onnxpy.registry import kernel

_FLOAT8 = frozenset(np.dtype(t) for t in (
    ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz))
_FNUZ = frozenset(np.dtype(t) for t in (ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2fnuz))
_SMALL_FLOATS = frozenset(np.dtype(t) for t in (
    ml_dtypes.float4_e2m1fn, ml_dtypes.float6_e2m3fn, ml_dtypes.float6_e3m2fn))
_SMALL_INTS = frozenset(np.dtype(t) for t in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2))


def _is_integer(dtype: np.dtype) -> bool:
    return dtype.kind in "iu" or dtype in _SMALL_INTS


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype arithmetic in ``dtype`` runs in: float8e8m0 and narrower types widen to float32."""
    return dtype if dtype in (np.float32, np.float16, ml_dtypes.bfloat16) else np.dtype(np.float32)


def _blocks(x: np.ndarray, params: list[np.ndarray | None], axis: int,
            block_size: int) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """``x`` and its scale / zero point (None passes through) shaped to broadcast together: scalar
    (per tensor), 1-D along ``axis`` (per axis), or same rank with ``axis`` blocked by ``block_size``
    (blocked: ``x`` viewed as (…, blocks, block_size, …) when the blocks tile the axis)."""
    scale = params[0]
    if scale.size == 1 and block_size <= 0:
        return x, [None if p is None else p.reshape(()) for p in params]
    axis = normalize_axis(axis, x.ndim)
    n = x.shape[axis]
    if block_size <= 0:
        if scale.ndim != 1 or scale.shape[0] != n:
            raise ValueError(f"per-axis scale/zero point of shape {scale.shape} does not match "
                             f"dimension {n} of axis {axis} of the input {x.shape}")
        along = [-1 if i == axis else 1 for i in range(x.ndim)]
        return x, [None if p is None else p.reshape(along) for p in params]
    expected = x.shape[:axis] + (math.ceil(n / block_size),) + x.shape[axis + 1:]
    if any(p is not None and p.shape != expected for p in params):
        raise ValueError(f"blocked scale/zero point of shape {scale.shape} does not match input {x.shape} "
                         f"with block_size {block_size} on axis {axis} (expected {expected})")
    if n % block_size == 0:
        view = x.reshape(x.shape[:axis] + (n // block_size, block_size) + x.shape[axis + 1:])
        return view, [None if p is None else np.expand_dims(p, axis + 1) for p in params]
    rows = np.arange(n) // block_size
    return x, [None if p is None else p.take(rows, axis=axis) for p in params]


def _clip_integer(q: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float array ``q``, clipped in place to ``dtype``'s range, cast to ``dtype``; NaN (e.g. -inf / inf
    with an infinite calibrated scale) becomes the minimum, as onnxruntime's MLAS max/min clamping does."""
    info = ml_dtypes.iinfo(dtype)
    np.fmax(q, info.min, out=q)
    return np.fmin(q, info.max, out=q).astype(dtype)


def _saturate_integer(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float ``values`` rounded half to even, clipped to ``dtype``'s range and cast."""
    return _clip_integer(np.asarray(np.rint(values)), dtype)


def quantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, dtype: np.dtype, *,
             axis: int = 1, saturate: int = 1, block_size: int = 0, precision: int = 0) -> np.ndarray:
    """``saturate(round(x / scale) + zero_point)`` as ``dtype``; see QuantizeLinear."""
    compute = ir.dtype_of(precision) if precision else _compute_dtype(scale.dtype)
    xv, (scale, zero_point) = _blocks(x, [scale, zero_point], axis, block_size)
    q = np.divide(xv.astype(compute, copy=False), scale.astype(compute, copy=False)).astype(np.float32, copy=False)
    if _is_integer(dtype):
        np.rint(q, out=q)  # before adding the zero point: rounding ties to even is on x / scale
        if zero_point is not None:
            q += zero_point.astype(np.float32)
        return _clip_integer(q, dtype).reshape(x.shape)
    if zero_point is not None:
        q += zero_point.astype(np.float32)
    if dtype in _FLOAT8 and saturate:
        limit = np.float32(ml_dtypes.finfo(dtype).max)
        clipped = np.clip(q, -limit, limit)
        # Saturation maps +-inf to +-max for the fn types but keeps them (hence NaN) for fnuz:
        # https://onnx.ai/onnx/operators/onnx__Cast.html
        q = np.where(np.isinf(q), q, clipped) if dtype in _FNUZ else clipped
    return q.astype(dtype).reshape(x.shape)


def dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, dtype: np.dtype, *,
               axis: int = 1, block_size: int = 0) -> np.ndarray:
    """``(x - zero_point) * scale`` as ``dtype``; see DequantizeLinear."""
    if zero_point is not None and zero_point.dtype != x.dtype:
        raise TypeError(f"zero point type {zero_point.dtype} differs from the input type {x.dtype}")
    xv, (scale, zero_point) = _blocks(x, [scale, zero_point], axis, block_size)
    dx = xv.astype(np.float32)
    if zero_point is not None:
        dx -= zero_point.astype(np.float32)
    dx *= scale.astype(np.float32)
    return dx.astype(dtype, copy=False).reshape(x.shape)


def _quantized_type(zero_point: np.ndarray | None, output_dtype: int) -> np.dtype:
    if zero_point is None:
        return ir.dtype_of(output_dtype) if output_dtype else np.dtype(np.uint8)
    if output_dtype and ir.dtype_of(output_dtype) != zero_point.dtype:
        raise TypeError(f"output_dtype {ir.dtype_of(output_dtype)} differs from the zero point type {zero_point.dtype}")
    return zero_point.dtype


def _per_tensor(scale: np.ndarray) -> np.ndarray:
    if scale.size != 1:
        raise ValueError(f"this QuantizeLinear/DequantizeLinear version takes a scalar scale, got shape {scale.shape}")
    return scale


@kernel("QuantizeLinear", since=10)
def quantize_linear_10(x, y_scale, y_zero_point=None):
    """Per-tensor quantization to uint8/int8."""
    return quantize(x, _per_tensor(y_scale), y_zero_point, _quantized_type(y_zero_point, 0))


@kernel("QuantizeLinear", since=13)
def quantize_linear_13(x, y_scale, y_zero_point=None, *, axis=1):
    """Per-tensor or per-axis quantization."""
    return quantize(x, y_scale, y_zero_point, _quantized_type(y_zero_point, 0), axis=axis)


@kernel("QuantizeLinear", since=19)
def quantize_linear_19(x, y_scale, y_zero_point=None, *, axis=1, saturate=1):
    """Adds float8 outputs and ``saturate``."""
    return quantize(x, y_scale, y_zero_point, _quantized_type(y_zero_point, 0), axis=axis, saturate=saturate)


@kernel("QuantizeLinear", since=21)
def quantize_linear_21(x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0, saturate=1):
    """Adds blocked quantization and ``output_dtype``."""
    return quantize(x, y_scale, y_zero_point, _quantized_type(y_zero_point, output_dtype),
                    axis=axis, saturate=saturate, block_size=block_size)


@kernel("QuantizeLinear", since=23)
def quantize_linear_23(x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0, precision=0,
                       saturate=1):
    """Adds ``precision``, the type the division runs in."""
    return quantize(x, y_scale, y_zero_point, _quantized_type(y_zero_point, output_dtype),
                    axis=axis, saturate=saturate, block_size=block_size, precision=precision)


@kernel("DequantizeLinear", since=10)
def dequantize_linear_10(x, x_scale, x_zero_point=None):
    """Per-tensor dequantization to float32."""
    return dequantize(x, _per_tensor(x_scale), x_zero_point, x_scale.dtype)


@kernel("DequantizeLinear", since=13)
def dequantize_linear_13(x, x_scale, x_zero_point=None, *, axis=1):
    """Per-tensor or per-axis dequantization to the scale's type."""
    return dequantize(x, x_scale, x_zero_point, x_scale.dtype, axis=axis)


@kernel("DequantizeLinear", since=21)
def dequantize_linear_21(x, x_scale, x_zero_point=None, *, axis=1, block_size=0):
    """Adds blocked dequantization."""
    return dequantize(x, x_scale, x_zero_point, x_scale.dtype, axis=axis, block_size=block_size)


@kernel("DequantizeLinear", since=23)
def dequantize_linear_23(x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    """Adds ``output_dtype``."""
    dtype = ir.dtype_of(output_dtype) if output_dtype else x_scale.dtype
    return dequantize(x, x_scale, x_zero_point, dtype, axis=axis, block_size=block_size)


@kernel("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(x):
    """uint8 quantization with a scale and zero point computed from ``x``'s range (0 included)."""
    lo = np.float32(min(0.0, x.min(initial=0.0)))
    hi = np.float32(max(0.0, x.max(initial=0.0)))
    # An all-zero range gives scale 1, as onnxruntime does (the reference evaluator uses 1/255).
    scale = np.float32((hi - lo) / np.float32(255)) if hi != lo else np.float32(1)
    zero_point = _saturate_integer(np.clip(-lo / scale, 0, 255), np.dtype(np.uint8))
    y = _saturate_integer(np.rint(x / scale) + zero_point.astype(np.float32), np.dtype(np.uint8))
    return y, np.asarray(scale), np.asarray(zero_point)


def _zero_centered(q: np.ndarray, zero_point: np.ndarray | None, axis_of_vector: int) -> np.ndarray:
    """``q - zero_point`` as float64 (exact for 8/16-bit integers); a 1-D zero point of more than one
    element lies along ``axis_of_vector`` (rows of a matmul's A, output channels of a conv's W)."""
    q = q.astype(np.float64)
    if zero_point is None:
        return q
    zp = zero_point.astype(np.float64)
    if zp.ndim == 1 and zp.size > 1:
        shape = [1] * q.ndim
        shape[axis_of_vector] = -1
        zp = zp.reshape(shape)
    return q - zp


def _requantize(acc: np.ndarray, multiplier: np.ndarray, y_zero_point: np.ndarray | None,
                dtype: np.dtype) -> np.ndarray:
    """An accumulator scaled by ``multiplier`` (float32 arithmetic, as onnxruntime) and requantized."""
    return quantize(acc.astype(np.float32) * multiplier.astype(np.float32), np.ones((), np.float32), y_zero_point,
                    dtype)


def _row_vector(v: np.ndarray) -> np.ndarray:
    """A per-row 1-D parameter of a matmul's A as a column that broadcasts over rows."""
    return v.reshape(-1, 1) if v.ndim == 1 and v.size > 1 else v


@kernel("MatMulInteger", since=10)
def matmul_integer(A, B, a_zero_point=None, b_zero_point=None):
    """int32 ``(A - a_zero_point) @ (B - b_zero_point)`` (per-row A and per-column B zero points)."""
    a = _zero_centered(A, a_zero_point, -2 if A.ndim > 1 else 0)
    b = _zero_centered(B, b_zero_point, -1)
    return np.matmul(a, b).astype(np.int32)


@kernel("QLinearMatMul", since=10)
def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """Quantized matmul: integer (or float8) product requantized with ``a_scale * b_scale / y_scale``."""
    acc = np.matmul(_zero_centered(a, a_zero_point, -2 if a.ndim > 1 else 0),
                    _zero_centered(b, b_zero_point, -1))
    a_scale = _row_vector(a_scale).astype(np.float32)
    multiplier = a_scale * b_scale.astype(np.float32) / _row_vector(y_scale).astype(np.float32)
    return _requantize(acc, multiplier, y_zero_point, y_zero_point.dtype)


@kernel("ConvInteger", since=10)
def conv_integer(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad="NOTSET", dilations=None, group=1,
                 kernel_shape=None, pads=None, strides=None):
    """int32 convolution of zero-centered ``x`` and ``w`` (padding with the zero point)."""
    y = conv(_zero_centered(x, x_zero_point, 1), _zero_centered(w, w_zero_point, 0), auto_pad=auto_pad,
             dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads, strides=strides)
    return y.astype(np.int32)


@kernel("QLinearConv", since=10)
def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
                 auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Quantized convolution: integer accumulation plus int32 bias, requantized per output channel."""
    acc = conv(_zero_centered(x, x_zero_point, 1), _zero_centered(w, w_zero_point, 0), auto_pad=auto_pad,
               dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads, strides=strides)
    channel = (-1,) + (1,) * (x.ndim - 2)
    if B is not None:
        acc = acc + B.astype(np.float64).reshape(channel)
    multiplier = x_scale.astype(np.float32) * w_scale.astype(np.float32).reshape(
        channel if w_scale.size > 1 else ()) / y_scale.astype(np.float32)
    return _requantize(acc, multiplier, y_zero_point, y_zero_point.dtype)
