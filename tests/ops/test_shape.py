"""Shape and layout kernels at every schema version, against numpy computations written from the
operator docs, onnx.reference and onnxruntime; plus the registry's tie to onnx.defs for the ops
of shape.py and tensor.py."""
from __future__ import annotations


import ml_dtypes
import numpy as np
import onnx.defs
import pytest
from onnx import TensorProto, helper

from onnxpy.registry import REGISTRY
from tests.ops._oracle import check, node_model, run_onnxpy

RNG = np.random.default_rng(1)
I64 = np.int64


def versions(op: str, since: int = 1, until: int = 10**6) -> list[int]:
    found = {s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.domain == "" and s.name == op}
    return [v for v in sorted(found) if since <= v < until]


def cases(op, since=1, until=10**6):
    return pytest.mark.parametrize("opset", versions(op, since, until))


def cases_with(op, name, since):
    """Parametrize ``opset`` and ``name`` over the versions of ``op`` and each value of ``since``
    (value -> first opset that defines it), valid combinations only."""
    return pytest.mark.parametrize(f"opset,{name}", [(v, value) for v in versions(op) for value, first in since.items()
                                                     if v >= first])


def arr(values, dtype=I64):
    return np.asarray(values, dtype=dtype)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


MY_OPS = (
    "Reshape Transpose Concat Split Slice Squeeze Unsqueeze Flatten Shape Size ConstantOfShape Range Constant "
    "Identity Expand Tile Pad DepthToSpace SpaceToDepth EyeLike Gather GatherElements GatherND Scatter "
    "ScatterElements ScatterND TensorScatter NonZero OneHot Trilu Compress Unique ReverseSequence"
).split()


@pytest.mark.parametrize("op", MY_OPS)
def test_every_schema_version_has_a_kernel(op):
    """Attribute sets and defaults of each served version are checked in tests/test_registry.py."""
    for opset in versions(op):
        assert REGISTRY.resolve("", op, opset) is not None, f"{op}-{opset} has no kernel"


@pytest.mark.parametrize("opset", versions("Reshape"))
@pytest.mark.parametrize("x_shape,shape", [((2, 3, 4), (4, 0, 2)), ((2, 3, 4), (-1, 4)), ((2, 3, 4), (0, -1))])
def test_reshape(opset, x_shape, shape):
    x = rand(*x_shape)
    want = x.reshape([x_shape[i] if d == 0 else d for i, d in enumerate(shape)])
    if opset < 5:
        model, feeds = node_model("Reshape", {"data": x}, ["y"], opset=opset, shape=list(shape)), {"data": x}
    else:
        feeds = {"data": x, "shape": arr(shape)}
        model = node_model("Reshape", feeds, ["y"], opset=opset)
    check(model, feeds, expected=[want])


@cases("Reshape", since=14)
def test_reshape_allowzero(opset):
    x = np.zeros((0, 3), np.float32)
    feeds = {"data": x, "shape": arr([3, 0])}
    check(node_model("Reshape", feeds, ["y"], opset=opset, allowzero=1), feeds, expected=[np.zeros((3, 0), np.float32)])


def test_reshape_errors():
    feeds = {"data": rand(2, 3), "shape": arr([4, -1])}
    with pytest.raises(Exception, match="cannot reshape"):
        run_onnxpy(node_model("Reshape", feeds, ["y"], opset=14), feeds)


@cases("Transpose")
@pytest.mark.parametrize("perm", [None, [1, 2, 0]])
def test_transpose(opset, perm):
    x = rand(2, 3, 4)
    attrs = {} if perm is None else {"perm": perm}
    check(node_model("Transpose", {"x": x}, ["y"], opset=opset, **attrs), {"x": x}, expected=[np.transpose(x, perm)])


@cases("Concat")
def test_concat(opset):
    a, b = rand(2, 3), rand(2, 2)
    model = node_model("Concat", {"a": a, "b": b}, ["y"], opset=opset, **({} if opset == 1 else {"axis": 1}))
    check(model, {"a": a, "b": b}, expected=[np.concatenate([a, b], axis=1)])


@cases("Concat", since=11)
def test_concat_negative_axis_int(opset):
    a, b = arr([[1, 2]], np.int32), arr([[3, 4], [5, 6]], np.int32)
    check(node_model("Concat", {"a": a, "b": b}, ["y"], opset=opset, axis=-2), {"a": a, "b": b},
          expected=[np.concatenate([a, b])])


