"""onnxruntime contrib operators (domain ``com.microsoft``), following onnxruntime's
docs/ContribOperators.md and its CPU kernels."""
from __future__ import annotations

import re

import numpy as np

from onnxpy import parallel
from onnxpy.ops._helpers import (GATE_ACTIVATIONS, HARD_SWISH, JIT_FLOATS, SWISH, arithmetic, gelu as gelu_of,
                                 gelu_tanh, hard_sigmoid, jit, late_activation, layer_norm_rows, sigmoid, swish)
from onnxpy.ops.conv import conv, convolve
from onnxpy.ops.linalg import product
from onnxpy.ops.pool import global_average_pool
from onnxpy.ops.quantize import dequantize, dynamic_quantize_linear, quantize
from onnxpy.ops.rnn import lstm
from onnxpy.ops.transformer import grouped_matmul, rotate, softmax
from onnxpy.registry import kernel

MS = "com.microsoft"


def _work(x: np.ndarray) -> np.ndarray:
    """``x`` in the float type the math runs in: float64 stays, everything else is float32."""
    return x if x.dtype == np.float64 else x.astype(np.float32, copy=False)


def _gelu(x: np.ndarray) -> np.ndarray:
    return gelu_of(_work(x)).astype(x.dtype, copy=False)


_ACTIVATIONS = {
    "Relu": lambda x, p: np.maximum(x, 0),
    "Tanh": lambda x, p: np.tanh(x),
    "Sigmoid": lambda x, p: sigmoid(x),
    "LeakyRelu": lambda x, p: np.where(x >= 0, x, x * p[0]),
    "Clip": lambda x, p: np.clip(x, p[0], p[1]),
    "HardSigmoid": lambda x, p: hard_sigmoid(x, p[0], p[1]),
    "Elu": lambda x, p: np.where(x >= 0, x, p[0] * np.expm1(np.minimum(x, 0))),
    "ThresholdedRelu": lambda x, p: np.where(x > p[0], x, 0),
    "ScaledTanh": lambda x, p: p[0] * np.tanh(p[1] * x),
    "Softplus": lambda x, p: np.logaddexp(x, 0),
    "Softsign": lambda x, p: x / (1 + np.abs(x)),
}
_CLAMPS = {"Relu": lambda p: (0.0, np.inf), "Clip": lambda p: (p[0], p[1])}
_ACTIVATION_DEFAULTS = {"LeakyRelu": [0.01], "Clip": [-np.inf, np.inf], "HardSigmoid": [0.2, 0.5], "Elu": [1.0],
                        "ThresholdedRelu": [1.0], "ScaledTanh": [1.0, 1.0]}


def _activate(x: np.ndarray, name: str | None, params) -> np.ndarray:
    """The fused activation ``name`` (None: identity) with its float parameters, in ``x``'s dtype."""
    if not name:
        return x
    if name not in _ACTIVATIONS:
        raise ValueError(f"unsupported fused activation {name!r}; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name](_work(x), [np.float32(p) for p in _params_or_defaults(name, params)]).astype(
        x.dtype, copy=False)


def _params_or_defaults(name: str, params) -> list:
    return [p for p in (params or []) if p is not None] or _ACTIVATION_DEFAULTS.get(name, [])


@kernel("Gelu", since=1, domain=MS)
def gelu(X):
    """``0.5 x (1 + erf(x / sqrt 2))``."""
    return _gelu(X)


@kernel("BiasGelu", since=1, domain=MS)
def bias_gelu(A, B):
    """Gelu of ``A + B``."""
    return _gelu(_work(A) + B).astype(A.dtype, copy=False)


@kernel("FastGelu", since=1, domain=MS)
def fast_gelu(X, bias=None):
    """Tanh approximation of Gelu of ``X + bias``."""
    return gelu_tanh(_work(X if bias is None else X + bias)).astype(X.dtype, copy=False)


@kernel("QuickGelu", since=1, domain=MS)
def quick_gelu(X, *, alpha=1.702):
    """``x * sigmoid(alpha * x)``."""
    return swish(_work(X), alpha).astype(X.dtype, copy=False)


@kernel("FusedConv", since=1, domain=MS)
def fused_conv(X, W, B=None, Z=None, *, activation=None, activation_params=None, auto_pad="NOTSET",
               dilations=None, group=1, kernel_shape=None, pads=None, strides=None, ctx=None):
    """Conv + bias + optional sum input ``Z`` (of the output's shape), then the fused activation:
    Relu and Clip clamp inside the convolution, Z is added there too, other activations follow."""
    params = _params_or_defaults(activation, activation_params)
    clamp = _CLAMPS[activation](params) if activation in _CLAMPS else None
    y = convolve(X, W, B, auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                 pads=pads, strides=strides, clamp=clamp, z=Z, ctx=ctx)
    return y if clamp is not None else _activate(y, activation, activation_params)


# activations onnxruntime's FusedConv lacks, which the convolution's epilogue applies where it can:
# from their activation_params to (code, alpha) for ``convolve``
_EPILOGUES = {"HardSwish": lambda p: (HARD_SWISH, 0.0), "QuickGelu": lambda p: (SWISH, p[0] if p else 1.702)}


