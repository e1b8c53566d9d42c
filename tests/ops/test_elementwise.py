"""Element-wise kernels at every registered version, against onnx.reference, onnxruntime, and numpy
computations written from the operator docs (old opsets, which the node suite never builds)."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import onnx.defs
import pytest
from onnx import TensorProto, helper

from onnxpy.registry import REGISTRY
from tests.ops._oracle import LEVELS, assert_close, check, node_model, run_onnxpy

RNG = np.random.default_rng(7)
F32, F64, F16, BF16 = np.float32, np.float64, np.float16, ml_dtypes.bfloat16

MY_OPS = (
    "Abs Acos Acosh Add And Asin Asinh Atan Atanh BitCast BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor "
    "Cast CastLike Ceil Celu Clip Cos Cosh Div Elu Equal Erf Exp Floor Gelu Greater GreaterOrEqual HardSigmoid "
    "HardSwish IsInf IsNaN LeakyRelu Less LessOrEqual Log Max Mean Min Mish Mod Mul Neg Not Or PRelu Pow "
    "Reciprocal Relu Round Selu Shrink Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Sub Sum Swish Tan Tanh "
    "ThresholdedRelu Where Xor"
).split()


@pytest.fixture(autouse=True)
def _fresh_rng():
    """The same inputs whatever the order or worker a test runs in."""
    global RNG
    RNG = np.random.default_rng(7)


def rand(*shape, dtype=F32, low=-3.0, high=3.0):
    return RNG.uniform(low, high, shape).astype(dtype)


def run1(op, inputs, opset, **attrs):
    """onnxpy's outputs for a one-node model with one output "y"."""
    model = node_model(op, inputs, ["y"], opset=opset, **attrs)
    outs = [run_onnxpy(model, {k: v for k, v in inputs.items() if k}, level) for level in LEVELS]
    assert_close(outs[0], outs[1], 0, 0)
    return outs[0][0]


def ort_model(op, inputs, out_type, opset, **attrs):
    """A one-node model whose output "y" is typed, as onnxruntime requires."""
    return node_model(op, inputs, ["y"], opset=opset, output_types={"y": out_type}, **attrs)


def elem(dtype):
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


@pytest.mark.parametrize("op", MY_OPS)
def test_every_schema_version_has_a_kernel(op):
    """Attribute sets and defaults of each served version are checked in tests/test_registry.py."""
    schemas = [s for s in onnx.defs.get_all_schemas_with_history() if s.domain == "" and s.name == op]
    assert schemas
    for schema in schemas:
        assert REGISTRY.resolve("", op, schema.since_version) is not None, f"{op}-{schema.since_version} has no kernel"


# Unary ops against onnx.reference at their latest opset, with inputs inside their domains.
UNARY = {
    "Abs": {}, "Acos": dict(low=-0.99, high=0.99), "Acosh": dict(low=1.0, high=5.0), "Asin": dict(low=-0.99, high=0.99),
    "Asinh": {}, "Atan": {}, "Atanh": dict(low=-0.99, high=0.99), "Ceil": {}, "Cos": {}, "Cosh": {}, "Erf": {},
    "Exp": {}, "Floor": {}, "HardSwish": {}, "Log": dict(low=0.01, high=9.0), "Mish": {}, "Neg": {},
    "Reciprocal": dict(low=0.5, high=4.0), "Relu": {}, "Round": {}, "Sigmoid": dict(low=-30, high=30), "Sign": {},
    "Sin": {}, "Sinh": {}, "Softplus": dict(low=-30, high=30), "Softsign": {}, "Sqrt": dict(low=0.0, high=9.0),
    "Tan": dict(low=-1.5, high=1.5), "Tanh": {},
}


@pytest.mark.parametrize("op", UNARY)
@pytest.mark.parametrize("dtype", [F32, F64])
def test_unary_against_reference(op, dtype):
    x = rand(3, 4, dtype=dtype, **UNARY[op])
    check(node_model(op, {"x": x}, ["y"], opset=22), {"x": x})


def test_round_halves_to_even_and_sign_of_special_values():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, np.nan], F32)
    np.testing.assert_array_equal(run1("Round", {"x": x}, 22), [-2, -2, -0.0, 0, 2, 2, np.nan])
    y = run1("Sign", {"x": np.array([-3, 0, 5], np.int32)}, 13)
    assert y.dtype == np.int32 and y.tolist() == [-1, 0, 1]


@pytest.mark.parametrize("op,fn", [("Abs", np.abs), ("Neg", np.negative), ("Exp", np.exp), ("Sqrt", np.sqrt),
                                   ("Relu", lambda x: np.maximum(x, 0)), ("Tanh", np.tanh)])
