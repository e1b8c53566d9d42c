"""Loading from every source, converting to the IR and back."""
from __future__ import annotations

import numpy as np
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
