"""MaxPool, AveragePool, LpPool, the global pools, MaxRoiPool and MaxUnpool at every registered version,
against PyTorch, onnxruntime, onnx.reference and brute-force numpy windows written from the spec."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto

from tests.ops._oracle import check, node_model, run_onnxpy, run_onnxruntime

RNG = np.random.default_rng(0)
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64
TORCH_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
TORCH_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def brute_pool(x, kernel, strides, dilations, begin, end, ceil_mode, reduce, count_include_pad=False):
    """Pool by visiting every output position: the window's taps that fall on the input (or on
    input and pads when count_include_pad) are reduced; output size per the MaxPool spec formula."""
    n = len(kernel)
    out = []
    for d in range(n):
        span = (kernel[d] - 1) * dilations[d] + 1
        size = (x.shape[2 + d] + begin[d] + end[d] - span) / strides[d] + 1
        o = int(np.ceil(size)) if ceil_mode else int(np.floor(size))
        if ceil_mode and (o - 1) * strides[d] >= x.shape[2 + d] + begin[d]:
            o -= 1
        out.append(o)
    y = np.zeros(x.shape[:2] + tuple(out))
    for pos in itertools.product(*(range(o) for o in out)):
        vals, pads = [], 0
        for tap in itertools.product(*(range(k) for k in kernel)):
            coord = [pos[d] * strides[d] - begin[d] + tap[d] * dilations[d] for d in range(n)]
            if all(0 <= c < x.shape[2 + d] for d, c in enumerate(coord)):
                vals.append(x[(..., *coord)].astype(np.float64))
            elif all(-begin[d] <= c < x.shape[2 + d] + end[d] for d, c in enumerate(coord)):
                pads += 1
        y[(..., *pos)] = reduce(np.stack(vals, axis=-1), pads if count_include_pad else 0)
    return y.astype(x.dtype)


def avg(vals, pads):
    return vals.sum(axis=-1) / (vals.shape[-1] + pads)


def maximum(vals, _):
    return vals.max(axis=-1)


def lp(p):
    return lambda vals, _: (np.abs(vals) ** p).sum(axis=-1) ** (1 / p)


POOL_CASES = [
    # x shape, kernel, strides, dilations, pads, ceil_mode
    ((2, 3, 9), [3], [2], [1], [1, 0], 0),
    ((1, 2, 10), [2], [3], [2], [0, 1], 1),
    ((2, 2, 7, 8), [3, 2], [2, 1], [1, 1], [1, 0, 1, 1], 0),
    ((1, 3, 8, 9), [2, 3], [2, 2], [2, 1], [0, 1, 1, 0], 1),
    ((1, 2, 5, 6, 7), [2, 3, 2], [1, 2, 2], [1, 1, 2], [1, 1, 0, 0, 1, 1], 1),
]


@pytest.mark.parametrize("xs,kernel,strides,dilations,pads,ceil_mode", POOL_CASES)
@pytest.mark.parametrize("opset", [10, 12, 22])
def test_max_pool_brute_force(opset, xs, kernel, strides, dilations, pads, ceil_mode):
    x, n = rand(*xs), len(kernel)
    want = brute_pool(x, kernel, strides, dilations, pads[:n], pads[n:], ceil_mode, maximum)
    model = node_model("MaxPool", {"x": x}, ["y"], opset=opset, kernel_shape=kernel, strides=strides,
                       dilations=dilations, pads=pads, ceil_mode=ceil_mode)
    check(model, {"x": x}, expected=[want])


@pytest.mark.parametrize("xs,kernel,strides,dilations,pads,ceil_mode", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool_19_brute_force(xs, kernel, strides, dilations, pads, ceil_mode, count_include_pad):
    x, n = rand(*xs), len(kernel)
    want = brute_pool(x, kernel, strides, dilations, pads[:n], pads[n:], ceil_mode, avg, count_include_pad)
    model = node_model("AveragePool", {"x": x}, ["y"], opset=19, kernel_shape=kernel, strides=strides,
                       dilations=dilations, pads=pads, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    check(model, {"x": x}, expected=[want], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("xs,kernel,strides,dilations,pads,ceil_mode", POOL_CASES)
@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool_18_brute_force(xs, kernel, strides, dilations, pads, ceil_mode, p):
    x, n = rand(*xs), len(kernel)
    want = brute_pool(x, kernel, strides, dilations, pads[:n], pads[n:], ceil_mode, lp(p))
    model = node_model("LpPool", {"x": x}, ["y"], opset=18, kernel_shape=kernel, strides=strides,
                       dilations=dilations, pads=pads, ceil_mode=ceil_mode, p=p)
    check(model, {"x": x}, expected=[want], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_average_pool_against_torch(nd, ceil_mode, count_include_pad):
    x = rand(2, 3, *[7, 6, 5][:nd])
    kernel, strides, pad = [3, 2, 3][:nd], [2, 2, 1][:nd], [1, 1, 1][:nd]
    want = TORCH_AVG[nd](torch.from_numpy(x), kernel, strides, pad, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad).numpy()
    model = node_model("AveragePool", {"x": x}, ["y"], opset=10, kernel_shape=kernel, strides=strides,
                       pads=pad * 2, ceil_mode=int(ceil_mode), count_include_pad=int(count_include_pad))
    check(model, {"x": x}, expected=[want], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool_indices_against_torch(nd, ceil_mode):
    x = rand(2, 3, *[9, 8, 7][:nd])
    kernel, strides, pad, dil = [3, 2, 3][:nd], [2, 2, 1][:nd], [1, 1, 0][:nd], [1, 2, 1][:nd]
    y, idx = TORCH_MAX[nd](torch.from_numpy(x), kernel, strides, pad, dil, ceil_mode=ceil_mode, return_indices=True)
    plane = int(np.prod(x.shape[2:]))  # ONNX indices also count the batch and channel planes before
    offset = np.arange(6, dtype=np.int64).reshape((2, 3) + (1,) * nd) * plane
    model = node_model("MaxPool", {"x": x}, ["y", "i"], opset=12, kernel_shape=kernel, strides=strides,
                       pads=pad * 2, dilations=dil, ceil_mode=int(ceil_mode))
    check(model, {"x": x}, expected=[y.numpy(), idx.numpy() + offset])


@pytest.mark.parametrize("opset", [8, 10, 22])
@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
def test_max_pool_indices_onnxruntime(opset, storage_order, auto_pad):
    x = rand(2, 2, 7, 6)
    attrs = {"pads": [1, 0, 0, 1]} if auto_pad == "NOTSET" else {}
    model = node_model("MaxPool", {"x": x}, ["y", "i"], opset=opset, kernel_shape=[3, 2], strides=[2, 2],
                       storage_order=storage_order, auto_pad=auto_pad, output_types={"y": FLOAT, "i": INT64}, **attrs)
    check(model, {"x": x}, oracle="onnxruntime")


@pytest.mark.parametrize("kernel,strides,pads", [([2, 2], [1, 1], [0, 0, 1, 1]), ([3, 3], [2, 2], [1, 1, 1, 1]),
                                                  ([5, 4], [3, 2], [2, 1, 2, 0])])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_propagates_nan_and_inf(kernel, strides, pads, dtype):
    """A window with a NaN gives NaN (as np.maximum), -inf and +inf are ordinary values; the
    compiled path takes taps three at a time, so kernels of 4, 9 and 20 taps."""
    x = rand(2, 3, 17, 15, dtype=dtype)
    x[0, 0, 4, 5] = np.nan
    x[1, 2, :3, :3] = -np.inf
    x[1, 1, 8, 8] = np.inf
    want = brute_pool(x, kernel, strides, [1, 1], pads[:2], pads[2:], 0, maximum)
    model = node_model("MaxPool", {"x": x}, ["y"], opset=12, kernel_shape=kernel, strides=strides, pads=pads)
    check(model, {"x": x}, expected=[want])


@pytest.mark.parametrize("kernel,strides,pads,ceil_mode", [
    ([3, 3], [2, 2], [1, 1, 1, 1], 0),  # resnet's
    ([3, 3], [2, 2], [0, 0, 0, 0], 1),  # squeezenet's
    ([3, 3], [1, 1], [1, 1, 1, 1], 0),
    ([2, 2], [2, 2], [0, 0, 0, 0], 0),
    ([5, 3], [2, 1], [2, 1, 2, 1], 0),
    ([3, 3], [3, 3], [1, 1, 1, 1], 0),  # stride 3: column by column
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_wide_rows(kernel, strides, pads, ceil_mode, dtype):
    """Rows of at least a vector (the separable kernel's vector passes, each row's last vector
    overlapping the one before) and of less, with NaN and infinities."""
    x = rand(2, 3, 37, 41, dtype=dtype)
    x[0, 1, 10, 20] = np.nan
    x[1, 0, 36, 40] = np.nan
    x[1, 2, 5:9, 30:41] = np.inf
    x[0, 2, :4, :] = -np.inf
    want = brute_pool(x, kernel, strides, [1, 1], pads[:2], pads[2:], ceil_mode, maximum)
    model = node_model("MaxPool", {"x": x}, ["y"], opset=12, kernel_shape=kernel, strides=strides, pads=pads,
                       ceil_mode=ceil_mode)
    check(model, {"x": x}, expected=[want])


def test_max_pool_windows_of_padding_only_give_minus_inf():
    """A window entirely in the padding (pads as large as the kernel) holds no input: -inf."""
    from numpy.lib.stride_tricks import sliding_window_view

    from onnxpy.ops import _jit

    x = rand(1, 2, 5, 21)
    padded = np.pad(x, ((0, 0), (0, 0), (3, 2), (1, 0)), constant_values=-np.inf)
    want = sliding_window_view(padded, (2, 2), axis=(2, 3)).max(axis=(-2, -1))
    got = _jit.max_pool2d(x, [2, 2], [1, 1], [1, 1], [3, 1], list(want.shape[2:]))
    np.testing.assert_array_equal(got, want)
    assert np.isneginf(got[:, :, [0, 1, 8]]).all() and np.isfinite(got[:, :, 2:8]).all()  # rows of padding only


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float16, np.float64])
def test_max_pool_dtypes(dtype):
    x = RNG.integers(0, 100, (1, 2, 6, 6)).astype(dtype)
    model = node_model("MaxPool", {"x": x}, ["y"], opset=12, kernel_shape=[2, 2], pads=[1, 1, 0, 0])
    want = brute_pool(x, [2, 2], [1, 1], [1, 1], [1, 1], [0, 0], 0, maximum)
    check(model, {"x": x}, expected=[want])


def test_max_pool_1_single_output():
    x = rand(1, 2, 5, 5)
    model = node_model("MaxPool", {"x": x}, ["y"], opset=1, kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1],
                       output_types={"y": FLOAT})
    check(model, {"x": x}, oracle="onnxruntime")


@pytest.mark.parametrize("opset", [1, 7, 10, 11])
@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
def test_average_pool_versions_onnxruntime(opset, auto_pad):
    """Version 1 never counts padding ("divided by the number of elements exclude pad"); from 7
    count_include_pad decides. onnxruntime has no version 1 kernel: it runs version 7 with
    count_include_pad=0 as the oracle (onnx.reference counts the pads there)."""
    x = rand(1, 2, 7, 6)
    attrs = {"pads": [1, 1, 0, 1]} if auto_pad == "NOTSET" else {}
    common = dict(kernel_shape=[3, 2], strides=[2, 1], auto_pad=auto_pad, output_types={"y": FLOAT}, **attrs)
    include = {"count_include_pad": 1} if opset >= 7 else {}
    model = node_model("AveragePool", {"x": x}, ["y"], opset=opset, **common, **include)
    oracle = node_model("AveragePool", {"x": x}, ["y"], opset=max(opset, 7), **common, **include)
    check(model, {"x": x}, expected=run_onnxruntime(oracle, {"x": x}), rtol=1e-5, atol=1e-6)


def test_average_pool_float16():
    x = rand(1, 2, 6, 6, dtype=np.float16)
    want = brute_pool(x, [3, 3], [1, 1], [1, 1], [1, 1], [1, 1], 0, avg)
    model = node_model("AveragePool", {"x": x}, ["y"], opset=22, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    check(model, {"x": x}, expected=[want], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("opset", [1, 2, 11])
def test_lp_pool_old_versions(opset):
    x = rand(1, 2, 6, 7)
    p = 3.0 if opset == 1 else 3
    want = brute_pool(x, [2, 3], [2, 1], [1, 1], [1, 0], [0, 1], 0, lp(3))
    model = node_model("LpPool", {"x": x}, ["y"], opset=opset, kernel_shape=[2, 3], strides=[2, 1],
                       pads=[1, 0, 0, 1], p=p)
    check(model, {"x": x}, expected=[want], rtol=1e-5, atol=1e-5)


def test_lp_pool_1_requires_kernel_shape():
    x = rand(1, 1, 4, 4)
    with pytest.raises(Exception, match="kernel_shape"):
        run_onnxpy(node_model("LpPool", {"x": x}, ["y"], opset=1), {"x": x})


@pytest.mark.parametrize("op,want", [
    ("GlobalAveragePool", lambda x: x.mean(axis=(2, 3), keepdims=True)),
    ("GlobalMaxPool", lambda x: x.max(axis=(2, 3), keepdims=True)),
    ("GlobalLpPool", lambda x: np.sqrt((x.astype(np.float64) ** 2).sum(axis=(2, 3), keepdims=True))),
])
@pytest.mark.parametrize("opset", [1, 2, 22])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_global_pools(op, want, opset, dtype):
    x = rand(2, 3, 4, 5, dtype=dtype)
    tol = 2e-3 if dtype == np.float16 else 1e-5
    check(node_model(op, {"x": x}, ["y"], opset=opset), {"x": x}, expected=[want(x).astype(dtype)], rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(3, 8, 50), (2, 5, 3, 4, 6), (1, 64, 56, 56)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_average_pool_ranks_and_strided_input(shape, dtype):
    x = np.swapaxes(rand(*shape[:1], *shape[2:], shape[1], dtype=dtype), 1, -1)  # channels strided
    want = x.astype(np.float64).mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(dtype)
    check(node_model("GlobalAveragePool", {"x": x}, ["y"], opset=22), {"x": x}, expected=[want],
          rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset,p", [(1, 3.0), (2, 1), (22, 3)])
def test_global_lp_pool_p(opset, p):
    x = rand(2, 3, 4, 2, 3)
    want = (np.abs(x.astype(np.float64)) ** p).sum(axis=(2, 3, 4), keepdims=True) ** (1 / p)
    model = node_model("GlobalLpPool", {"x": x}, ["y"], opset=opset, p=p)
    check(model, {"x": x}, expected=[want.astype(np.float32)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5])
def test_max_roi_pool_onnxruntime(spatial_scale):
    x = rand(2, 3, 10, 12)
    rois = np.array([[0, 1, 1, 8, 6], [1, 0, 0, 11, 9], [1, 5.6, 3.2, 6.1, 3.4], [0, 2, 7, 20, 30]], np.float32)
    feeds = {"x": x, "rois": rois}
    model = node_model("MaxRoiPool", feeds, ["y"], opset=1, pooled_shape=[3, 2], spatial_scale=spatial_scale,
                       output_types={"y": FLOAT})
    check(model, feeds, oracle="onnxruntime")


@pytest.mark.parametrize("opset", [9, 11, 22])
def test_max_unpool_inverts_max_pool(opset):
    x = rand(2, 3, 6, 8)
    y, idx = F.max_pool2d(torch.from_numpy(x), 2, 2, return_indices=True)
    offset = np.arange(6, dtype=np.int64).reshape(2, 3, 1, 1) * 48
    want = F.max_unpool2d(y, idx, 2, 2).numpy()
    feeds = {"x": y.numpy(), "i": idx.numpy() + offset}
    model = node_model("MaxUnpool", feeds, ["y"], opset=opset, kernel_shape=[2, 2], strides=[2, 2])
    check(model, feeds, expected=[want])


def test_max_unpool_output_shape_reference():
    x = rand(1, 2, 2, 3)
    idx = np.array([[[[0, 3, 5], [13, 14, 23]], [[24, 26, 29], [36, 39, 47]]]], np.int64)
    feeds = {"x": x, "i": idx, "output_shape": np.array([1, 2, 5, 7], np.int64)}
    model = node_model("MaxUnpool", feeds, ["y"], opset=11, kernel_shape=[2, 2], strides=[2, 2])
    check(model, feeds)


def test_pool_bad_kernel_shape():
    x = rand(1, 1, 4, 4)
    with pytest.raises(Exception, match="kernel_shape"):
        run_onnxpy(node_model("MaxPool", {"x": x}, ["y"], opset=12, kernel_shape=[2]), {"x": x})