def test_opset_1_unary_accepts_consumed_inputs(op, fn):
    x = rand(2, 3, low=0.1)
    y = run1(op, {"x": x}, 1, consumed_inputs=[0])
    np.testing.assert_allclose(y, fn(x), rtol=1e-6)
    assert y.dtype == F32


def test_erf_accuracy_against_math_erf():
    grid = np.concatenate([np.linspace(-7, 7, 2001), [0.0, 1e-30, -1e-8, np.inf, -np.inf]])
    exact = np.array([math.erf(v) for v in grid])
    for dtype, ulps in ((F32, 8), (F64, 256)):
        y = run1("Erf", {"x": grid.astype(dtype)}, 13)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, exact.astype(dtype), rtol=ulps * np.finfo(dtype).eps, atol=0)
    assert np.isnan(run1("Erf", {"x": np.array([np.nan], F32)}, 13)[0])


def test_erf_of_a_large_strided_tensor():
    """erf runs in blocks: a tensor of several blocks plus a partial one, fed transposed."""
    x = np.random.default_rng(3).uniform(-5, 5, (300, 251)).astype(F32)
    exact = np.array([math.erf(v) for v in x.T.ravel().tolist()]).reshape(251, 300)
    y = run1("Erf", {"x": x.T}, 13)
    np.testing.assert_allclose(y, exact.astype(F32), rtol=8 * np.finfo(F32).eps, atol=0)


def test_sigmoid_and_softplus_are_stable_in_the_tails():
    x = np.array([-80, -20, 0, 20, 100], F32)
    tiny = [math.exp(-80), math.exp(-20)]
    np.testing.assert_allclose(run1("Sigmoid", {"x": x}, 13), [*tiny, 0.5, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(run1("Softplus", {"x": x}, 22), [*tiny, math.log(2), 20, 100], rtol=1e-6)
    # float16's own exp overflows below -11: the tail is computed in float32 (to within a float16
    # subnormal step, 2^-24, down there)
    half = np.array([-12, -15, 0, 12], F16)
    exact = [1 / (1 + math.exp(12)), 1 / (1 + math.exp(15)), 0.5, 1 / (1 + math.exp(-12))]
    np.testing.assert_allclose(run1("Sigmoid", {"x": half}, 13).astype(np.float64), exact, rtol=1e-3, atol=2**-24)
    np.testing.assert_allclose(run1("Swish", {"x": half}, 24).astype(np.float64),
                               [v * e for v, e in zip(half.tolist(), exact)], rtol=1e-3, atol=2**-24)


def _sigmoid_of(t):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-t))


_LARGE_EXACT = {  # op: exact value in float64 of x and of the float32 product alpha * x (+ beta)
    "Sigmoid": lambda x, t: _sigmoid_of(t),
    "Swish": lambda x, t: x * _sigmoid_of(t),
    "HardSigmoid": lambda x, t: np.minimum(np.maximum(t, 0), 1),
    "HardSwish": lambda x, t: x * np.minimum(np.maximum(t, 0), 1),
}


