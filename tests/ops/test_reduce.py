"""Reductions, scans, the softmax family, TopK and the losses, at every registered version, against
independent numpy/Python computations, onnxruntime, onnx.reference and PyTorch."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import onnx
import onnx.defs
import pytest
from onnx import AttributeProto, helper

from onnxpy.ops._helpers import softmax as softmax_helper
from tests.ops._oracle import check, node_model, run_onnxpy

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def fresh_rng():
    """The same data for a test whatever runs before it (e.g. under pytest-xdist)."""
    global RNG
    RNG = np.random.default_rng(0)


def versions(op: str) -> list[int]:
    return sorted({s.since_version for s in onnx.defs.get_all_schemas_with_history()
                   if s.domain == "" and s.name == op})


def reduce_model(op, x, axes, opset, **attrs):
    """A Reduce* node with ``axes`` as attribute or input, as ``opset`` wants; ``None`` omits it."""
    axes_input = 13 if op == "ReduceSum" else 18
    if opset < axes_input:
        model = node_model(op, {"data": x}, ["y"], opset=opset, **attrs)
        if axes is not None:
            attr = helper.make_attribute("axes", list(axes), attr_type=AttributeProto.INTS)
            model.graph.node[0].attribute.append(attr)
        return model, {"data": x}
    if axes is None:
        return node_model(op, {"data": x}, ["y"], opset=opset, **attrs), {"data": x}
    axes = np.asarray(axes, dtype=np.int64)
    return node_model(op, {"data": x, "axes": axes}, ["y"], opset=opset, **attrs), {"data": x, "axes": axes}


# independent float64 definitions from the operator docs
NUMPY_REDUCE = {
    "ReduceSum": lambda x, a, k: np.sum(x, axis=a, keepdims=k),
    "ReduceSumSquare": lambda x, a, k: np.sum(x ** 2, axis=a, keepdims=k),
    "ReduceL1": lambda x, a, k: np.sum(np.abs(x), axis=a, keepdims=k),
    "ReduceL2": lambda x, a, k: np.sqrt(np.sum(x ** 2, axis=a, keepdims=k)),
    "ReduceLogSum": lambda x, a, k: np.log(np.sum(x, axis=a, keepdims=k)),
    "ReduceLogSumExp": lambda x, a, k: np.log(np.sum(np.exp(x), axis=a, keepdims=k)),
    "ReduceMean": lambda x, a, k: np.mean(x, axis=a, keepdims=k),
    "ReduceProd": lambda x, a, k: np.prod(x, axis=a, keepdims=k),
    "ReduceMax": lambda x, a, k: np.max(x, axis=a, keepdims=k),
    "ReduceMin": lambda x, a, k: np.min(x, axis=a, keepdims=k),
}
# negative axes are defined from opset 11
REDUCE_CASES = [(op, v, axes, keepdims) for op in NUMPY_REDUCE for v in versions(op)
                for axes, keepdims in [((1,), 1), ((0, 2), 0), (None, 1), (None, 0), ((-1,), 1)]
                if v >= 11 or axes is None or min(axes) >= 0]


@pytest.mark.parametrize("op,opset,axes,keepdims", REDUCE_CASES,
                         ids=[f"{o}-{v}-{a}-{k}" for o, v, a, k in REDUCE_CASES])
def test_reduce_every_version(op, opset, axes, keepdims):
    x = RNG.uniform(0.5, 2.0, size=(3, 4, 5)).astype(np.float32)
    model, feeds = reduce_model(op, x, axes, opset, keepdims=keepdims)
    want = NUMPY_REDUCE[op](x.astype(np.float64), None if axes is None else tuple(axes), bool(keepdims))
    check(model, feeds, expected=[np.asarray(want, dtype=np.float32)])


# https://onnx.ai/onnx/operators/onnx__ReduceMax.html: an empty set gives the reduction's identity
EMPTY = {"ReduceSum": 0.0, "ReduceSumSquare": 0.0, "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceLogSum": -np.inf,
         "ReduceLogSumExp": -np.inf, "ReduceMean": np.nan, "ReduceProd": 1.0, "ReduceMax": -np.inf,
         "ReduceMin": np.inf}


@pytest.mark.parametrize("op", EMPTY)
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_empty_set(op, opset):
    x = np.zeros((2, 0, 4), np.float32)
    model, feeds = reduce_model(op, x, [1], opset, keepdims=1)
    check(model, feeds, expected=[np.full((2, 1, 4), EMPTY[op], np.float32)])


def test_reduce_empty_set_of_integers_gives_dtype_limits():
    x = np.zeros((0, 3), np.int8)
    for op, want in (("ReduceMax", -128), ("ReduceMin", 127), ("ReduceSum", 0), ("ReduceProd", 1)):
        model, feeds = reduce_model(op, x, [0], 18, keepdims=0)
        check(model, feeds, expected=[np.full((3,), want, np.int8)])


def test_reduce_max_min_bool():
    x = np.array([[True, False], [False, False]])
    for op, want in (("ReduceMax", [True, False]), ("ReduceMin", [False, False])):
        model, feeds = reduce_model(op, x, [1], 20, keepdims=0)
        check(model, feeds, expected=[np.array(want)])


@pytest.mark.parametrize("op,opset", [("ReduceSum", 13), ("ReduceProd", 18), ("ReduceMax", 18)])
def test_reduce_noop_with_empty_axes(op, opset):
    x = RNG.normal(size=(2, 3)).astype(np.float32)
    for axes in (None, []):
        model, feeds = reduce_model(op, x, axes, opset, noop_with_empty_axes=1)
        check(model, feeds, expected=[x])
        model, feeds = reduce_model(op, x, axes, opset, keepdims=0)
        check(model, feeds, expected=[np.asarray(NUMPY_REDUCE[op](x.astype(np.float64), None, False), np.float32)])


def test_reduce_empty_axes_attribute_reduces_everything():
    x = RNG.normal(size=(2, 3)).astype(np.float32)
    model, feeds = reduce_model("ReduceMean", x, [], 13, keepdims=1)
    check(model, feeds, expected=[np.full((1, 1), x.astype(np.float64).mean(), np.float32)])


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceMax", "ReduceMean"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_reduce_integer_dtype_preserved(op, dtype):
    x = RNG.integers(-5, 6, size=(3, 4)).astype(dtype)
    model, feeds = reduce_model(op, x, [1], 13 if op == "ReduceSum" else 11, keepdims=0,
                                output_types={"y": helper.np_dtype_to_tensor_dtype(x.dtype)})
    check(model, feeds, oracle="onnxruntime")


def test_reduce_mean_integer_truncates_toward_zero():
    x = np.array([[-3, -4], [3, 4]], np.int32)
    model, feeds = reduce_model("ReduceMean", x, [1], 18, keepdims=0)
    check(model, feeds, expected=[np.array([-3, 3], np.int32)])


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float64])
@pytest.mark.parametrize("op", ["ReduceSum", "ReduceLogSumExp", "ReduceL2", "ReduceMax"])
def test_reduce_float_dtypes_preserved(op, dtype):
    x = RNG.uniform(0.5, 2.0, size=(4, 64)).astype(dtype)
    model, feeds = reduce_model(op, x, [1], 18, keepdims=1)
    want = NUMPY_REDUCE[op](x.astype(np.float64), (1,), True).astype(dtype)
    check(model, feeds, expected=[want], rtol=1e-2)


# sums over the trailing axes of float32/float64 run as one matrix-vector product (``trailing_sums``)
TRAILING_CASES = [((1, 40, 9, 9), (2, 3)), ((2, 24, 7, 7), (-2, -1)), ((3, 50, 70), (2,)), ((2, 3, 4, 5), (1, 2, 3)),
                  ((6, 7), (0, 1)), ((2, 3, 4, 5), (1, 3))]


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axes", TRAILING_CASES, ids=str)
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_over_trailing_axes(op, dtype, shape, axes, keepdims):
    x = RNG.uniform(-2.0, 2.0, size=shape).astype(dtype)
    x.reshape(-1)[0] = np.inf
    model, feeds = reduce_model(op, x, axes, 18, keepdims=keepdims)
    want = NUMPY_REDUCE[op](x.astype(np.float64), axes, bool(keepdims)).astype(dtype)
    check(model, feeds, expected=[want], rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_reduce_sum_of_a_transposed_input():
    """A non-contiguous input (the Transpose's output view) takes numpy's reduction."""
    x = RNG.uniform(-2.0, 2.0, size=(5, 6, 70)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["t"], perm=[2, 0, 1]),
         helper.make_node("ReduceSum", ["t", "axes"], ["y"], keepdims=0)], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[onnx.numpy_helper.from_array(np.array([1, 2], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    check(model, {"x": x}, expected=[x.astype(np.float64).sum(axis=(0, 1)).astype(np.float32)], rtol=1e-5)


def test_reduce_log_sum_exp_is_stable():
    x = np.array([[1000.0, 1000.0], [-np.inf, -np.inf]], np.float32)
    model, feeds = reduce_model("ReduceLogSumExp", x, [1], 18, keepdims=0)
    check(model, feeds, expected=[np.array([1000.0 + np.log(2.0), -np.inf], np.float32)])


def test_reduce_bad_axis_raises():
    model, feeds = reduce_model("ReduceSum", np.zeros((2, 3), np.float32), [2], 13)
    with pytest.raises(Exception, match="out of range"):
        run_onnxpy(model, feeds)


def arg_oracle(x, axis, keepdims, last, maximum):
    """Index of the first (or last) extreme along ``axis``, by scanning Python lists."""
    moved = np.moveaxis(x, axis, -1)
    out = np.empty(moved.shape[:-1], np.int64)
    for idx in np.ndindex(*moved.shape[:-1]):
        row = list(moved[idx])
        best = max(row) if maximum else min(row)
        hits = [i for i, v in enumerate(row) if v == best]
        out[idx] = hits[-1] if last else hits[0]
    return np.expand_dims(out, axis) if keepdims else out


# select_last_index is defined from opset 12, a negative axis from opset 11
ARG_CASES = [(opset, axis, keepdims, last) for opset in [1, 11, 12, 13]
             for axis, keepdims in [(0, 1), (1, 0), (-1, 1)] for last in [0, 1]
             if (opset >= 12 or not last) and (opset >= 11 or axis >= 0)]


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("opset,axis,keepdims,last", ARG_CASES)
def test_arg_extreme(op, opset, axis, keepdims, last):
    x = RNG.integers(0, 3, size=(3, 4, 5)).astype(np.float32)  # many ties
    attrs = {"axis": axis, "keepdims": keepdims}
    if opset >= 12:
        attrs["select_last_index"] = last
    model = node_model(op, {"x": x}, ["y"], opset=opset, **attrs)
    check(model, {"x": x}, expected=[arg_oracle(x, axis % 3, keepdims, last, op == "ArgMax")])


def test_arg_extreme_integer_and_half_inputs():
    for dtype in (np.int32, np.uint8, np.float16):
        x = RNG.integers(0, 9, size=(4, 6)).astype(dtype)
        model = node_model("ArgMax", {"x": x}, ["y"], opset=13, axis=1, select_last_index=1)
        check(model, {"x": x}, expected=[arg_oracle(x, 1, 1, 1, True)])


def scan_oracle(x, axis, exclusive, reverse, combine, identity):
    """out[i] combines x[j] for j before i (or after i when reversed), i itself unless exclusive."""
    moved = np.moveaxis(x, axis, -1)
    out = np.empty_like(moved)
    n = moved.shape[-1]
    for idx in np.ndindex(*moved.shape[:-1]):
        for i in range(n):
            js = range(i + 1, n) if reverse else range(i)
            js = list(js) if exclusive else list(js) + [i]
            acc = identity
            for j in js:
                acc = combine(acc, moved[idx][j].item())
            out[idx + (i,)] = acc
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("op,opset", [("CumSum", 11), ("CumSum", 14), ("CumProd", 26)])
@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("axis", [np.int64(1), np.array([-3], np.int32)])
def test_scan(op, opset, exclusive, reverse, axis):
    x = RNG.integers(1, 4, size=(2, 3, 4)).astype(np.float32)
    axis = np.asarray(axis)
    combine, identity = (lambda a, b: a + b, 0.0) if op == "CumSum" else (lambda a, b: a * b, 1.0)
    model = node_model(op, {"x": x}, ["y"], opset=opset, initializers={"axis": axis}, exclusive=exclusive,
                       reverse=reverse)
    want = scan_oracle(x, int(axis.reshape(-1)[0]) % 3, exclusive, reverse, combine, identity)
    check(model, {"x": x}, expected=[want])


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint64, np.float16, np.float64])
def test_scan_dtype_preserved(dtype):
    x = RNG.integers(1, 5, size=(3, 5)).astype(dtype)
    for op, combine, identity in (("CumSum", lambda a, b: a + b, 0), ("CumProd", lambda a, b: a * b, 1)):
        model = node_model(op, {"x": x}, ["y"], opset=26, initializers={"axis": np.array(1, np.int64)}, exclusive=1)
        check(model, {"x": x}, expected=[scan_oracle(x, 1, 1, 0, combine, identity)])


def test_scan_empty_axis():
    x = np.zeros((2, 0), np.float32)
    for exclusive in (0, 1):
        model = node_model("CumSum", {"x": x}, ["y"], opset=14, initializers={"axis": np.array(1, np.int64)},
                           exclusive=exclusive, reverse=1)
        check(model, {"x": x}, expected=[x])


def test_scan_bad_axis_raises():
    model = node_model("CumSum", {"x": np.ones(3, np.float32)}, ["y"], opset=14,
                       initializers={"axis": np.array([0, 0], np.int64)})
    with pytest.raises(Exception, match="axis"):
        run_onnxpy(model, {"x": np.ones(3, np.float32)})


def softmax_rows(x2):
    e = np.exp(x2 - x2.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


ROWS = {
    "Softmax": softmax_rows,
    "LogSoftmax": lambda x2: np.log(softmax_rows(x2)),
    "Hardmax": lambda x2: np.eye(x2.shape[1])[np.argmax(x2, axis=1)],
}


def coerced_oracle(op, x, axis):
    """Opsets < 13: the input flattened to 2-D [prod(shape[:axis]), prod(shape[axis:])], the op
    applied per row (https://github.com/onnx/onnx/blob/main/docs/Changelog.md#Softmax-1). The
    onnx reference instead applies the opset-13 per-axis rule, so it is not used here."""
    axis %= x.ndim
    x2 = x.astype(np.float64).reshape(math.prod(x.shape[:axis]), -1)
    return ROWS[op](x2).reshape(x.shape).astype(x.dtype)


@pytest.mark.parametrize("op", ROWS)
@pytest.mark.parametrize("opset,axis", [(1, None), (1, 0), (1, 2), (11, None), (11, 0), (11, 2), (11, -1)])
def test_softmax_family_old_versions_coerce_to_2d(op, opset, axis):
    """Negative axes are defined from opset 11."""
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    attrs = {} if axis is None else {"axis": axis}
    model = node_model(op, {"x": x}, ["y"], opset=opset, **attrs)
    check(model, {"x": x}, expected=[coerced_oracle(op, x, 1 if axis is None else axis)])


def test_softmax_old_version_differs_from_per_axis():
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    y = run_onnxpy(node_model("Softmax", {"x": x}, ["y"], opset=11), {"x": x})[0]
    np.testing.assert_allclose(y.sum(axis=(1, 2)), np.ones(2), rtol=1e-5)
    assert not np.allclose(y.sum(axis=1), 1.0)


@pytest.mark.parametrize("op", ROWS)
@pytest.mark.parametrize("axis", [None, 0, 1, -2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_13(op, axis, dtype):
    x = RNG.normal(size=(2, 3, 4)).astype(dtype)
    attrs = {} if axis is None else {"axis": axis}
    check(node_model(op, {"x": x}, ["y"], opset=13, **attrs), {"x": x})


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_on_a_large_float32_tensor(axis):
    """float32 softmax along the last axis runs compiled: against exact values, with rows that hold
    -inf (masked), NaN, all -inf, huge spreads, and a length that is no multiple of 8."""
    x = (RNG.normal(size=(300, 257)) * 20).astype(np.float32)
    x[0, ::3] = -np.inf
    x[1, 5] = np.nan
    x[2] = -np.inf
    x[3, :2] = [3e38, -3e38]
    x = x if axis == -1 else np.ascontiguousarray(x.T)
    with np.errstate(invalid="ignore"):  # exact from the float32 differences x - max
        shifted = np.exp((x - x.max(axis=axis, keepdims=True)).astype(np.float64))
        want = (shifted / shifted.sum(axis=axis, keepdims=True)).astype(np.float32)
    y = run_onnxpy(node_model("Softmax", {"x": x}, ["y"], opset=13, axis=axis), {"x": x})[0]
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-37)


def test_softmax_zeroes_fully_masked_rows_for_attention():
    """The attention ops' softmax (``empty_rows_zero``): compiled float32 rows as the numpy path
    computes them in float64, an entirely -inf row all zeros."""
    x = (RNG.normal(size=(64, 129)) * 5).astype(np.float32)
    x[3] = -np.inf
    x[4, ::2] = -np.inf
    y = softmax_helper(x, empty_rows_zero=True)
    assert not y[3].any()
    np.testing.assert_allclose(y, softmax_helper(x.astype(np.float64), empty_rows_zero=True), rtol=2e-6, atol=0)


@pytest.mark.parametrize("op", ROWS)
@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_softmax_family_half(op, dtype):
    x = RNG.normal(size=(3, 8)).astype(dtype)
    want = ROWS[op](x.astype(np.float64)).astype(dtype)
    check(node_model(op, {"x": x}, ["y"], opset=13), {"x": x}, expected=[want], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("op", ["Softmax", "Hardmax"])
def test_softmax_family_float16_rounds_like_reference(op):
    # the fp16 attention node tests expect float16 rounding after each step, as onnx.reference
    # does (not LogSoftmax: the reference takes log(softmax), -inf where it underflows)
    x = (RNG.normal(size=(4, 64)) * 4).astype(np.float16)
    check(node_model(op, {"x": x}, ["y"], opset=13), {"x": x}, rtol=0, atol=0)


def test_hardmax_ties_pick_first():
    x = np.array([[1, 3, 3, 0], [2, 2, 2, 2]], np.float32)
    want = np.array([[0, 1, 0, 0], [1, 0, 0, 0]], np.float32)
    for opset in (1, 13):
        check(node_model("Hardmax", {"x": x}, ["y"], opset=opset), {"x": x}, expected=[want])


def topk_oracle(x, k, axis, largest):
    """Sort each row by (value, index) with Python's sorted: ties keep the lower index first."""
    moved = np.moveaxis(x, axis, -1)
    idx = np.empty(moved.shape[:-1] + (k,), np.int64)
    for pos in np.ndindex(*moved.shape[:-1]):
        row = moved[pos].tolist()
        key = (lambda i: (-row[i], i)) if largest else (lambda i: (row[i], i))
        idx[pos] = sorted(range(len(row)), key=key)[:k]
    values = np.take_along_axis(moved, idx, axis=-1)
    return np.moveaxis(values, -1, axis), np.moveaxis(idx, -1, axis)


@pytest.mark.parametrize("opset,largest", [(v, largest) for v in versions("TopK") for largest in [1, 0]
                                            if v >= 11 or largest])  # `largest` from opset 11
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("k", [0, 3, 5])
def test_topk(opset, axis, largest, k):
    x = RNG.integers(0, 4, size=(5, 6)).astype(np.float32)  # many ties
    if opset == 1:
        model, feeds = node_model("TopK", {"x": x}, ["v", "i"], opset=1, axis=axis, k=k), {"x": x}
    else:
        feeds = {"x": x, "k": np.array([k], np.int64)}
        attrs = {"largest": largest} if opset >= 11 else {}
        model = node_model("TopK", feeds, ["v", "i"], opset=opset, axis=axis, **attrs)
    check(model, feeds, expected=list(topk_oracle(x, k, axis % 2, largest)))


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int64, np.float16, np.float64])
def test_topk_dtypes(dtype):
    x = RNG.integers(0, 50, size=(3, 20)).astype(dtype)
    feeds = {"x": x, "k": np.array([4], np.int64)}
    check(node_model("TopK", feeds, ["v", "i"], opset=11, largest=0), feeds, expected=list(topk_oracle(x, 4, 1, 0)))


