"""QuantizeLinear / DequantizeLinear at every registered version, DynamicQuantizeLinear and the
integer / quantized-linear MatMul and Conv kernels, against onnxruntime and onnx.reference."""
import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto

from tests.ops._oracle import check, node_model, run_onnxpy

RNG = np.random.default_rng(0)
X = (RNG.standard_normal((2, 3, 4)) * 40).astype(np.float32)
# exact ties: x / scale = k + 0.5 must round to even
TIES = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 300.0, -300.0, 127.5], np.float32)


@pytest.mark.parametrize("opset", [10, 13, 19, 21, 23])
@pytest.mark.parametrize("zp", [np.uint8(128), np.int8(-3)])
def test_quantize_per_tensor_every_version(opset, zp):
    feeds = {"x": TIES, "s": np.array(1.0, np.float32), "z": np.array(zp)}
    out = 2 if zp.dtype == np.uint8 else 3
    model = node_model("QuantizeLinear", feeds, ["y"], opset=opset, output_types={"y": out})
    check(model, feeds, oracle="onnxruntime")


@pytest.mark.parametrize("zp", [np.uint8(3), np.int8(3)])
def test_quantize_nan_saturates_to_minimum(zp):
    # -inf / inf = NaN: quantize_static gives a masked attention logit (-inf) an infinite scale, and
    # onnxruntime maps NaN to the type's minimum (its MLAS clamp), whatever the zero point
    x = np.array([np.nan, -np.inf, 1e30, -3.0, 0.0, 5.0], np.float32)
    feeds = {"x": x, "s": np.array(np.inf, np.float32), "z": np.array(zp)}
    model = node_model("QuantizeLinear", feeds, ["y"], opset=13, output_types={"y": 2 if zp.dtype == np.uint8 else 3})
    check(model, feeds, oracle="onnxruntime")


@pytest.mark.parametrize("opset", [13, 19, 21, 23])
def test_quantize_per_axis(opset):
    feeds = {"x": X, "s": np.array([0.5, 1.0, 2.0], np.float32), "z": np.array([0, 10, -10], np.int8)}
    check(node_model("QuantizeLinear", feeds, ["y"], opset=opset, output_types={"y": 3}, axis=-2), feeds,
          oracle="onnxruntime")


@pytest.mark.parametrize("dtype, code", [(ml_dtypes.float8_e4m3fn, 17), (ml_dtypes.float8_e5m2, 19),
                                         (ml_dtypes.float8_e4m3fnuz, 18), (ml_dtypes.float8_e5m2fnuz, 20)])
@pytest.mark.parametrize("saturate", [0, 1])
def test_quantize_float8_saturate(dtype, code, saturate):
    x = np.array([0, 1.1, -3.3, 1e6, -1e6, np.inf, -np.inf, 500.0], np.float32)
    feeds = {"x": x, "s": np.array(0.5, np.float32), "z": np.array(0, dtype)}
    model = node_model("QuantizeLinear", feeds, ["y"], opset=19, output_types={"y": code}, saturate=saturate)
    y = run_onnxpy(model, feeds)[0]
    assert y.dtype == dtype
    q = (x / 0.5).astype(np.float32)
    limit = np.float32(ml_dtypes.finfo(dtype).max)
    finite = np.isfinite(q)
    if saturate:
        clipped = np.clip(q[finite], -limit, limit).astype(dtype).astype(np.float32)
        np.testing.assert_array_equal(y[finite].astype(np.float32), clipped)
        if code in (17, 19):  # Cast's saturation table: +-inf -> +-max for the fn types, NaN for fnuz
            np.testing.assert_array_equal(y[~finite].astype(np.float32), np.sign(q[~finite]) * limit)
        else:
            assert np.isnan(y[~finite].astype(np.float32)).all()
    else:
        np.testing.assert_array_equal(y.astype(np.float32), q.astype(dtype).astype(np.float32))


@pytest.mark.parametrize("code", [TensorProto.INT4, TensorProto.UINT4, TensorProto.INT16, TensorProto.FLOAT4E2M1])
def test_quantize_blocked_output_dtype(code):
    x = (RNG.standard_normal((3, 5)) * 4).astype(np.float32)
    feeds = {"x": x, "s": np.array([[0.5, 1.0, 2.0]] * 3, np.float32)}
    model = node_model("QuantizeLinear", feeds, ["y"], opset=21, output_types={"y": code}, axis=1, block_size=2,
                       output_dtype=code)
    check(model, feeds)


def test_quantize_precision_float16_scale():
    feeds = {"x": X, "s": np.array(0.37, np.float16), "z": np.array(3, np.int16)}
    check(node_model("QuantizeLinear", feeds, ["y"], opset=23, output_types={"y": 5}), feeds)
    check(node_model("QuantizeLinear", feeds, ["y"], opset=23, output_types={"y": 5}, precision=1), feeds)