@pytest.mark.parametrize("op, opset, attrs", [
    ("Sigmoid", 13, {}), ("Swish", 24, {}), ("Swish", 24, {"alpha": -0.75}),
    ("HardSigmoid", 6, {"alpha": 0.3, "beta": 0.4}), ("HardSwish", 14, {}),
])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_sigmoid_family_on_a_large_tensor(op, opset, attrs, dtype):
    """Large tensors run one compiled pass (several blocks and a partial one, fed transposed):
    within 4 ulps of exact, and the tails and non-finite values as numpy gives them."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-30, 30, (300, 251)).astype(dtype)
    x[0, :14] = [np.inf, -np.inf, np.nan, 0, -0.0, -87.3, 87.3, -88.5, 88.5, -89.5, 89.5, -200, 200, 1e-30]
    if op == "HardSwish":  # its constants are part of the op, not float32 attributes
        alpha, beta = dtype(1 / 6), dtype(0.5)
    else:
        alpha, beta = (dtype(F32(attrs.get(name, 1.0 if name == "alpha" else 0.0))) for name in ("alpha", "beta"))
    grid = x.T.ravel()
    with np.errstate(invalid="ignore"):
        t = alpha * grid + beta if op.startswith("Hard") else alpha * grid
        exact = _LARGE_EXACT[op](grid.astype(np.float64), t.astype(np.float64))
    y = run1(op, {"x": x.T}, opset, **attrs)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.ravel(), exact.astype(dtype), rtol=4 * np.finfo(dtype).eps, atol=1e-36)


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Exp", "Tanh", "Softplus", "Erf", "HardSwish", "Abs"])
@pytest.mark.parametrize("dtype", [F16, BF16])
def test_unary_keeps_narrow_float_types(op, dtype):
    x = rand(4, 5, low=-2, high=2)
    expected = run_onnxpy(node_model(op, {"x": x}, ["y"], opset=22), {"x": x})[0]
    y = run1(op, {"x": x.astype(dtype)}, 22)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.astype(F32), expected, rtol=2e-2, atol=2e-2)


def test_relu_of_integers_keeps_the_type():
    x = np.array([-3, 0, 7], np.int8)
    y = run1("Relu", {"x": x}, 14)
    assert y.dtype == np.int8 and y.tolist() == [0, 0, 7]


def test_zero_dimensional_inputs_give_arrays_not_numpy_scalars():
    for op, since, args in (("Abs", 13, (np.array(-1.0, F32),)), ("Add", 14, (np.array(1, np.int64),) * 2),
                            ("Gelu", 20, (np.array(0.5, F32),)), ("Clip", 13, (np.array(5.0, F32), None, None)),
                            ("Mean", 13, (np.array(1.0, F32), np.array(2.0, F32))),
                            ("Erf", 13, (np.array(0.5, F64),)), ("IsInf", 20, (np.array(1.0, F32),))):
        y = REGISTRY.resolve("", op, since).fn(*args)
        assert type(y) is np.ndarray and y.shape == (), op


BINARY_TYPES = [np.int8, np.uint8, np.int32, np.int64, np.uint64, F16, F32, F64]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("dtype", BINARY_TYPES)
def test_arithmetic_against_onnxruntime(op, dtype):
    if np.dtype(dtype).kind == "f":
        a, b = rand(3, 4, dtype=dtype), rand(4, dtype=dtype, low=0.5)
    else:
        a = RNG.integers(-50 if np.dtype(dtype).kind == "i" else 0, 60, (3, 4)).astype(dtype)
        b = RNG.integers(1, 9, (4,)).astype(dtype)
        b[::2] *= np.array(-1).astype(dtype) if np.dtype(dtype).kind == "i" else 1
    check(ort_model(op, {"a": a, "b": b}, elem(dtype), 14), {"a": a, "b": b}, oracle="onnxruntime", rtol=1e-3)


# one operand holding one value per row of the other (a per-channel scale or shift) runs compiled
# from JIT_MIN_SIZE elements; the last case's leading axes differ and stay with numpy's broadcasting
PER_ROW_SHAPES = [((1, 40, 1, 1), (1, 40, 9, 9)), ((2, 24, 1, 1), (2, 24, 7, 7)), ((3, 30, 1), (3, 30, 50)),
                  ((64, 1), (64, 33)), ((1, 1, 12, 1), (1, 1, 12, 300)), ((24, 1, 1), (2, 24, 7, 7))]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("shapes", PER_ROW_SHAPES, ids=str)
@pytest.mark.parametrize("small_first", [False, True])
def test_per_row_arithmetic_against_onnxruntime(op, dtype, shapes, small_first):
    small, big = rand(*shapes[0], dtype=dtype, low=0.5), rand(*shapes[1], dtype=dtype, low=0.5)
    small.reshape(-1)[:4] = [np.inf, -np.inf, np.nan, 0.0]
    big.reshape(-1)[:3] = [np.inf, np.nan, 0.0]
    a, b = (small, big) if small_first else (big, small)
    before = a.copy(), b.copy()
    got = check(ort_model(op, {"a": a, "b": b}, elem(dtype), 14), {"a": a, "b": b}, oracle="onnxruntime",
                rtol=0, atol=0)
    np.testing.assert_array_equal(a, before[0])
    np.testing.assert_array_equal(b, before[1])
    assert got[0].flags.c_contiguous


def test_integer_division_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 6, 0], np.int32)
    b = np.array([2, 2, -2, -2, -3, -5], np.int32)
    y = run1("Div", {"a": a, "b": b}, 14)
    assert y.dtype == np.int32 and y.tolist() == [3, -3, -3, 3, -2, 0]


@pytest.mark.parametrize("opset", [1, 6])
def test_legacy_broadcast_aligns_b_at_axis(opset):
    a, b = rand(2, 3, 4, 5), rand(3, 4)
    extra = {"consumed_inputs": [0]} if opset == 1 else {}
    y = run1("Add", {"a": a, "b": b}, opset, broadcast=1, axis=1, **extra)
    np.testing.assert_allclose(y, a + b.reshape(1, 3, 4, 1))
    y = run1("Mul", {"a": a, "b": b[0]}, opset, broadcast=1, axis=-2)
    np.testing.assert_allclose(y, a * b[0].reshape(4, 1))
    np.testing.assert_allclose(run1("Sub", {"a": a, "b": b[:1, :1]}, opset, broadcast=1, axis=3), a - b[0, 0])


def test_legacy_broadcast_suffix_matching_and_its_absence():
    a, b = rand(2, 3), rand(1, 3)
    np.testing.assert_allclose(run1("Div", {"a": a, "b": b}, 6, broadcast=1), a / b)
    np.testing.assert_allclose(run1("Add", {"a": a, "b": a}, 6), a + a)
    with pytest.raises(Exception, match="broadcast is 0"):
        run1("Add", {"a": a, "b": b}, 6)
    with pytest.raises(Exception, match="does not fit"):
        run1("Add", {"a": a, "b": rand(3, 3)}, 6, broadcast=1, axis=1)


@pytest.mark.parametrize("op,fn", [("And", np.logical_and), ("Or", np.logical_or), ("Xor", np.logical_xor),
                                   ("Equal", np.equal), ("Greater", np.greater), ("Less", np.less)])
def test_opset_1_logic_and_comparison_with_legacy_broadcast(op, fn):
    if op in ("And", "Or", "Xor"):
        a, b = RNG.random((2, 3, 4)) > 0.5, RNG.random(3) > 0.5
    else:
        a, b = RNG.integers(0, 3, (2, 3, 4)).astype(np.int32), RNG.integers(0, 3, 3).astype(np.int32)
    y = run1(op, {"a": a, "b": b}, 1, broadcast=1, axis=1)
    np.testing.assert_array_equal(y, fn(a, b.reshape(3, 1)))
    assert y.dtype == np.bool_


@pytest.mark.parametrize("op", ["And", "Or", "Xor", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual",
                                "BitwiseAnd", "BitwiseOr", "BitwiseXor"])
def test_logic_comparison_bitwise_against_reference(op):
    if op in ("And", "Or", "Xor"):
        a, b = RNG.random((3, 4)) > 0.5, RNG.random(4) > 0.5
    else:
        a, b = RNG.integers(0, 200, (3, 4)).astype(np.uint8), RNG.integers(0, 200, (4,)).astype(np.uint8)
    check(node_model(op, {"a": a, "b": b}, ["y"], opset=18), {"a": a, "b": b})


def test_not_bitwise_not_and_string_equality():
    check(node_model("Not", {"x": RNG.random((2, 3)) > 0.5}, ["y"], opset=1), {"x": RNG.random((2, 3)) > 0.5})
    x = np.array([0, 1, -128], np.int8)
    assert run1("BitwiseNot", {"x": x}, 18).tolist() == [-1, -2, 127]
    a, b = np.array(["a", "bc", ""], dtype=object), np.array(["a", "b", ""], dtype=object)
    check(node_model("Equal", {"a": a, "b": b}, ["y"], opset=19), {"a": a, "b": b})


@pytest.mark.parametrize("base,exponent", [(F32, F32), (F32, np.int64), (F32, np.int32), (np.int32, F32),
                                           (np.int64, np.int64), (F16, F16), (F64, F32)])
def test_pow_returns_the_base_type(base, exponent):
    a = rand(3, 4, low=0.5, high=3) if np.dtype(base).kind == "f" else RNG.integers(1, 6, (3, 4))
    b = np.array([0.5, 2, 3, 1.5] if np.dtype(exponent).kind == "f" else [0, 2, 3, 1])
    a, b = a.astype(base), b.astype(exponent)
    check(ort_model("Pow", {"a": a, "b": b}, elem(base), 15), {"a": a, "b": b}, oracle="onnxruntime", rtol=1e-3)


def test_pow_opset_1_legacy_broadcast():
    a, b = rand(2, 3, low=0.5), np.array([2.0, 3.0], F32)
    np.testing.assert_allclose(run1("Pow", {"a": a, "b": b}, 1, broadcast=1, axis=0), a ** b.reshape(2, 1), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, F16, F32, F64])
@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_against_reference(dtype, fmod):
    if np.dtype(dtype).kind == "f":
        a = np.array([-4.5, 7.25, -0.0, 0.0, 5, -5, np.inf, 3, 3, -3], dtype)
        b = np.array([2.0, -3, 2, -2, np.inf, np.inf, 2, 0, -np.inf, np.inf], dtype)
    else:
        a = RNG.integers(-30 if np.dtype(dtype).kind == "i" else 0, 30, 12).astype(dtype)
        b = np.resize(np.array([3, -7, 5] if np.dtype(dtype).kind == "i" else [3, 7, 5]), 12).astype(dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        check(node_model("Mod", {"a": a, "b": b}, ["y"], opset=28, fmod=fmod), {"a": a, "b": b})


@pytest.mark.parametrize("dtype", [np.uint8, np.uint64, np.int8, np.int32])
@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
def test_bit_shift_against_reference(dtype, direction):
    info = np.iinfo(dtype)
    x = np.array([1, 3, info.max, info.min, 64, 5, 7, 9], dtype)
    y = np.array([1, 2, 3, 1, 1, info.bits, info.bits + 3, 0], dtype)
    if info.min < 0:
        x[3], y[4] = -5, -1
    opset = 28 if info.min < 0 else 11
    check(node_model("BitShift", {"x": x, "y": y}, ["z"], opset=opset, direction=direction), {"x": x, "y": y})


def test_bit_shift_rejects_an_unknown_direction():
    x = np.array([1], np.uint8)
    with pytest.raises(Exception, match="direction"):
        run1("BitShift", {"x": x, "s": x}, 11, direction="UP")


@pytest.mark.parametrize("op,fn", [("Max", np.maximum), ("Min", np.minimum), ("Sum", np.add),
                                   ("Mean", lambda a, b: (a + b) / F32(2))])
def test_variadic_at_every_version(op, fn):
    a, b, c = rand(2, 3), rand(2, 3), rand(3)
    for opset, attrs in ((1, {"consumed_inputs": [0, 0]}), (6, {})):
        np.testing.assert_allclose(run1(op, {"a": a, "b": b}, opset, **attrs), fn(a, b), rtol=1e-6)
    check(node_model(op, {"a": a, "b": b, "c": c}, ["y"], opset=13), {"a": a, "b": b, "c": c})
    check(node_model(op, {"a": a}, ["y"], opset=13), {"a": a})


@pytest.mark.parametrize("dtype", [np.int8, np.uint32, np.int64, F16, F64])
def test_max_min_keep_integer_and_float_types(dtype):
    a, b = (RNG.integers(0, 100, (2, 3)).astype(dtype) for _ in range(2))
    for op in ("Max", "Min"):
        check(node_model(op, {"a": a, "b": b}, ["y"], opset=13), {"a": a, "b": b})


def test_clip_at_every_version():
    x = rand(3, 4, low=-5, high=5)
    np.testing.assert_array_equal(run1("Clip", {"x": x}, 1, consumed_inputs=[0]), x)
    np.testing.assert_allclose(run1("Clip", {"x": x}, 1, min=-1.0), np.maximum(x, -1))
    np.testing.assert_array_equal(run1("Clip", {"x": x}, 6), x)
    np.testing.assert_allclose(run1("Clip", {"x": x}, 6, min=-1.0, max=2.0), np.clip(x, -1, 2))
    h = x.astype(F16)
    y = run1("Clip", {"x": h}, 6, max=1.5)
    assert y.dtype == F16
    np.testing.assert_array_equal(y, np.minimum(h, F16(1.5)))
    lo, hi = np.array(-1.0, F32), np.array(2.0, F32)
    check(node_model("Clip", {"x": x}, ["y"], opset=11, initializers={"lo": lo, "hi": hi}), {"x": x})
    check(node_model("Clip", {"x": x, "": None}, ["y"], opset=13, initializers={"hi": hi}), {"x": x})
    check(node_model("Clip", {"x": x}, ["y"], opset=13, initializers={"lo": hi, "hi": lo}), {"x": x})
    i = RNG.integers(-100, 100, (5,)).astype(np.int8)
    check(node_model("Clip", {"x": i}, ["y"], opset=12, initializers={"lo": np.array(-3, np.int8)}), {"x": i})


def test_where_and_prelu():
    c, x, y = RNG.random((2, 3)) > 0.5, rand(2, 3), rand(3)
    check(node_model("Where", {"c": c, "x": x, "y": y}, ["z"], opset=16), {"c": c, "x": x, "y": y})
    s = np.array(["a", "b", "c"], dtype=object)
    feeds = {"c": c, "x": s, "y": s[::-1].copy()}
    check(node_model("Where", feeds, ["z"], opset=9), feeds)
    slope = np.array([0.1, 0.2, 0.3], F32)
    check(node_model("PRelu", {"x": x, "slope": slope}, ["y"], opset=16), {"x": x, "slope": slope})
    expected = np.where(x < 0, x * slope, x)
    np.testing.assert_allclose(run1("PRelu", {"x": x, "slope": slope}, 1, consumed_inputs=[0]), expected)
    np.testing.assert_allclose(run1("PRelu", {"x": x, "slope": slope[:1]}, 6), np.where(x < 0, x * 0.1, x), rtol=1e-6)
    images = rand(2, 3, 4, 5)
    for opset in (1, 6):  # before opset 7 a 1-D slope is per channel (axis 1)
        expected = np.where(images < 0, images * slope.reshape(3, 1, 1), images)
        np.testing.assert_allclose(run1("PRelu", {"x": images, "slope": slope}, opset), expected, rtol=1e-6)
    with pytest.raises(Exception, match="broadcast"):
        run1("PRelu", {"x": images, "slope": slope}, 7)


ACTIVATIONS = [
    ("Elu", {}), ("Elu", {"alpha": 0.5}), ("Celu", {}), ("Celu", {"alpha": 2.0}), ("Selu", {}),
    ("Selu", {"alpha": 2.0, "gamma": 3.0}), ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 0.5, "beta": 0.6}),
    ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.1}), ("ThresholdedRelu", {}), ("ThresholdedRelu", {"alpha": 0.5}),
    ("Shrink", {}), ("Shrink", {"bias": 1.5, "lambd": 1.0}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"}),
    ("Swish", {}), ("Swish", {"alpha": 0.5}),
]


@pytest.mark.parametrize("op,attrs", ACTIVATIONS)
def test_activation_against_reference(op, attrs):
    x = rand(3, 5, low=-4, high=4)
    check(node_model(op, {"x": x}, ["y"], opset=24, **attrs), {"x": x})


@pytest.mark.parametrize("op,attrs", [("Gelu", {}), ("Gelu", {"approximate": "tanh"}), ("HardSigmoid", {})])
def test_activation_against_onnxruntime(op, attrs):
    x = rand(3, 5, low=-6, high=6)
    check(ort_model(op, {"x": x}, TensorProto.FLOAT, 20, **attrs), {"x": x}, oracle="onnxruntime")


@pytest.mark.parametrize("dtype, code", [(np.float32, TensorProto.FLOAT), (np.float64, TensorProto.DOUBLE)])
def test_gelu_tanh_compiled_against_onnxruntime(dtype, code):
    """Gelu's tanh estimate as x * sigmoid(2u): a float32 tensor large enough for the compiled pass
    (float64 by numpy), tails included, against onnxruntime's tanh form."""
    x = np.concatenate([rand(4000, low=-8, high=8), np.array([-100, -30, -12, 12, 30, 100, np.inf], np.float32)])
    x = x.astype(dtype)
    check(ort_model("Gelu", {"x": x}, code, 20, approximate="tanh"), {"x": x}, oracle="onnxruntime",
          rtol=1e-5, atol=1e-6)