@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize("axis", [0, 1])
def test_topk_small_k_of_long_axis_with_ties(largest, axis):
    x = RNG.integers(0, 5, size=(64, 64)).astype(np.float32)
    feeds = {"x": x, "k": np.array([7], np.int64)}
    check(node_model("TopK", feeds, ["v", "i"], opset=24, axis=axis, largest=largest), feeds,
          expected=list(topk_oracle(x, 7, axis, largest)))


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_nan_like_onnxruntime(largest):
    x = RNG.normal(size=(3, 40)).astype(np.float32)
    x[0, 5] = x[1, [3, 9]] = np.nan
    feeds = {"x": x, "k": np.array([3], np.int64)}
    model = node_model("TopK", feeds, ["v", "i"], opset=11, largest=largest, output_types={"v": 1, "i": 7})
    check(model, feeds, oracle="onnxruntime")


def test_topk_empty():
    for shape, k in (((3, 0), 0), ((0, 5), 2)):
        x = np.zeros(shape, np.float32)
        feeds = {"x": x, "k": np.array([k], np.int64)}
        want = [np.zeros(shape[:1] + (k,), np.float32), np.zeros(shape[:1] + (k,), np.int64)]
        check(node_model("TopK", feeds, ["v", "i"], opset=11), feeds, expected=want)