@kernel("FusedConv", since=1, domain="ai.onnxpy")
def fused_conv_onnxpy(X, W, B=None, Z=None, *, activation=None, activation_params=None, auto_pad="NOTSET",
                      dilations=None, group=1, kernel_shape=None, pads=None, strides=None, ctx=None):
    """``com.microsoft::FusedConv`` plus HardSwish and QuickGelu [alpha] (x sigmoid(alpha x), which
    is Swish and SiLU), fused by ``passes/fuse_activation.py``: the convolution applies them to each
    block of its output while it is in cache (GEMM paths; the others after the convolution)."""
    if activation not in _EPILOGUES:
        return fused_conv(X, W, B, Z, activation=activation, activation_params=activation_params, auto_pad=auto_pad,
                          dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads, strides=strides,
                          ctx=ctx)
    return convolve(X, W, B, auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                    pads=pads, strides=strides, z=Z, activation=_EPILOGUES[activation](activation_params), ctx=ctx)


def _fused_activation(y: np.ndarray, name: str | None, params) -> np.ndarray:
    """FusedConv's activation ``name`` (either domain's) applied to ``y``."""
    return late_activation(y, _EPILOGUES[name](params)) if name in _EPILOGUES else _activate(y, name, params)


def _pointwise_layer(v: np.ndarray, w: np.ndarray, b: np.ndarray | None, name: str | None, params) -> np.ndarray:
    """A 1x1 FusedConv on a (N, C) vector per image: ``v @ w.T + b``, then the activation."""
    y = v @ w.reshape(w.shape[0], -1).T
    return _fused_activation(y if b is None else y + b, name, params)


@kernel("SqueezeExcite", since=1, domain="ai.onnxpy")
def squeeze_excite(X, W1, B1=None, W2=None, B2=None, *, activation1=None, activation1_params=None,
                   activation2=None, activation2_params=None):
    """A squeeze-and-excitation block, fused by ``passes/fuse_squeeze_excite.py``: ``X`` times the
    gate ``FusedConv2(FusedConv1(GlobalAveragePool(X)))``, whose convolutions are 1x1 (weights (R, C,
    1...) and (C, R, 1...)) with FusedConv's activations. In float32 and float64 the gate is one
    compiled call (``_jit.excitation``: the means, both layers and their activations), which also
    multiplies X where that product would not split over the threads; otherwise the layers are two
    matrix products of the pooled (N, C) values and the product with X one compiled pass."""
    if (W2 is None or X.ndim < 3 or W1.shape[1] != X.shape[1] or W2.shape[0] != X.shape[1]
            or W2.shape[1] != W1.shape[0] or W1.size != W1.shape[0] * W1.shape[1] or W2.size != W1.size):
        raise ValueError(f"SqueezeExcite expects X (N, C, ...), W1 (R, C, 1...) and W2 (C, R, 1...), got "
                         f"{X.shape}, {W1.shape} and {None if W2 is None else W2.shape}")
    layers = ((W1, B1, activation1, activation1_params), (W2, B2, activation2, activation2_params))
    if X.dtype in JIT_FLOATS and all(w.dtype == X.dtype and (b is None or b.dtype == X.dtype)
                                     and name in GATE_ACTIVATIONS for w, b, name, _ in layers):
        scale = parallel.pieces(parallel.PASS_COST * X.size, X.shape[0] * X.shape[1], regions=parallel.compiled()) == 1
        (w1, b1, act1), (w2, b2, act2) = (_gate_layer(X.dtype, *layer) for layer in layers)
        gate = jit().excitation(np.ascontiguousarray(X).reshape(X.shape[0], X.shape[1], -1), w1, b1, act1, w2, b2,
                                act2, scale)
        if scale:
            return gate.reshape(X.shape)
    else:
        pooled = global_average_pool(X).reshape(X.shape[:2])
        hidden = _pointwise_layer(pooled, W1, B1, activation1, activation1_params)
        gate = _pointwise_layer(hidden, W2, B2, activation2, activation2_params).astype(X.dtype, copy=False)
    return arithmetic(np.multiply, X, gate.reshape(X.shape[:2] + (1,) * (X.ndim - 2)))


def _gate_layer(dtype: np.dtype, w: np.ndarray, b: np.ndarray | None, name: str | None, params) -> tuple:
    """A squeeze-and-excitation layer's weights (out, in), bias and activation (code, p0, p1) as
    ``_jit.excitation`` takes them, in ``dtype``; the parameters as the activation's own form takes
    them (float32, or the epilogue's)."""
    if name in _EPILOGUES:
        code, alpha = _EPILOGUES[name](params)
        p = (1 / 6, 0.5) if code == HARD_SWISH else (alpha, 0.0)
    else:
        p = [np.float32(v) for v in (_params_or_defaults(name, params) if name else [])] + [0.0, 0.0]
    weights = np.ascontiguousarray(w.reshape(w.shape[0], -1))
    return (weights, np.zeros(w.shape[0], dtype) if b is None else b,
            (GATE_ACTIVATIONS[name], dtype.type(p[0]), dtype.type(p[1])))


