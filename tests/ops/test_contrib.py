"""com.microsoft contrib kernels against onnxruntime 1.32 on single-node models."""
import zlib

import numpy as np
import pytest

from onnx import helper

import onnxpy

from tests.ops._oracle import LEVELS, check, node_model, run_onnxpy, run_onnxruntime

RNG = np.random.default_rng(0)
MS = "com.microsoft"


@pytest.fixture(autouse=True)
def _seeded(request):
    """Each test draws the same data however the tests are spread over workers."""
    global RNG
    RNG = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def rand(*shape, dtype=np.float32, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def ort_check(op, feeds, outputs, out_type=1, rtol=1e-5, atol=1e-5, initializers=None, **attrs):
    """Compare a one-node contrib model with onnxruntime."""
    types = out_type if isinstance(out_type, dict) else dict.fromkeys(outputs, out_type)
    model = node_model(op, feeds, outputs, opset=1, domain=MS, output_types=types, initializers=initializers,
                       **attrs)
    return check(model, feeds, oracle="onnxruntime", rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype, code", [(np.float32, 1), (np.float16, 10)])
def test_gelus(dtype, code):
    x, b = rand(2, 3, 8, dtype=dtype, scale=3), rand(8, dtype=dtype)
    tol = 1e-5 if dtype == np.float32 else 2e-3
    ort_check("Gelu", {"X": x}, ["Y"], code, rtol=tol, atol=tol)
    ort_check("BiasGelu", {"A": x, "B": b}, ["C"], code, rtol=tol, atol=tol)
    ort_check("FastGelu", {"X": x, "bias": b}, ["Y"], code, rtol=tol, atol=tol)
    ort_check("FastGelu", {"X": x}, ["Y"], code, rtol=tol, atol=tol)
    ort_check("QuickGelu", {"X": x}, ["Y"], code, rtol=tol, atol=tol, alpha=1.5)


def test_fast_gelu_compiled():
    """FastGelu (tanh estimate) as x * sigmoid(2u) in one compiled pass, with and without bias."""
    x, b = rand(3, 40, 64, scale=4), rand(64)
    x[0, 0, :6] = [-100, -30, -12, 12, 30, 100]
    ort_check("FastGelu", {"X": x, "bias": b}, ["Y"], rtol=1e-5, atol=1e-6)
    ort_check("FastGelu", {"X": x}, ["Y"], rtol=1e-5, atol=1e-6)


def test_quick_gelu_compiled_keeps_input():
    """A float32 input large enough for the compiled pass is read in place, never written."""
    x = rand(4, 32, 40, scale=4)
    before = x.copy()
    ort_check("QuickGelu", {"X": x}, ["Y"], alpha=1.702)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("activation, params", [(None, None), ("Relu", None), ("LeakyRelu", [0.2]),
                                                ("Clip", [-0.5, 0.5]), ("HardSigmoid", [0.3, 0.4]),
                                                ("Sigmoid", None), ("Tanh", None)])
def test_fused_conv(activation, params):
    feeds = {"X": rand(1, 4, 6, 6), "W": rand(6, 2, 3, 3), "B": rand(6), "Z": rand(1, 6, 3, 3)}
    attrs = {"activation": activation} if activation else {}
    if params:
        attrs["activation_params"] = params
    ort_check("FusedConv", feeds, ["Y"], group=2, strides=[2, 2], pads=[1, 1, 1, 1], **attrs)


@pytest.mark.parametrize("activation, params", [("HardSigmoid", [0.3, 0.4]), ("HardSigmoid", [1 / 6, 0.5]),
                                                ("Sigmoid", None)])
def test_fused_conv_compiled_activation(activation, params):
    """An output large enough for the compiled HardSigmoid / Sigmoid pass that follows the convolution."""
    feeds = {"X": rand(1, 8, 40, 42, scale=3), "W": rand(6, 8, 3, 3), "B": rand(6)}
    attrs = {"activation_params": params} if params else {}
    ort_check("FusedConv", feeds, ["Y"], pads=[1, 1, 1, 1], activation=activation, rtol=1e-4, atol=1e-4, **attrs)


@pytest.mark.parametrize("xs, ws, group", [((2, 4, 9, 8), (6, 4, 3, 3), 1), ((2, 4, 9, 8), (8, 1, 3, 3), 4),
                                            ((1, 8, 40, 42), (6, 8, 3, 3), 1),
                                            ((1, 64, 7, 7), (64, 1, 5, 5), 64)])  # depthwise, channels-last
@pytest.mark.parametrize("activation, params", [("Relu", None), ("Clip", [0.0, 6.0]), ("Clip", [-0.5, 0.5])])
def test_fused_conv_clamp(xs, ws, group, activation, params):
    """Without Z, Relu and Clip clamp inside the convolution (GEMM, both depthwise and Winograd paths)."""
    feeds = {"X": rand(*xs, scale=3), "W": rand(*ws), "B": rand(ws[0])}
    attrs = {"activation_params": params} if params else {}
    # sums of 72 products of magnitude ~10: Winograd rounds differently from onnxruntime's direct sum
    ort_check("FusedConv", feeds, ["Y"], group=group, pads=[1, 1, 1, 1], activation=activation, rtol=1e-4,
              atol=1e-4, **attrs)


@pytest.mark.parametrize("xs, ws, group, pads", [
    ((2, 8, 40, 42), (512, 8, 1, 1), 1, [0, 0, 0, 0]),  # 1x1: GEMM in bands of output columns
    ((2, 4, 9, 8), (6, 4, 3, 3), 1, [1, 1, 1, 1]),  # im2col
    ((2, 4, 9, 8), (8, 1, 3, 3), 4, [1, 1, 1, 1]),  # depthwise
    ((2, 32, 7, 7), (32, 1, 3, 3), 32, [1, 1, 1, 1]),  # depthwise, channels-last
    ((1, 8, 40, 42), (6, 8, 3, 3), 1, [1, 1, 1, 1]),  # Winograd
])
@pytest.mark.parametrize("activation", [None, "Relu", "Sigmoid"])
def test_fused_conv_residual_on_every_path(xs, ws, group, pads, activation):
    """Z (a residual of the output's shape) is added before the activation on each convolution path."""
    out = (xs[0], ws[0], xs[2] + pads[0] + pads[2] - ws[2] + 1, xs[3] + pads[1] + pads[3] - ws[3] + 1)
    feeds = {"X": rand(*xs, scale=3), "W": rand(*ws), "B": rand(ws[0]), "Z": rand(*out, scale=3)}
    attrs = {"activation": activation} if activation else {}
    ort_check("FusedConv", feeds, ["Y"], group=group, pads=pads, rtol=1e-4, atol=1e-4, **attrs)


@pytest.mark.parametrize("xs, ws", [((1, 8, 1, 1), (16, 8, 1, 1)),  # squeeze-and-excitation: numpy finishes
                                    ((1, 96, 7, 7), (576, 96, 1, 1))])  # one GEMM, finished by the compiled pass
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation, params, residual", [(None, None, False), ("Relu", None, False),
                                                          ("Clip", [-0.5, 0.5], False), ("Clip", [0.0, 6.0], True),
                                                          ("Sigmoid", None, True)])
