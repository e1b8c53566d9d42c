"""Loading from every source, converting to the IR and back."""
from __future__ import annotations

import numpy as np
import pytest
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxpy as ort
from onnxpy import ir, loader
from tests._models import add_relu


def test_load_from_path_bytes_and_proto(tmp_path):
    proto = add_relu()
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    x = np.ones((1, 4), np.float32)
    results = [ort.InferenceSession(src).run(None, {"x": x})[0] for src in (str(path), path, proto.SerializeToString(), proto)]
    for r in results:
        np.testing.assert_array_equal(r, results[0])


def test_ir_types_and_shapes():
    model = loader.from_proto(add_relu())
    (x,) = model.graph.inputs
    assert x.type == ir.TensorType(np.dtype(np.float32), ("N", 4))
    assert str(x.type) == "tensor(float)"
    assert model.opset_imports == {"": 17}
    assert model.graph.initializers["b"].dtype == np.float32


def test_sparse_initializer_becomes_dense():
    proto = add_relu()
    del proto.graph.initializer[:]
    values = numpy_helper.from_array(np.array([2.0, 3.0], np.float32), "b")
    indices = numpy_helper.from_array(np.array([1, 3], np.int64), "b_idx")
    proto.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
    model = loader.from_proto(proto)
    np.testing.assert_array_equal(model.graph.initializers["b"], [0.0, 2.0, 0.0, 3.0])


def test_subgraph_attributes_and_round_trip():
    then_out = helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])
    then_graph = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [], [then_out])
    else_graph = helper.make_graph([helper.make_node("Neg", ["x"], ["t"])], "else", [], [then_out])
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph)
    proto = helper.make_model(helper.make_graph([node], "g", [cond, x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model = loader.from_proto(proto)
    branch = model.graph.nodes[0].attributes["then_branch"]
    assert isinstance(branch, ir.Graph) and branch.outer_references() == {"x"}
    back = loader.to_proto(model)
    onnx.checker.check_model(back)
    assert back.graph.node[0].attribute[0].g.node[0].op_type in {"Identity", "Neg"}


def test_a_model_proto_passed_in_is_not_mutated():
    proto = add_relu()
    proto.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.arange(4, dtype=np.float32), "b"))
    before = proto.SerializeToString()
    ort.InferenceSession(proto).run(None, {"x": np.ones((1, 4), np.float32)})
    assert proto.SerializeToString() == before


def test_large_initializers_keep_their_values_and_shapes_are_inferred(tmp_path):
    """Shape inference runs on a light copy (large initializers declared as typed inputs)."""
    w = np.random.default_rng(0).standard_normal((4, 4096)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                              "g", [x], [y], initializer=[numpy_helper.from_array(w, "w")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = loader.load(str(path))
    np.testing.assert_array_equal(model.graph.initializers["w"], w)
    assert model.graph.value_info["h"].type == ir.TensorType(np.dtype(np.float32), (2, 4096))
    assert [v.name for v in model.graph.inputs] == ["x"]


def _weights_model(arrays: dict[str, np.ndarray], extra: list[TensorProto] = ()) -> onnx.ModelProto:
    """A model whose outputs are its initializers (each through Identity), plus a subgraph that
    carries a large initializer of its own."""
    inits = [numpy_helper.from_array(a, name) for name, a in arrays.items()] + list(extra)
    nodes = [helper.make_node("Identity", [t.name], [f"out_{t.name}"]) for t in inits]
    big = numpy_helper.from_array(np.arange(5000, dtype=np.float32), "inner")
    then = helper.make_graph([helper.make_node("Identity", ["inner"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)], initializer=[big])
    other = helper.make_graph([helper.make_node("Neg", ["inner_x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes.append(helper.make_node("If", ["c"], ["branch"], then_branch=then, else_branch=other))
    outputs = [helper.make_tensor_value_info(f"out_{t.name}", t.data_type, None) for t in inits]
    outputs.append(helper.make_tensor_value_info("branch", TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
              helper.make_tensor_value_info("inner_x", TensorProto.FLOAT, [5000])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_weights_are_read_from_the_file_into_their_arrays(tmp_path):
    """Loading from a path leaves large raw_data out of the parsed proto and reads it straight
    from the file; every type and layout must come back as onnx decodes it."""
    rng = np.random.default_rng(1)
    arrays = {
        "f32": rng.standard_normal((64, 70)).astype(np.float32),
        "f64": rng.standard_normal((3, 1000)),
        "f16": rng.standard_normal((50, 90)).astype(np.float16),
        "i64": rng.integers(-2**40, 2**40, (2, 3000)),
        "u8": rng.integers(0, 255, (9000,), dtype=np.uint8),
        "flags": rng.integers(0, 2, (100, 100)).astype(bool),
        "c64": (rng.standard_normal(2000) + 1j * rng.standard_normal(2000)).astype(np.complex64),
        "small": np.arange(6, dtype=np.float32).reshape(2, 3),
    }
    bf16 = helper.make_tensor("bf16", TensorProto.BFLOAT16, [100, 100],
                              rng.integers(0, 2**16, 10000, dtype=np.uint16).tobytes(), raw=True)
    e4m3 = helper.make_tensor("f8", TensorProto.FLOAT8E4M3FN, [9000],
                              rng.integers(0, 126, 9000, dtype=np.uint8).tobytes(), raw=True)
    proto = _weights_model(arrays, [bf16, e4m3])
    path = tmp_path / "weights.onnx"
    onnx.save(proto, str(path))
    assert all(len(t.raw_data) > 16 * 512 for t in proto.graph.initializer if t.name not in ("small",))
    feeds = {"c": np.array(True), "inner_x": np.zeros(5000, np.float32)}
    from_path = ort.InferenceSession(str(path)).run(None, feeds)
    from_bytes = ort.InferenceSession(proto.SerializeToString()).run(None, feeds)
    expected = [numpy_helper.to_array(t) for t in proto.graph.initializer] + [np.arange(5000, dtype=np.float32)]
    for got, same, want in zip(from_path, from_bytes, expected):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
        np.testing.assert_array_equal(same.view(np.uint8), want.view(np.uint8))


def test_a_truncated_model_file_is_a_protobuf_error(tmp_path):
    proto = _weights_model({"w": np.ones((100, 100), np.float32)})
    data = proto.SerializeToString()
    for cut in (len(data) // 2, len(data) - 3, 7):
        path = tmp_path / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        with pytest.raises((ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
                            ort.capi.onnxruntime_pybind11_state.NoModel)) as info:
            ort.InferenceSession(str(path))
        assert str(path) in str(info.value)