@cases("Split")
@pytest.mark.parametrize("how", ["equal", "lengths"])
def test_split(opset, how):
    x = rand(2, 6)
    feeds, attrs = {"x": x}, {"axis": 1}
    if how == "lengths":
        if opset in (1, 2, 11):
            attrs["split"] = [1, 2, 3]
        else:
            feeds["split"] = arr([1, 2, 3])
        want = [x[:, :1], x[:, 1:3], x[:, 3:]]
    else:
        if opset >= 18:
            attrs["num_outputs"] = 3
        want = [x[:, :2], x[:, 2:4], x[:, 4:]]
    check(node_model("Split", feeds, ["a", "b", "c"], opset=opset, **attrs), feeds, expected=want)


def test_split_1_lengths_input():
    x = rand(5)
    feeds = {"x": x, "split": arr([2, 3])}
    check(node_model("Split", feeds, ["a", "b"], opset=1), feeds, expected=[x[:2], x[2:]])


@cases("Split", since=18)
def test_split_uneven_num_outputs(opset):
    x = np.arange(7, dtype=np.float32)
    model = node_model("Split", {"x": x}, ["a", "b", "c"], opset=opset, num_outputs=3)
    check(model, {"x": x}, expected=[x[:3], x[3:6], x[6:]])


@cases("Split", until=18)
def test_split_uneven_equal_parts_fail_before_18(opset):
    x = np.arange(7, dtype=np.float32)
    with pytest.raises(Exception, match="equal"):
        run_onnxpy(node_model("Split", {"x": x}, ["a", "b"], opset=opset), {"x": x})


SLICES = [  # starts, ends, axes, steps
    ([1, 0], [2, 3], [0, 1], [1, 2]),
    ([0, 1], [-1, 1000], None, None),
    ([-1], [-1000], [1], [-1]),
    ([10], [-10**18], [-1], [-2]),
    ([5, -3], [1, 10**18], [1, 0], [-1, 1]),
    ([2], [2], [0], [1]),
]


def _numpy_slice(x, starts, ends, axes, steps):
    """Python's slice() clamps exactly as the Slice doc describes."""
    index = [slice(None)] * x.ndim
    for i, (s, e) in enumerate(zip(starts, ends)):
        axis = i if axes is None else axes[i]
        index[axis] = slice(s, e, 1 if steps is None else steps[i])
    return x[tuple(index)]


@cases("Slice", since=10)
@pytest.mark.parametrize("starts,ends,axes,steps", SLICES)
def test_slice(opset, starts, ends, axes, steps):
    x = rand(3, 6)
    feeds = {"x": x, "starts": arr(starts), "ends": arr(ends)}
    names = dict(feeds)
    if axes is not None:
        names["axes"] = feeds["axes"] = arr(axes)
    if steps is not None:
        if axes is None:
            names[""] = None
        names["steps"] = feeds["steps"] = arr(steps)
    check(node_model("Slice", names, ["y"], opset=opset), feeds, expected=[_numpy_slice(x, starts, ends, axes, steps)])


@pytest.mark.parametrize("starts,ends,axes", [([1, 0], [2, 3], [0, 1]), ([0, 1], [-1, 1000], None), ([1], [10], [1])])
def test_slice_1(starts, ends, axes):
    x = rand(3, 6)
    attrs = {"starts": starts, "ends": ends, **({} if axes is None else {"axes": axes})}
    check(node_model("Slice", {"x": x}, ["y"], opset=1, **attrs), {"x": x},
          expected=[_numpy_slice(x, starts, ends, axes, None)])


def test_slice_zero_step_fails():
    feeds = {"x": rand(3), "starts": arr([0]), "ends": arr([3]), "axes": arr([0]), "steps": arr([0])}
    with pytest.raises(Exception, match="cannot be 0"):
        run_onnxpy(node_model("Slice", feeds, ["y"], opset=13), feeds)


@cases("Squeeze")
@pytest.mark.parametrize("axes", [None, [0, -1]])
def test_squeeze(opset, axes):
    x = rand(1, 3, 1, 1)
    feeds, attrs = {"x": x}, {}
    if axes is not None:
        if opset < 13:
            attrs["axes"] = axes
        else:
            feeds["axes"] = arr(axes)
    want = x.reshape(3) if axes is None else x.reshape(3, 1)
    check(node_model("Squeeze", feeds, ["y"], opset=opset, **attrs), feeds, expected=[want])


