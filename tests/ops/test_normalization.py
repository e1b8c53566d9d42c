"""BatchNormalization, Layer/Group/Instance/RMS normalization, LRN, LpNormalization and
MeanVarianceNormalization at every registered version, against onnxruntime, PyTorch and numpy
computations written from the spec."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto

from tests.ops._oracle import check, node_model, run_onnxpy

RNG = np.random.default_rng(0)
FLOAT = TensorProto.FLOAT


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def bn_inputs(c, dtype=np.float32, shape=None):
    shape = shape or (c,)
    return {"scale": rand(*shape, dtype=dtype), "b": rand(*shape, dtype=dtype), "mean": rand(*shape, dtype=dtype),
            "var": RNG.uniform(0.5, 2, shape).astype(dtype)}


def bn_numpy(x, p, eps=1e-5, axes=None):
    """Normalize with the given statistics, or with the batch's (population variance) over ``axes``."""
    x64 = x.astype(np.float64)
    view = {k: v.astype(np.float64).reshape(v.shape + (1,) * (x.ndim - 1 - v.ndim)) for k, v in p.items()}
    mean, var = (view["mean"], view["var"]) if axes is None else (x64.mean(axis=axes, keepdims=True)[0],
                                                                 x64.var(axis=axes, keepdims=True)[0])
    return ((x64 - mean) / np.sqrt(var + eps) * view["scale"] + view["b"]).astype(x.dtype), mean, var


@pytest.mark.parametrize("opset", [7, 9, 14, 15])
@pytest.mark.parametrize("xs", [(2, 3), (2, 3, 5), (2, 3, 4, 5), (1, 3, 2, 3, 4)])
def test_batch_norm_inference_onnxruntime(opset, xs):
    x = rand(*xs)
    feeds = {"x": x, **bn_inputs(3)}
    model = node_model("BatchNormalization", feeds, ["y"], opset=opset, epsilon=1e-3, output_types={"y": FLOAT})
    check(model, feeds, oracle="onnxruntime", rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, ml_dtypes.bfloat16])
def test_batch_norm_dtypes(dtype):
    x = rand(2, 3, 4, dtype=dtype)
    feeds = {"x": x, **bn_inputs(3, dtype)}
    tol = 1e-10 if dtype == np.float64 else 3e-2
    want = bn_numpy(x, bn_inputs_of(feeds))[0]
    check(node_model("BatchNormalization", feeds, ["y"], opset=15), feeds, expected=[want], rtol=tol, atol=tol)


def bn_inputs_of(feeds):
    return {k: feeds[k] for k in ("scale", "b", "mean", "var")}


@pytest.mark.parametrize("opset", [14, 15])
def test_batch_norm_training_mode_onnxruntime(opset):
    x = rand(4, 3, 5, 2)
    feeds = {"x": x, **bn_inputs(3)}
    model = node_model("BatchNormalization", feeds, ["y", "rm", "rv"], opset=opset, training_mode=1, momentum=0.7,
                       output_types={"y": FLOAT, "rm": FLOAT, "rv": FLOAT})
    check(model, feeds, oracle="onnxruntime", rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [7, 9])
def test_batch_norm_training_outputs_onnxruntime(opset):
    """Before version 14, asking for more than Y means training; saved_var is the inverse deviation."""
    x = rand(4, 3, 5)
    feeds = {"x": x, **bn_inputs(3)}
    outs = ["y", "running_mean", "running_var", "saved_mean", "saved_var"]
    model = node_model("BatchNormalization", feeds, outs, opset=opset, momentum=0.8,
                       output_types=dict.fromkeys(outs, FLOAT))
    check(model, feeds, oracle="onnxruntime", rtol=1e-5, atol=1e-5)


def test_batch_norm_7_not_spatial():
    x = rand(4, 3, 2, 5)
    params = bn_inputs(3, shape=(3, 2, 5))
    feeds = {"x": x, **params}
    model = node_model("BatchNormalization", feeds, ["y"], opset=7, spatial=0)
    check(model, feeds, expected=[bn_numpy(x, params)[0]], rtol=1e-5, atol=1e-5)
    outs = ["y", "running_mean", "running_var", "saved_mean", "saved_var"]
    want, mean, var = bn_numpy(x, params, axes=(0,))
    model = node_model("BatchNormalization", feeds, outs, opset=7, spatial=0, momentum=0.5)
    got = run_onnxpy(model, feeds)
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], 0.5 * params["mean"] + 0.5 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2], 0.5 * params["var"] + 0.5 * var, rtol=1e-5, atol=1e-6)
    assert [g.shape for g in got[1:]] == [(3, 2, 5)] * 4