def test_fused_conv_one_small_gemm(xs, ws, bias, activation, params, residual):
    """1x1 convolutions small enough for one GEMM on one thread, with and without bias, Z and clamps."""
    out = (1, ws[0]) + xs[2:]
    feeds = {"X": rand(*xs, scale=3), "W": rand(*ws)}
    if bias or residual:
        feeds["B"] = rand(ws[0]) if bias else np.zeros(ws[0], np.float32)
    if residual:
        feeds["Z"] = rand(*out, scale=3)
    attrs = {"activation": activation} if activation else {}
    if params:
        attrs["activation_params"] = params
    ort_check("FusedConv", feeds, ["Y"], rtol=1e-4, atol=1e-4, **attrs)


def test_fused_conv_residual_of_another_shape_is_refused():
    """Z must have the output's shape (as in onnxruntime): a per-channel Z is a typed error naming it."""
    feeds = {"X": rand(1, 4, 6, 6), "W": rand(6, 4, 3, 3), "B": rand(6), "Z": rand(1, 6, 1, 1)}
    model = node_model("FusedConv", feeds, ["Y"], opset=1, domain=MS, output_types={"Y": 1}, activation="Relu")
    with pytest.raises(onnxpy.capi.onnxruntime_pybind11_state.RuntimeException,
                       match=r"FusedConv.*sum input Z has shape \(1, 6, 1, 1\), expected the output's \(1, 6, 4, 4\)"):
        run_onnxpy(model, feeds)


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu", "Tanh", "Sigmoid"])
def test_fused_gemm(activation):
    feeds = {"A": rand(4, 3), "B": rand(5, 4), "C": rand(5)}
    attrs = {"activation": activation, "activation_alpha": 0.1} if activation else {}
    ort_check("FusedGemm", feeds, ["Y"], transA=1, transB=1, alpha=0.5, beta=2.0, **attrs)


