"""Each pass alone: outputs before and after are equal, and the graph changed as intended."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxpy import loader, passes, plan as plan_mod
from onnxpy.executor import execute
from onnxpy.passes.constant_folding import fold_constants
from onnxpy.passes.dead_code import eliminate_dead_code
from onnxpy.passes.fuse_conv_bn import fuse_conv_batchnorm
from onnxpy.passes.identity import eliminate_identities
from onnxpy.passes.inline_functions import inline_functions
from onnxpy.registry import REGISTRY

X = np.array([[-2.0, -0.5, 0.0, 1.5]], dtype=np.float32)


def _run(model, feeds):
    return execute(plan_mod.build(model.graph, model.opset_imports, REGISTRY), feeds)


def _model(nodes, inits=(), functions=(), extra_opsets=()) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(inits))
    opsets = [helper.make_opsetid("", 17), *[helper.make_opsetid(d, 1) for d in extra_opsets]]
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions))


def _check_pass(proto, pass_fn, expect_changed=True):
    before = _run(loader.from_proto(proto), [X])
    model = loader.from_proto(proto)
    assert pass_fn(model, REGISTRY) is expect_changed
    after = _run(model, [X])
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    return model


def test_identity_elimination():
    proto = _model([helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Relu", ["i"], ["y"])])
    model = _check_pass(proto, eliminate_identities)
    assert [n.op_type for n in model.graph.nodes] == ["Relu"]
    assert model.graph.nodes[0].inputs == ["x"]


def test_single_input_concat_is_an_identity():
    # a key/value cache's update with no past (GPT-2 from TorchScript): the copy is skipped
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
             helper.make_node("Concat", ["t"], ["c"], axis=-2),
             helper.make_node("Transpose", ["c"], ["y"], perm=[1, 0])]
    model = _check_pass(_model(nodes), eliminate_identities)
    assert [n.op_type for n in model.graph.nodes] == ["Transpose", "Transpose"]
    assert model.graph.nodes[1].inputs == ["t"]
    two = _model([helper.make_node("Concat", ["x", "x"], ["c"], axis=0), helper.make_node("ReduceMax", ["c"], ["y"],
                                                                                            axes=[0])])
    _check_pass(two, eliminate_identities, expect_changed=False)


def test_constant_folding_replaces_constant_subgraph():
    c = numpy_helper.from_array(np.array([1.0, 2.0, 3.0, 4.0], np.float32), "c")
    proto = _model([helper.make_node("Relu", ["c"], ["rc"]), helper.make_node("Add", ["x", "rc"], ["y"])], [c])
    model = _check_pass(proto, fold_constants)
    assert [n.op_type for n in model.graph.nodes] == ["Add"]
    np.testing.assert_array_equal(model.graph.initializers["rc"], [1.0, 2.0, 3.0, 4.0])


def test_constant_folding_folds_constant_nodes_and_what_they_feed():
    # GPT-2 from TorchScript builds each layer's causal mask from Constant nodes: Expand, Trilu,
    # Equal and Where over them fold too, once the Constant is an initializer
    shape = numpy_helper.from_array(np.array([1, 4], np.int64), "shape")
    nodes = [helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
             helper.make_node("Expand", ["one", "shape"], ["ones"]), helper.make_node("Trilu", ["ones"], ["low"]),
             helper.make_node("Add", ["x", "low"], ["y"])]
    model = _check_pass(_model(nodes, [shape]), fold_constants)
    assert [n.op_type for n in model.graph.nodes] == ["Add"]
    np.testing.assert_array_equal(model.graph.initializers["low"], np.ones((1, 4), np.float32))


def test_constant_folding_stores_a_folded_view_contiguous():
    # Transpose's kernel returns a view: folded, it is stored C-contiguous, for each run's readers
    c = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(2, 4), "c")
    graph = helper.make_graph([helper.make_node("Transpose", ["c"], ["t"])], "g", [],
                              [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4, 2])], initializer=[c])
    model = loader.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert fold_constants(model, REGISTRY)
    folded = model.graph.initializers["t"]
    assert folded.flags.c_contiguous
    np.testing.assert_array_equal(folded, np.arange(8, dtype=np.float32).reshape(2, 4).T)


def test_constant_folding_is_silent_about_inf_and_nan():
    # log(0) = -inf and 0/0 = nan are ONNX semantics (T5's position buckets take a log of 0): no
    # numpy RuntimeWarning at session creation, as none at run time
    c = numpy_helper.from_array(np.array([0.0, 1.0, 0.0, 4.0], np.float32), "c")
    nodes = [helper.make_node("Log", ["c"], ["lc"]), helper.make_node("Div", ["c", "c"], ["q"]),
             helper.make_node("Add", ["lc", "q"], ["s"]), helper.make_node("Add", ["x", "s"], ["y"])]
    model = loader.from_proto(_model(nodes, [c]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fold_constants(model, REGISTRY)
    np.testing.assert_allclose(model.graph.initializers["s"], [np.nan, 1.0, np.nan, np.log(4.0) + 1], rtol=1e-6)


def test_constant_folding_leaves_overridable_initializers():
    c = numpy_helper.from_array(np.ones(4, np.float32), "c")
    proto = _model([helper.make_node("Relu", ["c"], ["rc"]), helper.make_node("Add", ["x", "rc"], ["y"])], [c])
    proto.graph.input.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [4]))
    model = loader.from_proto(proto)
    assert fold_constants(model, REGISTRY) is False


def test_dead_code_elimination():
    c = numpy_helper.from_array(np.ones(4, np.float32), "unused_init")
    proto = _model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["dead"]),
                    helper.make_node("Add", ["dead", "unused_init"], ["dead2"])], [c])
    model = _check_pass(proto, eliminate_dead_code)
    assert [n.op_type for n in model.graph.nodes] == ["Relu"]
    assert "unused_init" not in model.graph.initializers


def test_inline_model_local_function_with_attribute_reference():
    body = [helper.make_node("LeakyRelu", ["a"], ["r"]),
            helper.make_node("Add", ["r", "a"], ["out"])]
    body[0].attribute.append(onnx.AttributeProto(name="alpha", ref_attr_name="slope", type=onnx.AttributeProto.FLOAT))
    fn = helper.make_function("local", "LeakyDouble", ["a"], ["out"], body,
                              [helper.make_opsetid("", 17)], attributes=["slope"])
    proto = _model([helper.make_node("LeakyDouble", ["x"], ["y"], domain="local", slope=0.25)],
                   functions=[fn], extra_opsets=["local"])
    model = loader.from_proto(proto)
    assert inline_functions(model, REGISTRY)
    assert [n.op_type for n in model.graph.nodes] == ["LeakyRelu", "Add"]
    (y,) = _run(model, [X])
    np.testing.assert_allclose(y, np.where(X > 0, X, 0.25 * X) + X)


def test_levels_are_cumulative():
    assert passes.passes_for(passes.ORT_DISABLE_ALL) == ()
    basic = passes.passes_for(passes.ORT_ENABLE_BASIC)
    assert basic and set(basic) <= set(passes.passes_for(passes.ORT_ENABLE_ALL))


def test_conv_batchnorm_folding():
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name) for name, shape in (
        ("w", (4, 3, 3, 3)), ("b", (4,)), ("scale", (4,)), ("beta", (4,)), ("mean", (4,)))]
    inits.append(numpy_helper.from_array(rng.uniform(0.5, 2.0, 4).astype(np.float32), "var"))
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "beta", "mean", "var"], ["y"], epsilon=1e-3)]
    proto = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 15)])
    feed = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32)]
    (before,) = _run(loader.from_proto(proto), feed)
    model = loader.from_proto(proto)
    assert fuse_conv_batchnorm(model, REGISTRY)
    assert [n.op_type for n in model.graph.nodes] == ["Conv"]
    (after,) = _run(model, feed)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