def test_topk_k_too_large_raises():
    feeds = {"x": np.zeros((2, 3), np.float32), "k": np.array([4], np.int64)}
    with pytest.raises(Exception, match="out of range"):
        run_onnxpy(node_model("TopK", feeds, ["v", "i"], opset=11), feeds)


LOSS_CASES = [  # (input shape, reduction, with weight, ignore_index)
    ((4, 5), "mean", False, None), ((4, 5), "sum", True, None), ((4, 5, 3), "none", False, None),
    ((4, 5, 3, 2), "mean", True, 2), ((4, 5, 3), "mean", False, -1), ((4, 5, 3), "sum", True, 10),
    ((3, 5, 2), "none", True, 1),
]


def loss_feeds(shape, with_weight, ignore_index, dtype=np.float32):
    x = RNG.normal(size=shape).astype(dtype)
    t = RNG.integers(0, shape[1], size=shape[:1] + shape[2:]).astype(np.int64)
    if ignore_index is not None:
        t.reshape(-1)[::3] = ignore_index
    w = RNG.uniform(0.2, 2.0, size=shape[1]).astype(dtype) if with_weight else None
    return x, t, w


def torch_loss(fn, x, t, w, reduction, ignore_index):
    torch = pytest.importorskip("torch")
    return fn(torch.from_numpy(x), torch.from_numpy(t), weight=None if w is None else torch.from_numpy(w),
              reduction=reduction, ignore_index=-100 if ignore_index is None else ignore_index).numpy()