@kernel("FusedGemm", since=1, domain=MS)
def fused_gemm(A, B, C=None, *, activation=None, activation_alpha=None, activation_beta=None,
               activation_gamma=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    """Gemm followed by the fused activation."""
    a = A.T if transA else A
    b = B.T if transB else B
    y = product(a, b) * A.dtype.type(alpha)
    if C is not None:
        y = y + C * A.dtype.type(beta)
    return _activate(y.astype(A.dtype, copy=False), activation, [activation_alpha, activation_beta, activation_gamma])


@kernel("FusedMatMul", since=1, domain=MS)
def fused_matmul(A, B, *, alpha=1.0, transA=0, transB=0, transBatchA=0, transBatchB=0):
    """``alpha * op(A) @ op(B)``; transBatch moves the first axis behind the batch axes, trans swaps
    the last two."""
    def prepare(x, trans, trans_batch):
        if trans_batch and x.ndim > 2:
            x = np.moveaxis(x, 0, -2)
        return x.swapaxes(-1, -2) if trans and x.ndim > 1 else x
    y = parallel.matmul(prepare(A, transA, transBatchA), prepare(B, transB, transBatchB))
    return (y * A.dtype.type(alpha)).astype(A.dtype, copy=False)


def _layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, *, axis: int = -1, epsilon: float,
                simplified: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer (or RMS, ``simplified``) normalization over the axes from ``axis`` on, in float32 or
    float64: ``(y, mean, inv_std_dev)``, the statistics keeping reduced axes."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    w = _work(x)
    compiled = layer_norm_rows(w, axis % x.ndim, scale, bias, epsilon, simplified)
    if compiled is not None:
        y, mean, inv_std = compiled
        return y.astype(x.dtype, copy=False), mean.astype(np.float32), inv_std.astype(np.float32)
    mean = np.zeros((), w.dtype) if simplified else w.mean(axis=axes, keepdims=True)
    centered = w - mean
    inv_std = 1 / np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True) + w.dtype.type(epsilon))
    y = centered * inv_std * scale.astype(w.dtype)
    if bias is not None:
        y = y + bias.astype(w.dtype)
    return y.astype(x.dtype), np.broadcast_to(mean, inv_std.shape).astype(np.float32), inv_std.astype(np.float32)


