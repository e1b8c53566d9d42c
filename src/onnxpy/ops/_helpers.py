"""Logic shared by kernels of several families: axes and indices, scalar inputs, compute dtypes,
erf and sigmoid, and the sliding-window and padding arithmetic of convolution and pooling."""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from onnxpy import parallel

_JIT = None


def jit():
    """``onnxpy.ops._jit``, imported on first use (numba's import costs about 0.3 s) and then kept:
    an import statement in a kernel costs about 1 us a call."""
    global _JIT
    if _JIT is None:
        from onnxpy.ops import _jit

        _JIT = _jit
    return _JIT


def normalize_axis(axis: int, rank: int) -> int:
    """A possibly negative axis as an index in ``[0, rank)``; raises ValueError when out of range."""
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def normalize_axes(axes: Sequence[int] | np.ndarray | None, rank: int) -> tuple[int, ...] | None:
    """Axes as sorted non-negative ints; ``None`` stays ``None`` (meaning all axes)."""
    if axes is None:
        return None
    return tuple(sorted(normalize_axis(int(a), rank) for a in np.asarray(axes).reshape(-1)))


def as_dtype_of(value: Any, like: np.ndarray) -> np.ndarray:
    """``value`` as an array with exactly ``like``'s dtype (no float64 from Python scalars)."""
    return np.asarray(value, dtype=like.dtype)


def compute_dtype(dtype: np.dtype, integers: np.dtype | type | None = None) -> np.dtype:
    """The dtype arithmetic on ``dtype`` runs in: floats narrower than 32 bits (float16, bfloat16,
    float8) as float32, integers and booleans as ``integers`` when given, anything else itself."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iub":
        return np.dtype(integers) if integers is not None else dtype
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def widen(x: np.ndarray, need_float: bool = False) -> np.ndarray:
    """``x`` in a dtype numpy computes accurately (and with BLAS) in: narrow floats as float32,
    and, when ``need_float``, integers as float64; the caller casts the result back."""
    return x.astype(compute_dtype(x.dtype, np.float64 if need_float else None), copy=False)


def ints(values) -> list[int]:
    """A scalar, 1-D integer tensor or list as a list of Python ints."""
    return np.asarray(values, dtype=np.int64).reshape(-1).tolist()


def zero_of(dtype: np.dtype) -> np.ndarray:
    """The 0-d default fill value of ``dtype``: 0, False, or the empty string for strings."""
    return np.array("", dtype=object) if dtype == object else np.zeros((), dtype=dtype)


def first(value) -> Any:
    """The first (normally the only) element of a scalar or 1-element tensor input, as a Python scalar."""
    return np.asarray(value).reshape(-1)[0].item()


def scalar_int(value, what: str) -> int:
    """An integer scalar or 1-element 1-D tensor input as a Python int; ValueError otherwise."""
    arr = np.asarray(value)
    if arr.size != 1 or arr.ndim > 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be an integer scalar or 1-element 1-D tensor, got {arr.dtype} {arr.shape}")
    return int(arr.reshape(-1)[0])


def truth(value: Any, what: str) -> bool:
    """The truth of a one-element tensor (a condition input); ValueError for any other size."""
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"{what} must hold exactly one element, got shape {arr.shape}")
    return bool(arr.reshape(-1)[0])


def present(value: np.ndarray | None) -> bool:
    """Whether an optional input is given and non-empty (an empty tensor stands for "absent")."""
    return value is not None and np.asarray(value).size > 0


def positions(indices, size: int, op: str) -> np.ndarray:
    """``indices`` into an axis of length ``size`` as non-negative int64; negatives count from
    the end; ValueError outside ``[-size, size)``."""
    idx = np.asarray(indices).astype(np.int64, copy=False)
    if idx.size and (idx.min() < -size or idx.max() >= size):
        bad = idx[(idx < -size) | (idx >= size)].reshape(-1)[0]
        raise ValueError(f"{op}: index {bad} is out of range for an axis of size {size}")
    return np.where(idx < 0, idx + size, idx) if idx.size and idx.min() < 0 else idx


# numpy has no erf: |x| is clipped where erf rounds to 1, then erf(x) = x·P(x²) (about 3 ulps in
# float32, 100 in float64). The degrees are multiples of 4: the compiled kernel takes four Horner
# steps at a time.
_ERF_FITS = {np.dtype(np.float32): (4.0, 16), np.dtype(np.float64): (6.0, 40)}


@functools.lru_cache(maxsize=None)
def erf_polynomial(dtype: np.dtype) -> tuple[float, np.ndarray]:
    """The radius and the power coefficients (highest first, in ``dtype``), in ``t = 2x²/radius² -
    1``, of erf(x)/x interpolated at Chebyshev points: made on first use, as numpy.polynomial's
    import and the fit take ~9 ms that ``import onnxpy`` (and so a first session) would pay."""
    from numpy.polynomial import chebyshev

    radius, degree = _ERF_FITS[dtype]

    def erf_over_x(t: np.ndarray) -> np.ndarray:
        x = np.sqrt((t + 1) * radius * radius / 2)
        return np.array([math.erf(v) / v if v else 2 / math.sqrt(math.pi) for v in x])

    return radius, chebyshev.cheb2poly(chebyshev.chebinterpolate(erf_over_x, degree))[::-1].astype(dtype)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, element-wise, in ``x``'s dtype (computed in float32 or float64)."""
    return _erf_or_gelu(x, fused_gelu=False)