@pytest.mark.parametrize("opset,attrs", [(1, {"consumed_inputs": [0, 0, 0, 1, 1]}), (6, {})])
def test_batch_norm_is_test(opset, attrs):
    """Versions 1 and 6 run in test mode only when is_test is set; otherwise with batch statistics."""
    x = rand(4, 3, 5)
    params = bn_inputs(3)
    feeds = {"x": x, **params}
    model = node_model("BatchNormalization", feeds, ["y"], opset=opset, is_test=1, **attrs)
    check(model, feeds, expected=[bn_numpy(x, params)[0]], rtol=1e-5, atol=1e-5)
    model = node_model("BatchNormalization", feeds, ["y"], opset=opset, **attrs)
    check(model, feeds, expected=[bn_numpy(x, params, axes=(0, 2))[0]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, 1, 0, -2])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 4), (4, 24, 96)])  # numpy, and the compiled kernel's size
def test_layer_norm_onnxruntime(axis, with_bias, shape):
    x = rand(*shape)
    first = axis % 3
    feeds = {"x": x, "s": rand(*x.shape[first:])}
    if with_bias:
        feeds["b"] = rand(*x.shape[first:])
    model = node_model("LayerNormalization", feeds, ["y", "mean", "inv"], opset=17, axis=axis, epsilon=1e-3,
                       output_types={"y": FLOAT, "mean": FLOAT, "inv": FLOAT})
    check(model, feeds, oracle="onnxruntime", rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_of_hard_rows(dtype):
    """Rows that are constant, offset far from zero (the variance must not cancel), with a NaN,
    or with an infinity, through the compiled kernel, against float64 arithmetic."""
    x = rand(8, 512).astype(dtype)
    x[0] = 3.0
    x[1] = 100 + x[1] * 0.1
    x[2, 7] = np.nan
    x[3, 9] = np.inf
    s, b = rand(512).astype(dtype), rand(512).astype(dtype)
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        mean = x64.mean(axis=1, keepdims=True)
        inv = 1 / np.sqrt(((x64 - mean) ** 2).mean(axis=1, keepdims=True) + 1e-5)
        y = (x64 - mean) * inv * s + b
    stash = {np.float32: 1, np.float64: 11}[dtype]
    model = node_model("LayerNormalization", {"x": x, "s": s, "b": b}, ["y", "mean", "inv"], opset=17,
                       stash_type=stash)
    check(model, {"x": x, "s": s, "b": b}, expected=[y.astype(dtype), mean.astype(dtype), inv.astype(dtype)],
          rtol=1e-4, atol=1e-4)


def test_layer_norm_float16_stashes_float():
    x = rand(3, 8, dtype=np.float16)
    feeds = {"x": x, "s": rand(8, dtype=np.float16), "b": rand(8, dtype=np.float16)}
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    inv = 1 / np.sqrt(x64.var(axis=1, keepdims=True) + 1e-5)
    y = (x64 - mean) * inv * feeds["s"] + feeds["b"]
    model = node_model("LayerNormalization", feeds, ["y", "mean", "inv"], opset=17)
    check(model, feeds, expected=[y.astype(np.float16), mean.astype(np.float32), inv.astype(np.float32)],
          rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rms_norm(axis, dtype):
    x = rand(2, 3, 4, dtype=dtype)
    scale = rand(*x.shape[axis % 3:])
    x64 = x.astype(np.float64)
    axes = tuple(range(axis % 3, 3))
    want = x64 / np.sqrt((x64 ** 2).mean(axis=axes, keepdims=True) + 1e-4) * scale
    feeds = {"x": x, "s": scale}
    model = node_model("RMSNormalization", feeds, ["y"], opset=23, axis=axis, epsilon=1e-4)
    check(model, feeds, expected=[want.astype(np.float32)], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("xs,groups", [((2, 6, 4, 5), 3), ((1, 4, 7), 2), ((2, 6, 2, 2, 3), 6), ((2, 4, 3), 1)])
def test_group_norm_21_against_torch(xs, groups):
    x = rand(*xs)
    scale, bias = rand(xs[1]), rand(xs[1])
    want = F.group_norm(torch.from_numpy(x), groups, torch.from_numpy(scale), torch.from_numpy(bias), eps=1e-4)
    feeds = {"x": x, "s": scale, "b": bias}
    model = node_model("GroupNormalization", feeds, ["y"], opset=21, num_groups=groups, epsilon=1e-4)
    check(model, feeds, expected=[want.numpy()], rtol=1e-4, atol=1e-5)


def test_group_norm_18_per_group_parameters():
    x = rand(2, 6, 4)
    scale, bias = rand(3), rand(3)
    want = F.group_norm(torch.from_numpy(x), 3, torch.from_numpy(np.repeat(scale, 2)),
                        torch.from_numpy(np.repeat(bias, 2)))
    feeds = {"x": x, "s": scale, "b": bias}
    check(node_model("GroupNormalization", feeds, ["y"], opset=18, num_groups=3), feeds,
          expected=[want.numpy()], rtol=1e-4, atol=1e-5)


def test_group_norm_bad_groups():
    feeds = {"x": rand(1, 5, 3), "s": rand(5), "b": rand(5)}
    with pytest.raises(Exception, match="num_groups"):
        run_onnxpy(node_model("GroupNormalization", feeds, ["y"], opset=21, num_groups=2), feeds)


@pytest.mark.parametrize("opset,attrs", [(1, {"consumed_inputs": [0, 0, 0]}), (6, {}), (22, {})])
@pytest.mark.parametrize("xs", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 2, 4)])
def test_instance_norm_against_torch(opset, attrs, xs):
    x, scale, b = rand(*xs), rand(xs[1]), rand(xs[1])
    want = F.instance_norm(torch.from_numpy(x), weight=torch.from_numpy(scale), bias=torch.from_numpy(b), eps=1e-3)
    feeds = {"x": x, "s": scale, "b": b}
    model = node_model("InstanceNormalization", feeds, ["y"], opset=opset, epsilon=1e-3, **attrs)
    check(model, feeds, expected=[want.numpy()], rtol=1e-4, atol=1e-5)


def test_instance_norm_float16():
    x, scale, b = rand(2, 3, 8, dtype=np.float16), rand(3, dtype=np.float16), rand(3, dtype=np.float16)
    want = F.instance_norm(torch.from_numpy(x.astype(np.float32)), weight=torch.from_numpy(scale.astype(np.float32)),
                           bias=torch.from_numpy(b.astype(np.float32)))
    feeds = {"x": x, "s": scale, "b": b}
    check(node_model("InstanceNormalization", feeds, ["y"], opset=22), feeds,
          expected=[want.numpy().astype(np.float16)], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("opset", [1, 13])
@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn_against_torch(opset, size):
    x = rand(2, 7, 3, 4)
    want = F.local_response_norm(torch.from_numpy(x), size, alpha=0.02, beta=0.6, k=1.5).numpy()
    model = node_model("LRN", {"x": x}, ["y"], opset=opset, size=size, alpha=0.02, beta=0.6, bias=1.5)
    check(model, {"x": x}, expected=[want], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [2, 4])
def test_lrn_even_size(size):
    """Even sizes: floor((size-1)/2) channels before, ceil((size-1)/2) after (PyTorch differs, and
    onnxruntime refuses even sizes)."""
    x = rand(1, 6, 2, 3)
    sq = x.astype(np.float64) ** 2
    total = np.stack([sq[:, max(0, c - (size - 1) // 2):c + size // 2 + 1].sum(axis=1) for c in range(6)], axis=1)
    want = x / (1 + 1e-4 / size * total) ** 0.75
    model = node_model("LRN", {"x": x}, ["y"], opset=13, size=size)
    check(model, {"x": x}, expected=[want.astype(np.float32)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [1, 22])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_lp_normalization(opset, p, axis):
    x = rand(3, 4, 2)
    x[1, :, 0] = 0
    x[:, 2, 1] = 0
    x64 = x.astype(np.float64)
    norm = (np.abs(x64) ** p).sum(axis=axis, keepdims=True) ** (1 / p)
    want = np.where(norm == 0, 0, x64 / np.where(norm == 0, 1, norm))
    model = node_model("LpNormalization", {"x": x}, ["y"], opset=opset, p=p, axis=axis)
    check(model, {"x": x}, expected=[want.astype(np.float32)], rtol=1e-5, atol=1e-6)


def test_lp_normalization_onnxruntime():
    x = rand(3, 4, 5)
    model = node_model("LpNormalization", {"x": x}, ["y"], opset=1, p=1, axis=1, output_types={"y": FLOAT})
    check(model, {"x": x}, oracle="onnxruntime", rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [9, 13])
@pytest.mark.parametrize("axes", [None, [0, 2, 3], [1], [2, 3]])
def test_mean_variance_normalization_onnxruntime(opset, axes):
    x = rand(2, 3, 4, 5)
    attrs = {} if axes is None else {"axes": axes}
    model = node_model("MeanVarianceNormalization", {"x": x}, ["y"], opset=opset, output_types={"y": FLOAT}, **attrs)
    check(model, {"x": x}, oracle="onnxruntime", rtol=1e-4, atol=1e-5)
