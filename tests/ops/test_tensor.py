"""Indexing kernels (gathers, scatters, NonZero, OneHot, Trilu, Compress, Unique, ReverseSequence,
TensorScatter) at every schema version, against numpy loops written from the operator docs,
onnx.reference and onnxruntime."""
from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import onnx.defs
import pytest
from onnx import TensorProto

from tests.ops._oracle import check, node_model, run_onnxpy

RNG = np.random.default_rng(2)
I64 = np.int64


def versions(op: str, since: int = 1) -> list[int]:
    found = {s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.domain == "" and s.name == op}
    return [v for v in sorted(found) if v >= since]


def cases(op, since=1):
    return pytest.mark.parametrize("opset", versions(op, since))


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def run(op, feeds, opset, outputs=("y",), **attrs):
    return run_onnxpy(node_model(op, feeds, list(outputs), opset=opset, **attrs), feeds)


@cases("Gather")
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("indices", [[[0, 2], [1, 1]], 1, [-1, 0]])
def test_gather(opset, axis, indices):
    x = rand(3, 4, 3)
    idx = np.asarray(indices, I64)
    want = np.stack([x.take(int(i) % x.shape[axis], axis=axis) for i in idx.reshape(-1)], axis=axis % 3)
    want = want.reshape(x.shape[:axis % 3] + idx.shape + x.shape[axis % 3 + 1:])
    check(node_model("Gather", {"x": x, "i": idx}, ["y"], opset=opset, axis=axis), {"x": x, "i": idx}, expected=[want])


def test_gather_scalar_data_fails():
    feeds = {"x": np.array(1.0, np.float32), "i": np.array(0, I64)}
    with pytest.raises(Exception, match="rank >= 1"):
        run("Gather", feeds, 13)


def test_gather_out_of_range_fails():
    feeds = {"x": rand(3, 2), "i": np.array([0, 3], I64)}
    with pytest.raises(Exception, match="index 3 is out of range for an axis of size 3"):
        run("Gather", feeds, 13)


@cases("GatherElements")
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements(opset, axis):
    x = rand(3, 4)
    idx = RNG.integers(-x.shape[axis], x.shape[axis], size=(2, 3)).astype(np.int32)
    want = np.empty(idx.shape, np.float32)
    for i, j in itertools.product(range(2), range(3)):
        k = idx[i, j] % x.shape[axis]
        want[i, j] = x[k, j] if axis == 0 else x[i, k]
    check(node_model("GatherElements", {"x": x, "i": idx}, ["y"], opset=opset, axis=axis), {"x": x, "i": idx},
          expected=[want])


@cases("GatherND")
@pytest.mark.parametrize("shape,indices", [
    ((2, 2), [[0, 0], [1, 1]]), ((2, 2), [[1], [0]]), ((2, 2, 2), [[[0, 1]], [[1, 0]]]), ((2, 3), [[-1, -2]]),
])
def test_gather_nd(opset, shape, indices):
    x = rand(*shape)
    idx = np.asarray(indices, I64)
    k = idx.shape[-1]
    want = np.array([x[tuple(t)] for t in idx.reshape(-1, k)]).reshape(idx.shape[:-1] + x.shape[k:])
    check(node_model("GatherND", {"x": x, "i": idx}, ["y"], opset=opset), {"x": x, "i": idx}, expected=[want])


@cases("GatherND", since=12)
def test_gather_nd_batch_dims(opset):
    x = rand(2, 3, 4, 5)
    idx = RNG.integers(0, 3, size=(2, 3, 6, 1)).astype(I64)
    want = np.stack([np.stack([x[b, c][idx[b, c, :, 0]] for c in range(3)]) for b in range(2)])
    model = node_model("GatherND", {"x": x, "i": idx}, ["y"], opset=opset, batch_dims=2)
    check(model, {"x": x, "i": idx}, expected=[want])
    check(model, {"x": x, "i": idx})  # and onnx.reference


def _scatter_elements_loop(data, idx, upd, axis, reduce):
    out = data.copy()
    for pos in itertools.product(*map(range, idx.shape)):
        target = list(pos)
        target[axis] = idx[pos] % data.shape[axis]
        out[tuple(target)] = reduce(out[tuple(target)], upd[pos])
    return out