@pytest.mark.parametrize("flags", [(0, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1),
                                   (1, 0, 1, 0), (0, 1, 0, 1)])
def test_fused_matmul(flags):
    ta, tb, tba, tbb = flags

    def stored(effective, trans, trans_batch):  # the layout that op() turns into ``effective``
        x = effective.swapaxes(-1, -2) if trans else effective
        return np.moveaxis(x, -2, 0) if trans_batch else x
    a, b = stored(rand(2, 3, 4), ta, tba), stored(rand(2, 4, 5), tb, tbb)
    feeds = {"A": np.ascontiguousarray(a), "B": np.ascontiguousarray(b)}
    ort_check("FusedMatMul", feeds, ["Y"], alpha=0.7, transA=ta, transB=tb, transBatchA=tba, transBatchB=tbb)


@pytest.mark.parametrize("shape", [(2, 3, 8), (2, 40, 96)])  # numpy, and the compiled kernel's size
def test_layer_norms(shape):
    x, skip = rand(*shape), rand(*shape)
    gamma, beta, bias = rand(shape[-1]), rand(shape[-1]), rand(shape[-1])
    ort_check("SkipLayerNormalization", {"input": x, "skip": skip, "gamma": gamma, "beta": beta, "bias": bias},
              ["Y", "", "", "sum"], epsilon=1e-5)
    ort_check("SkipLayerNormalization", {"input": x, "skip": skip, "gamma": gamma}, ["Y"])
    ort_check("SkipSimplifiedLayerNormalization", {"input": x, "skip": skip, "gamma": gamma, "bias": bias},
              ["Y", "", "", "sum"], epsilon=1e-5)


def test_embed_layer_normalization():
    ids = RNG.integers(0, 10, (2, 5)).astype(np.int32)
    feeds = {"input_ids": ids, "segment_ids": RNG.integers(0, 2, (2, 5)).astype(np.int32),
             "word_embedding": rand(10, 8), "position_embedding": rand(6, 8), "segment_embedding": rand(2, 8),
             "gamma": rand(8), "beta": rand(8), "mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)}
    ort_check("EmbedLayerNormalization", feeds, ["Y", "mask_index", "sum"],
              {"Y": 1, "mask_index": 6, "sum": 1}, epsilon=1e-5)


def ort_check_quantized(op, feeds, outputs, out_type, node_attrs=(), **attrs):
    """Like ort_check for quantized outputs, allowing one quantum of difference: onnxruntime's MLAS
    kernels sum and scale in their own float order (or fixed point), which moves rare ties."""
    model = node_model(op, feeds, outputs, opset=1, domain=MS, output_types=dict.fromkeys(outputs, out_type),
                       **attrs)
    model.graph.node[0].attribute.extend(helper.make_attribute(k, v) for k, v in node_attrs)
    expected = run_onnxruntime(model, feeds)[0]
    for level in LEVELS:
        actual = run_onnxpy(model, feeds, level)[0]
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        assert np.abs(actual.astype(np.int32) - expected.astype(np.int32)).max() <= 1
        assert np.mean(actual != expected) < 0.1


def q8(*shape, dtype=np.uint8):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, dtype=dtype)


def scalar(v, dtype=np.float32):
    return np.array(v, dtype)


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("dtype, code", [(np.uint8, 2), (np.int8, 3)])
def test_qlinear_binary(op, dtype, code):
    # Add's C scale is not a divisor of 0.05 and 0.07: with 0.2, a quarter of the sums were exact
    # ties (x.5), which onnxruntime and onnxpy round differently
    feeds = {"A": q8(2, 3, 4, dtype=dtype), "A_scale": scalar(0.05), "A_zero_point": scalar(3, dtype),
             "B": q8(4, dtype=dtype), "B_scale": scalar(0.07),
             "B_zero_point": scalar(-2 if dtype == np.int8 else 9, dtype),
             "C_scale": scalar(0.23 if op == "QLinearAdd" else 0.5), "C_zero_point": scalar(5, dtype)}
    ort_check_quantized(op, feeds, ["C"], code)