def test_squeeze_non_one_dimension_fails():
    feeds = {"x": rand(2, 3), "axes": arr([0])}
    with pytest.raises(Exception, match="must be 1"):
        run_onnxpy(node_model("Squeeze", feeds, ["y"], opset=13), feeds)


@cases("Unsqueeze")
def test_unsqueeze(opset):
    x = rand(3, 4)
    axes = [0, 3] if opset < 11 else [-1, 0]
    feeds, attrs = {"x": x}, {}
    if opset < 13:
        attrs["axes"] = axes
    else:
        feeds["axes"] = arr(axes)
    check(node_model("Unsqueeze", feeds, ["y"], opset=opset, **attrs), feeds, expected=[x.reshape(1, 3, 4, 1)])


@cases_with("Flatten", "axis", {0: 1, 1: 1, 3: 1, -1: 11})  # negative axes from opset 11
def test_flatten(opset, axis):
    x = rand(2, 3, 4)
    k = axis % 3 if axis < 0 else axis
    check(node_model("Flatten", {"x": x}, ["y"], opset=opset, axis=axis), {"x": x},
          expected=[x.reshape(int(np.prod(x.shape[:k])), -1)])


@cases("Shape")
def test_shape(opset):
    x = np.zeros((2, 3, 4), np.bool_)
    check(node_model("Shape", {"x": x}, ["y"], opset=opset), {"x": x}, expected=[arr([2, 3, 4])])


@cases("Shape", since=15)
@pytest.mark.parametrize("start,end,want", [(1, None, [3, 4]), (-1, None, [4]), (0, -1, [2, 3]), (-10, 10, [2, 3, 4]),
                                            (2, 1, [])])
def test_shape_start_end(opset, start, end, want):
    x = rand(2, 3, 4)
    attrs = {"start": start, **({} if end is None else {"end": end})}
    check(node_model("Shape", {"x": x}, ["y"], opset=opset, **attrs), {"x": x}, expected=[arr(want)])


@cases("Size")
def test_size(opset):
    x = rand(2, 3, 4).astype(np.float16)
    check(node_model("Size", {"x": x}, ["y"], opset=opset), {"x": x}, expected=[np.asarray(24, I64)])


@cases("ConstantOfShape")
@pytest.mark.parametrize("value", [None, np.array([7], np.int32), np.array([1.5], np.float16)])
def test_constant_of_shape(opset, value):
    feeds = {"shape": arr([2, 3])}
    attrs = {} if value is None else {"value": helper.make_tensor("v", helper.np_dtype_to_tensor_dtype(value.dtype),
                                                                    [1], value.tolist())}
    want = np.zeros((2, 3), np.float32) if value is None else np.full((2, 3), value[0], value.dtype)
    check(node_model("ConstantOfShape", feeds, ["y"], opset=opset, **attrs), feeds, expected=[want])


def test_constant_of_shape_scalar():
    feeds = {"shape": np.zeros(0, I64)}
    check(node_model("ConstantOfShape", feeds, ["y"], opset=9), feeds, expected=[np.zeros((), np.float32)])


RANGES = [(3, 9, 3), (10, 4, -2), (0, 1, 0.25), (5, 5, 1), (1, 10, -1), (-3, 4, 2)]


@cases("Range")
@pytest.mark.parametrize("dtype,start,limit,delta", [
    (dtype, *r) for dtype in [np.float32, np.float64, np.int16, np.int32, np.int64] for r in RANGES
    if np.dtype(dtype).kind == "f" or r[2] == int(r[2])])  # no fractional delta for an integer type
def test_range(opset, dtype, start, limit, delta):
    feeds = {"start": np.array(start, dtype), "limit": np.array(limit, dtype), "delta": np.array(delta, dtype)}
    n = max(int(np.ceil((limit - start) / delta)), 0)
    want = np.array([start + i * delta for i in range(n)], dtype=dtype)
    check(node_model("Range", feeds, ["y"], opset=opset), feeds, expected=[want])


@cases("Range", since=27)
@pytest.mark.parametrize("dtype,start", [(np.float16, 2040), (ml_dtypes.bfloat16, 250)])
def test_range_low_precision_stash(opset, dtype, start):
    # values that cross a power of two, where the spacing of representable values doubles
    feeds = {"start": np.array(start, dtype), "limit": np.array(start + 16, dtype), "delta": np.array(2, dtype)}
    want = np.array([start + 2 * i for i in range(8)], np.float32).astype(dtype)
    check(node_model("Range", feeds, ["y"], opset=opset), feeds, expected=[want])


