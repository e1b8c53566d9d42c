"""onnxruntime contrib operators (domain ``com.microsoft``), following onnxruntime's
docs/ContribOperators.md and its CPU kernels."""
from __future__ import annotations

import numpy as np

from onnxpy.ops.quantize import conv, dequantize, dynamic_quantize_linear, quantize
from onnxpy.ops.transformer import rotate, softmax
from onnxpy.registry import kernel

MS = "com.microsoft"


def _work(x: np.ndarray) -> np.ndarray:
    """``x`` in the float type the math runs in: float64 stays, everything else is float32."""
    return x if x.dtype == np.float64 else x.astype(np.float32)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7)."""
    t = 1 / (1 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    w = _work(x)
    return (0.5 * w * (1 + _erf(w * w.dtype.type(np.sqrt(0.5))))).astype(x.dtype)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


_ACTIVATIONS = {
    "Relu": lambda x, p: np.maximum(x, 0),
    "Tanh": lambda x, p: np.tanh(x),
    "Sigmoid": lambda x, p: _sigmoid(x),
    "LeakyRelu": lambda x, p: np.where(x >= 0, x, x * p[0]),
    "Clip": lambda x, p: np.clip(x, p[0], p[1]),
    "HardSigmoid": lambda x, p: np.clip(x * p[0] + p[1], 0, 1),
    "Elu": lambda x, p: np.where(x >= 0, x, p[0] * np.expm1(np.minimum(x, 0))),
    "ThresholdedRelu": lambda x, p: np.where(x > p[0], x, 0),
    "ScaledTanh": lambda x, p: p[0] * np.tanh(p[1] * x),
    "Softplus": lambda x, p: np.logaddexp(x, 0),
    "Softsign": lambda x, p: x / (1 + np.abs(x)),
}
_ACTIVATION_DEFAULTS = {"LeakyRelu": [0.01], "Clip": [-np.inf, np.inf], "HardSigmoid": [0.2, 0.5], "Elu": [1.0],
                        "ThresholdedRelu": [1.0], "ScaledTanh": [1.0, 1.0]}


def _activate(x: np.ndarray, name: str | None, params) -> np.ndarray:
    """The fused activation ``name`` (None: identity) with its float parameters, in ``x``'s dtype."""
    if not name:
        return x
    if name not in _ACTIVATIONS:
        raise ValueError(f"unsupported fused activation {name!r}; supported: {sorted(_ACTIVATIONS)}")
    params = [p for p in (params or []) if p is not None] or _ACTIVATION_DEFAULTS.get(name, [])
    return _ACTIVATIONS[name](_work(x), [np.float32(p) for p in params]).astype(x.dtype)


@kernel("Gelu", since=1, domain=MS)
def gelu(X):
    """``0.5 x (1 + erf(x / sqrt 2))``."""
    return _gelu(X)


@kernel("BiasGelu", since=1, domain=MS)
def bias_gelu(A, B):
    """Gelu of ``A + B``."""
    return _gelu(A + B)


@kernel("FastGelu", since=1, domain=MS)
def fast_gelu(X, bias=None):
    """Tanh approximation of Gelu of ``X + bias``."""
    x = _work(X if bias is None else X + bias)
    inner = np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x * x * x)
    return (0.5 * x * (1 + np.tanh(inner))).astype(X.dtype)


@kernel("QuickGelu", since=1, domain=MS)
def quick_gelu(X, *, alpha=1.702):
    """``x * sigmoid(alpha * x)``."""
    x = _work(X)
    return (x * _sigmoid(x * np.float32(alpha))).astype(X.dtype)


@kernel("FusedConv", since=1, domain=MS)
def fused_conv(X, W, B=None, Z=None, *, activation=None, activation_params=None, auto_pad="NOTSET",
               dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Conv + bias + optional sum input ``Z``, then the fused activation."""
    y = conv(X, W, auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads,
             strides=strides).astype(X.dtype, copy=False)
    if B is not None:
        y = y + B.reshape((-1,) + (1,) * (X.ndim - 2))
    if Z is not None:
        y = y + Z
    return _activate(y, activation, activation_params)


@kernel("FusedGemm", since=1, domain=MS)
def fused_gemm(A, B, C=None, *, activation=None, activation_alpha=None, activation_beta=None,
               activation_gamma=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    """Gemm followed by the fused activation."""
    a = A.T if transA else A
    b = B.T if transB else B
    y = np.matmul(a, b) * A.dtype.type(alpha)
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
    y = np.matmul(prepare(A, transA, transBatchA), prepare(B, transB, transBatchB))
    return (y * A.dtype.type(alpha)).astype(A.dtype, copy=False)


def _layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, *, axis: int = -1, epsilon: float,
                simplified: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer (or RMS, ``simplified``) normalization over the axes from ``axis`` on, in float32 or
    float64: ``(y, mean, inv_std_dev)``, the statistics keeping reduced axes."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    w = _work(x)
    mean = np.zeros((), w.dtype) if simplified else w.mean(axis=axes, keepdims=True)
    centered = w - mean
    inv_std = 1 / np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True) + w.dtype.type(epsilon))
    y = centered * inv_std * scale.astype(w.dtype)
    if bias is not None:
        y = y + bias.astype(w.dtype)
    return y.astype(x.dtype), np.broadcast_to(mean, inv_std.shape).astype(np.float32), inv_std.astype(np.float32)


@kernel("LayerNormalization", since=1, domain=MS)
def layer_normalization(X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Layer normalization over the axes from ``axis`` on (onnxruntime's pre-opset-17 form)."""
    return _layer_norm(X, Scale, B, axis=axis, epsilon=epsilon, simplified=False)


@kernel("SimplifiedLayerNormalization", since=1, domain=MS)
def simplified_layer_normalization(X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """RMS normalization: ``x / sqrt(mean(x^2) + epsilon) * scale``; outputs Y and inv_std_var."""
    y, _, inv_std = _layer_norm(X, scale, None, axis=axis, epsilon=epsilon, simplified=True)
    return y, inv_std


def _skip_norm(input, skip, gamma, beta, bias, epsilon, simplified):
    total = input + skip if bias is None else input + skip + bias
    y, mean, inv_std = _layer_norm(total, gamma, beta, epsilon=epsilon, simplified=simplified)
    return y, mean, inv_std, total


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
    total = word_embedding[input_ids] + position_embedding[positions]
    if segment_embedding is not None and segment_ids is not None:
        total = total + segment_embedding[segment_ids]
    y, _, _ = _layer_norm(total, gamma, beta, epsilon=epsilon, simplified=False)
    mask_index = mask.sum(axis=1).astype(np.int32) if mask is not None else np.zeros(batch, np.int32)
    return y, mask_index, total
