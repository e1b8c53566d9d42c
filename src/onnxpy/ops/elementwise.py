"""Element-wise math, comparison, logic, bitwise ops, casts and activations, with numpy broadcasting.

Plain numpy maps are registered from tables. The old forms of an op (opset 1's `consumed_inputs`,
the `broadcast`/`axis` attributes of binary ops before opset 7) wrap the current kernel with
``_legacy``. Constants are typed like the input, so no float64 creeps in (bfloat16 and the other
ml_dtypes types do not treat Python floats as weak scalars).
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import ml_dtypes
import numpy as np

from onnxpy import ir
from onnxpy.ops._helpers import (arithmetic, erf, gelu as gelu_of, gelu_tanh, hard_sigmoid as hard_sigmoid_of,
                                 normalize_axis, sigmoid, swish as swish_of)
from onnxpy.registry import kernel

_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_FLT_MAX = float(np.finfo(np.float32).max)
_STRING = np.dtype(object)
_FLOAT8 = frozenset(np.dtype(t) for t in (
    ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz,
))
_E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
_ML_FLOATS = _FLOAT8 | {np.dtype(t) for t in (
    ml_dtypes.bfloat16, ml_dtypes.float8_e8m0fnu, ml_dtypes.float4_e2m1fn, ml_dtypes.float6_e2m3fn,
    ml_dtypes.float6_e3m2fn,
)}
_SUB_BYTE_BITS = {np.dtype(t): bits for t, bits in (
    (ml_dtypes.int4, 4), (ml_dtypes.uint4, 4), (ml_dtypes.float4_e2m1fn, 4), (ml_dtypes.int2, 2), (ml_dtypes.uint2, 2),
)}


def _f32(value: float) -> float:
    """``value`` rounded to float32, as ONNX stores float attributes (so defaults compare equal)."""
    return float(np.float32(value))


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype in _ML_FLOATS


def _scalar(x: np.ndarray, value: float) -> Any:
    """``value`` as a scalar of ``x``'s dtype."""
    return x.dtype.type(value)


def _legacy(fn: Callable, *, with_broadcast: bool = False, with_consumed_inputs: bool = False) -> Callable:
    """``fn`` in an old opset's form: binary ops before opset 7 take `broadcast`/`axis`
    (https://github.com/onnx/onnx/blob/main/docs/Changelog.md#Add-1), opset-1 ops take
    `consumed_inputs`, an in-place hint without effect here."""
    extra = []
    if with_broadcast:
        extra += [inspect.Parameter("axis", _KEYWORD, default=None),
                  inspect.Parameter("broadcast", _KEYWORD, default=0)]
    if with_consumed_inputs:
        extra.append(inspect.Parameter("consumed_inputs", _KEYWORD, default=None))

    @functools.wraps(fn)
    def legacy(*inputs, axis=None, broadcast=0, consumed_inputs=None, **attributes):
        if with_broadcast:
            inputs = (inputs[0], _legacy_operand(inputs[0], inputs[1], axis, broadcast))
        return fn(*inputs, **attributes)

    signature = inspect.signature(fn)
    legacy.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])
    return legacy


def _legacy_operand(a: np.ndarray, b: np.ndarray, axis: int | None, broadcast: int) -> np.ndarray:
    """``b`` shaped to broadcast against ``a`` under the pre-opset-7 rules: equal shapes, or with
    broadcast=1 a one-element tensor or a run of ``a``'s dims from `axis` (suffix when unset, where
    numpy's size-1 expansion is kept, as exporters relied on it)."""
    if not broadcast:
        if a.shape != b.shape:
            raise ValueError(f"shapes {a.shape} and {b.shape} differ and broadcast is 0")
        return b
    if b.size == 1:
        return b.reshape(())
    if axis is None:
        return b
    trailing = a.ndim - normalize_axis(axis, a.ndim) - b.ndim
    if trailing < 0:
        raise ValueError(f"shape {b.shape} does not fit in shape {a.shape} from axis {axis}")
    return b.reshape(b.shape + (1,) * trailing)


def _plain(op: str, fn: Callable) -> Callable:
    """The kernel of an op that is ``fn`` applied to its inputs."""
    def run(*inputs):
        return np.asarray(fn(*inputs))

    run.__name__ = run.__qualname__ = op
    run.__doc__ = f"{op}: {getattr(fn, '__name__', fn).lstrip('_')} of the inputs, element-wise."
    return run