def test_range_zero_delta_fails():
    feeds = {"start": np.array(0, I64), "limit": np.array(3, I64), "delta": np.array(0, I64)}
    with pytest.raises(Exception, match="delta cannot be 0"):
        run_onnxpy(node_model("Range", feeds, ["y"], opset=11), feeds)


@cases("Constant")
def test_constant_value(opset):
    value = np.arange(6, dtype=np.int32).reshape(2, 3)
    model = node_model("Constant", {}, ["y"], opset=opset, value=onnx.numpy_helper.from_array(value))
    y = check(model, {}, expected=[value])[0]
    y[0, 0] = 100  # the caller owns the output: the next run is unchanged
    check(model, {}, expected=[value])


@cases("Constant", since=11)
def test_constant_sparse_value(opset):
    values = onnx.numpy_helper.from_array(np.array([5.0, 6.0], np.float32), "v")
    indices = onnx.numpy_helper.from_array(np.array([1, 5], I64), "i")
    sparse = helper.make_sparse_tensor(values, indices, [2, 3])
    want = np.zeros((2, 3), np.float32)
    want.reshape(-1)[[1, 5]] = [5.0, 6.0]
    check(node_model("Constant", {}, ["y"], opset=opset, sparse_value=sparse), {}, expected=[want])


@cases("Constant", since=12)
@pytest.mark.parametrize("attr,value,want", [
    ("value_float", 1.5, np.array(1.5, np.float32)),
    ("value_floats", [1.5, 2.0], np.array([1.5, 2.0], np.float32)),
    ("value_int", 7, np.array(7, I64)),
    ("value_ints", [1, 2, 3], np.array([1, 2, 3], I64)),
    ("value_string", "hi", np.array("hi", dtype=object)),
    ("value_strings", ["a", "bc"], np.array(["a", "bc"], dtype=object)),
])
def test_constant_value_attributes(opset, attr, value, want):
    check(node_model("Constant", {}, ["y"], opset=opset, **{attr: value}), {}, expected=[want])


@cases("Identity")
def test_identity_tensor(opset):
    x = arr([[1, 2], [3, 4]], np.uint8)
    check(node_model("Identity", {"x": x}, ["y"], opset=opset), {"x": x}, expected=[x])


def test_identity_sequence_and_optional():
    from onnxpy.ops.shape import identity

    seq = [np.ones(2), np.zeros(3)]
    out = identity(seq)
    assert out == seq and out is not seq and all(a is b for a, b in zip(out, seq))
    assert identity(None) is None


@cases("Expand")
@pytest.mark.parametrize("x_shape,shape", [((3, 1), (2, 1, 6)), ((3, 4), (4,)), ((1,), (1, 1)), ((2, 1), (1, 3))])
def test_expand(opset, x_shape, shape):
    x = rand(*x_shape)
    feeds = {"x": x, "shape": arr(shape)}
    want = x * np.ones(shape, np.float32)
    check(node_model("Expand", feeds, ["y"], opset=opset), feeds, expected=[want])


def test_expand_incompatible_fails():
    feeds = {"x": rand(3), "shape": arr([2])}
    with pytest.raises(Exception, match="cannot expand"):
        run_onnxpy(node_model("Expand", feeds, ["y"], opset=13), feeds)


@cases("Tile", since=6)
def test_tile(opset):
    x = arr([[1, 2], [3, 4]], np.int32)
    feeds = {"x": x, "repeats": arr([2, 3])}
    check(node_model("Tile", feeds, ["y"], opset=opset), feeds, expected=[np.tile(x, (2, 3))])


def test_tile_1():
    x = rand(2, 3)
    feeds = {"x": x, "tiles": np.array(3, I64), "axis": np.array(1, I64)}
    check(node_model("Tile", feeds, ["y"], opset=1), feeds, expected=[np.concatenate([x, x, x], axis=1)])


def _pad_model(opset, x, pads, mode, value=None, axes=None):
    """A Pad node in the form its opset wants; returns (model, feeds)."""
    if opset < 11:
        attrs = {"paddings" if opset == 1 else "pads": pads, "mode": mode}
        if value is not None:
            attrs["value"] = float(value)
        return node_model("Pad", {"x": x}, ["y"], opset=opset, **attrs), {"x": x}
    feeds = {"x": x, "pads": arr(pads)}
    names = dict(feeds)
    if value is not None:
        names["value"] = feeds["value"] = np.array(value, x.dtype)
    elif axes is not None:
        names[""] = None
    if axes is not None:
        names["axes"] = feeds["axes"] = arr(axes)
    return node_model("Pad", names, ["y"], opset=opset, mode=mode), feeds