def gelu(x: np.ndarray) -> np.ndarray:
    """``x (1 + erf(x / sqrt 2)) / 2``, element-wise in one pass, in ``x``'s dtype."""
    return _erf_or_gelu(x, fused_gelu=True)


def _erf_or_gelu(x: np.ndarray, fused_gelu: bool) -> np.ndarray:
    work = compute_dtype(x.dtype, np.float32)
    radius, coefficients = erf_polynomial(work)
    return jit().erf(x.astype(work, copy=False), coefficients, radius, fused_gelu).astype(x.dtype, copy=False)


# Activations a convolution's epilogue applies while its output is in cache (``_jit.finish``), as
# ``(code, alpha)`` pairs: x * HardSigmoid(x, 1/6, 0.5), and x * sigmoid(alpha x)
HARD_SWISH, SWISH = 1, 2
# and the others a compiled squeeze-and-excitation gate applies (``_jit.excitation``), by FusedConv
# activation name (QuickGelu is SWISH), each with its two parameters
RELU, SIGMOID, HARD_SIGMOID, LEAKY_RELU, CLIP, TANH = 3, 4, 5, 6, 7, 8
# and those a packed product applies to its tiles (``_jit.packed_matmul``): RELU, Gelu and its tanh
# estimate, by the name ``pack_weights`` gives them
GELU, FAST_GELU = 9, 10
PRODUCT_ACTIVATIONS = {"Relu": RELU, "Gelu": GELU, "FastGelu": FAST_GELU}
GATE_ACTIVATIONS = {None: 0, "Relu": RELU, "Sigmoid": SIGMOID, "HardSigmoid": HARD_SIGMOID, "LeakyRelu": LEAKY_RELU,
                    "Clip": CLIP, "Tanh": TANH, "HardSwish": HARD_SWISH, "QuickGelu": SWISH}


def late_activation(y: np.ndarray, activation: tuple[int, float] | None) -> np.ndarray:
    """``activation`` applied to y after the fact (where the epilogue could not): a new array."""
    if activation is None:
        return y
    code, alpha = activation
    return hard_sigmoid(y, 1 / 6, 0.5, times_x=True) if code == HARD_SWISH else swish(y, alpha)


