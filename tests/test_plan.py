"""The plan: order, slot freeing and sub-plans."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxpy import loader, plan as plan_mod
from onnxpy.executor import execute
from onnxpy.registry import REGISTRY
from tests._models import add_relu


def _diamond_out_of_order() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in ("y", "a")]
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="join"),
             helper.make_node("Relu", ["x"], ["a"], name="left"),
             helper.make_node("Add", ["x", "x"], ["b"], name="right")]
    return helper.make_model(helper.make_graph(nodes, "d", [x], outs), opset_imports=[helper.make_opsetid("", 17)])


def _plan(model):
    ir_model = loader.from_proto(model)
    return plan_mod.build(ir_model.graph, ir_model.opset_imports, REGISTRY)


def test_order_respects_dependencies_and_results_are_right():
    p = _plan(_diamond_out_of_order())
    names = [n.name for n in p.nodes]
    assert names.index("join") > names.index("left") and names.index("join") > names.index("right")
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    y, a = execute(p, [x])
    np.testing.assert_array_equal(a, np.maximum(x, 0))
    np.testing.assert_array_equal(y, np.maximum(x, 0) + 2 * x)


def test_values_are_freed_after_last_use_and_outputs_never():
    p = _plan(_diamond_out_of_order())
    last_read = {}
    for i, step in enumerate(p.steps):
        for s in step.inputs:
            last_read[s] = i
    for i, step in enumerate(p.steps):
        for s in step.free:
            assert s not in p.output_slots
            assert last_read.get(s, i) <= i
    freed = {s for step in p.steps for s in step.free}
    assert set(p.input_slots) <= freed  # x is released once its last reader ran


def test_initializers_are_preplaced_in_the_template():
    p = _plan(add_relu())
    placed = [v for v in p.template if isinstance(v, np.ndarray)]
    assert len(placed) == 1 and placed[0].tolist() == [1.0, -1.0, 0.5, -0.5]
