"""Normalization: BatchNormalization, Layer/Group/Instance/RMS normalization, LRN, LpNormalization and
MeanVarianceNormalization.

Statistics are computed in float32 for float16/bfloat16 inputs (or in the stash_type where the op
has one); per-channel parameters are folded into one scale and one shift before touching the data.
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.ops._helpers import compute_dtype, layer_norm_rows, normalize_axes, normalize_axis
from onnxpy.registry import kernel


def _moments(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance over ``axes``, kept as size-1 axes, in x's dtype."""
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(np.square(centered, out=centered), axis=axes, keepdims=True)
    return mean, var


def _inv_std(var: np.ndarray, epsilon: float) -> np.ndarray:
    return 1 / np.sqrt(var + var.dtype.type(epsilon))


def _standardize(x: np.ndarray, axes: tuple[int, ...], epsilon: float):
    """(x - mean) / sqrt(var + epsilon) over ``axes`` (a new array), with the mean and inverse
    deviation; ``x - mean`` is computed once and scaled in place."""
    mean = np.mean(x, axis=axes, keepdims=True)
    y = x - mean
    inv = _inv_std(np.mean(np.square(y), axis=axes, keepdims=True), epsilon)
    y *= inv
    return y, mean, inv


def _channel_view(p: np.ndarray, rank: int, dtype: np.dtype) -> np.ndarray:
    """A per-channel parameter (C, ...) shaped to broadcast against an (N, C, ...) tensor."""
    return p.astype(dtype, copy=False).reshape(p.shape + (1,) * (rank - 1 - p.ndim))


def _batch_norm(x, scale, b, mean, var, epsilon, momentum, training, spatial=1):
    """Normalize with the given statistics; in training, with the batch's (over all axes but the
    channel's, or but channel and spatial ones when spatial=0), then also return the running
    mean, running variance, batch mean and batch inverse deviation."""
    ct = compute_dtype(x.dtype)
    xc = x.astype(ct, copy=False)
    s, bias, run_mean, run_var = (_channel_view(p, x.ndim, ct) for p in (scale, b, mean, var))
    if training:
        axes = (0,) + (tuple(range(2, x.ndim)) if spatial else ())
        cur_mean, cur_var = _moments(xc, axes)
        cur_mean, cur_var = cur_mean.reshape(run_mean.shape), cur_var.reshape(run_var.shape)
    else:
        cur_mean, cur_var = run_mean, run_var
    a = s * _inv_std(cur_var, epsilon)
    y = xc * a
    y += bias - cur_mean * a
    y = y.astype(x.dtype, copy=False)
    if not training:
        return y
    m = ct.type(momentum)
    stats = (run_mean * m + cur_mean * (1 - m), run_var * m + cur_var * (1 - m),
             cur_mean, _inv_std(cur_var, epsilon))
    return (y,) + tuple(v.reshape(mean.shape).astype(mean.dtype, copy=False) for v in stats)


@kernel("BatchNormalization", since=14)
def batch_normalization(x, scale, b, input_mean, input_var, *, epsilon=1e-5, momentum=0.9, training_mode=0):
    """Batch normalization (https://onnx.ai/onnx/operators/onnx__BatchNormalization.html); with
    training_mode, batch statistics and the updated running mean and variance."""
    return _batch_norm(x, scale, b, input_mean, input_var, epsilon, momentum, bool(training_mode))


@kernel("BatchNormalization", since=9)
def batch_normalization_9(x, scale, b, mean, var, *, epsilon=1e-5, momentum=0.9, ctx):
    """BatchNormalization-9: training mode when more than Y is requested; the fifth output,
    saved_var, is the batch's inverse standard deviation as in onnxruntime."""
    return _batch_norm(x, scale, b, mean, var, epsilon, momentum, ctx.num_outputs > 1)


@kernel("BatchNormalization", since=7)
def batch_normalization_7(x, scale, b, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1, ctx):
    """BatchNormalization-7: spatial=0 keeps per-activation statistics (C, D1, ..., Dn)."""
    return _batch_norm(x, scale, b, mean, var, epsilon, momentum, ctx.num_outputs > 1, spatial)


@kernel("BatchNormalization", since=6)
def batch_normalization_6(x, scale, b, mean, var, *, epsilon=1e-5, is_test=0, momentum=0.9, spatial=1):
    """BatchNormalization-6: training mode unless is_test is set."""
    return _batch_norm(x, scale, b, mean, var, epsilon, momentum, not is_test, spatial)


@kernel("BatchNormalization", since=1)
def batch_normalization_1(x, scale, b, mean, var, *, consumed_inputs, epsilon=1e-5, is_test=0, momentum=0.9,
                          spatial=1):
    """BatchNormalization-1: as version 6 (consumed_inputs is a legacy optimization hint)."""
    return _batch_norm(x, scale, b, mean, var, epsilon, momentum, not is_test, spatial)


def _stash(stash_type: int) -> np.dtype:
    return ir.dtype_of(stash_type)