REDUCE = {"none": lambda a, b: b, "add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


@pytest.mark.parametrize("op,opset", [("Scatter", v) for v in versions("Scatter")]
                         + [("ScatterElements", v) for v in versions("ScatterElements")])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_scatter_elements(op, opset, axis):
    data = rand(3, 4)
    idx = np.array([[1, 0, 2], [0, 2, 1]], I64) if axis == 0 else np.array([[3, -1, 0], [1, 2, 0]], I64)
    upd = rand(2, 3)
    feeds = {"x": data, "i": idx, "u": upd}
    frozen = data.copy()
    check(node_model(op, feeds, ["y"], opset=opset, axis=axis), feeds,
          expected=[_scatter_elements_loop(data, idx, upd, axis % 2, REDUCE["none"])])
    np.testing.assert_array_equal(data, frozen)


# the first opset that defines each reduction of ScatterElements / ScatterND
REDUCTION_SINCE = {"none": 11, "add": 16, "mul": 16, "max": 18, "min": 18}


def reduction_cases(op, reductions):
    """``(opset, reduction)`` for every version of ``op`` that defines the reduction."""
    return pytest.mark.parametrize("opset,reduction", [(v, r) for v in versions(op) for r in reductions
                                                       if v >= REDUCTION_SINCE[r]])


@reduction_cases("ScatterElements", ["add", "mul", "max", "min"])
def test_scatter_elements_reduction(opset, reduction):
    data = np.arange(12, dtype=np.int32).reshape(3, 4)
    idx = np.array([[1, 1, 2], [1, 0, 2]], I64)  # duplicates: (1, 0) twice
    upd = np.array([[5, -7, 2], [3, 4, 9]], np.int32)
    want = _scatter_elements_loop(data, idx, upd, 0, REDUCE[reduction])
    feeds = {"x": data, "i": idx, "u": upd}
    check(node_model("ScatterElements", feeds, ["y"], opset=opset, reduction=reduction), feeds, expected=[want])


def _scatter_nd_loop(data, idx, upd, reduce):
    out = data.copy()
    for pos in itertools.product(*map(range, idx.shape[:-1])):
        target = tuple(int(v) % n for v, n in zip(idx[pos], data.shape))
        out[target] = reduce(out[target], upd[pos])
    return out


@reduction_cases("ScatterND", ["none", "add", "mul", "max", "min"])
def test_scatter_nd(opset, reduction):
    data = rand(4, 3, 2)
    idx = np.array([[[1, -1]], [[3, 0]], [[1, 2]]], I64) if reduction == "none" else np.array([[[1, 2]], [[1, 2]]], I64)
    upd = rand(*idx.shape[:-1], 2)
    feeds = {"x": data, "i": idx, "u": upd}
    attrs = {} if reduction == "none" else {"reduction": reduction}
    check(node_model("ScatterND", feeds, ["y"], opset=opset, **attrs), feeds,
          expected=[_scatter_nd_loop(data, idx, upd, REDUCE[reduction])])


def test_scatter_nd_bad_updates_shape_fails():
    feeds = {"x": rand(4, 3), "i": np.array([[1]], I64), "u": rand(2)}
    with pytest.raises(Exception, match="updates shape"):
        run("ScatterND", feeds, 13)


def _tensor_scatter_loop(past, update, write, mode, axis):
    out = past.copy()
    for prefix in np.ndindex(past.shape[:axis]):
        for s in range(update.shape[axis]):
            t = write[prefix[0]] + s
            out[(*prefix, t % past.shape[axis] if mode == "circular" else t)] = update[(*prefix, s)]
    return out


@cases("TensorScatter")
@pytest.mark.parametrize("mode,axis,write", [("linear", -2, [0, 2]), ("circular", 2, [3, 1]), ("linear", 1, None)])
def test_tensor_scatter(opset, mode, axis, write):
    past = rand(2, 3, 5, 4)
    update = rand(*[3 if d == axis % 4 else n for d, n in enumerate(past.shape)])
    feeds = {"past": past, "update": update}
    if write is not None:
        feeds["write"] = np.array(write, I64)
    want = _tensor_scatter_loop(past, update, [0, 0] if write is None else write, mode, axis % 4)
    check(node_model("TensorScatter", feeds, ["y"], opset=opset, mode=mode, axis=axis), feeds, expected=[want])


def test_tensor_scatter_linear_overflow_fails():
    feeds = {"past": rand(2, 4, 3), "update": rand(2, 2, 3), "write": np.array([0, 3], I64)}
    with pytest.raises(Exception, match="leave the cache"):
        run("TensorScatter", feeds, 24, axis=1)


@cases("NonZero")
@pytest.mark.parametrize("x", [np.array([[1, 0], [0, 3]], np.int32), np.array([[True, False, True]]),
                               np.zeros((2, 0), np.float32), np.array(2.5, np.float32)])
def test_non_zero(opset, x):
    want = np.array(np.nonzero(np.atleast_1d(x)), dtype=I64)
    check(node_model("NonZero", {"x": x}, ["y"], opset=opset), {"x": x}, expected=[want])


def _one_hot_loop(idx, depth, values, axis, negative):
    out = np.full(idx.shape[:axis] + (depth,) + idx.shape[axis:], values[0], values.dtype)
    for pos in np.ndindex(idx.shape):
        k = int(idx[pos])
        if negative and k < 0:
            k += depth
        if 0 <= k < depth:
            out[pos[:axis] + (k,) + pos[axis:]] = values[1]
    return out


@cases("OneHot")
@pytest.mark.parametrize("axis", [-1, 0, 1, -2])
def test_one_hot(opset, axis):
    idx = np.array([[0, 3, -1], [5, 2, -4]], np.int32)
    depth, values = np.array(4.0, np.float32), np.array([2, 7], np.int64)
    want = _one_hot_loop(idx, 4, values, axis % 3, negative=opset >= 11)
    feeds = {"i": idx, "d": depth, "v": values}
    check(node_model("OneHot", feeds, ["y"], opset=opset, axis=axis), feeds, expected=[want])


@cases("OneHot", since=28)
def test_one_hot_bfloat16_values(opset):
    idx = np.array([1, 0], I64)
    values = np.array([0.5, 2.0], ml_dtypes.bfloat16)
    feeds = {"i": idx, "d": np.array([3], I64), "v": values}
    check(node_model("OneHot", feeds, ["y"], opset=opset), feeds,
          expected=[np.array([[0.5, 2, 0.5], [2, 0.5, 0.5]], ml_dtypes.bfloat16)])


@cases("Trilu")
@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, 0, 2, -1, -7])
def test_trilu(opset, upper, k):
    x = RNG.integers(1, 9, size=(2, 3, 4)).astype(np.int32)
    feeds = {"x": x}
    if k is not None:
        feeds["k"] = np.array(k, I64)
    kk = 0 if k is None else k
    i, j = np.indices(x.shape[-2:])
    keep = (j - i >= kk) if upper else (j - i <= kk)
    check(node_model("Trilu", feeds, ["y"], opset=opset, upper=upper), feeds, expected=[np.where(keep, x, 0)])