# onnxruntime also registers these two in the default domain from version 1 (before ONNX's
# LayerNormalization-17; ONNX has no SimplifiedLayerNormalization) and its optimizers write them there:
# https://github.com/microsoft/onnxruntime/blob/main/onnxruntime/core/graph/contrib_ops/contrib_defs.cc
@kernel("LayerNormalization", since=1)
@kernel("LayerNormalization", since=1, domain=MS)
def layer_normalization(X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Layer normalization over the axes from ``axis`` on (onnxruntime's pre-opset-17 form)."""
    return _layer_norm(X, Scale, B, axis=axis, epsilon=epsilon, simplified=False)


@kernel("SimplifiedLayerNormalization", since=1)
@kernel("SimplifiedLayerNormalization", since=1, domain=MS)
def simplified_layer_normalization(X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """RMS normalization: ``x / sqrt(mean(x^2) + epsilon) * scale``; outputs Y and inv_std_var."""
    y, _, inv_std = _layer_norm(X, scale, None, axis=axis, epsilon=epsilon, simplified=True)
    return y, inv_std


def _skip_norm(input, skip, gamma, beta, bias, epsilon, simplified):
    # The sum runs in float32 for float16 inputs, as onnxruntime's CPU kernel converts before adding.
    total = _work(input) + skip if bias is None else _work(input) + skip + bias
    y, mean, inv_std = _layer_norm(total, gamma, beta, epsilon=epsilon, simplified=simplified)
    return y.astype(input.dtype, copy=False), mean, inv_std, total.astype(input.dtype, copy=False)


@kernel("SkipLayerNormalization", since=1, domain=MS)
def skip_layer_normalization(input, skip, gamma, beta=None, bias=None, *, epsilon=1e-12):
    """LayerNorm of ``input + skip + bias``; outputs Y, mean, inv_std_var and the sum."""
    return _skip_norm(input, skip, gamma, beta, bias, epsilon, simplified=False)


@kernel("SkipSimplifiedLayerNormalization", since=1, domain=MS)
def skip_simplified_layer_normalization(input, skip, gamma, bias=None, *, epsilon=1e-12):
    """RMS normalization of ``input + skip + bias``; outputs Y, mean, inv_std_var and the sum."""
    return _skip_norm(input, skip, gamma, None, bias, epsilon, simplified=True)


@kernel("EmbedLayerNormalization", since=1, domain=MS)
def embed_layer_normalization(input_ids, segment_ids=None, word_embedding=None, position_embedding=None,
                              segment_embedding=None, gamma=None, beta=None, mask=None, position_ids=None, *,
                              epsilon=1e-12, mask_index_type=1):
    """Word + position (+ segment) embeddings, layer-normalized; mask_index is the per-batch mask sum."""
    batch, seq = input_ids.shape
    positions = np.broadcast_to(np.arange(seq), (batch, seq)) if position_ids is None else \
        np.broadcast_to(position_ids, (batch, seq))
    total = _work(word_embedding[input_ids]) + position_embedding[positions]
    if segment_embedding is not None and segment_ids is not None:
        total = total + segment_embedding[segment_ids]
    y, _, _ = _layer_norm(total, gamma, beta, epsilon=epsilon, simplified=False)
    mask_index = mask.sum(axis=1).astype(np.int32) if mask is not None else np.zeros(batch, np.int32)
    dtype = word_embedding.dtype
    return y.astype(dtype, copy=False), mask_index, total.astype(dtype, copy=False)


def _dq(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None) -> np.ndarray:
    """Per-tensor dequantization to float32."""
    return dequantize(x, scale, zero_point, np.dtype(np.float32))


def _q(y: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    """Per-tensor quantization to the zero point's type (``like``'s type without one)."""
    return quantize(y, scale.astype(np.float32), zero_point, like.dtype if zero_point is None else zero_point.dtype)


@kernel("QLinearAdd", since=1, domain=MS)
def qlinear_add(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    """Quantized broadcasting Add."""
    return _q(_dq(A, A_scale, A_zero_point) + _dq(B, B_scale, B_zero_point), C_scale, C_zero_point, A)


@kernel("QLinearMul", since=1, domain=MS)
def qlinear_mul(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point=None):
    """Quantized broadcasting Mul."""
    return _q(_dq(A, A_scale, A_zero_point) * _dq(B, B_scale, B_zero_point), C_scale, C_zero_point, A)


@kernel("QLinearSigmoid", since=1, domain=MS)
def qlinearsigmoid(X, X_scale, X_zero_point=None, Y_scale=None, Y_zero_point=None):
    """Quantized Sigmoid."""
    return _q(sigmoid(_dq(X, X_scale, X_zero_point)), Y_scale, Y_zero_point, X)


@kernel("QLinearLeakyRelu", since=1, domain=MS)
def qlinear_leaky_relu(X, X_scale, X_zero_point=None, Y_scale=None, Y_zero_point=None, *, alpha=0.01):
    """Quantized LeakyRelu."""
    x = _dq(X, X_scale, X_zero_point)
    return _q(np.where(x >= 0, x, x * np.float32(alpha)), Y_scale, Y_zero_point, X)


@kernel("QLinearSoftmax", since=1, domain=MS)
def qlinear_softmax(X, X_scale, x_zero_point=None, y_scale=None, y_zero_point=None, *, axis=-1, opset):
    """Quantized Softmax; ``opset`` < 13 flattens to 2-D at ``axis`` as Softmax-1 did."""
    x = _dq(X, X_scale, x_zero_point)
    if opset < 13:
        axis = axis % X.ndim
        flat = x.reshape(int(np.prod(X.shape[:axis])), -1)
        y = softmax(flat).reshape(X.shape)
    else:
        y = softmax(x, axis=axis)
    return _q(y, y_scale, y_zero_point, X)


@kernel("QLinearConcat", since=1, domain=MS)
def qlinear_concat(Y_scale, Y_zero_point, *inputs, axis):
    """Concatenation of (tensor, scale, zero point) triples requantized to ``Y_scale``/``Y_zero_point``."""
    if len(inputs) % 3:
        raise ValueError("QLinearConcat takes (tensor, scale, zero point) triples after Y_scale, Y_zero_point")
    parts = [_dq(x, s, z) for x, s, z in zip(inputs[::3], inputs[1::3], inputs[2::3])]
    return _q(np.concatenate(parts, axis=axis), Y_scale, Y_zero_point, inputs[0])


@kernel("QLinearGlobalAveragePool", since=1, domain=MS)
def qlinear_global_average_pool(X, x_scale, x_zero_point, y_scale, y_zero_point, *, channels_last=0):
    """Quantized mean over the spatial axes (NCHW..., or NHWC... with ``channels_last``)."""
    spatial = tuple(range(1, X.ndim - 1)) if channels_last else tuple(range(2, X.ndim))
    mean = _dq(X, x_scale, x_zero_point).mean(axis=spatial, keepdims=True)
    return _q(mean, y_scale, y_zero_point, X)


def _pool_pads(in_shape, kernel_shape, *, auto_pad, dilations, pads, strides) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial axis for the pool's ``auto_pad``/``pads`` attributes."""
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        result = []
        for size, k, d, s in zip(in_shape, kernel_shape, dilations, strides):
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small = total // 2
            result.append((small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small))
        return result
    if auto_pad == "VALID" or pads is None:
        return [(0, 0)] * len(in_shape)
    if auto_pad != "NOTSET":
        raise ValueError(f"unknown auto_pad {auto_pad!r}")
    n = len(in_shape)
    return list(zip(pads[:n], pads[n:]))


@kernel("QLinearAveragePool", since=1, domain=MS)
def qlinear_average_pool(X, x_scale, x_zero_point=None, y_scale=None, y_zero_point=None, *, auto_pad="NOTSET",
                         ceil_mode=0, channels_last=0, count_include_pad=0, kernel_shape, pads=None, strides=None):
    """Quantized AveragePool (explicit padding counts in the divisor with ``count_include_pad``)."""
    x = _dq(X, x_scale, x_zero_point)
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    spatial = x.ndim - 2
    strides = list(strides or [1] * spatial)
    base = _pool_pads(x.shape[2:], kernel_shape, auto_pad=auto_pad, dilations=[1] * spatial, pads=pads,
                     strides=strides)
    extra = [_ceil_extra(n, b, e, k, s) if ceil_mode else 0
             for n, (b, e), k, s in zip(x.shape[2:], base, kernel_shape, strides)]
    full = [(b, e + x_) for (b, e), x_ in zip(base, extra)]
    ones = np.ones((1, 1, *kernel_shape), np.float32)

    def window_sums(a, padding):
        flat = [b for b, _ in padding] + [e for _, e in padding]
        return conv(a.reshape(-1, 1, *a.shape[2:]), ones, pads=flat, strides=strides)

    sums = window_sums(x, full)
    inside = np.ones((1, 1, *x.shape[2:]), np.float32)
    if count_include_pad:
        counts = window_sums(np.pad(inside, [(0, 0), (0, 0), *base], constant_values=1), [(0, e) for e in extra])
    else:
        counts = window_sums(inside, full)
    y = (sums / counts).reshape(*x.shape[:2], *counts.shape[2:])
    if channels_last:
        y = np.moveaxis(y, 1, -1)
    return _q(y, y_scale, y_zero_point, X)


def _ceil_extra(size: int, begin: int, end: int, k: int, s: int) -> int:
    """Extra end padding for ceil mode; a window starting past the input and left padding is dropped."""
    padded = size + begin + end
    out = -(-(padded - k) // s) + 1
    if (out - 1) * s >= size + begin:
        out -= 1
    return max(0, (out - 1) * s + k - padded)


def _centered(q: np.ndarray, zero_point: np.ndarray | None) -> np.ndarray:
    """``q - zero_point`` in float64 (exact for 8-bit data); a 1-D zero point runs along the last axis."""
    return q.astype(np.float64) - (0 if zero_point is None else zero_point.astype(np.float64))


def _scaled_matmul(a: np.ndarray, b: np.ndarray, scale: np.ndarray, bias: np.ndarray | None,
                   dtype: np.dtype) -> np.ndarray:
    """``(a @ b) * scale (+ bias)`` as ``dtype``, the integer product exact and the scaling in float32."""
    y = np.matmul(a, b).astype(np.float32) * scale.astype(np.float32)
    if bias is not None:
        y = y + bias.astype(np.float32)
    return y.astype(dtype)


@kernel("MatMulIntegerToFloat", since=1, domain=MS)
def matmul_integer_to_float(A, B, a_scale, b_scale, a_zero_point=None, b_zero_point=None, bias=None):
    """``(A - a_zp) @ (B - b_zp) * a_scale * b_scale + bias`` in the scales' float type."""
    return _scaled_matmul(_centered(A, a_zero_point), _centered(B, b_zero_point), a_scale * b_scale, bias,
                          a_scale.dtype)


@kernel("DynamicQuantizeMatMul", since=1, domain=MS)
def dynamic_quantize_matmul(A, B, b_scale, b_zero_point=None, bias=None):
    """MatMul of ``A`` quantized on the fly to uint8 (DynamicQuantizeLinear) with quantized ``B``."""
    a, a_scale, a_zero_point = dynamic_quantize_linear(A)
    return _scaled_matmul(_centered(a, a_zero_point), _centered(B, b_zero_point), a_scale * b_scale, bias,
                          A.dtype)


@kernel("QGemm", since=1, domain=MS)
def qgemm(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None, y_scale=None, y_zero_point=None, *,
          alpha=1.0, transA=0, transB=0):
    """Quantized Gemm: ``alpha * a_scale * b_scale * (A' @ B' + C)`` with int32 ``C``, float32
    output without ``y_scale``, else requantized."""
    a = _centered(A, a_zero_point)
    b = B.astype(np.float64) - (0 if b_zero_point is None else
                                b_zero_point.astype(np.float64).reshape(-1, 1 if transB else -1)
                                if b_zero_point.size > 1 else b_zero_point.astype(np.float64))
    acc = np.matmul(a.T if transA else a, b.T if transB else b)
    if C is not None:
        acc = acc + C.astype(np.float64)
    y = acc.astype(np.float32) * (np.float32(alpha) * a_scale.astype(np.float32) * b_scale.astype(np.float32))
    if y_scale is None:
        return y
    return _q(y, y_scale, y_zero_point, A)


def _unpack_bits(packed: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned ``bits``-wide fields of uint8 bytes, least significant first, along a new last axis."""
    shifts = np.arange(0, 8, bits, dtype=np.uint8)
    return ((packed[..., None] >> shifts) & np.uint8((1 << bits) - 1)).reshape(*packed.shape[:-1], -1)


@kernel("MatMulNBits", since=1, domain=MS)
def matmul_nbits(A, B, scales, zero_points=None, g_idx=None, bias=None, *, K, N, accuracy_level=0, bits=4,
                 block_size, weight_prepacked=0):
    """``A @ dequant(B)^T``: B holds N rows of K ``bits``-wide weights in blocks of ``block_size``,
    each block with a scale and a (packed uint8, or float) zero point, default ``2**(bits-1)``."""
    if weight_prepacked:
        raise ValueError("MatMulNBits with weight_prepacked=1 holds an onnxruntime-internal layout")
    blocks = -(-K // block_size)
    q = _unpack_bits(B.reshape(N, blocks, -1), bits).astype(np.float32)[:, :, :block_size]
    scale = scales.reshape(N, blocks, 1).astype(np.float32)
    if zero_points is None:
        zero = np.float32(1 << (bits - 1))
    elif zero_points.dtype == np.uint8:
        zero = _unpack_bits(zero_points.reshape(N, -1), bits)[:, :blocks, None].astype(np.float32)
    else:
        zero = zero_points.reshape(N, blocks, 1).astype(np.float32)
    if g_idx is not None and g_idx.size == K:
        # act-order: column k uses the scale/zero point of block g_idx[k]
        deq = (q.reshape(N, -1)[:, :K] - np.broadcast_to(zero, (N, blocks, 1))[:, g_idx, 0]) * scale[:, g_idx, 0]
    else:
        deq = ((q - zero) * scale).reshape(N, -1)[:, :K]
    y = np.matmul(A.astype(np.float32), deq.T)
    if bias is not None:
        y = y + bias.astype(np.float32)
    return y.astype(A.dtype)


def _rotary(x: np.ndarray, cos_cache: np.ndarray, sin_cache: np.ndarray, positions: np.ndarray, *,
            interleaved: int, rotary_dim: int = 0) -> np.ndarray:
    """Rotary embedding of (B, N, S, D) ``x`` at (B, S) ``positions`` over the first ``rotary_dim``
    (default: ``2 * cos_cache.shape[-1]``) features."""
    dim = rotary_dim or 2 * cos_cache.shape[-1]
    cos = cos_cache[positions][:, None, :, : dim // 2].astype(x.dtype)
    sin = sin_cache[positions][:, None, :, : dim // 2].astype(x.dtype)
    return np.concatenate([rotate(x[..., :dim], cos, sin, interleaved=interleaved), x[..., dim:]], axis=-1)


def _positions(position_ids: np.ndarray, batch: int, seq: int) -> np.ndarray:
    """(B, S) positions: a single value is the offset of ``arange(seq)`` for every batch."""
    if position_ids.size == 1:
        return np.broadcast_to(position_ids.reshape(()) + np.arange(seq), (batch, seq))
    return np.broadcast_to(position_ids, (batch, seq))


@kernel("RotaryEmbedding", since=1, domain=MS)
def rotary_embedding(input, position_ids, cos_cache, sin_cache, *, interleaved=0, is_packed_batching=0,
                     num_heads=0, rotary_embedding_dim=0, scale=1.0):
    """Rotary embedding of (B, S, N*D) or (B, N, S, D) input; ``position_ids`` is (B, S) or an offset."""
    if input.ndim == 3:
        heads = num_heads or input.shape[2] // (2 * cos_cache.shape[-1])
        if rotary_embedding_dim and not num_heads:
            raise ValueError("RotaryEmbedding with rotary_embedding_dim on a 3-D input needs num_heads")
        x = input.reshape(input.shape[0], input.shape[1], heads, -1).transpose(0, 2, 1, 3)
    else:
        x = input
    y = _rotary(x, cos_cache, sin_cache, _positions(position_ids, x.shape[0], x.shape[2]),
                interleaved=interleaved, rotary_dim=rotary_embedding_dim)
    return y.transpose(0, 2, 1, 3).reshape(input.shape) if input.ndim == 3 else y


def _heads(x: np.ndarray, num_heads: int) -> np.ndarray:
    """(B, S, N*H) -> (B, N, S, H)."""
    b, s, hidden = x.shape
    return x.reshape(b, s, num_heads, hidden // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, N, S, H) -> (B, S, N*H)."""
    b, n, s, h = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, s, n * h)


def _sdpa(q: np.ndarray, k: np.ndarray, v: np.ndarray, *, scale: float, bias: np.ndarray | None = None,
          softcap: float = 0.0, sink: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attention of (B, N, S, H) queries over (B, Nkv, T, H) keys/values, the N heads grouped over
    the Nkv ones, in float32: ``(softmax(logits) v, logits, softmax(logits))`` with
    ``logits = q k^T * scale``, softcapped, plus ``bias``;
    ``sink`` (one logit per head) joins each softmax row's denominator only."""
    n = q.shape[1]
    scores = grouped_matmul(_work(q), _work(k).swapaxes(-1, -2)) * np.float32(scale)
    logits = np.float32(softcap) * np.tanh(scores / np.float32(softcap)) if softcap > 0 else scores
    if bias is not None:
        logits = logits + bias
    if sink is not None:
        sink = sink.astype(np.float32).reshape(1, n, 1, 1)
        peak = np.maximum(logits.max(axis=-1, keepdims=True), sink)
        e = np.exp(logits - peak)
        probs = e / (e.sum(axis=-1, keepdims=True) + np.exp(sink - peak))
    else:
        probs = softmax(logits)
    y = grouped_matmul(probs, _work(v))
    return y.astype(q.dtype), logits, probs


def _causal_bias(s: int, t: int, past: int, fill: float, window: int = -1) -> np.ndarray:
    """(S, T) additive mask: query i (absolute position past + i) sees key j iff j <= past + i and,
    with a window, past + i - j < window."""
    diff = past + np.arange(s)[:, None] - np.arange(t)
    allowed = diff >= 0
    if window >= 0:
        allowed &= diff < window
    return np.where(allowed, np.float32(0), np.float32(fill))


def _key_padding_bias(mask: np.ndarray, batch: int, s: int, t: int, fill: float) -> np.ndarray:
    """(B, 1, S or 1, T) additive bias from onnxruntime's key padding / mask_index forms: (B) valid
    lengths, (2B) end and start positions, (B, T) 0/1, (B, S, T) 0/1, or (B, 1, M, M) 0/1."""
    keys = np.arange(t)
    if mask.ndim == 1 and mask.size == batch:
        keep = keys < mask[:, None]
    elif mask.ndim == 1 and mask.size == 2 * batch:
        keep = (keys < mask[:batch, None]) & (keys >= mask[batch:, None])
    elif mask.ndim == 2:
        keep = mask[:, -t:] != 0
    elif mask.ndim == 3:
        return np.where(mask[:, None, :, -t:] != 0, np.float32(0), np.float32(fill))
    elif mask.ndim == 4:
        return np.where(mask[:, :, -s:, -t:] != 0, np.float32(0), np.float32(fill))
    else:
        raise ValueError(f"unsupported attention mask shape {mask.shape}")
    return np.where(keep, np.float32(0), np.float32(fill))[:, None, None, :]


def _add_bias(total, extra):
    return extra if total is None else total + extra


@kernel("MultiHeadAttention", since=1, domain=MS)
def multi_head_attention(query, key=None, value=None, bias=None, key_padding_mask=None, attention_bias=None,
                         past_key=None, past_value=None, past_sequence_length=None, cache_indirection=None, *,
                         mask_filter_value=-10000.0, num_heads, scale=0.0, unidirectional=0, ctx):
    """Multi-head attention on projected Q/K/V (B, S, D), packed QKV (B, S, N, 3, H), packed KV
    (B, L, N, 2, H) or BNSH key/value; optional projection bias, key padding mask, attention
    bias and past key/value cache."""
    if cache_indirection is not None:
        raise ValueError("MultiHeadAttention with cache_indirection (beam search) is not supported")
    if query.ndim == 5:
        q, k, v = (query[:, :, :, i].transpose(0, 2, 1, 3) for i in range(3))
    else:
        d = query.shape[-1]
        q = _heads(query if bias is None else query + bias[:d], num_heads)
        if key.ndim == 5:
            k, v = (key[:, :, :, i].transpose(0, 2, 1, 3) for i in range(2))
        elif key.ndim == 4:
            k, v = key, value
        else:
            dk = key.shape[-1]
            k = _heads(key if bias is None else key + bias[d:d + dk], num_heads)
            v = _heads(value if bias is None else value + bias[d + dk:], num_heads)
    if past_key is not None:
        k, v = np.concatenate([past_key, k], axis=2), np.concatenate([past_value, v], axis=2)
    y, logits = _masked_attention(q, k, v, key_padding_mask, unidirectional, attention_bias, mask_filter_value, scale)
    return (_merge_heads(y), k, v, logits.astype(query.dtype))[: max(ctx.num_outputs, 1)]


def _masked_attention(q, k, v, padding, unidirectional, attention_bias, mask_filter_value, scale):
    """Scaled dot-product attention over (B, N, S, H) heads with onnxruntime's key-padding mask
    (any ``mask_index`` form), optional causal mask and additive bias; returns (y, logits)."""
    b, _, s, h = q.shape
    t = k.shape[2]
    mask = None
    if padding is not None:
        mask = _key_padding_bias(padding, b, s, t, mask_filter_value)
    if unidirectional:
        mask = _add_bias(mask, _causal_bias(s, t, t - s, mask_filter_value))
    if attention_bias is not None:
        mask = _add_bias(mask, attention_bias.astype(np.float32))
    y, logits, _ = _sdpa(q, k, v, scale=scale or 1 / np.sqrt(h), bias=mask)
    return y, logits


@kernel("Attention", since=1, domain=MS)
def attention(input, weights, bias=None, mask_index=None, past=None, attention_bias=None,
              past_sequence_length=None, *, do_rotary=0, mask_filter_value=-10000.0, num_heads,
              past_present_share_buffer=0, qkv_hidden_sizes=None, rotary_embedding_dim=0, scale=0.0,
              unidirectional=0, ctx):
    """BERT/GPT-2 style self-attention with the Q/K/V projection fused in (``weights``, ``bias``),
    ``mask_index`` in any onnxruntime form and a stacked (2, B, N, P, H) ``past``/``present``."""
    if do_rotary or past_present_share_buffer:
        raise ValueError("contrib Attention with do_rotary or past_present_share_buffer is not supported")
    hidden = weights.shape[1] // 3
    sizes = list(qkv_hidden_sizes or [hidden, hidden, weights.shape[1] - 2 * hidden])
    proj = np.matmul(_work(input), _work(weights))  # float16 too: onnxruntime's CPU kernel runs in float32
    if bias is not None:
        proj = proj + bias
    q, k, v = (_heads(part, num_heads) for part in np.split(proj, np.cumsum(sizes)[:2], axis=-1))
    if past is not None:
        k, v = np.concatenate([past[0], k], axis=2), np.concatenate([past[1], v], axis=2)
    y, _ = _masked_attention(q, k, v, mask_index, unidirectional, attention_bias, mask_filter_value, scale)
    y = _merge_heads(y).astype(input.dtype, copy=False)
    return (y, np.stack([k, v]).astype(input.dtype, copy=False)) if ctx.num_outputs > 1 else y


@kernel("GroupQueryAttention", since=1, domain=MS)
def group_query_attention(query, key=None, value=None, past_key=None, past_value=None, seqlens_k=None,
                          total_sequence_length=None, cos_cache=None, sin_cache=None, position_ids=None,
                          attention_bias=None, head_sink=None, k_scale=None, v_scale=None, q_norm_weight=None,
                          k_norm_weight=None, query_seqlens=None, *, causal=1, do_rotary=0, k_norm_epsilon=None,
                          k_quant_type="NONE", kv_cache_bit_width=None, kv_num_heads, local_window_size=-1,
                          num_heads, q_norm_epsilon=None, qk_norm_epsilon=1e-6, qk_output=0,
                          rotary_interleaved=0, scale=0.0, sliding_window_cache=0, smooth_softmax=-1,
                          softcap=0.0, v_quant_type="NONE", ctx):
    """Causal grouped-query attention with a (B, Nkv, P, H) KV cache filled up to ``seqlens_k + 1``
    tokens per batch row, optional rotary embedding, local window, softcap and attention sinks."""
    if k_quant_type != "NONE" or v_quant_type != "NONE" or q_norm_weight is not None or query_seqlens is not None:
        raise ValueError("GroupQueryAttention with a quantized KV cache, QK norm or query_seqlens is not supported")
    if key is None:
        head = query.shape[-1] // (num_heads + 2 * kv_num_heads)
        query, key, value = np.split(query, [num_heads * head, (num_heads + kv_num_heads) * head], axis=-1)
    q, k, v = _heads(query, num_heads), _heads(key, kv_num_heads), _heads(value, kv_num_heads)
    b, _, s, h = q.shape
    total = int(np.asarray(total_sequence_length).reshape(()))
    valid = seqlens_k.astype(np.int64).reshape(b) + 1
    first_prompt = past_key is None or (s == total and past_key.shape[2] == 0)
    past_len = np.zeros(b, np.int64) if first_prompt else valid - s
    if do_rotary:
        positions = position_ids if position_ids is not None else past_len[:, None] + np.arange(s)
        q = _rotary(q, cos_cache, sin_cache, positions, interleaved=rotary_interleaved)
        k = _rotary(k, cos_cache, sin_cache, positions, interleaved=rotary_interleaved)
    cache = 0 if past_key is None else past_key.shape[2]
    present_k = np.zeros((b, kv_num_heads, max(cache, total), h), k.dtype)
    present_v = np.zeros((b, kv_num_heads, max(cache, total), v.shape[-1]), v.dtype)
    if past_key is not None:
        present_k[:, :, :cache], present_v[:, :, :cache] = past_key, past_value
    outputs, scores = [], []
    for i in range(b):
        start = int(past_len[i])
        present_k[i, :, start:start + s], present_v[i, :, start:start + s] = k[i], v[i]
        t = present_k.shape[2]
        mask = _causal_bias(s, t, start, -np.inf, local_window_size) if causal else np.zeros((s, t), np.float32)
        mask = np.where(np.arange(t) < max(int(valid[i]), start + s), mask, np.float32(-np.inf))
        if attention_bias is not None:
            mask = mask + attention_bias[i if attention_bias.shape[0] > 1 else 0].astype(np.float32)
        sink = head_sink if head_sink is not None else (np.zeros(num_heads) if smooth_softmax == 1 else None)
        y, logits, probs = _sdpa(q[i:i + 1], present_k[i:i + 1], present_v[i:i + 1],
                                 scale=scale or 1 / np.sqrt(h), bias=mask, softcap=softcap, sink=sink)
        outputs.append(y)
        # qk_output 1: the logits, 0 where masked (onnxruntime leaves them unwritten); 2: probabilities
        scores.append(np.where(np.isneginf(logits), np.float32(0), logits) if qk_output == 1 else probs)
    result = (_merge_heads(np.concatenate(outputs)), present_k, present_v)
    if ctx.num_outputs > 3:
        result += (np.concatenate(scores).astype(query.dtype),)
    return result


@kernel("Tokenizer", since=1, domain=MS)
def tokenizer(X, *, mark, mincharnum, pad_value, separators=None, tokenexp=None):
    """Split each string by the ``separators`` regexes (``[""]``: into characters) or into the
    ``tokenexp`` matches, drop tokens shorter than ``mincharnum``, optionally wrap each row in
    ``\\x02``/``\\x03`` marks and pad rows to the longest with ``pad_value``: (…, tokens)."""
    if (tokenexp is None) == (separators is None):
        raise ValueError("Tokenizer needs exactly one of separators and tokenexp")
    if tokenexp is not None:
        pattern = re.compile(tokenexp)
        split = pattern.findall
    elif separators == [""]:
        split = list
    else:
        pattern = re.compile("|".join(f"(?:{s})" for s in separators))
        split = pattern.split
    rows = []
    for text in X.reshape(-1):
        tokens = [t for t in split(str(text)) if t and len(t) >= mincharnum]
        rows.append(["\x02", *tokens, "\x03"] if mark else tokens)
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), pad_value, dtype=object)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out.reshape(*X.shape, width)


def _dequantized_weights(w: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """(D, in, 4H) quantized weights, per direction or per direction and column, as the float
    (D, 4H, in) layout of ONNX LSTM."""
    shape = (-1, 1, 1) if scale.ndim == 1 else (scale.shape[0], 1, -1)
    centered = w.astype(np.float32) - zero_point.astype(np.float32).reshape(shape)
    return (centered * scale.astype(np.float32).reshape(shape)).transpose(0, 2, 1)


@kernel("DynamicQuantizeLSTM", since=1, domain=MS)
def dynamic_quantize_lstm(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None,
                          W_scale=None, W_zero_point=None, R_scale=None, R_zero_point=None, *,
                          activation_alpha=None, activation_beta=None, activations=None, clip=None,
                          direction="forward", hidden_size=None, input_forget=0):
    """LSTM whose int8/uint8 weights (transposed, (D, in, 4H)) are dequantized first; onnxruntime
    also quantizes X on the fly, so results agree to quantization error."""
    return lstm(X, _dequantized_weights(W, W_scale, W_zero_point), _dequantized_weights(R, R_scale, R_zero_point),
                B, sequence_lens, initial_h, initial_c, P, activation_alpha=activation_alpha,
                activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                hidden_size=hidden_size, input_forget=input_forget)