def _variadic(op: str, fn: Callable) -> Callable:
    """The kernel of an op that folds its inputs with the binary ``fn``."""
    def run(*data):
        return np.asarray(functools.reduce(fn, data))

    run.__name__ = run.__qualname__ = op
    run.__doc__ = f"{op}: the inputs folded with {fn.__name__}, element-wise."
    return run


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, _scalar(x, 0))


def _signed_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(max(x, 0), min(x, 0))``: piecewise activations as sums, as np.where is slow on mixed signs."""
    zero = _scalar(x, 0)
    return np.maximum(x, zero), np.minimum(x, zero)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, _scalar(x, 0))


def _softsign(x: np.ndarray) -> np.ndarray:
    return x / (_scalar(x, 1) + np.abs(x))


def _hard_swish(x: np.ndarray) -> np.ndarray:
    return hard_sigmoid_of(x, 1 / 6, 0.5, times_x=True)


def _mish(x: np.ndarray) -> np.ndarray:
    return x * np.tanh(_softplus(x))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Division; integers truncate toward zero as in C (onnxruntime and the reference agree)."""
    if a.dtype.kind == "u":
        return np.floor_divide(a, b)
    if a.dtype.kind == "i":
        q, r = np.divmod(a, b)
        q += (r != 0) & ((a < 0) != (b < 0))
        return q
    return arithmetic(np.divide, a, b)


def _pow(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``base ** exponent`` in the base's type (Pow-12 on mixes types)."""
    if _is_float(base.dtype):
        exponent = exponent.astype(base.dtype, copy=False)
    return np.power(base, exponent).astype(base.dtype, copy=False)


_UNARY = {  # op: (function, first since_version)
    "Acos": (np.arccos, 7), "Acosh": (np.arccosh, 9), "Asin": (np.arcsin, 7), "Asinh": (np.arcsinh, 9),
    "Atan": (np.arctan, 7), "Atanh": (np.arctanh, 9), "BitwiseNot": (np.invert, 18), "Cos": (np.cos, 7),
    "Cosh": (np.cosh, 9), "Erf": (erf, 9), "HardSwish": (_hard_swish, 14), "IsNaN": (np.isnan, 9),
    "Mish": (_mish, 18), "Not": (np.logical_not, 1), "Round": (np.rint, 11), "Sign": (np.sign, 9),
    "Sin": (np.sin, 7), "Sinh": (np.sinh, 9), "Softplus": (_softplus, 1), "Softsign": (_softsign, 1),
    "Tan": (np.tan, 7),
}
_UNARY_SINCE_1 = {  # opset 1 has `consumed_inputs`, opset 6 drops it
    "Abs": np.abs, "Ceil": np.ceil, "Exp": np.exp, "Floor": np.floor, "Log": np.log, "Neg": np.negative,
    "Reciprocal": np.reciprocal, "Relu": _relu, "Sigmoid": sigmoid, "Sqrt": np.sqrt, "Tanh": np.tanh,
}


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return arithmetic(np.add, a, b)


def _subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return arithmetic(np.subtract, a, b)


def _multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return arithmetic(np.multiply, a, b)


_ARITHMETIC = {"Add": _add, "Sub": _subtract, "Mul": _multiply, "Div": _div}  # legacy forms at 1 and 6
_LOGICAL = {  # legacy form at 1
    "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor, "Equal": np.equal,
    "Greater": np.greater, "Less": np.less, "Pow": _pow,
}
_BINARY = {  # op: (function, first since_version)
    "BitwiseAnd": (np.bitwise_and, 18), "BitwiseOr": (np.bitwise_or, 18), "BitwiseXor": (np.bitwise_xor, 18),
    "GreaterOrEqual": (np.greater_equal, 12), "LessOrEqual": (np.less_equal, 12),
}
_VARIADIC = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add}  # opset 1 has `consumed_inputs`


def _register_tables() -> None:
    for op, (fn, since) in {**_UNARY, **_BINARY}.items():
        kernel(op, since=since)(_plain(op, fn))
    for op, fn in _UNARY_SINCE_1.items():
        kernel(op, since=1)(_legacy(kernel(op, since=6)(_plain(op, fn)), with_consumed_inputs=True))
    for op, fn in _ARITHMETIC.items():
        current = kernel(op, since=7)(_plain(op, fn))
        kernel(op, since=6)(_legacy(current, with_broadcast=True))
        kernel(op, since=1)(_legacy(current, with_broadcast=True, with_consumed_inputs=True))
    for op, fn in _LOGICAL.items():
        kernel(op, since=1)(_legacy(kernel(op, since=7)(_plain(op, fn)), with_broadcast=True))
    for op, fn in _VARIADIC.items():
        kernel(op, since=1)(_legacy(kernel(op, since=6)(_variadic(op, fn)), with_consumed_inputs=True))