def test_trilu_strings_fill_with_empty_string():
    x = np.array([["a", "b"], ["c", "d"]], dtype=object)
    check(node_model("Trilu", {"x": x}, ["y"], opset=14), {"x": x},
          expected=[np.array([["a", "b"], ["", "d"]], dtype=object)])


@cases("Compress")
@pytest.mark.parametrize("axis,cond", [(None, [1, 0, 0, 1, 1]), (0, [0, 1]), (1, [1, 0, 1]), (-1, [0, 1, 1, 1, 0])])
def test_compress(opset, axis, cond):
    x = rand(3, 4)
    c = np.array(cond, bool)
    flat = x.reshape(-1) if axis is None else np.moveaxis(x, axis, 0)
    kept = np.array([flat[i] for i in range(min(len(c), len(flat))) if c[i]]).reshape((-1,) + flat.shape[1:])
    want = kept if axis is None else np.moveaxis(kept, 0, axis)
    attrs = {} if axis is None else {"axis": axis}
    check(node_model("Compress", {"x": x, "c": c}, ["y"], opset=opset, **attrs), {"x": x, "c": c},
          expected=[want.astype(np.float32)])


UNIQUE_OUTS = ["y", "indices", "inverse", "counts"]


@cases("Unique")
@pytest.mark.parametrize("sorted_", [0, 1])
def test_unique_flat(opset, sorted_):
    x = np.array([[2, 1, 1], [3, 4, 3]], np.int32)
    if sorted_:
        want = [np.array([1, 2, 3, 4], np.int32), [1, 0, 3, 4], [1, 0, 0, 2, 3, 2], [2, 1, 2, 1]]
    else:  # the doc's Example 1
        want = [np.array([2, 1, 3, 4], np.int32), [0, 1, 3, 4], [0, 1, 1, 2, 3, 2], [1, 2, 2, 1]]
    want = [want[0]] + [np.array(w, I64) for w in want[1:]]
    check(node_model("Unique", {"x": x}, UNIQUE_OUTS, opset=opset, sorted=sorted_), {"x": x}, expected=want)