def test_quantize_bad_blocked_scale_raises():
    feeds = {"x": np.zeros((2, 6), np.float32), "s": np.ones((2, 2), np.float32)}
    model = node_model("QuantizeLinear", feeds, ["y"], opset=21, axis=1, block_size=2)
    with pytest.raises(Exception, match="blocked scale"):
        run_onnxpy(model, feeds)


def test_quantize_rejects_vector_scale_before_13():
    feeds = {"x": X, "s": np.ones(3, np.float32)}
    with pytest.raises(Exception, match="scalar scale"):
        run_onnxpy(node_model("QuantizeLinear", feeds, ["y"], opset=10), feeds)


@pytest.mark.parametrize("opset", [10, 13, 19, 21, 23])
def test_dequantize_every_version(opset):
    feeds = {"x": np.arange(-128, 128, 8, dtype=np.int8).reshape(2, 16), "s": np.array(0.25, np.float32),
             "z": np.array(-7, np.int8)}
    check(node_model("DequantizeLinear", feeds, ["y"], opset=opset, output_types={"y": 1}), feeds,
          oracle="onnxruntime")


def test_dequantize_per_axis_float16_scale():
    feeds = {"x": RNG.integers(0, 255, (2, 3, 4), dtype=np.uint8), "s": np.array([0.5, 0.1, 2.0], np.float16),
             "z": np.array([1, 128, 255], np.uint8)}
    check(node_model("DequantizeLinear", feeds, ["y"], opset=19, output_types={"y": 10}, axis=1), feeds,
          oracle="onnxruntime", rtol=1e-3)


@pytest.mark.parametrize("dtype", [ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.float8_e4m3fn])
def test_dequantize_blocked(dtype):
    x = RNG.integers(0, 7, (4, 6)).astype(dtype)
    feeds = {"x": x, "s": (RNG.random((2, 6)) + 0.5).astype(np.float32)}
    check(node_model("DequantizeLinear", feeds, ["y"], opset=21, output_types={"y": 1}, axis=0, block_size=2),
          feeds)


def test_dequantize_output_dtype_and_int32():
    feeds = {"x": np.array([-5, 0, 70000], np.int32), "s": np.array(0.5, np.float32)}
    y = check(node_model("DequantizeLinear", feeds, ["y"], opset=23, output_types={"y": 10}, output_dtype=10),
              feeds, expected=[np.array([-2.5, 0, 35000], np.float16)])
    assert y[0].dtype == np.float16


@pytest.mark.parametrize("x", [X, np.zeros((3,), np.float32), np.abs(X), -np.abs(X)])
def test_dynamic_quantize_linear(x):
    model = node_model("DynamicQuantizeLinear", {"x": x}, ["y", "s", "z"], opset=11,
                       output_types={"y": 2, "s": 1, "z": 2})
    check(model, {"x": x}, oracle="onnxruntime")


@pytest.mark.parametrize("zps", [(None, None), (np.uint8(12), np.int8(-3)), ("row", "col")])
def test_matmul_integer(zps):
    a = RNG.integers(0, 255, (2, 4, 5), dtype=np.uint8)
    b = RNG.integers(-128, 127, (5, 3), dtype=np.int8)
    azp, bzp = zps
    if isinstance(azp, str):
        azp, bzp = RNG.integers(0, 255, 4, dtype=np.uint8), RNG.integers(-128, 127, 3, dtype=np.int8)
    feeds = {"A": a, "B": b, **({"a_zp": np.array(azp), "b_zp": np.array(bzp)} if azp is not None else {})}
    # per-row A zero points: onnxruntime and the reference reject or mis-broadcast them; spec formula
    a64 = a.astype(np.int64) - (np.asarray(azp, np.int64).reshape(-1, 1) if azp is not None else 0)
    b64 = b.astype(np.int64) - (np.asarray(bzp, np.int64) if bzp is not None else 0)
    check(node_model("MatMulInteger", feeds, ["Y"], opset=10, output_types={"Y": 6}), feeds,
          expected=[(a64 @ b64).astype(np.int32)])


@pytest.mark.parametrize("opset", [10, 21])
@pytest.mark.parametrize("dtypes", [(np.uint8, np.uint8, np.uint8), (np.int8, np.int8, np.int8),
                                    (np.uint8, np.int8, np.uint8)])