@cases_with("Pad", "mode", {"constant": 1, "reflect": 1, "edge": 1, "wrap": 19})
def test_pad(opset, mode):
    x = rand(3, 4)
    model, feeds = _pad_model(opset, x, [1, 2, 2, 1], mode, value=1.5 if mode == "constant" else None)
    extra = {"constant_values": 1.5} if mode == "constant" else {}
    check(model, feeds, expected=[np.pad(x, [(1, 2), (2, 1)], mode=mode, **extra)])


@cases("Pad", since=11)
def test_pad_negative_crops(opset):
    x = arr(np.arange(20).reshape(4, 5), np.int32)
    model, feeds = _pad_model(opset, x, [-1, 2, 0, -2], "constant")
    want = np.pad(x[1:, :3], [(0, 0), (2, 0)])
    check(model, feeds, expected=[want])


@cases("Pad", since=18)
@pytest.mark.parametrize("mode", ["constant", "edge"])
def test_pad_axes(opset, mode):
    x = rand(2, 3, 4)
    model, feeds = _pad_model(opset, x, [1, 0, 2, 3], mode, axes=[-1, 0])
    check(model, feeds, expected=[np.pad(x, [(0, 3), (0, 0), (1, 2)], mode=mode)])


def test_pad_bool_and_string_default_fill():
    x = np.array([[True]])
    model, feeds = _pad_model(13, x, [0, 1, 0, 0], "constant")
    check(model, feeds, expected=[np.array([[False, True]])])
    s = np.array(["a"], dtype=object)
    model, feeds = _pad_model(13, s, [1, 0], "constant")
    check(model, feeds, expected=[np.array(["", "a"], dtype=object)])


def _depth_to_space(x, b, mode):
    n, c, h, w = x.shape
    if mode == "DCR":
        t = x.reshape(n, b, b, c // b // b, h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // b // b, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // b // b, h * b, w * b)


@cases_with("DepthToSpace", "mode", {"DCR": 1, "CRD": 11})
def test_depth_to_space(opset, mode):
    x = rand(2, 8, 3, 2)
    attrs = {"blocksize": 2, **({"mode": mode} if opset >= 11 else {})}
    check(node_model("DepthToSpace", {"x": x}, ["y"], opset=opset, **attrs), {"x": x},
          expected=[_depth_to_space(x, 2, mode)])


@cases_with("SpaceToDepth", "mode", {"DCR": 1, "CRD": 28})
def test_space_to_depth_inverts_depth_to_space(opset, mode):
    want = rand(2, 12, 2, 3)
    x = _depth_to_space(want, 2, mode)
    attrs = {"blocksize": 2, **({"mode": mode} if opset >= 28 else {})}
    check(node_model("SpaceToDepth", {"x": x}, ["y"], opset=opset, **attrs), {"x": x}, expected=[want])


@cases("EyeLike")
@pytest.mark.parametrize("k", [0, 2, -1, 9])
def test_eye_like(opset, k):
    x = rand(3, 5)
    check(node_model("EyeLike", {"x": x}, ["y"], opset=opset, k=k), {"x": x}, expected=[np.eye(3, 5, k, np.float32)])
    check(node_model("EyeLike", {"x": x}, ["y"], opset=opset, k=k, dtype=TensorProto.INT32), {"x": x},
          expected=[np.eye(3, 5, k, np.int32)])


def test_onnxruntime_agrees_on_old_opsets():
    x = rand(2, 3, 4)
    f = TensorProto.FLOAT
    models = [
        node_model("Reshape", {"x": x}, ["y"], opset=1, shape=[4, 6], output_types={"y": f}),
        node_model("Squeeze", {"x": x[:1]}, ["y"], opset=1, axes=[0], output_types={"y": f}),
        node_model("Split", {"x": x}, ["a", "b"], opset=2, axis=2, split=[1, 3], output_types={"a": f, "b": f}),
        node_model("Pad", {"x": x}, ["y"], opset=2, pads=[0, 1, 0, 0, 1, 2], mode="edge", output_types={"y": f}),
        node_model("Slice", {"x": x}, ["y"], opset=1, starts=[1, -3], ends=[2, 100], axes=[0, 2],
                   output_types={"y": f}),
    ]
    for model in models:
        feeds = {i.name: (x[:1] if model.graph.node[0].op_type == "Squeeze" else x) for i in model.graph.input}
        check(model, feeds, oracle="onnxruntime")