@cases("Unique")
@pytest.mark.parametrize("sorted_", [0, 1])
def test_unique_axis(opset, sorted_):
    # the doc's Example 4
    x = np.array([[[1.0, 1.0], [0.0, 1.0], [2.0, 1.0], [0.0, 1.0]],
                  [[1.0, 1.0], [0.0, 1.0], [2.0, 1.0], [0.0, 1.0]]], np.float32)
    order = [1, 0, 2] if sorted_ else [0, 1, 2]
    want = [x[:, order], np.array(order, I64), np.array([1, 0, 2, 0] if sorted_ else [0, 1, 2, 1], I64),
            np.array([2, 1, 1] if sorted_ else [1, 2, 1], I64)]
    check(node_model("Unique", {"x": x}, UNIQUE_OUTS, opset=opset, sorted=sorted_, axis=1), {"x": x}, expected=want)


@pytest.mark.parametrize("sorted_", [0, 1])
def test_unique_axis_strings(sorted_):
    x = np.array([["b", "a"], ["a", "z"], ["b", "a"]], dtype=object)
    first = [1, 0] if sorted_ else [0, 1]
    inverse, counts = ([1, 0, 1], [1, 2]) if sorted_ else ([0, 1, 0], [2, 1])
    want = [x[first], np.array(first, I64), np.array(inverse, I64), np.array(counts, I64)]
    check(node_model("Unique", {"x": x}, UNIQUE_OUTS, opset=11, sorted=sorted_, axis=0), {"x": x}, expected=want)


def test_unique_only_first_output():
    x = np.array([3.0, 1.0, 3.0], np.float64)
    check(node_model("Unique", {"x": x}, ["y"], opset=11), {"x": x}, expected=[np.array([1.0, 3.0])])


@cases("ReverseSequence")
@pytest.mark.parametrize("batch_axis,time_axis", [(1, 0), (0, 1)])
def test_reverse_sequence(opset, batch_axis, time_axis):
    x = np.arange(4 * 4 * 2, dtype=np.float32).reshape(4, 4, 2)
    lens = np.array([4, 3, 0, 1], I64)
    want = x.copy()
    for b, n in enumerate(lens):
        for t in range(n):
            src = [0, 0]
            src[batch_axis], src[time_axis] = b, n - 1 - t
            dst = [0, 0]
            dst[batch_axis], dst[time_axis] = b, t
            want[tuple(dst)] = x[tuple(src)]
    feeds = {"x": x, "lens": lens}
    model = node_model("ReverseSequence", feeds, ["y"], opset=opset, batch_axis=batch_axis, time_axis=time_axis)
    check(model, feeds, expected=[want])


def test_onnxruntime_agrees():
    x = rand(3, 4)
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    idx = np.array([[2, -1], [0, 1]], I64)
    upd = rand(2, 2)
    check(node_model("Scatter", {"x": x, "i": idx, "u": upd}, ["y"], opset=9, axis=1, output_types={"y": f}),
          {"x": x, "i": idx, "u": upd}, oracle="onnxruntime")
    check(node_model("GatherND", {"x": x, "i": idx[:, :1]}, ["y"], opset=11, output_types={"y": f}),
          {"x": x, "i": idx[:, :1]}, oracle="onnxruntime")
    # not negative indices: onnxruntime wraps them at opset 9 too, where the spec says they are off
    feeds = {"i": np.array([[1, 2], [9, 0]], I64), "d": np.array([3], I64), "v": np.array([0, 1], I64)}
    check(node_model("OneHot", feeds, ["y"], opset=9, axis=0, output_types={"y": i64}), feeds, oracle="onnxruntime")