@kernel("LayerNormalization", since=17)
def layer_normalization(x, scale, b=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Standardize over the axes from ``axis`` on, then scale and shift; Mean and InvStdDev are
    in the stash_type (https://onnx.ai/onnx/operators/onnx__LayerNormalization.html)."""
    st = _stash(stash_type)
    first = normalize_axis(axis, x.ndim)
    compiled = layer_norm_rows(x, first, scale, b, epsilon, simplified=False) if x.dtype == st else None
    if compiled is not None:
        y, mean, inv = compiled
        return y, mean.astype(st), inv.astype(st)
    y, mean, inv = _standardize(x.astype(st, copy=False), tuple(range(first, x.ndim)), epsilon)
    y *= scale.astype(st, copy=False)
    if b is not None:
        y += b.astype(st, copy=False)
    return y.astype(x.dtype, copy=False), mean, inv


@kernel("RMSNormalization", since=23)
def rms_normalization(x, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """x / sqrt(mean(x^2) + epsilon) over the axes from ``axis`` on, times scale; the result has
    scale's dtype (https://onnx.ai/onnx/operators/onnx__RMSNormalization.html)."""
    st = _stash(stash_type)
    xs = x.astype(st, copy=False)
    axes = tuple(range(normalize_axis(axis, x.ndim), x.ndim))
    inv = _inv_std(np.mean(np.square(xs), axis=axes, keepdims=True), epsilon)
    y = xs * inv
    y *= scale.astype(st, copy=False)
    return y.astype(scale.dtype, copy=False)


def _group_norm(x, scale, bias, num_groups, epsilon, dtype):
    n, c = x.shape[:2]
    if c % num_groups:
        raise ValueError(f"{c} channels cannot be split into num_groups={num_groups}")
    grouped = x.astype(dtype, copy=False).reshape(n, num_groups, -1)
    y = _standardize(grouped, (2,), epsilon)[0].reshape(x.shape)
    y *= _channel_view(scale, x.ndim, dtype)
    y += _channel_view(bias, x.ndim, dtype)
    return y.astype(x.dtype, copy=False)


@kernel("GroupNormalization", since=21)
def group_normalization(x, scale, bias, *, epsilon=1e-5, num_groups, stash_type=1):
    """Standardize each group of channels, then scale and shift per channel
    (https://onnx.ai/onnx/operators/onnx__GroupNormalization.html)."""
    return _group_norm(x, scale, bias, num_groups, epsilon, _stash(stash_type))


@kernel("GroupNormalization", since=18)
def group_normalization_18(x, scale, bias, *, epsilon=1e-5, num_groups):
    """GroupNormalization-18: scale and bias hold one value per group."""
    per_channel = x.shape[1] // num_groups
    return _group_norm(x, np.repeat(scale, per_channel), np.repeat(bias, per_channel), num_groups, epsilon,
                       compute_dtype(x.dtype))


@kernel("InstanceNormalization", since=6)
def instance_normalization(x, scale, b, *, epsilon=1e-5):
    """Standardize each channel of each item over its spatial axes, then scale and shift
    (https://onnx.ai/onnx/operators/onnx__InstanceNormalization.html)."""
    ct = compute_dtype(x.dtype)
    xc = x.astype(ct, copy=False)
    mean, var = _moments(xc, tuple(range(2, x.ndim)))
    a = _inv_std(var, epsilon) * _channel_view(scale, x.ndim, ct)
    y = xc * a
    y += _channel_view(b, x.ndim, ct) - mean * a
    return y.astype(x.dtype, copy=False)


@kernel("InstanceNormalization", since=1)
def instance_normalization_1(x, scale, b, *, consumed_inputs=None, epsilon=1e-5):
    """InstanceNormalization-1: as version 6 (consumed_inputs is a legacy optimization hint)."""
    return instance_normalization(x, scale, b, epsilon=epsilon)


@kernel("LRN", since=1)
def lrn(x, *, alpha=1e-4, beta=0.75, bias=1.0, size):
    """Local response normalization across channels: x / (bias + alpha / size * sum of squares over
    channels c - floor((size-1)/2) .. c + ceil((size-1)/2)) ** beta (https://onnx.ai/onnx/operators/onnx__LRN.html)."""
    ct = compute_dtype(x.dtype)
    sq = np.square(x.astype(ct, copy=False))
    c = x.shape[1]
    before = (size - 1) // 2
    padded = np.zeros((x.shape[0], c + size - 1) + x.shape[2:], dtype=ct)
    padded[:, before:before + c] = sq
    total = padded[:, :c].copy()
    for t in range(1, size):
        total += padded[:, t:t + c]
    total *= ct.type(alpha / size)
    total += ct.type(bias)
    return (x / np.power(total, ct.type(beta), out=total)).astype(x.dtype, copy=False)


@kernel("LpNormalization", since=1)
def lp_normalization(x, *, axis=-1, p=2):
    """x divided by its L1 or L2 norm along ``axis``; a zero norm gives 0
    (https://onnx.ai/onnx/operators/onnx__LpNormalization.html)."""
    if p not in (1, 2):
        raise ValueError(f"LpNormalization supports p = 1 or 2, not {p}")
    ct = compute_dtype(x.dtype)
    xc = x.astype(ct, copy=False)
    ax = normalize_axis(axis, x.ndim)
    norm = np.sum(np.abs(xc), axis=ax, keepdims=True) if p == 1 else np.sqrt(np.sum(xc * xc, axis=ax, keepdims=True))
    safe = np.where(norm == 0, ct.type(1), norm)
    return (xc / safe).astype(x.dtype, copy=False)


@kernel("MeanVarianceNormalization", since=9)
def mean_variance_normalization(x, *, axes=[0, 2, 3]):  # noqa: B006 (the spec default, never mutated)
    """(x - mean) / (std + 1e-9) over ``axes``, the epsilon of the function body
    (https://onnx.ai/onnx/operators/onnx__MeanVarianceNormalization.html)."""
    ct = compute_dtype(x.dtype)
    xc = x.astype(ct, copy=False)
    mean, var = _moments(xc, normalize_axes(axes, x.ndim))
    return ((xc - mean) / (np.sqrt(var) + ct.type(1e-9))).astype(x.dtype, copy=False)
