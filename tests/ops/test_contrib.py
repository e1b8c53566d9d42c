"""com.microsoft contrib kernels against onnxruntime 1.32 on single-node models."""
import numpy as np
import pytest

from tests.ops._oracle import check, node_model

RNG = np.random.default_rng(0)
MS = "com.microsoft"


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


@pytest.mark.parametrize("activation, params", [(None, None), ("Relu", None), ("LeakyRelu", [0.2]),
                                                ("Clip", [-0.5, 0.5]), ("HardSigmoid", [0.3, 0.4]),
                                                ("Sigmoid", None), ("Tanh", None)])
def test_fused_conv(activation, params):
    feeds = {"X": rand(1, 4, 6, 6), "W": rand(6, 2, 3, 3), "B": rand(6), "Z": rand(1, 6, 3, 3)}
    attrs = {"activation": activation} if activation else {}
    if params:
        attrs["activation_params"] = params
    ort_check("FusedConv", feeds, ["Y"], group=2, strides=[2, 2], pads=[1, 1, 1, 1], **attrs)


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


def test_layer_norms():
    x, skip, gamma, beta, bias = rand(2, 3, 8), rand(2, 3, 8), rand(8), rand(8), rand(8)
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
