"""Small hand-built models shared by the engine and API tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def add_relu(batch: str | int = "N", opset: int = 17) -> onnx.ModelProto:
    """y = relu(x + b) with x: float[batch, 4] and an initializer b: float[4]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])
    b = numpy_helper.from_array(np.array([1.0, -1.0, 0.5, -0.5], dtype=np.float32), "b")
    nodes = [helper.make_node("Add", ["x", "b"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "add_relu", [x], [y], initializer=[b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    model.ir_version = 8
    return model


def two_inputs(dim: str = "N") -> onnx.ModelProto:
    """z = a + b with a, b: float[dim, 3] sharing one symbolic dim."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [dim, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [dim, 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [dim, 3])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["z"], name="add")], "two", [a, b], [z])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