@pytest.mark.parametrize("opset", versions("NegativeLogLikelihoodLoss"))
@pytest.mark.parametrize("shape,reduction,with_weight,ignore_index", LOSS_CASES)
def test_nll_loss(opset, shape, reduction, with_weight, ignore_index):
    import torch.nn.functional as F

    x, t, w = loss_feeds(shape, with_weight, ignore_index)
    feeds = {"input": x, "target": t, **({"weight": w} if with_weight else {})}
    attrs = {"reduction": reduction, **({} if ignore_index is None else {"ignore_index": ignore_index})}
    model = node_model("NegativeLogLikelihoodLoss", feeds, ["loss"], opset=opset, **attrs)
    check(model, feeds, expected=[torch_loss(F.nll_loss, x, t, w, reduction, ignore_index)])


@pytest.mark.parametrize("opset", versions("SoftmaxCrossEntropyLoss"))
@pytest.mark.parametrize("shape,reduction,with_weight,ignore_index", LOSS_CASES)
def test_softmax_cross_entropy_loss(opset, shape, reduction, with_weight, ignore_index):
    import torch
    import torch.nn.functional as F

    x, t, w = loss_feeds(shape, with_weight, ignore_index)
    feeds = {"scores": x, "labels": t, **({"weights": w} if with_weight else {})}
    attrs = {"reduction": reduction, **({} if ignore_index is None else {"ignore_index": ignore_index})}
    model = node_model("SoftmaxCrossEntropyLoss", feeds, ["loss", "log_prob"], opset=opset, **attrs)
    log_prob = F.log_softmax(torch.from_numpy(x), dim=1).numpy()
    check(model, feeds, expected=[torch_loss(F.cross_entropy, x, t, w, reduction, ignore_index), log_prob])
    one = node_model("SoftmaxCrossEntropyLoss", feeds, ["loss"], opset=opset, **attrs)
    check(one, feeds, expected=[torch_loss(F.cross_entropy, x, t, w, reduction, ignore_index)])


def test_losses_against_reference_and_float16():
    x, t, w = loss_feeds((3, 4, 2), True, 1, dtype=np.float16)
    t = t.astype(np.int32)
    feeds = {"input": x, "target": t, "weight": w}
    check(node_model("NegativeLogLikelihoodLoss", feeds, ["loss"], opset=22, ignore_index=1), feeds,
          rtol=1e-2, atol=1e-2)
    feeds = {"scores": x, "labels": t, "weights": w}
    check(node_model("SoftmaxCrossEntropyLoss", feeds, ["loss", "lp"], opset=13, reduction="sum"), feeds,
          rtol=1e-2, atol=1e-2)


def test_loss_bad_target_raises():
    feeds = {"input": np.zeros((2, 3), np.float32), "target": np.array([0, 3], np.int64)}
    with pytest.raises(Exception, match="target"):
        run_onnxpy(node_model("NegativeLogLikelihoodLoss", feeds, ["loss"], opset=13), feeds)