@pytest.mark.parametrize("dtype, code", [(np.uint8, 2), (np.int8, 3)])
def test_qlinear_unary(dtype, code):
    feeds = {"X": q8(3, 5, dtype=dtype), "X_scale": scalar(0.05), "X_zero_point": scalar(10, dtype),
             "Y_scale": scalar(1 / 256), "Y_zero_point": scalar(0 if dtype == np.uint8 else -128, dtype)}
    ort_check("QLinearSigmoid", feeds, ["Y"], code)
    feeds["Y_scale"] = scalar(0.04)
    ort_check("QLinearLeakyRelu", feeds, ["Y"], code, alpha=0.3)


@pytest.mark.parametrize("opset, axis", [(13, -1), (13, 1), (12, 1)])
def test_qlinear_softmax(opset, axis):
    feeds = {"X": q8(2, 3, 4), "X_scale": scalar(0.1), "x_zero_point": scalar(128, np.uint8),
             "y_scale": scalar(1 / 256), "y_zero_point": scalar(0, np.uint8)}
    ort_check_quantized("QLinearSoftmax", feeds, ["Y"], 2, node_attrs=[("opset", opset)], axis=axis)


def test_qlinear_concat():
    feeds = {"ys": scalar(0.1), "yz": scalar(128, np.uint8),
             "a": q8(2, 3), "as": scalar(0.05), "az": scalar(100, np.uint8),
             "b": q8(2, 2), "bs": scalar(0.2), "bz": scalar(130, np.uint8)}
    ort_check("QLinearConcat", feeds, ["Y"], 2, axis=1)


@pytest.mark.parametrize("channels_last", [0, 1])
def test_qlinear_global_average_pool(channels_last):
    feeds = {"X": q8(2, 16, 4, 5), "xs": scalar(0.05), "xz": scalar(100, np.uint8), "ys": scalar(0.03),
             "yz": scalar(120, np.uint8)}
    ort_check_quantized("QLinearGlobalAveragePool", feeds, ["Y"], 2, channels_last=channels_last)


@pytest.mark.parametrize("attrs", [{"kernel_shape": [2, 2]},
                                   {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]},
                                   {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
                                   {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1},
                                   {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "channels_last": 1}])
def test_qlinear_average_pool(attrs):
    feeds = {"X": q8(1, 3, 7, 6), "xs": scalar(0.05), "xz": scalar(100, np.uint8), "ys": scalar(0.03),
             "yz": scalar(120, np.uint8)}
    ort_check_quantized("QLinearAveragePool", feeds, ["Y"], 2, **attrs)