_register_tables()


@kernel("Mean", since=6)
def mean(*data):
    """The element-wise mean of the inputs."""
    total = functools.reduce(np.add, data)
    return np.asarray(total / _scalar(total, len(data)))


kernel("Mean", since=1)(_legacy(mean, with_consumed_inputs=True))


@kernel("Mod", since=10)
def mod(a, b, *, fmod=0):
    """The remainder with the divisor's sign (fmod=0, Python's %) or the dividend's (fmod=1, C's fmod)."""
    return np.asarray(np.fmod(a, b) if fmod else np.mod(a, b))


@kernel("BitShift", since=11)
def bit_shift(x, y, *, direction):
    """``x`` shifted by ``y`` bits. A shift that is negative or at least the bit width leaves only
    the sign fill: -1 for a right shift of a negative x, else 0 (BitShift-28)."""
    if direction not in ("LEFT", "RIGHT"):
        raise ValueError(f"direction must be 'LEFT' or 'RIGHT', not {direction!r}")
    in_range = (y >= 0) & (y < 8 * x.dtype.itemsize)
    amount = np.where(in_range, y, 0).astype(x.dtype, copy=False)
    if direction == "LEFT":
        return np.where(in_range, np.left_shift(x, amount), _scalar(x, 0))
    return np.where(in_range, np.right_shift(x, amount), -(x < 0).astype(x.dtype))


@kernel("Clip", since=11)
def clip(x, low=None, high=None):
    """``x`` limited to [low, high]; an omitted bound does not clip; where low > high all become high."""
    if low is not None:
        x = np.maximum(x, low)
    if high is not None:
        x = np.minimum(x, high)
    return np.asarray(x)


def _clip_attributes(x, *, min=None, max=None):  # noqa: A002 - the spec's names
    """Clip before opset 11: the bounds are float attributes."""
    with np.errstate(over="ignore"):  # FLT_MAX is inf in float16
        return clip(x, None if min is None else np.asarray(min).astype(x.dtype),
                    None if max is None else np.asarray(max).astype(x.dtype))


kernel("Clip", since=1)(_legacy(_clip_attributes, with_consumed_inputs=True))


@kernel("Clip", since=6)
def clip_6(x, *, min=-_FLT_MAX, max=_FLT_MAX):  # noqa: A002 - the spec's names
    """Clip-6: bounds as attributes, defaulting to the float range."""
    return _clip_attributes(x, min=min, max=max)


@kernel("Where", since=9)
def where(condition, x, y):
    """``x`` where ``condition`` holds, else ``y``."""
    return np.where(condition, x, y)


@kernel("PRelu", since=7)
def prelu(x, slope):
    """``slope * x`` where x < 0, else x; ``slope`` broadcasts to ``x``."""
    positive, negative = _signed_parts(x)
    return np.asarray(positive + slope * negative)


@kernel("PRelu", since=6)
def prelu_6(x, slope):
    """PRelu before opset 7: a 1-D slope of one value per channel applies along axis 1 (Caffe2's
    convention, which the exporters of the time followed)."""
    if slope.ndim == 1 and slope.size > 1 and x.ndim > 2 and x.shape[1] == slope.size:
        slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))
    return prelu(x, slope)


kernel("PRelu", since=1)(_legacy(prelu_6, with_consumed_inputs=True))


@kernel("Elu", since=6)
def elu(x, *, alpha=1.0):
    """``alpha * (exp(x) - 1)`` where x < 0, else x."""
    positive, negative = _signed_parts(x)
    return np.asarray(positive + _scalar(x, alpha) * np.expm1(negative))


@kernel("Celu", since=12)
def celu(x, *, alpha=1.0):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    a = _scalar(x, alpha)
    positive, negative = _signed_parts(x)
    return np.asarray(positive + a * np.expm1(negative / a))