def test_qlinear_matmul(opset, dtypes):
    ta, tb, ty = dtypes
    info_a, info_b, info_y = np.iinfo(ta), np.iinfo(tb), np.iinfo(ty)
    feeds = {"a": RNG.integers(info_a.min, info_a.max, (2, 3, 8), dtype=ta), "a_s": np.array(0.02, np.float32),
             "a_z": np.array(info_a.min + 100, ta),
             "b": RNG.integers(info_b.min, info_b.max, (8, 4), dtype=tb), "b_s": np.array(0.03, np.float32),
             "b_z": np.array(info_b.min + 130, tb),
             "y_s": np.array(0.5, np.float32), "y_z": np.array(info_y.min + 120, ty)}
    out = 2 if ty == np.uint8 else 3
    check(node_model("QLinearMatMul", feeds, ["y"], opset=opset, output_types={"y": out}), feeds, oracle="onnxruntime")


def test_qlinear_matmul_per_column_b():
    feeds = {"a": RNG.integers(0, 255, (3, 8), dtype=np.uint8), "a_s": np.array(0.02, np.float32),
             "a_z": np.array(100, np.uint8), "b": RNG.integers(-128, 127, (8, 4), dtype=np.int8),
             "b_s": np.array([0.01, 0.02, 0.03, 0.04], np.float32), "b_z": np.zeros(4, np.int8),
             "y_s": np.array(0.3, np.float32), "y_z": np.array(128, np.uint8)}
    check(node_model("QLinearMatMul", feeds, ["y"], opset=10, output_types={"y": 2}), feeds, oracle="onnxruntime")


CONV_CASES = [
    {},
    {"pads": [1, 1, 1, 1]},
    {"strides": [2, 1], "dilations": [1, 2], "pads": [0, 2, 1, 0]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"auto_pad": "SAME_LOWER"},
    {"auto_pad": "VALID", "group": 2},
]


@pytest.mark.parametrize("attrs", CONV_CASES)
def test_conv_integer(attrs):
    group = attrs.get("group", 1)
    feeds = {"x": RNG.integers(0, 255, (2, 4, 7, 6), dtype=np.uint8),
             "w": RNG.integers(0, 255, (6, 4 // group, 3, 3), dtype=np.uint8),
             "xz": np.array(120, np.uint8), "wz": np.array(130, np.uint8)}
    check(node_model("ConvInteger", feeds, ["y"], opset=10, output_types={"y": 6}, **attrs), feeds)


@pytest.mark.parametrize("attrs", CONV_CASES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinear_conv(attrs, per_channel):
    group = attrs.get("group", 1)
    w_scale = (RNG.random(6) * 0.05 + 0.01).astype(np.float32) if per_channel else np.array(0.02, np.float32)
    feeds = {"x": RNG.integers(0, 255, (2, 4, 7, 6), dtype=np.uint8), "x_s": np.array(0.03, np.float32),
             "x_z": np.array(120, np.uint8),
             "w": RNG.integers(-127, 127, (6, 4 // group, 3, 3), dtype=np.int8), "w_s": w_scale,
             "w_z": np.zeros(w_scale.shape, np.int8), "y_s": np.array(0.7, np.float32), "y_z": np.array(5, np.uint8),
             "B": RNG.integers(-500, 500, 6, dtype=np.int32)}
    check(node_model("QLinearConv", feeds, ["y"], opset=10, output_types={"y": 2}, **attrs), feeds,
          oracle="onnxruntime")


def test_qlinear_conv_1d_without_bias():
    feeds = {"x": RNG.integers(0, 255, (1, 2, 9), dtype=np.uint8), "x_s": np.array(0.03, np.float32),
             "x_z": np.array(120, np.uint8), "w": RNG.integers(0, 255, (3, 2, 2), dtype=np.uint8),
             "w_s": np.array(0.02, np.float32), "w_z": np.array(128, np.uint8), "y_s": np.array(0.2, np.float32),
             "y_z": np.array(128, np.uint8)}
    check(node_model("QLinearConv", feeds, ["y"], opset=10, output_types={"y": 2}, strides=[2]), feeds,
          oracle="onnxruntime")


@pytest.mark.parametrize("code", [TensorProto.INT2, TensorProto.UINT2, TensorProto.FLOAT6E2M3, TensorProto.FLOAT6E3M2])
def test_quantize_dequantize_opset_25_types(code):
    x = (RNG.standard_normal((2, 6)) * 3).astype(np.float32)
    feeds = {"x": x, "s": np.array([0.5, 2.0], np.float32)}
    q = check(node_model("QuantizeLinear", feeds, ["y"], opset=25, output_types={"y": code}, axis=0,
                         output_dtype=code), feeds)[0]
    feeds = {"q": q, "s": np.array([0.5, 2.0], np.float32)}
    check(node_model("DequantizeLinear", feeds, ["y"], opset=25, output_types={"y": 1}, axis=0), feeds)