@pytest.mark.parametrize("zps", [False, True])
def test_matmul_integer_to_float_and_dynamic_quantize_matmul(zps):
    a, b = q8(2, 3, 4), q8(4, 5, dtype=np.int8)
    feeds = {"A": a, "B": b, "a_scale": scalar(0.02), "b_scale": (RNG.random(5) * 0.1).astype(np.float32)}
    if zps:
        feeds.update(a_zero_point=scalar(120, np.uint8), b_zero_point=q8(5, dtype=np.int8),
                     bias=rand(5))
    ort_check("MatMulIntegerToFloat", feeds, ["Y"], 1, rtol=1e-5, atol=1e-4)
    feeds = {"A": rand(2, 3, 4), "B": b, "b_scale": scalar(0.03)}
    if zps:
        feeds.update(b_zero_point=scalar(3, np.int8), bias=rand(5))
    ort_check("DynamicQuantizeMatMul", feeds, ["Y"], 1, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("quantized_output", [False, True])
@pytest.mark.parametrize("trans", [(0, 0), (1, 1)])
def test_qgemm(quantized_output, trans):
    ta, tb = trans
    a = q8(4, 3) if ta else q8(3, 4)
    b = q8(5, 4, dtype=np.int8) if tb else q8(4, 5, dtype=np.int8)
    feeds = {"A": a, "a_scale": scalar(0.02), "a_zero_point": scalar(110, np.uint8), "B": b,
             "b_scale": scalar(0.03), "b_zero_point": scalar(0, np.int8),
             "C": RNG.integers(-300, 300, 5).astype(np.int32)}
    if quantized_output:
        feeds.update(y_scale=scalar(0.1), y_zero_point=scalar(128, np.uint8))
        ort_check_quantized("QGemm", feeds, ["Y"], 2, alpha=0.8, transA=ta, transB=tb)
    else:
        ort_check("QGemm", feeds, ["Y"], 1, atol=1e-4, alpha=0.8, transA=ta, transB=tb)


@pytest.mark.parametrize("bits, zero", [(4, None), (4, "packed"), (8, "packed"), (2, None), (4, "float")])
def test_matmul_nbits(bits, zero):
    n, k, block = 6, 40, 16
    blocks = -(-k // block)
    per_byte = 8 // bits
    weights = RNG.integers(0, 1 << bits, (n, blocks, block)).astype(np.uint8)
    packed = np.zeros((n, blocks, block // per_byte), np.uint8)
    for i in range(per_byte):
        packed |= weights[:, :, i::per_byte] << np.uint8(i * bits)
    feeds = {"A": rand(2, 3, k), "B": packed, "scales": (RNG.random(n * blocks) * 0.1).astype(np.float32)}
    if zero == "packed":
        zp = RNG.integers(0, 1 << bits, (n, blocks)).astype(np.uint8)
        bytes_per_row = -(-blocks // per_byte)
        zp = np.pad(zp, [(0, 0), (0, bytes_per_row * per_byte - blocks)])
        packed_zp = np.zeros((n, bytes_per_row), np.uint8)
        for i in range(per_byte):
            packed_zp |= zp[:, i::per_byte] << np.uint8(i * bits)
        feeds["zero_points"] = packed_zp.reshape(-1)
    elif zero == "float":
        feeds["zero_points"] = (RNG.random(n * blocks) * 15).astype(np.float32)
    ort_check("MatMulNBits", feeds, ["Y"], 1, rtol=1e-4, atol=1e-4, K=k, N=n, bits=bits, block_size=block)


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("layout", ["3d", "4d", "offset", "partial"])
def test_rotary_embedding(interleaved, layout):
    b, n, s, d = 2, 3, 5, 8
    x = rand(b, n, s, d) if layout == "4d" else rand(b, s, n * d)
    pos = np.array([2], np.int64) if layout == "offset" else RNG.integers(0, 10, (b, s)).astype(np.int64)
    half = (4 if layout == "partial" else d) // 2
    feeds = {"input": x, "position_ids": pos, "cos_cache": rand(12, half), "sin_cache": rand(12, half)}
    attrs = {"num_heads": n, "rotary_embedding_dim": 4} if layout == "partial" else {}
    ort_check("RotaryEmbedding", feeds, ["Y"], 1, interleaved=interleaved, **attrs)


@pytest.mark.parametrize("case", ["plain", "bias_mask", "unidirectional_past", "bnsh_kv", "lengths"])
def test_multi_head_attention(case):
    b, s, l, n, h = 2, 3, 4, 2, 4
    d = n * h
    feeds = {"query": rand(b, s, d), "key": rand(b, l, d), "value": rand(b, l, d)}
    outputs, attrs = ["Y"], {"num_heads": n}
    if case == "bias_mask":
        feeds.update(bias=rand(3 * d), key_padding_mask=np.array([[1, 1, 0, 1], [1, 1, 1, 0]], np.int32),
                     attention_bias=rand(1, n, s, l))
        outputs = ["Y", "present_key", "present_value", "qk"]  # qk: the masked, biased logits
    elif case == "unidirectional_past":
        feeds = {"query": rand(b, s, d), "key": rand(b, s, d), "value": rand(b, s, d), "bias": rand(3 * d),
                 "key_padding_mask": np.ones((b, s + 2), np.int32), "attention_bias": rand(b, n, s, s + 2),
                 "past_key": rand(b, n, 2, h), "past_value": rand(b, n, 2, h)}
        outputs = ["Y", "present_key", "present_value"]
        attrs["unidirectional"] = 1
        attrs["scale"] = 0.3
    elif case == "bnsh_kv":
        feeds = {"query": rand(b, s, d), "key": rand(b, n, l, h), "value": rand(b, n, l, h)}
    elif case == "lengths":
        feeds.update(bias=None)
        feeds = {"query": feeds["query"], "key": feeds["key"], "value": feeds["value"], "bias": rand(3 * d),
                 "key_padding_mask": np.array([2, 4], np.int32)}
    ort_check("MultiHeadAttention", feeds, outputs, 1, **attrs)


@pytest.mark.parametrize("case", ["plain", "mask_2d", "lengths", "unidirectional_past", "qkv_sizes"])
def test_contrib_attention(case):
    b, s, n, h = 2, 3, 2, 4
    d = n * h
    feeds = {"input": rand(b, s, d), "weights": rand(d, 3 * d, scale=0.3), "bias": rand(3 * d)}
    outputs, attrs = ["Y"], {"num_heads": n}
    if case == "mask_2d":
        feeds["mask_index"] = np.array([[1, 1, 0], [1, 1, 1]], np.int32)
    elif case == "lengths":
        feeds["mask_index"] = np.array([2, 3], np.int32)
    elif case == "unidirectional_past":
        feeds.update(mask_index=np.ones((b, s + 2), np.int32), past=rand(2, b, n, 2, h))
        outputs, attrs["unidirectional"] = ["Y", "present"], 1
    elif case == "qkv_sizes":
        feeds = {"input": rand(b, s, d), "weights": rand(d, 2 * d + 4, scale=0.3), "bias": rand(2 * d + 4)}
        attrs["qkv_hidden_sizes"] = [d, d, 4]
    ort_check("Attention", feeds, outputs, 1, **attrs)


def test_multi_head_attention_packed_layouts():
    # onnxruntime's CPU kernel rejects packed QKV/KV: compare with plain softmax attention in numpy
    b, s, n, h = 2, 3, 2, 4
    qkv = rand(b, s, n, 3, h)
    q, k, v = (qkv[:, :, :, i].transpose(0, 2, 1, 3).astype(np.float64) for i in range(3))
    logits = q @ k.swapaxes(-1, -2) / np.sqrt(h)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    y = (p / p.sum(-1, keepdims=True) @ v).transpose(0, 2, 1, 3).reshape(b, s, n * h)
    model = node_model("MultiHeadAttention", {"query": qkv}, ["Y"], opset=1, domain=MS, num_heads=n)
    check(model, {"query": qkv}, expected=[y.astype(np.float32)], atol=1e-5)
    kv = np.stack([k, v], axis=3).transpose(0, 2, 1, 3, 4).astype(np.float32)
    feeds = {"query": q.transpose(0, 2, 1, 3).reshape(b, s, n * h).astype(np.float32), "key": kv}
    model = node_model("MultiHeadAttention", feeds, ["Y"], opset=1, domain=MS, num_heads=n)
    check(model, feeds, expected=[y.astype(np.float32)], atol=1e-5)


def rotary_cache(max_pos, half):
    inv = 1 / 10000 ** (np.arange(half) / half)
    angles = np.arange(max_pos)[:, None] * inv
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


@pytest.mark.parametrize("case", ["prompt", "decode", "rotary_decode", "packed_window_softcap", "smooth",
                                  "prompt_padded"])
def test_group_query_attention(case):
    b, n, nkv, s, past = 2, 4, 2, 3, 5
    h = 16 if case == "rotary_decode" else 8  # onnxruntime rotates head sizes that are multiples of 16
    attrs = {"num_heads": n, "kv_num_heads": nkv}
    if case in ("prompt", "prompt_padded", "packed_window_softcap", "smooth"):
        past_len = 0
        lengths = np.array([s, s - 1 if case == "prompt_padded" else s], np.int32)
    else:
        s = 1
        past_len = past
        lengths = np.array([past + 1, past + 1], np.int32)
    total = int(lengths.max())
    feeds = {"query": rand(b, s, n * h), "key": rand(b, s, nkv * h), "value": rand(b, s, nkv * h),
             "past_key": rand(b, nkv, past_len, h), "past_value": rand(b, nkv, past_len, h),
             "seqlens_k": lengths - 1, "total_sequence_length": np.array(total, np.int32)}
    if case == "rotary_decode":
        cos, sin = rotary_cache(16, h // 2)
        feeds.update(cos_cache=cos, sin_cache=sin)
        attrs.update(do_rotary=1)
    if case == "packed_window_softcap":
        feeds["query"] = np.concatenate([feeds.pop("query"), feeds.pop("key"), feeds.pop("value")], axis=-1)
        feeds = {"query": feeds["query"], "key": None, "value": None, **{k: v for k, v in feeds.items()
                                                                          if k != "query"}}
        attrs.update(local_window_size=2, softcap=1.5)
    if case == "smooth":
        attrs.update(smooth_softmax=1)
    names = [k for k in feeds]
    model = node_model("GroupQueryAttention", {k: v for k, v in feeds.items() if v is not None and k != "seqlens_k"
                                               and k != "total_sequence_length"},
                       ["Y", "present_key", "present_value"], opset=1, domain=MS,
                       output_types=dict.fromkeys(["Y", "present_key", "present_value"], 1),
                       initializers={"seqlens_k": feeds["seqlens_k"],
                                     "total_sequence_length": feeds["total_sequence_length"]}, **attrs)
    order = [("" if feeds[k] is None else k) for k in names]
    model.graph.node[0].input[:] = order
    runtime_feeds = {k: v for k, v in feeds.items() if v is not None and k not in ("seqlens_k",
                                                                                   "total_sequence_length")}
    expected = run_onnxruntime(model, runtime_feeds)
    if case == "prompt_padded":  # padded query rows are unspecified: compare the valid ones
        expected[0] = expected[0][:, :s - 1]
    for level in LEVELS:
        actual = run_onnxpy(model, runtime_feeds, level)
        if case == "prompt_padded":
            actual[0] = actual[0][:, :s - 1]
            actual[1], actual[2], expected[1], expected[2] = (a[:, :, :s - 1] for a in
                                                              (actual[1], actual[2], expected[1], expected[2]))
        for a, e in zip(actual, expected):
            np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [{"mark": 1, "mincharnum": 1, "separators": [" ", ","]},
                                   {"mark": 0, "mincharnum": 2, "separators": [" ", ",", ";"]},
                                   {"mark": 0, "mincharnum": 1, "tokenexp": "[a-z]+"},
                                   {"mark": 1, "mincharnum": 1, "separators": [""]}])
@pytest.mark.parametrize("shape", [(3,), (1, 3)])
def test_tokenizer(attrs, shape):
    x = np.array(["Hello world, a b", "x", "one;two  three"], dtype=object).reshape(shape)
    model = node_model("Tokenizer", {"X": x}, ["Y"], opset=1, domain=MS, output_types={"Y": 8}, pad_value="#",
                       **attrs)
    expected = run_onnxruntime(model, {"X": x})
    for level in LEVELS:
        actual = run_onnxpy(model, {"X": x}, level)[0]
        assert actual.shape == expected[0].shape
        assert actual.tolist() == expected[0].tolist()


@pytest.mark.parametrize("direction, per_column", [("forward", False), ("bidirectional", True)])
def test_dynamic_quantize_lstm(direction, per_column):
    d, seq, batch, inp, hid = (2 if direction == "bidirectional" else 1), 4, 2, 3, 5
    scale_shape = (d, 4 * hid) if per_column else (d,)
    feeds = {"X": rand(seq, batch, inp), "W": q8(d, inp, 4 * hid, dtype=np.int8),
             "R": q8(d, hid, 4 * hid, dtype=np.int8), "B": rand(d, 8 * hid, scale=0.1)}
    init = {"W_scale": np.full(scale_shape, 0.01, np.float32), "W_zero_point": np.zeros(scale_shape, np.int8),
            "R_scale": np.full(scale_shape, 0.01, np.float32), "R_zero_point": np.zeros(scale_shape, np.int8)}
    model = node_model("DynamicQuantizeLSTM", feeds, ["Y", "Y_h", "Y_c"], opset=1, domain=MS,
                       output_types=dict.fromkeys(["Y", "Y_h", "Y_c"], 1), hidden_size=hid, direction=direction)
    model.graph.node[0].input[:] = ["X", "W", "R", "B", "", "", "", "", *init]
    from onnx import numpy_helper
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in init.items())
    check(model, feeds, oracle="onnxruntime", rtol=0, atol=2e-2)  # X is quantized on the fly by onnxruntime


@pytest.mark.parametrize("op, inputs, outputs", [
    ("LayerNormalization", ["X", "Scale", "B"], ["Y", "Mean", "InvStdDev"]),
    ("SimplifiedLayerNormalization", ["X", "scale"], ["Y", "inv_std_var"])])
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("shape", [(2, 3, 4), (4, 24, 96)])  # numpy, and the compiled kernel's size
def test_onnx_domain_contrib_norms(op, inputs, outputs, axis, shape):
    # onnxruntime registers these two in the ai.onnx domain at version 1 (served below opset 17);
    # onnxpy serves them from com.microsoft: run the same node under both domains
    x = rand(*shape)
    norm_shape = x.shape[axis % 3:]
    feeds = dict(zip(inputs, [x, rand(*norm_shape), rand(*norm_shape)]))
    types = dict.fromkeys(outputs, 1)
    ours = node_model(op, feeds, outputs, opset=1, domain=MS, output_types=types, axis=axis, epsilon=1e-3)
    theirs = node_model(op, feeds, outputs, opset=16, output_types=types, axis=axis, epsilon=1e-3)
    expected = run_onnxruntime(theirs, feeds)
    check(ours, feeds, expected=expected, atol=1e-5)
    check(theirs, feeds, expected=expected, atol=1e-5)


def test_onnx_domain_layer_normalization_17_unchanged():
    # onnxruntime's version 1 serves opsets 1-16 only: from 17 on the ai.onnx kernel is ONNX's own
    from onnxpy.ops import contrib, normalization
    from onnxpy.registry import REGISTRY

    assert REGISTRY.resolve("", "LayerNormalization", 16).fn is contrib.layer_normalization
    assert REGISTRY.resolve("", "LayerNormalization", 17).fn is normalization.layer_normalization


def _assert_float16_close(model, feeds):
    """At most one float16 ulp from onnxruntime, on under 1% of the elements."""
    expected = run_onnxruntime(model, feeds)
    for level in LEVELS:
        for a, e in zip(run_onnxpy(model, feeds, level), expected):
            assert a.dtype == e.dtype and a.shape == e.shape
            if a.dtype == np.float16:
                a, e = a.astype(np.float32), e.astype(np.float32)
                assert np.all(np.abs(a - e) <= np.abs(e) * 2.0 ** -10 + 2.0 ** -24), np.max(np.abs(a - e))
                assert np.mean(a != e) < 0.01


def test_float16_fused_transformer_ops():
    # onnxruntime runs these in float32 on CPU (float16 inputs converted first, one rounding at the end),
    # as the float16 BERT from its transformers optimizer does (tests/models/test_ort_tools.py)
    f16 = np.float16
    gamma, beta = rand(16, dtype=f16), rand(16, dtype=f16)
    feeds = {"input": rand(2, 5, 16, dtype=f16), "skip": rand(2, 5, 16, dtype=f16), "gamma": gamma, "beta": beta,
             "bias": rand(16, dtype=f16)}
    _assert_float16_close(node_model("SkipLayerNormalization", feeds, ["Y", "", "", "sum"], opset=1, domain=MS,
                                     output_types={"Y": 10, "sum": 10}, epsilon=1e-5), feeds)
    feeds = {"input_ids": RNG.integers(0, 10, (2, 5)).astype(np.int32),
             "segment_ids": RNG.integers(0, 2, (2, 5)).astype(np.int32), "word_embedding": rand(10, 16, dtype=f16),
             "position_embedding": rand(6, 16, dtype=f16), "segment_embedding": rand(2, 16, dtype=f16),
             "gamma": gamma, "beta": beta}
    _assert_float16_close(node_model("EmbedLayerNormalization", feeds, ["Y", "mask_index"], opset=1, domain=MS,
                                     output_types={"Y": 10, "mask_index": 6}, epsilon=1e-5), feeds)
    feeds = {"input": rand(2, 5, 16, dtype=f16), "weights": rand(16, 48, dtype=f16, scale=0.3),
             "bias": rand(48, dtype=f16), "mask_index": np.array([3, 5], np.int32)}
    _assert_float16_close(node_model("Attention", feeds, ["Y"], opset=1, domain=MS, output_types={"Y": 10},
                                     num_heads=4), feeds)


@pytest.mark.parametrize("qk_output", [1, 2])
def test_group_query_attention_qk_output(qk_output):
    b, n, nkv, h, s = 1, 2, 1, 8, 3
    feeds = {"query": rand(b, s, n * h), "key": rand(b, s, nkv * h), "value": rand(b, s, nkv * h)}
    outs = ["Y", "present_key", "present_value", "qk"]
    model = node_model("GroupQueryAttention", feeds, outs, opset=1, domain=MS, output_types=dict.fromkeys(outs, 1),
                       num_heads=n, kv_num_heads=nkv, qk_output=qk_output,
                       initializers={"seqlens_k": np.array([s - 1], np.int32),
                                     "total_sequence_length": np.array(s, np.int32)})
    model.graph.node[0].input[:] = ["query", "key", "value", "", "", "seqlens_k", "total_sequence_length"]
    check(model, feeds, oracle="onnxruntime", rtol=1e-5, atol=1e-5)
