"""The Gradient operator (expanded by passes/gradient.py), checked against PyTorch autograd."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

import onnxpy as ort

LEVELS = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)


def _model(nodes, inputs, xs, y, opset=17):
    grad = helper.make_node("Gradient", inputs, [f"d_{x}" for x in xs], domain="ai.onnx.preview.training",
                            xs=xs, y=y, name="grad")
    graph = helper.make_graph(nodes + [grad], "g",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in inputs],
                              [helper.make_tensor_value_info(f"d_{x}", TensorProto.FLOAT, None) for x in xs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   helper.make_opsetid("ai.onnx.preview.training", 1)])


def test_mlp_gradients_match_torch_autograd():
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal((4, 3)), "w": rng.standard_normal((3, 5)), "b": rng.standard_normal(5),
              "v": rng.uniform(0.5, 2.0, (4, 5))}
    values = {k: v.astype(np.float32) for k, v in values.items()}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("Sigmoid", ["hb"], ["s"]),
             helper.make_node("Mul", ["r", "s"], ["m"]), helper.make_node("Tanh", ["m"], ["t"]),
             helper.make_node("Div", ["t", "v"], ["d"]), helper.make_node("Exp", ["d"], ["e"]),
             helper.make_node("Log", ["v"], ["lv"]), helper.make_node("Sub", ["e", "lv"], ["y"])]
    xs = ["x", "w", "b", "v"]
    model = _model(nodes, list(values), xs, "y")
    t = {k: torch.tensor(v, requires_grad=True) for k, v in values.items()}
    hb = t["x"] @ t["w"] + t["b"]
    y = torch.exp(torch.tanh(torch.relu(hb) * torch.sigmoid(hb)) / t["v"]) - torch.log(t["v"])
    y.sum().backward()
    for level in LEVELS:
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        got = ort.InferenceSession(model.SerializeToString(), so).run(None, values)
        for name, g in zip(xs, got):
            np.testing.assert_allclose(g, t[name].grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_input_not_on_the_path_gets_a_zero_gradient_and_zs_are_constants():
    nodes = [helper.make_node("Mul", ["a", "z"], ["y"])]
    grad = helper.make_node("Gradient", ["a", "c", "z"], ["da", "dc"], domain="ai.onnx.preview.training",
                            xs=["a", "c"], zs=["z"], y="y")
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("a", "c", "z")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("da", "dc")]
    model = helper.make_model(helper.make_graph(nodes + [grad], "g", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.preview.training", 1)])
    feeds = {"a": np.array([1.0, 2.0], np.float32), "c": np.array([3.0, 4.0], np.float32), "z": np.array([5.0, 6.0], np.float32)}
    da, dc = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    np.testing.assert_array_equal(da, [5.0, 6.0])
    np.testing.assert_array_equal(dc, [0.0, 0.0])


def test_non_differentiable_op_on_the_path_is_named():
    nodes = [helper.make_node("Floor", ["a"], ["f"], name="the_floor"), helper.make_node("Add", ["f", "a"], ["y"])]
    with pytest.raises(ort.NotImplemented, match="the_floor"):
        ort.InferenceSession(_model(nodes, ["a"], ["a"], "y").SerializeToString())


def test_y_that_does_not_depend_on_xs_is_an_invalid_graph():
    nodes = [helper.make_node("Relu", ["b"], ["y"])]
    with pytest.raises(ort.InvalidGraph, match="does not depend"):
        ort.InferenceSession(_model(nodes, ["a", "b"], ["a"], "y").SerializeToString())