def test_old_activation_versions_and_their_defaults():
    x = rand(4, 5, low=-3, high=3)
    x64 = x.astype(F64)
    selu_1 = 1.0507 * np.where(x64 > 0, x64, 1.6732 * np.exp(x64) - 1.6732)  # Selu-1's defaults, not Selu-6's
    np.testing.assert_allclose(run1("Selu", {"x": x}, 1, consumed_inputs=[0]), selu_1, rtol=1e-6, atol=1e-7)
    elu = np.where(x64 < 0, np.expm1(x64), x64)
    np.testing.assert_allclose(run1("Elu", {"x": x}, 1, consumed_inputs=[0]), elu, rtol=1e-6)
    np.testing.assert_allclose(run1("HardSigmoid", {"x": x}, 1), np.clip(0.2 * x + 0.5, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(run1("LeakyRelu", {"x": x}, 1, alpha=0.3), np.where(x < 0, 0.3 * x, x), rtol=1e-6)


def test_gelu_and_shrink_edge_cases():
    with pytest.raises(Exception, match="approximate"):
        run1("Gelu", {"x": rand(2)}, 20, approximate="exact")
    x = np.array([-5, -1, 0, 1, 5], np.int8)
    y = run1("Shrink", {"x": x}, 9, bias=2.0, lambd=1.5)
    assert y.dtype == np.int8 and y.tolist() == [-3, 0, 0, 0, 3]


@pytest.mark.parametrize("neg,pos", [(1, 1), (0, 1), (1, 0), (0, 0)])
def test_is_inf_and_is_nan(neg, pos):
    x = np.array([-np.inf, -1, 0, np.nan, np.inf], F32)
    check(node_model("IsInf", {"x": x}, ["y"], opset=20, detect_negative=neg, detect_positive=pos), {"x": x})
    check(node_model("IsNaN", {"x": x.astype(F16)}, ["y"], opset=20), {"x": x.astype(F16)})


def model_cast(x, to, opset=25, **attrs):
    return ort_model("Cast", {"x": x}, to, opset, to=to, **attrs)


FLOATS = np.array([0.47892547, -0.48033667, 1e6, -1e6, 1e-7, 448, 500, np.nan, np.inf, -np.inf, -0.0, 3.5], F32)
CAST_CASES = [
    (F32, TensorProto.FLOAT16), (F32, TensorProto.DOUBLE), (F32, TensorProto.BFLOAT16), (F64, TensorProto.FLOAT),
    (F16, TensorProto.FLOAT), (BF16, TensorProto.FLOAT), (F32, TensorProto.FLOAT8E4M3FN),
    (F32, TensorProto.FLOAT8E4M3FNUZ), (F32, TensorProto.FLOAT8E5M2), (F16, TensorProto.FLOAT8E5M2FNUZ),
    (ml_dtypes.float8_e4m3fn, TensorProto.FLOAT), (ml_dtypes.float8_e5m2, TensorProto.FLOAT16),
    (F32, TensorProto.FLOAT4E2M1), (ml_dtypes.float4_e2m1fn, TensorProto.FLOAT), (np.int32, TensorProto.INT8),
    (np.int64, TensorProto.UINT8), (np.int32, TensorProto.FLOAT), (np.uint8, TensorProto.BOOL),
    (np.bool_, TensorProto.FLOAT), (np.int8, TensorProto.INT4), (np.int32, TensorProto.UINT4),
    (ml_dtypes.int4, TensorProto.INT32), (ml_dtypes.uint4, TensorProto.FLOAT), (np.int32, TensorProto.INT2),
    (ml_dtypes.uint2, TensorProto.INT64), (np.int32, TensorProto.FLOAT8E4M3FN),
]


@pytest.mark.parametrize("source,to", CAST_CASES)
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_against_reference(source, to, saturate):
    if np.dtype(source).kind in "iub" or source in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.uint2):
        x = np.arange(-9, 16).astype(np.int64).clip(0 if source in (np.uint8, ml_dtypes.uint4, ml_dtypes.uint2) else -9)
        x = (x * (50 if to == TensorProto.FLOAT8E4M3FN else 1)).astype(source)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            x = FLOATS.astype(source)
    with np.errstate(over="ignore", invalid="ignore"):
        check(model_cast(x, to, saturate=saturate), {"x": x})


def test_cast_versions_before_saturate():
    x = np.array([1.5, -2.75, 1e6], F32)
    assert run1("Cast", {"x": x}, 1, to="INT32").tolist() == [1, -2, 1000000]
    y = run1("Cast", {"x": x}, 1, to="float16")
    assert y.dtype == F16
    assert run1("Cast", {"x": x}, 6, to=TensorProto.DOUBLE).dtype == F64
    y = run1("Cast", {"x": x}, 13, to=TensorProto.BFLOAT16)
    assert y.dtype == BF16 and y.astype(F32).tolist() == [1.5, -2.75, 999424.0]
    y = run1("Cast", {"x": x}, 19, to=TensorProto.FLOAT8E4M3FN)  # saturates by default
    assert y.astype(F32).tolist() == [1.5, -2.75, 448.0]
    with pytest.raises(Exception, match="unknown type name"):
        run1("Cast", {"x": x}, 1, to="REAL")


def test_cast_to_and_from_strings_like_onnxruntime():
    x = np.array([1.5, 0.1, 1e20, 1e-5, -np.inf, np.inf, np.nan, 3.14159265, 100, -0.25], F32)
    check(model_cast(x, TensorProto.STRING, opset=21), {"x": x}, oracle="onnxruntime")
    i = np.array([-5, 0, 123456789], np.int64)
    check(model_cast(i, TensorProto.STRING, opset=21), {"x": i}, oracle="onnxruntime")
    b = np.array([True, False])
    check(model_cast(b, TensorProto.STRING, opset=21), {"x": b}, oracle="onnxruntime")
    s = np.array(["1.5", "INF", "-inf", "+INF", "NaN", "1e-5", "-3", "100.5"], dtype=object)
    check(model_cast(s, TensorProto.FLOAT, opset=21), {"x": s}, oracle="onnxruntime")
    check(model_cast(s[[0, 5, 6]], TensorProto.DOUBLE, opset=21), {"x": s[[0, 5, 6]]}, oracle="onnxruntime")
    n = np.array(["15", "-3", "9223372036854775807"], dtype=object)
    check(model_cast(n, TensorProto.INT64, opset=21), {"x": n}, oracle="onnxruntime")
    z = np.array(["0", "2", "-1.5"], dtype=object)
    check(model_cast(z, TensorProto.BOOL, opset=21), {"x": z}, oracle="onnxruntime")
    y = run1("Cast", {"x": np.array(["100.5"], dtype=object)}, 21, to=TensorProto.INT32)
    assert y.dtype == np.int32 and y.tolist() == [100]  # "may yield 100" (Cast's doc)
    assert run1("Cast", {"x": s}, 21, to=TensorProto.STRING).tolist() == s.tolist()


@pytest.mark.parametrize("round_mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_to_float8e8m0(round_mode, saturate):
    x = np.array([0.124, 0.25, 0.5, 1.1, 1.5, 1.6, 2.0, 3.0, 8.0, 1e30, 2.0 ** 127, 3.0 * 2.0 ** 126], F32)
    exact = np.log2(x.astype(F64))
    rounded = {"up": np.ceil, "down": np.floor, "nearest": lambda e: np.floor(np.log2(x.astype(F64) / 1.5) + 1)}
    expected_exponent = rounded[round_mode](exact)
    y = run1("Cast", {"x": x}, 25, to=TensorProto.FLOAT8E8M0, saturate=saturate, round_mode=round_mode)
    assert y.dtype == ml_dtypes.float8_e8m0fnu
    got = y.astype(F64)
    overflow = expected_exponent > 127
    np.testing.assert_array_equal(np.log2(got[~overflow]), expected_exponent[~overflow])
    # Past the largest value: saturate gives 2^127, else NaN (Cast's FLOAT8E8M0 table).
    assert (got[overflow] == 2.0 ** 127).all() if saturate else np.isnan(got[overflow]).all()


def test_cast_to_float8e8m0_special_values_follow_the_spec_table():
    # https://onnx.ai/onnx/operators/onnx__Cast.html: saturate+up: 0 -> 2^-127, inf -> E8M0_MAX, NaN -> NaN;
    # non-saturate+nearest: 0 -> NaN, inf -> NaN.
    x = np.array([0.0, np.inf, np.nan], F32)
    y = run1("Cast", {"x": x}, 24, to=TensorProto.FLOAT8E8M0).astype(F64)
    assert y[0] == 2.0 ** -127 and y[1] == 2.0 ** 127 and np.isnan(y[2])
    y = run1("Cast", {"x": x}, 24, to=TensorProto.FLOAT8E8M0, saturate=0, round_mode="nearest").astype(F64)
    assert np.isnan(y).all()
    with pytest.raises(Exception, match="round_mode"):
        run1("Cast", {"x": x}, 24, to=TensorProto.FLOAT8E8M0, round_mode="even")


@pytest.mark.parametrize("opset", [15, 19, 25])
def test_cast_like_at_every_version(opset):
    x = np.array([0.5, -1e6, 300.0, np.inf], F32)
    like = np.array([1.0], ml_dtypes.float8_e4m3fn)
    attrs = {"saturate": 0} if opset >= 19 else {}
    check(node_model("CastLike", {"x": x, "like": like}, ["y"], opset=opset, **attrs), {"x": x, "like": like})
    h = np.array([1], np.float16)
    check(node_model("CastLike", {"x": x, "like": h}, ["y"], opset=opset), {"x": x, "like": h})
    y = run1("CastLike", {"x": x, "like": np.array(["a"], dtype=object)}, opset)
    assert y.dtype == object and y.tolist() == ["0.5", "-1000000", "300", "INF"]


def test_bit_cast():
    x = np.array([[1.0, -2.0]], F32)
    y = run1("BitCast", {"x": x}, 26, to=TensorProto.INT32)
    assert y.dtype == np.int32 and y.tolist() == [[0x3F800000, -0x40000000]]
    s = np.array(1.0, F64)
    assert run1("BitCast", {"x": s}, 26, to=TensorProto.INT64).tolist() == 0x3FF0000000000000
    b = np.array([True, False])
    assert run1("BitCast", {"x": b}, 26, to=TensorProto.UINT8).tolist() == [1, 0]
    q = np.array([-1, 7], ml_dtypes.int4)
    assert run1("BitCast", {"x": q}, 26, to=TensorProto.UINT4).astype(np.int32).tolist() == [15, 7]
    with pytest.raises(Exception, match="widths differ"):
        run1("BitCast", {"x": x}, 26, to=TensorProto.INT64)