# Element-wise ops run compiled (``_jit``) from this many elements: below it numpy's passes stay in
# L1 and cost within 15% (measured on sigmoid), not worth loading numba for in a model of small
# tensors; at 1.2M elements sigmoid's compiled pass takes 1.4 ms, numpy's four 2.5 ms.
JIT_MIN_SIZE = 2048
JIT_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # what the compiled kernels serve
# float32 products by a packed constant matrix (``_jit.packed_matmul``): PACKED_COLUMNS columns (two
# 16-lane vectors) a tile, the inner dimension in blocks of PACKED_DEPTH (a packed block of columns
# then fills L1), the rows in bands of PACKED_BAND, whole 12-row tiles (their packed block stays in
# L2). The compiled code takes depth and band as arguments: numba's cache would not see a change here.
PACKED_COLUMNS, PACKED_DEPTH, PACKED_BAND = 32, 256, 192


_SOFTMAX_BLOCK = 1 << 16  # elements of rows at a time: each of softmax's five passes then runs in L2


def softmax(x: np.ndarray, axis: int = -1, empty_rows_zero: bool = False) -> np.ndarray:
    """Softmax along ``axis`` as a new array, in x's dtype. Along the last axis, float32 runs
    compiled (``_jit``), other dtypes with numpy a block of rows at a time so that the max,
    subtract, exp, sum and divide passes stay in cache. With ``empty_rows_zero``, a row that is
    entirely -inf (fully masked attention) gives zeros, not NaN."""
    if axis not in (-1, x.ndim - 1):
        moved = softmax(np.moveaxis(x, axis, -1), -1, empty_rows_zero)
        return np.ascontiguousarray(np.moveaxis(moved, -1, axis))
    n = x.shape[-1] if x.ndim else 1
    rows = np.ascontiguousarray(x).reshape(-1, n)
    if x.dtype == np.float32 and n and x.size >= JIT_MIN_SIZE:
        return jit().softmax_rows(rows, empty_rows_zero).reshape(x.shape)
    out = np.empty(rows.shape, dtype=x.dtype)
    step = max(1, _SOFTMAX_BLOCK // max(n, 1))
    for r0 in range(0, rows.shape[0], step):
        block, dst = rows[r0:r0 + step], out[r0:r0 + step]
        peak = np.max(block, axis=1, keepdims=True) if n else np.zeros((len(block), 1), x.dtype)
        if empty_rows_zero:
            peak[np.isneginf(peak)] = 0
        np.subtract(block, peak, out=dst)
        np.exp(dst, out=dst)
        total = np.sum(dst, axis=1, keepdims=True)
        if empty_rows_zero:
            total[total == 0] = 1
        np.divide(dst, total, out=dst)
    return out.reshape(x.shape)


def trailing_sums(x: np.ndarray, count: int) -> np.ndarray:
    """Sums of a C-contiguous float32 or float64 x over its last ``count`` axes (shape: the leading
    axes), as one BLAS matrix-vector product with ones: numpy's reduction over several axes makes an
    inner-loop call per row, 3-5x slower."""
    lead = x.shape[:x.ndim - count]
    rows = x.reshape(math.prod(lead), -1)
    return (rows @ np.ones(rows.shape[1], dtype=x.dtype)).reshape(lead)


def arithmetic(ufunc: np.ufunc, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``ufunc(a, b)`` (np.add, np.subtract, np.multiply or np.divide) with numpy broadcasting. Where
    one operand holds one value per row of the other (a per-channel scale or shift: (N, C, 1, 1)
    against (N, C, H, W)), both float32 or both float64 and the larger C-contiguous with at least
    ``JIT_MIN_SIZE`` elements, in one compiled pass (``_jit.per_row``); otherwise numpy's, split
    over the pool's threads."""
    big, small = (a, b) if a.size >= b.size else (b, a)
    if (a.dtype == b.dtype and a.dtype in JIT_FLOATS and big.size >= JIT_MIN_SIZE and 1 < small.size < big.size
            and small.ndim <= big.ndim and big.flags.c_contiguous):
        shape = (1,) * (big.ndim - small.ndim) + small.shape
        lead = len(shape)
        while shape[lead - 1] == 1:  # stops at a dimension above 1, as small has more than one element
            lead -= 1
        if shape[:lead] == big.shape[:lead]:
            return jit().per_row(ufunc, big, small, small is a)
    return parallel.binary(ufunc, a, b)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))``, computed in float32 or wider and returned in x's dtype: where exp
    overflows (below about -88 in float32) the result is the limit 0; both tails keep their relative
    accuracy (float16's too: its own exp overflows at -11)."""
    return _sigmoid_times(x, 1.0, times_x=False)


def swish(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """``x * sigmoid(alpha * x)`` as ``x / (1 + exp(-alpha * x))``, computed in float32 or wider and
    returned in x's dtype."""
    return _sigmoid_times(x, alpha, times_x=True)


def hard_sigmoid(x: np.ndarray, alpha: float, beta: float, times_x: bool = False) -> np.ndarray:
    """``max(0, min(1, alpha * x + beta))``, times x with ``times_x``, as a new array: large float32
    and float64 arrays in one compiled pass, others in place after numpy's first pass (and not with
    np.clip, which turns bfloat16 into float32)."""
    if x.dtype in JIT_FLOATS and x.size >= JIT_MIN_SIZE:
        return jit().hard_sigmoid(x, alpha, beta, times_x)
    y = np.empty_like(x)
    np.multiply(x, x.dtype.type(alpha), out=y)
    y += x.dtype.type(beta)
    np.maximum(y, x.dtype.type(0), out=y)
    np.minimum(y, x.dtype.type(1), out=y)
    if times_x:
        y *= x
    return y


# Gelu's tanh estimate as x sigmoid(GELU_TANH_ALPHA (x + GELU_TANH_CUBIC x^3))
GELU_TANH_ALPHA, GELU_TANH_CUBIC = 2 * math.sqrt(2 / math.pi), 0.044715


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """Gelu's tanh estimate ``x (1 + tanh(u)) / 2``, u = sqrt(2 / pi) (x + 0.044715 x^3), as the
    equal ``x sigmoid(2 u)``: one compiled pass for large float32 work, in x's dtype."""
    return _sigmoid_times(x, GELU_TANH_ALPHA, times_x=True, cubic=GELU_TANH_CUBIC)


def _sigmoid_times(x: np.ndarray, alpha: float, times_x: bool, cubic: float = 0.0) -> np.ndarray:
    """sigmoid(alpha (x + cubic x^3)), times x with ``times_x``: large float32 work in one compiled
    pass (``_jit``), the rest with numpy, in place after its first pass."""
    work = x.astype(compute_dtype(x.dtype), copy=False)
    if work.dtype == np.float32 and work.size >= JIT_MIN_SIZE:
        return jit().sigmoid(work, alpha, times_x, cubic).astype(x.dtype, copy=False)
    y = np.empty_like(work)
    if cubic:
        np.multiply(work, work, out=y)
        y *= work
        y *= y.dtype.type(cubic)
        y += work
        y *= y.dtype.type(-alpha)
    else:
        np.multiply(work, y.dtype.type(-alpha), out=y)
    np.exp(y, out=y)
    y += y.dtype.type(1)
    if times_x:
        return np.divide(work, y, out=y).astype(x.dtype, copy=False)
    return np.reciprocal(y, out=y).astype(x.dtype, copy=False)


def layer_norm_rows(x: np.ndarray, first: int, scale: np.ndarray, bias: np.ndarray | None, epsilon: float,
                    simplified: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Layer (RMS with ``simplified``) normalization of a float32/float64 ``x`` over its axes from
    ``first`` on, times scale plus bias, compiled (``_jit.layer_norm``): ``(y, mean, inv_std)``
    with the statistics as (rows, 1, ...) in x's dtype; None where that kernel does not apply (small
    or other float types, or a scale or bias that is not one value per normalized element)."""
    trailing = x.shape[first:]
    cols = math.prod(trailing)
    if (x.dtype not in JIT_FLOATS or x.size < JIT_MIN_SIZE or not cols or any(
            p is not None and (p.size != cols or np.broadcast_shapes(p.shape, trailing) != trailing)
            for p in (scale, bias))):
        return None
    y, mean, inv = jit().layer_norm(x.reshape(-1, cols), scale, bias, epsilon, simplified)
    stats = x.shape[:first] + (1,) * len(trailing)
    return y.reshape(x.shape), mean.reshape(stats), inv.reshape(stats)


def per_axis(values: Sequence[int] | None, n: int, default: int, name: str) -> list[int]:
    """An ints attribute with one value per spatial axis (``default`` on each when absent)."""
    if values is None:
        return [default] * n
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values, expected {n} (one per spatial axis)")
    return [int(v) for v in values]


def window_geometry(in_shape: Sequence[int], kernel_shape: Sequence[int], strides: Sequence[int],
                    dilations: Sequence[int], pads: Sequence[int] | None, auto_pad: str,
                    ceil_mode: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Output spatial shape and the (begin, end) padding of a sliding window, per spatial axis.

    SAME_* pad so that ``out = ceil(in / stride)``, the odd unit at the end for SAME_UPPER and at
    the beginning for SAME_LOWER; with ``ceil_mode`` the last window must start inside the input or
    its begin padding (https://onnx.ai/onnx/operators/onnx__MaxPool.html)."""
    n = len(in_shape)
    span = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(in_shape, strides)]
        total = [max(0, (o - 1) * s + w - i) for o, s, w, i in zip(out, strides, span, in_shape)]
        small = [t // 2 for t in total]
        begin = small if auto_pad == "SAME_UPPER" else [t - h for t, h in zip(total, small)]
        end = [t - b for t, b in zip(total, begin)]
    elif auto_pad in ("NOTSET", "VALID"):
        pads = per_axis(pads if auto_pad == "NOTSET" else None, 2 * n, 0, "pads")
        begin, end = pads[:n], pads[n:]
        out = []
        for i, s, w, b, e in zip(in_shape, strides, span, begin, end):
            o = (i + b + e - w) // s + 1
            if ceil_mode and (i + b + e - w) % s and o * s < i + b:
                o += 1
            out.append(o)
    else:
        raise ValueError(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, not {auto_pad!r}")
    if min(out, default=1) < 1:
        raise ValueError(f"input spatial shape {list(in_shape)} is too small for kernel {list(kernel_shape)}, "
                         f"dilations {list(dilations)} and pads {begin + end}")
    return out, begin, end


def pad_spatial(x: np.ndarray, begin: Sequence[int], end: Sequence[int], value=0) -> np.ndarray:
    """``x`` with its axes from 2 on padded by ``value``; ``x`` itself when there is no padding."""
    if not any(begin) and not any(end):
        return x
    shape = x.shape[:2] + tuple(d + b + e for d, b, e in zip(x.shape[2:], begin, end))
    out = np.empty(shape, dtype=x.dtype)
    out[(...,) + tuple(slice(b, b + d) for b, d in zip(begin, x.shape[2:]))] = x
    for axis, (b, e) in enumerate(zip(begin, end), start=2):
        lead = (slice(None),) * axis
        out[lead + (slice(0, b),)] = value
        out[lead + (slice(shape[axis] - e, None),)] = value
    return out


def windows(xp: np.ndarray, kernel_shape: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
            out: Sequence[int]) -> np.ndarray:
    """A read-only (N, C, *kernel, *out) view of the sliding windows of ``xp`` (N, C, *spatial)."""
    n_st, c_st, *sp = xp.strides
    shape = xp.shape[:2] + tuple(kernel_shape) + tuple(out)
    st = (n_st, c_st) + tuple(s * d for s, d in zip(sp, dilations)) + tuple(s * t for s, t in zip(sp, strides))
    return as_strided(xp, shape, st, writeable=False)