def _selu(x: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    positive, negative = _signed_parts(x)
    return np.asarray(_scalar(x, gamma) * (positive + _scalar(x, alpha) * np.expm1(negative)))


@kernel("Selu", since=6)
def selu(x, *, alpha=_f32(1.67326319217681884765625), gamma=_f32(1.05070102214813232421875)):
    """``gamma * (alpha * exp(x) - alpha)`` where x <= 0, else ``gamma * x``."""
    return _selu(x, alpha, gamma)


@kernel("Selu", since=1)
def selu_1(x, *, alpha=_f32(1.6732), gamma=_f32(1.0507), consumed_inputs=None):
    """Selu-1: other default constants, and the legacy `consumed_inputs`."""
    return _selu(x, alpha, gamma)


@kernel("HardSigmoid", since=6)
def hard_sigmoid(x, *, alpha=_f32(0.2), beta=0.5):
    """``max(0, min(1, alpha * x + beta))``."""
    return hard_sigmoid_of(np.asarray(x), alpha, beta)


@kernel("LeakyRelu", since=6)
def leaky_relu(x, *, alpha=_f32(0.01)):
    """``alpha * x`` where x < 0, else x."""
    positive, negative = _signed_parts(x)
    return np.asarray(positive + _scalar(x, alpha) * negative)


kernel("Elu", since=1)(_legacy(elu, with_consumed_inputs=True))
kernel("HardSigmoid", since=1)(_legacy(hard_sigmoid, with_consumed_inputs=True))
kernel("LeakyRelu", since=1)(_legacy(leaky_relu, with_consumed_inputs=True))


@kernel("ThresholdedRelu", since=10)
def thresholded_relu(x, *, alpha=1.0):
    """x where x > alpha, else 0."""
    return np.where(x > _scalar(x, alpha), x, _scalar(x, 0))


@kernel("Shrink", since=9)
def shrink(x, *, bias=0.0, lambd=0.5):
    """``x + bias`` where x < -lambd, ``x - bias`` where x > lambd, else 0."""
    b = _scalar(x, bias)
    return np.where(x < -lambd, x + b, np.where(x > lambd, x - b, _scalar(x, 0))).astype(x.dtype, copy=False)


@kernel("Gelu", since=20)
def gelu(x, *, approximate="none"):
    """``x * Φ(x)``, with Φ the standard normal CDF or, for approximate="tanh", its tanh estimate."""
    if approximate == "none":
        return gelu_of(np.asarray(x))
    if approximate != "tanh":
        raise ValueError(f"approximate must be 'none' or 'tanh', not {approximate!r}")
    return gelu_tanh(np.asarray(x))


@kernel("Swish", since=24)
def swish(x, *, alpha=1.0):
    """``x * sigmoid(alpha * x)``."""
    return swish_of(np.asarray(x), alpha)


@kernel("IsInf", since=10)
def is_inf(x, *, detect_negative=1, detect_positive=1):
    """Whether each element is an infinity of a detected sign."""
    inf = np.isinf(x)
    if not detect_negative:
        inf &= x > 0
    if not detect_positive:
        inf &= x < 0
    return np.asarray(inf)


def _cast(x: np.ndarray, to: np.dtype, saturate: int = 1, round_mode: str = "up") -> np.ndarray:
    """``x`` as dtype ``to`` under Cast's rules (https://onnx.ai/onnx/operators/onnx__Cast.html):
    `saturate` clips to the finite range of the float8 types, `round_mode` rounds to float8e8m0."""
    if x.dtype == to:
        return x
    if x.dtype.kind in "OU":
        return x.astype(object) if to == _STRING else _parse(x, to, saturate, round_mode)
    if to == _STRING:
        return _format(x)
    if to == _E8M0:
        return _to_e8m0(x, saturate, round_mode)
    if saturate and to in _FLOAT8 and x.dtype != np.bool_:
        limit = float(ml_dtypes.finfo(to).max)
        x = np.clip(x, -limit, limit)
    with np.errstate(over="ignore", invalid="ignore"):  # out of range: inf, or undefined for integers
        return np.asarray(x).astype(to)


def _format(x: np.ndarray) -> np.ndarray:
    """Numbers as strings, as onnxruntime writes them: 8 significant digits, INF, -INF, NaN; bools as 1/0."""
    if not _is_float(x.dtype):
        return (x if x.dtype.kind in "iu" else x.astype(np.int64)).astype(np.str_).astype(object)
    values = x.astype(np.float64)
    text = np.char.mod("%.8g", values)
    text = np.where(np.isnan(values), "NaN", np.where(np.isinf(values), np.where(values > 0, "INF", "-INF"), text))
    return text.astype(object)


def _parse(x: np.ndarray, to: np.dtype, saturate: int, round_mode: str) -> np.ndarray:
    """Strings to numbers: decimal and scientific literals, and INF, +INF, -INF, NaN in any case."""
    if to.kind in "iu":
        try:
            return x.astype(to)
        except ValueError:
            pass  # e.g. "100.5": through float, truncated like a float
    return _cast(x.astype(np.float64), to, saturate, round_mode)


_E8M0_CARRY = {"up": 1, "nearest": 0x400000, "down": 0x800000}  # mantissa bits from which to round up


def _to_e8m0(x: np.ndarray, saturate: int, round_mode: str) -> np.ndarray:
    """Float to float8e8m0, a bare power of two: the float32 exponent, rounded up per `round_mode`
    by the mantissa; the sign is ignored (negative inputs are undefined)."""
    if round_mode not in _E8M0_CARRY:
        raise ValueError(f"round_mode must be 'up', 'down' or 'nearest', not {round_mode!r}")
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(np.uint16)
    mantissa = bits & 0x7FFFFF
    carry = (mantissa >= _E8M0_CARRY[round_mode]) & (exponent < (0xFE if saturate else 0xFF))
    code = exponent + carry
    if saturate:  # the spec's table: inf saturates to the largest value, NaN stays NaN
        code = np.where((exponent == 0xFF) & (mantissa == 0), 0xFE, code)
    else:  # below the smallest value (2^-127) is NaN
        code = np.where((exponent == 0) & (mantissa < 0x400000), 0xFF, code)
    return code.astype(np.uint8).view(_E8M0)


_TYPE_NAMES = {ir.dtype_name(ir.dtype_of(code)).upper(): ir.dtype_of(code) for code in range(1, 17)}


@kernel("Cast", since=1)
def cast_1(x, *, to):
    """Cast-1: `to` names the type, e.g. "FLOAT"."""
    if str(to).upper() not in _TYPE_NAMES:
        raise ValueError(f"unknown type name {to!r} for Cast; expected one of {sorted(_TYPE_NAMES)}")
    return _cast(x, _TYPE_NAMES[to.upper()])


@kernel("Cast", since=6)
def cast_6(x, *, to):
    """``x`` converted to the TensorProto data type `to`."""
    return _cast(x, ir.dtype_of(to))


@kernel("Cast", since=19)
def cast_19(x, *, to, saturate=1):
    """Cast-19: adds float8 types and `saturate`."""
    return _cast(x, ir.dtype_of(to), saturate)


@kernel("Cast", since=24)
def cast(x, *, to, saturate=1, round_mode="up"):
    """Cast-24: adds float8e8m0 and its `round_mode`."""
    return _cast(x, ir.dtype_of(to), saturate, round_mode)


def _dtype_of_value(target: np.ndarray) -> np.dtype:
    return _STRING if target.dtype.kind == "U" else target.dtype


@kernel("CastLike", since=15)
def cast_like_15(x, target_type):
    """``x`` converted to the element type of ``target_type``."""
    return _cast(x, _dtype_of_value(target_type))


@kernel("CastLike", since=19)
def cast_like_19(x, target_type, *, saturate=1):
    """CastLike-19: adds float8 types and `saturate`."""
    return _cast(x, _dtype_of_value(target_type), saturate)


@kernel("CastLike", since=24)
def cast_like(x, target_type, *, saturate=1, round_mode="up"):
    """CastLike-24: adds float8e8m0 and its `round_mode`."""
    return _cast(x, _dtype_of_value(target_type), saturate, round_mode)


@kernel("BitCast", since=26)
def bit_cast(x, *, to):
    """The bits of ``x`` reinterpreted as type `to`, of the same bit width."""
    dtype = ir.dtype_of(to)
    if _STRING in (dtype, x.dtype) or x.dtype.kind == "U":
        raise TypeError("BitCast does not apply to strings")
    width, new_width = (_SUB_BYTE_BITS.get(d, 8 * d.itemsize) for d in (x.dtype, dtype))
    if width != new_width:
        raise ValueError(f"BitCast from {x.dtype} ({width} bits) to {dtype} ({new_width} bits): widths differ")
    return x.view(dtype)
