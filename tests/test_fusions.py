"""Each optimization pass alone on the unfused pattern built with onnx.helper: outputs before
and after agree within 1e-5 and the node count drops (or, where the rewrite is unsafe, nothing
changes)."""
from __future__ import annotations

import math
import re

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxpy import loader, plan as plan_mod
from onnxpy.executor import execute
from onnxpy.ops import linalg
from onnxpy.ops._helpers import FAST_GELU, GELU, RELU
from onnxpy.passes.cse import eliminate_common_subexpressions
from onnxpy.passes.fuse_activation import fuse_conv_activation
from onnxpy.passes.fuse_gelu import fuse_gelu
from onnxpy.passes.fuse_layernorm import fuse_layer_normalization
from onnxpy.passes.fuse_matmul_add import fuse_matmul_add
from onnxpy.passes.fuse_swish import fuse_swish
from onnxpy.passes.shape_folding import fold_shape_subgraphs
from onnxpy.passes.transpose_reshape import cancel_transposes_reshapes
from onnxpy.registry import REGISTRY

RNG = np.random.default_rng(0)
F = TensorProto.FLOAT


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _model(nodes, x_shape, y_shape, inits=(), opset=17, y_type=F):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, x_shape)],
                              [helper.make_tensor_value_info("y", y_type, y_shape)], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model, x, registry=REGISTRY):
    return execute(plan_mod.build(model.graph, model.opset_imports, registry), [x])


def _check(proto, pass_fn, feeds, removed=None, registry=REGISTRY):
    """Run the pass; outputs agree for every feed; returns the rewritten model's op types."""
    model = loader.from_proto(proto)
    before = len(model.graph.nodes)
    assert pass_fn(model, registry) is (removed is not None)
    for x in feeds:
        for a, b in zip(_run(loader.from_proto(proto), x, registry), _run(model, x, registry)):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    if removed is not None:
        assert len(model.graph.nodes) == before - removed
    return [n.op_type for n in model.graph.nodes], model


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# 1. common subexpressions

def test_cse_merges_identical_nodes_and_constants():
    nodes = [helper.make_node("Constant", [], ["c1"], value=_const("v", np.float32(2))),
             helper.make_node("Constant", [], ["c2"], value=_const("v", np.float32(2))),
             helper.make_node("Mul", ["x", "c1"], ["m1"]), helper.make_node("Mul", ["x", "c2"], ["m2"]),
             helper.make_node("LeakyRelu", ["m1"], ["r1"], alpha=0.1), helper.make_node("LeakyRelu", ["m2"], ["r2"], alpha=0.1),
             helper.make_node("LeakyRelu", ["m2"], ["r3"], alpha=0.2),
             helper.make_node("Sum", ["r1", "r2", "r3"], ["y"])]
    ops, _ = _check(_model(nodes, [2, 3], [2, 3]), eliminate_common_subexpressions, [_x(2, 3)], removed=3)
    assert ops.count("LeakyRelu") == 2 and ops.count("Constant") == 1


def test_cse_keeps_random_ops_and_graph_outputs():
    nodes = [helper.make_node("RandomUniformLike", ["x"], ["a"], seed=1.0),
             helper.make_node("RandomUniformLike", ["x"], ["b"], seed=1.0), helper.make_node("Add", ["a", "b"], ["y"])]
    model = loader.from_proto(_model(nodes, [2], [2]))
    assert eliminate_common_subexpressions(model, REGISTRY) is False
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["z"])], "g",
                              [helper.make_tensor_value_info("x", F, [2])],
                              [helper.make_tensor_value_info(n, F, [2]) for n in "yz"])
    model = loader.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert eliminate_common_subexpressions(model, REGISTRY) is False


# 2. shape subgraphs

def _shape_model(index_or_slice):
    """y = x + float(selected dims of Shape(x)), x of shape [N, 4, 5]."""
    return _model([helper.make_node("Shape", ["x"], ["s"]), *index_or_slice,
                   helper.make_node("Cast", ["d"], ["f"], to=F), helper.make_node("Add", ["x", "f"], ["y"])],
                  ["N", 4, 5], ["N", 4, 5], [_const("i", np.int64(-2)), _const("i0", np.int64(0)),
                                             _const("st", [1]), _const("en", [3]), _const("st0", [0])])


def test_shape_gather_of_static_dim_folds():
    gather = [helper.make_node("Gather", ["s", "i"], ["d"])]
    ops, model = _check(_shape_model(gather), fold_shape_subgraphs, [_x(2, 4, 5), _x(3, 4, 5)], removed=1)
    assert "Gather" not in ops and model.graph.initializers["d"] == 4


def test_shape_slice_of_static_dims_folds():
    sliced = [helper.make_node("Slice", ["s", "st", "en"], ["d2"]), helper.make_node("ReduceSum", ["d2"], ["d"])]
    ops, _ = _check(_shape_model(sliced), fold_shape_subgraphs, [_x(2, 4, 5), _x(1, 4, 5)], removed=1)
    assert "Slice" not in ops


def test_shape_partial_static_start_end_folds():
    nodes = [helper.make_node("Shape", ["x"], ["d2"], start=1), helper.make_node("ReduceProd", ["d2"], ["d"]),
             helper.make_node("Cast", ["d"], ["f"], to=F), helper.make_node("Add", ["x", "f"], ["y"])]
    ops, _ = _check(_model(nodes, ["N", 4, 5], ["N", 4, 5]), fold_shape_subgraphs, [_x(2, 4, 5)], removed=1)
    assert "Shape" not in ops


@pytest.mark.parametrize("selection", [[helper.make_node("Gather", ["s", "i0"], ["d"])],
                                       [helper.make_node("Slice", ["s", "st0", "en"], ["d2"]),
                                        helper.make_node("ReduceSum", ["d2"], ["d"])]], ids=["gather", "slice"])
def test_shape_of_symbolic_dim_stays(selection):
    _check(_shape_model(selection), fold_shape_subgraphs, [_x(2, 4, 5), _x(3, 4, 5)])


# 3. transposes, reshapes, squeeze/unsqueeze

def test_transpose_pair_cancels():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 2, 0]), helper.make_node("Transpose", ["t"], ["u"], perm=[2, 0, 1]),
             helper.make_node("Relu", ["u"], ["y"])]
    ops, _ = _check(_model(nodes, [2, 3, 4], [2, 3, 4]), cancel_transposes_reshapes, [_x(2, 3, 4)], removed=2)
    assert ops == ["Relu"]


def test_transpose_pair_composes_default_perm():
    nodes = [helper.make_node("Transpose", ["x"], ["t"]), helper.make_node("Transpose", ["t"], ["y"], perm=[0, 2, 1])]
    ops, _ = _check(_model(nodes, [2, 3, 4], [4, 2, 3]), cancel_transposes_reshapes, [_x(2, 3, 4)], removed=1)
    assert ops == ["Transpose"]


def test_reshape_pair_merges_unless_zero():
    inits = [_const("s1", np.array([6, 4])), _const("s2", np.array([-1, 2, 2]))]
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["r"]), helper.make_node("Reshape", ["r", "s2"], ["y"])]
    ops, _ = _check(_model(nodes, [2, 3, 4], [6, 2, 2], inits), cancel_transposes_reshapes, [_x(2, 3, 4)], removed=1)
    assert ops == ["Reshape"]
    inits[1] = _const("s2", np.array([0, 2, 2]))
    _check(_model(nodes, [2, 3, 4], [6, 2, 2], inits), cancel_transposes_reshapes, [_x(2, 3, 4)])


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("first,second,axes", [("Unsqueeze", "Squeeze", [0, -1]), ("Squeeze", "Unsqueeze", [1])])
def test_squeeze_unsqueeze_pair_cancels(first, second, axes, opset):
    shape = [2, 1, 3]
    inits = [_const("axes", np.array(axes))] if opset >= 13 else []
    args = {} if opset >= 13 else {"axes": axes}
    inputs = ["axes"] if opset >= 13 else []
    nodes = [helper.make_node(first, ["x", *inputs], ["a"], **args), helper.make_node(second, ["a", *inputs], ["b"], **args),
             helper.make_node("Relu", ["b"], ["y"])]
    ops, _ = _check(_model(nodes, shape, shape, inits, opset), cancel_transposes_reshapes, [_x(*shape)], removed=2)
    assert ops == ["Relu"]


# 4. MatMul + Add -> Gemm

@pytest.mark.parametrize("bias_shape", [(5,), (1, 5), ()])
def test_matmul_add_becomes_gemm(bias_shape):
    inits = [_const("w", _x(4, 5)), _const("b", _x(*bias_shape))]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["b", "m"], ["y"])]
    ops, _ = _check(_model(nodes, [3, 4], [3, 5], inits), fuse_matmul_add, [_x(3, 4)], removed=1)
    assert ops == ["Gemm"]


def test_matmul_add_stays_for_3d_input():
    inits = [_const("w", _x(4, 5)), _const("b", _x(5))]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    _check(_model(nodes, [2, 3, 4], [2, 3, 5], inits), fuse_matmul_add, [_x(2, 3, 4)])


# 5. LayerNorm, Gelu, Swish, HardSwish

def _layernorm_nodes(square: str, affine: bool, axes_input: bool):
    axes = {} if axes_input else {"axes": [-1]}
    extra = ["axes"] if axes_input else []
    nodes = [helper.make_node("ReduceMean", ["x", *extra], ["mean"], **axes), helper.make_node("Sub", ["x", "mean"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["sq"]) if square == "Pow" else helper.make_node("Mul", ["d", "d"], ["sq"]),
             helper.make_node("ReduceMean", ["sq", *extra], ["var"], **axes), helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["std"]), helper.make_node("Div", ["d", "std"], ["n" if affine else "y"])]
    if affine:
        nodes += [helper.make_node("Mul", ["n", "gamma"], ["g"]), helper.make_node("Add", ["g", "beta"], ["y"])]
    return nodes


@pytest.mark.parametrize("square", ["Pow", "Mul"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("opset", [14, 17, 18])
def test_layernorm_pattern_fuses(square, affine, opset):
    inits = [_const("two", np.float32(2)), _const("eps", np.float32(1e-5)), _const("gamma", _x(8)), _const("beta", _x(8)),
             _const("axes", np.array([-1]))]
    proto = _model(_layernorm_nodes(square, affine, opset >= 18), ["N", 3, 8], ["N", 3, 8], inits, opset)
    ops, model = _check(proto, fuse_layer_normalization, [_x(2, 3, 8) * 3 + 1], removed=8 if affine else 6)
    assert ops == ["LayerNormalization"] and model.graph.nodes[0].opset is None


def test_layernorm_pattern_with_shared_mean_keeps_it():
    # the mean is read again: no LayerNormalization, but the rest is the RMS normalization of d
    inits = [_const("two", np.float32(2)), _const("eps", np.float32(1e-5)), _const("gamma", _x(8)), _const("beta", _x(8))]
    nodes = _layernorm_nodes("Pow", True, False)
    nodes[-1] = helper.make_node("Add", ["g", "mean"], ["y"])
    ops, _ = _check(_model(nodes, ["N", 8], ["N", 8], inits, 14), fuse_layer_normalization, [_x(2, 8)], removed=5)
    assert ops == ["ReduceMean", "Sub", "SimplifiedLayerNormalization", "Add"]


def _rms_nodes(form: str, gamma: bool):
    """x / sqrt(mean(x^2) + eps) as exporters write it (T5: times Div(1, ...)), optionally times gamma."""
    square = (helper.make_node("Mul", ["x", "x"], ["sq"]) if form == "reciprocal"
              else helper.make_node("Pow", ["x", "two"], ["sq"]))
    nodes = [square, helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["std"])]
    out = "n" if gamma else "y"
    if form == "div":
        nodes.append(helper.make_node("Div", ["x", "std"], [out]))
    elif form == "one_over":
        nodes += [helper.make_node("Div", ["one", "std"], ["inv"]), helper.make_node("Mul", ["x", "inv"], [out])]
    else:
        nodes += [helper.make_node("Reciprocal", ["std"], ["inv"]), helper.make_node("Mul", ["inv", "x"], [out])]
    if gamma:
        nodes.append(helper.make_node("Mul", ["gamma", "n"], ["y"]))
    return nodes


_RMS_INITS = [_const("two", np.float32(2)), _const("eps", np.float32(1e-6)), _const("one", np.float32(1)),
              _const("gamma", RNG.standard_normal(8).astype(np.float32))]


@pytest.mark.parametrize("form", ["div", "one_over", "reciprocal"])
@pytest.mark.parametrize("gamma", [True, False])
def test_rms_norm_pattern_fuses(form, gamma):
    import onnxpy

    nodes = _rms_nodes(form, gamma)
    proto = _model(nodes, ["N", 3, 8], ["N", 3, 8], _RMS_INITS, 17)
    x = _x(2, 3, 8) * 3 + 1
    ops, _ = _check(proto, fuse_layer_normalization, [x], removed=len(nodes) - 1)
    assert ops == ["SimplifiedLayerNormalization"]
    expected = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(onnxpy.InferenceSession(proto.SerializeToString()).run(None, {"x": x})[0], expected,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change", ["variance read again", "another tensor squared", "mean over the first axis"])
def test_rms_norm_pattern_stays(change):
    nodes = _rms_nodes("one_over", True)
    if change == "variance read again":
        nodes[-1] = helper.make_node("Mul", ["n", "var"], ["y"])
    elif change == "another tensor squared":
        nodes[0] = helper.make_node("Pow", ["gamma", "two"], ["sq"])
    else:
        nodes[1] = helper.make_node("ReduceMean", ["sq"], ["var"], axes=[0])
    _check(_model(nodes, ["N", 3, 8], ["N", 3, 8], _RMS_INITS, 17), fuse_layer_normalization, [_x(2, 3, 8)])


def _gelu_erf(order):
    divide = helper.make_node("Div", ["x", "sqrt2"], ["a"]) if order != "mul" else helper.make_node("Mul", ["inv_sqrt2", "x"], ["a"])
    head = [divide, helper.make_node("Erf", ["a"], ["e"]), helper.make_node("Add", ["e", "one"], ["c"])]
    if order == "half_first":
        return head + [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Mul", ["h", "c"], ["y"])]
    return head + [helper.make_node("Mul", ["x", "c"], ["h"]), helper.make_node("Mul", ["h", "half"], ["y"])]


def _gelu_tanh(cube):
    if cube == "pow":
        cubed = [helper.make_node("Pow", ["x", "three"], ["x3"])]
    else:
        cubed = [helper.make_node("Mul", ["x", "x"], ["x2"]), helper.make_node("Mul", ["x2", "x"], ["x3"])]
    return cubed + [
        helper.make_node("Mul", ["x3", "k1"], ["k1x3"]), helper.make_node("Add", ["x", "k1x3"], ["inner"]),
        helper.make_node("Mul", ["k0", "inner"], ["t"]), helper.make_node("Tanh", ["t"], ["th"]),
        helper.make_node("Add", ["one", "th"], ["c"]), helper.make_node("Mul", ["half", "x"], ["h"]),
        helper.make_node("Mul", ["h", "c"], ["y"])]


GELU_CONSTANTS = {"sqrt2": math.sqrt(2), "inv_sqrt2": 1 / math.sqrt(2), "one": 1.0, "half": 0.5, "three": 3.0,
                  "k0": math.sqrt(2 / math.pi), "k1": 0.044715}


@pytest.mark.parametrize("nodes", [_gelu_erf("div"), _gelu_erf("mul"), _gelu_erf("half_first"), _gelu_tanh("pow"),
                                   _gelu_tanh("mul")], ids=["erf_div", "erf_mul", "erf_half_first", "tanh_pow", "tanh_mul"])
@pytest.mark.parametrize("opset", [14, 20])
def test_gelu_pattern_fuses(nodes, opset):
    """Opset 20 on: the standard Gelu; before: onnxruntime's com.microsoft Gelu / FastGelu (tanh)."""
    inits = [_const(k, np.float32(v)) for k, v in GELU_CONSTANTS.items()]
    ops, model = _check(_model(nodes, ["N", 6], ["N", 6], inits, opset), fuse_gelu, [_x(3, 6) * 3],
                        removed=len(nodes) - 1)
    fused = model.graph.nodes[0]
    tanh = "Tanh" in [n.op_type for n in nodes]
    if opset >= 20:
        assert ops == ["Gelu"] and not fused.domain
        assert fused.attributes.get("approximate", "none") == ("tanh" if tanh else "none")
    else:
        assert ops == ["FastGelu" if tanh else "Gelu"] and fused.domain == "com.microsoft"
        assert model.opset_imports["com.microsoft"] == 1


def test_gelu_with_wrong_constant_stays():
    inits = [_const(k, np.float32(v)) for k, v in {**GELU_CONSTANTS, "half": 0.6}.items()]
    _check(_model(_gelu_erf("div"), ["N", 6], ["N", 6], inits, 14), fuse_gelu, [_x(3, 6)])


def _swish_nodes():
    return [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["a"]),
            helper.make_node("HardSigmoid", ["a"], ["h"], alpha=1 / 6), helper.make_node("Mul", ["h", "a"], ["y"])]


def test_swish_and_hardswish_fuse_to_standard_ops():
    ops, model = _check(_model(_swish_nodes(), [2, 5], [2, 5], opset=24), fuse_swish, [_x(2, 5) * 4], removed=2)
    assert ops == ["Swish", "HardSwish"] and all(not n.domain for n in model.graph.nodes)


def test_swish_before_opset_24_uses_quickgelu_and_hardswish_needs_opset_14():
    ops, model = _check(_model(_swish_nodes(), [2, 5], [2, 5], opset=13), fuse_swish, [_x(2, 5) * 4], removed=1)
    assert ops == ["QuickGelu", "HardSigmoid", "Mul"]
    assert model.graph.nodes[0].domain == "com.microsoft" and model.graph.nodes[0].attributes == {"alpha": 1.0}


def test_hardsigmoid_with_other_slope_stays():
    nodes = [helper.make_node("HardSigmoid", ["x"], ["h"]), helper.make_node("Mul", ["h", "x"], ["y"])]
    _check(_model(nodes, [2, 5], [2, 5], opset=17), fuse_swish, [_x(2, 5)])


# 6. Conv + activation -> com.microsoft FusedConv, only with a kernel

def _conv_activation_model():
    inits = [_const("w", _x(4, 3, 3, 3)), _const("b", _x(4)), _const("lo", np.float32(0)), _const("hi", np.float32(0.5))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Clip", ["c", "lo", "hi"], ["y"])]
    return _model(nodes, [1, 3, 5, 5], [1, 4, 5, 5], inits)


def test_conv_activation_needs_a_fused_kernel():
    registry = REGISTRY.copy()
    registry._kernels.pop(("com.microsoft", "FusedConv"), None)  # a build without contrib kernels
    _check(_conv_activation_model(), fuse_conv_activation, [_x(1, 3, 5, 5)], registry=registry)


@pytest.mark.skipif(REGISTRY.resolve("com.microsoft", "FusedConv", 1) is None, reason="no FusedConv kernel")
def test_conv_activation_fuses_with_the_fused_kernel():
    ops, model = _check(_conv_activation_model(), fuse_conv_activation, [_x(1, 3, 5, 5)], removed=1)
    assert ops == ["FusedConv"] and model.graph.nodes[0].attributes["activation_params"] == [0.0, 0.5]


def _conv_residual_model(order, activation, z_shape=(1, 3, 5, 5)):
    inits = [_const("w", _x(3, 3, 3, 3)), _const("b", _x(3)), _const("z", _x(*z_shape))]
    operands = ["c", "z"] if order == "conv first" else ["z", "c"]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", operands, ["s" if activation else "y"])]
    if activation:
        nodes.append(helper.make_node(activation, ["s"], ["y"]))
    return _model(nodes, [1, 3, 5, 5], [1, 3, 5, 5], inits)


@pytest.mark.skipif(REGISTRY.resolve("com.microsoft", "FusedConv", 1) is None, reason="no FusedConv kernel")
@pytest.mark.parametrize("order", ["conv first", "conv second"])
@pytest.mark.parametrize("activation", ["Relu", "Sigmoid", None])
def test_conv_residual_add_fuses_as_z(order, activation):
    proto, x = _conv_residual_model(order, activation), _x(1, 3, 5, 5)
    ops, model = _check(proto, fuse_conv_activation, [x], removed=2 if activation else 1)
    fused = model.graph.nodes[0]
    assert ops == ["FusedConv"] and fused.inputs[3] == "z" and fused.attributes.get("activation") == activation
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(_run(model, x)[0], session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


def _conv_hard_sigmoid_model(bias: bool, weights_input: bool = False, residual: bool = False):
    inits = [_const("b", _x(4))] if bias else []
    if not weights_input:
        inits.append(_const("w", _x(4, 3, 1, 1)))
    conv = helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["c"])
    nodes = [conv]
    if residual:
        inits.append(_const("z", _x(1, 4, 5, 5)))
        nodes.append(helper.make_node("Add", ["c", "z"], ["c2"]))
    nodes.append(helper.make_node("HardSigmoid", ["c2" if residual else "c"], ["y"], alpha=0.3, beta=0.4))
    inputs = [helper.make_tensor_value_info("x", F, [1, 3, 5, 5])]
    if weights_input:
        inputs.append(helper.make_tensor_value_info("w", F, [4, 3, 1, 1]))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", F, [1, 4, 5, 5])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.skipif(REGISTRY.resolve("com.microsoft", "FusedConv", 1) is None, reason="no FusedConv kernel")
@pytest.mark.parametrize("bias", [True, False])
def test_conv_hard_sigmoid_moves_into_the_weights(bias):
    # alpha * (W x + b) + beta == (alpha W) x + (alpha b + beta): only the clamp to [0, 1] is left
    proto, x = _conv_hard_sigmoid_model(bias), 3 * _x(1, 3, 5, 5)
    ops, model = _check(proto, fuse_conv_activation, [x], removed=1)
    fused = model.graph.nodes[0]
    assert ops == ["FusedConv"] and fused.attributes["activation"] == "Clip"
    assert fused.attributes["activation_params"] == [0.0, 1.0]
    assert len(fused.inputs) == 3 and "w" not in fused.inputs
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    assert 0 < (expected == 0).mean() < 1 and 0 < (expected == 1).mean() < 1  # both clamps are reached
    np.testing.assert_allclose(_run(model, x)[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(REGISTRY.resolve("com.microsoft", "FusedConv", 1) is None, reason="no FusedConv kernel")
@pytest.mark.parametrize("case", ["weights are an input", "residual"])
def test_conv_hard_sigmoid_stays_an_activation(case):
    # weights that may change between runs, or a residual (not scaled by alpha), keep the HardSigmoid
    proto = _conv_hard_sigmoid_model(True, weights_input=case == "weights are an input", residual=case == "residual")
    model = loader.from_proto(proto)
    assert fuse_conv_activation(model, REGISTRY)
    fused = model.graph.nodes[0]
    assert fused.attributes["activation"] == "HardSigmoid"
    np.testing.assert_allclose(fused.attributes["activation_params"], [0.3, 0.4], rtol=1e-6)
    feeds = {"x": 3 * _x(1, 3, 5, 5)}
    if case == "weights are an input":
        feeds["w"] = _x(4, 3, 1, 1)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    plan = plan_mod.build(model.graph, model.opset_imports, REGISTRY)
    got = execute(plan, [feeds[v.name] for v in model.graph.inputs])
    np.testing.assert_allclose(got[0], session.run(None, feeds)[0], rtol=1e-5, atol=1e-6)


def _conv_swish_model(xs, ws, activation, pads, strides, group=1, dtype=np.float32, second_reader=False):
    """Conv then HardSwish, Swish (opset 24) or x * Sigmoid(x) (which fuse_swish makes QuickGelu)."""
    code = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [_const("w", _x(*ws).astype(dtype)), _const("b", _x(ws[0]).astype(dtype))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=pads, strides=strides, group=group)]
    if activation == "SiLU":
        nodes += [helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["y"])]
    else:
        nodes.append(helper.make_node(activation, ["c"], ["y"], **({"alpha": 0.7} if activation == "Swish" else {})))
    outputs = [helper.make_tensor_value_info("y", code, None)]
    if second_reader:
        outputs.append(helper.make_tensor_value_info("c", code, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", code, list(xs))], outputs,
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24 if activation == "Swish" else 17)])


SWISH_PATHS = [  # x shape, w shape, pads, strides, group: the convolution path the activation follows
    ((1, 32, 64, 64), (64, 32, 1, 1), [0, 0, 0, 0], [1, 1], 1),   # 1x1 GEMM in bands: the epilogue
    ((1, 96, 7, 7), (576, 96, 1, 1), [0, 0, 0, 0], [1, 1], 1),    # one small GEMM: the compiled epilogue
    ((1, 8, 1, 1), (16, 8, 1, 1), [0, 0, 0, 0], [1, 1], 1),       # a squeeze-and-excitation conv: numpy
    ((1, 3, 33, 34), (16, 3, 3, 3), [1, 1, 1, 1], [2, 2], 1),     # im2col + GEMM: the epilogue
    ((1, 8, 40, 42), (6, 8, 3, 3), [1, 1, 1, 1], [1, 1], 1),      # Winograd: after the convolution
    ((1, 24, 14, 14), (24, 1, 3, 3), [1, 1, 1, 1], [1, 1], 24),   # depthwise: after the convolution
]


@pytest.mark.skipif(REGISTRY.resolve("ai.onnxpy", "FusedConv", 1) is None, reason="no ai.onnxpy FusedConv kernel")
@pytest.mark.parametrize("xs, ws, pads, strides, group", SWISH_PATHS)
@pytest.mark.parametrize("activation", ["HardSwish", "SiLU", "Swish"])
def test_conv_swish_fuses_into_the_onnxpy_fused_conv(xs, ws, pads, strides, group, activation):
    proto, x = _conv_swish_model(xs, ws, activation, pads, strides, group), 2 * _x(*xs)
    model = loader.from_proto(proto)
    if activation == "SiLU":
        assert fuse_swish(model, REGISTRY)
    assert fuse_conv_activation(model, REGISTRY)
    (fused,) = model.graph.nodes
    assert (fused.domain, fused.op_type) == ("ai.onnxpy", "FusedConv")
    assert fused.attributes["activation"] == {"HardSwish": "HardSwish"}.get(activation, "QuickGelu")
    if activation != "HardSwish":
        np.testing.assert_allclose(fused.attributes["activation_params"], [0.7 if activation == "Swish" else 1.0])
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(_run(model, x)[0], session.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(REGISTRY.resolve("ai.onnxpy", "FusedConv", 1) is None, reason="no ai.onnxpy FusedConv kernel")
@pytest.mark.parametrize("activation", ["HardSwish", "SiLU"])
@pytest.mark.parametrize("path", [0, 5])
def test_conv_swish_in_float64(activation, path):
    # float64: HardSwish in the compiled epilogue (1x1) or on the vectors of channels (depthwise),
    # Swish (a float32 exp there) after the convolution
    xs, ws, pads, strides, group = SWISH_PATHS[path]
    proto = _conv_swish_model(xs, ws, activation, pads, strides, group, dtype=np.float64)
    x = 2 * RNG.standard_normal(xs)
    model = loader.from_proto(proto)
    fuse_swish(model, REGISTRY)
    assert fuse_conv_activation(model, REGISTRY) and model.graph.nodes[0].domain == "ai.onnxpy"
    # onnxruntime has no float64 Conv: the unfused graph (its Conv checked against PyTorch elsewhere)
    np.testing.assert_allclose(_run(model, x)[0], _run(loader.from_proto(proto), x)[0], rtol=1e-10, atol=1e-12)


def test_conv_swish_stays_without_the_kernel_or_with_another_reader():
    proto = _conv_swish_model((1, 8, 5, 5), (4, 8, 1, 1), "HardSwish", [0, 0, 0, 0], [1, 1], second_reader=True)
    model = loader.from_proto(proto)
    assert not fuse_conv_activation(model, REGISTRY)  # the Conv's output is also a graph output
    registry = REGISTRY.copy()
    registry._kernels.pop(("ai.onnxpy", "FusedConv"), None)
    model = loader.from_proto(_conv_swish_model((1, 8, 5, 5), (4, 8, 1, 1), "HardSwish", [0, 0, 0, 0], [1, 1]))
    assert not fuse_conv_activation(model, registry)
    assert [n.op_type for n in model.graph.nodes] == ["Conv", "HardSwish"]


def test_conv_add_of_a_broadcast_tensor_stays():
    # FusedConv's Z must have the output's shape: a per-channel tensor is left to Add
    _check(_conv_residual_model("conv first", "Relu", z_shape=(3, 1, 1)), fuse_conv_activation, [_x(1, 3, 5, 5)])


def _attention_model(q_shape, k_shape, v_shape, bias_shape=None, axis=-1, probs_read_twice=False, opset=17,
                     scales=None):
    """y = MatMul(Softmax(MatMul(x, k) [+ b]), v), the shape of attention's core (``axis`` None:
    Softmax's default); with ``scales`` (a, b), x * a and k * b (b None: k as it is) in the product."""
    inits = [_const("k", _x(*k_shape)), _const("v", _x(*v_shape))]
    nodes = []
    for name, factor in zip(("x", "k"), scales or ()):
        if factor is not None:
            inits.append(_const(f"{name}_scale", np.float32(factor)))
            nodes.append(helper.make_node("Mul", [f"{name}_scale", name] if name == "k" else [name, f"{name}_scale"],
                                          [f"{name}_scaled"]))
    q, k = ("x_scaled" if scales else "x"), ("k_scaled" if scales and scales[1] is not None else "k")
    nodes.append(helper.make_node("MatMul", [q, k], ["s"]))
    scores = "s"
    if bias_shape is not None:
        inits.append(_const("b", _x(*bias_shape)))
        nodes.append(helper.make_node("Add", ["b", "s"], ["sb"]))
        scores = "sb"
    nodes.append(helper.make_node("Softmax", [scores], ["p"], **({} if axis is None else {"axis": axis})))
    if probs_read_twice:
        nodes += [helper.make_node("MatMul", ["p", "v"], ["o"]), helper.make_node("Mul", ["p", "p"], ["pp"]),
                  helper.make_node("MatMul", ["pp", "v"], ["o2"]), helper.make_node("Add", ["o", "o2"], ["y"])]
    else:
        nodes.append(helper.make_node("MatMul", ["p", "v"], ["y"]))
    return _model(nodes, list(q_shape), None, inits, opset=opset)


@pytest.mark.parametrize("q_shape, k_shape, v_shape, bias_shape", [
    ((2, 3, 20, 8), (2, 3, 8, 30), (2, 3, 30, 5), None),
    ((2, 3, 20, 8), (1, 3, 8, 30), (3, 30, 5), (20, 30)),  # broadcast batch, a 2-D bias
    ((40, 8), (8, 50), (50, 6), (1, 3, 40, 50)),  # the bias adds batch axes
])
@pytest.mark.parametrize("blocked", [False, True])
def test_attention_core_fuses(monkeypatch, q_shape, k_shape, v_shape, bias_shape, blocked):
    from onnxpy.ops import transformer
    from onnxpy.passes.fuse_attention import fuse_attention

    if blocked:  # the scores a few query rows at a time, as for long sequences
        monkeypatch.setattr(transformer, "_SCORES_IN_CACHE", 0)
        monkeypatch.setattr(transformer, "_SCORES_BLOCK", 64)
    proto, x = _attention_model(q_shape, k_shape, v_shape, bias_shape), _x(*q_shape)
    ops, model = _check(proto, fuse_attention, [x, x * 4], removed=3 if bias_shape else 2)
    assert ops == ["AttentionCore"]
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(_run(model, x)[0], session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scales", [(0.35, 0.35), (0.125, None)])
def test_attention_core_folds_the_scaling_of_q_and_k(scales):
    # the TorchScript exporter scales Q and K each by the fourth root of the head size
    from onnxpy.passes.fuse_attention import fuse_attention

    proto = _attention_model((2, 3, 20, 8), (2, 3, 8, 30), (2, 3, 30, 5), (20, 30), scales=scales)
    x = _x(2, 3, 20, 8) * 4
    ops, model = _check(proto, fuse_attention, [x], removed=3 + (2 if scales[1] else 1))
    assert ops == ["AttentionCore"]
    assert model.graph.nodes[0].attributes["scale"] == pytest.approx(scales[0] * (scales[1] or 1), rel=1e-6)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(_run(model, x)[0], session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change", [{"probs_read_twice": True}, {"axis": 2},
                                    {"axis": None, "opset": 11}])  # opset 11's default axis 1 flattens 1..3
def test_attention_core_stays_when_probs_are_shared_or_not_over_the_last_axis(change):
    from onnxpy.passes.fuse_attention import fuse_attention

    _check(_attention_model((2, 3, 4, 6), (2, 3, 6, 4), (2, 3, 4, 5), **change), fuse_attention, [_x(2, 3, 4, 6)])


@pytest.mark.parametrize("axis, opset", [(None, 13), (-1, 11), (3, 11)])
def test_attention_core_fuses_a_last_axis_softmax_at_every_opset(axis, opset):
    from onnxpy.passes.fuse_attention import fuse_attention

    proto, x = _attention_model((2, 3, 4, 6), (2, 3, 6, 4), (2, 3, 4, 5), axis=axis, opset=opset), _x(2, 3, 4, 6)
    ops, model = _check(proto, fuse_attention, [x], removed=2)
    assert ops == ["AttentionCore"]
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(_run(model, x)[0], session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("blocked", [False, True])
def test_attention_core_names_shapes_that_do_not_chain(monkeypatch, blocked):
    """V fed with 7 rows for 6 keys: a typed error naming the fused node, blocked or not."""
    import onnxpy
    from onnxpy.ops import transformer

    if blocked:
        monkeypatch.setattr(transformer, "_SCORES_IN_CACHE", 0)
    nodes = [helper.make_node("MatMul", ["x", "k"], ["s"]), helper.make_node("Softmax", ["s"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [2, 5, 4]),
                                           helper.make_tensor_value_info("v", F, [2, "L", 3])],
                              [helper.make_tensor_value_info("y", F, None)], initializer=[_const("k", _x(2, 4, 6))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = onnxpy.InferenceSession(model.SerializeToString())
    with pytest.raises(onnxpy.capi.onnxruntime_pybind11_state.RuntimeException,
                       match=r"AttentionCore.*attention shapes do not chain: Q \(2, 5, 4\) @ K \(2, 4, 6\) @ V \(2, 7, 3\)"):
        session.run(None, {"x": _x(2, 5, 4), "v": _x(2, 7, 3)})


def _squeeze_excite_model(first, second, bias=True, gate_first=False, dtype=np.float32, c=24, r=6, hw=(7, 9),
                          pooled_output=False, gate_channels=None, weights_input=False, scaled="x", mean_axes=None,
                          opset=17):
    """GlobalAveragePool -> 1x1 Conv -> ``first`` -> 1x1 Conv -> ``second`` -> Mul with ``scaled``
    (activations: a standard op, "SiLU" for x * Sigmoid(x), "Relu6" for Clip(x, 0, 6), or None);
    with ``mean_axes``, a ReduceMean over them keeping them instead of the pool (axes an input from
    opset 18)."""
    code = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    gate_channels = c if gate_channels is None else gate_channels
    inits = [_const("w2", _x(gate_channels, r, 1, 1).astype(dtype)), _const("b2", _x(gate_channels).astype(dtype))]
    if bias:
        inits.append(_const("b1", _x(r).astype(dtype)))
    if not weights_input:
        inits.append(_const("w1", _x(r, c, 1, 1).astype(dtype)))
    if mean_axes is None:
        nodes = [helper.make_node("GlobalAveragePool", ["x"], ["pooled"])]
    elif opset >= 18:
        inits.append(_const("mean_axes", np.array(mean_axes, dtype=np.int64)))
        nodes = [helper.make_node("ReduceMean", ["x", "mean_axes"], ["pooled"])]
    else:
        nodes = [helper.make_node("ReduceMean", ["x"], ["pooled"], axes=mean_axes)]
    nodes.append(helper.make_node("Conv", ["pooled", "w1", "b1"] if bias else ["pooled", "w1"], ["c1"]))
    for name, activation, out in (("c1", first, "h"), ("c2", second, "g")):
        if name == "c2":
            nodes.append(helper.make_node("Conv", ["h", "w2", "b2"], ["c2"]))
        if activation == "SiLU":
            nodes += [helper.make_node("Sigmoid", [name], [name + "s"]),
                      helper.make_node("Mul", [name, name + "s"], [out])]
        elif activation == "Relu6":
            inits += [_const(name + "lo", np.array(0, dtype)), _const(name + "hi", np.array(6, dtype))]
            nodes.append(helper.make_node("Clip", [name, name + "lo", name + "hi"], [out]))
        elif activation:
            nodes.append(helper.make_node(activation, [name], [out]))
        else:
            nodes.append(helper.make_node("Identity", [name], [out]))
    nodes.append(helper.make_node("Mul", ["g", scaled] if gate_first else [scaled, "g"], ["y"]))
    inputs = [helper.make_tensor_value_info("x", code, [2, c, *hw])]
    if weights_input:
        inputs.append(helper.make_tensor_value_info("w1", code, [r, c, 1, 1]))
    if scaled != "x":
        inputs.append(helper.make_tensor_value_info(scaled, code, [2, c, *hw]))
    outputs = [helper.make_tensor_value_info("y", code, None)]
    if pooled_output:
        outputs.append(helper.make_tensor_value_info("pooled", code, None))
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _session_ops(proto, level=None):
    import onnxpy

    options = onnxpy.SessionOptions()
    if level is not None:
        options.graph_optimization_level = level
    session = onnxpy.InferenceSession(proto.SerializeToString(), options)
    return session, [n.op_type for n in session._plan.nodes]


def _feeds(proto, dtype=np.float32):
    return {v.name: (3 * RNG.standard_normal([d.dim_value for d in v.type.tensor_type.shape.dim])).astype(dtype)
            for v in proto.graph.input}


@pytest.mark.skipif(REGISTRY.resolve("ai.onnxpy", "SqueezeExcite", 1) is None, reason="no SqueezeExcite kernel")
@pytest.mark.parametrize("first, second", [("Relu", "HardSigmoid"), ("SiLU", "Sigmoid"), (None, None),
                                           ("LeakyRelu", "Tanh"), ("HardSwish", "Sigmoid"), ("Relu6", "HardSwish")])
@pytest.mark.parametrize("bias, gate_first", [(True, False), (False, True)])
def test_squeeze_excite_fuses(first, second, bias, gate_first):
    _fused_squeeze_excite_matches(_squeeze_excite_model(first, second, bias, gate_first))


def _fused_squeeze_excite_matches(proto):
    """The model runs as one SqueezeExcite node, with onnxruntime's outputs."""
    session, ops = _session_ops(proto)
    assert ops == ["SqueezeExcite"]
    feeds = _feeds(proto)
    expected = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feeds)[0]
    np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(REGISTRY.resolve("ai.onnxpy", "SqueezeExcite", 1) is None, reason="no SqueezeExcite kernel")
def test_squeeze_excite_split_over_threads(monkeypatch):
    # where the product with x splits over the pool's threads, the compiled gate leaves it to them
    import onnxpy
    from onnxpy import parallel

    monkeypatch.setattr(parallel, "_MIN_WORK", 1)
    monkeypatch.setattr(parallel, "_MIN_PIECE", 1)
    proto = _squeeze_excite_model("Relu", "HardSigmoid")
    options = onnxpy.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxpy.InferenceSession(proto.SerializeToString(), options)
    feeds = _feeds(proto)
    expected = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feeds)[0]
    for _ in range(3):  # Python jobs, then compiled regions
        np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(REGISTRY.resolve("ai.onnxpy", "SqueezeExcite", 1) is None, reason="no SqueezeExcite kernel")
def test_squeeze_excite_in_float64():
    # onnxruntime has no float64 Conv: the unfused graph is the reference (its ops checked elsewhere)
    proto = _squeeze_excite_model("SiLU", "HardSigmoid", dtype=np.float64, hw=(14, 14))
    session, ops = _session_ops(proto)
    unfused, unfused_ops = _session_ops(proto, level=0)
    assert ops == ["SqueezeExcite"] and "SqueezeExcite" not in unfused_ops
    feeds = _feeds(proto, np.float64)
    got = session.run(None, feeds)[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, unfused.run(None, feeds)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("change", ["pooled output", "one gate channel", "weights input", "another tensor"])
def test_squeeze_excite_stays(change):
    # the pooled values read elsewhere, a gate broadcast over channels, weights that may change
    # between runs, or the gate applied to another tensor than the pooled one: no fusion
    proto = _squeeze_excite_model("Relu", "Sigmoid", pooled_output=change == "pooled output",
                                  gate_channels=1 if change == "one gate channel" else None,
                                  weights_input=change == "weights input",
                                  scaled="v" if change == "another tensor" else "x")
    session, ops = _session_ops(proto)
    assert "SqueezeExcite" not in ops and "GlobalAveragePool" in ops
    feeds = _feeds(proto)
    expected = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, feeds)
    for got, want in zip(session.run(None, feeds), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(REGISTRY.resolve("ai.onnxpy", "SqueezeExcite", 1) is None, reason="no SqueezeExcite kernel")
@pytest.mark.parametrize("w2_shape", [(6, 4, 1, 1), (8, 4, 3, 3)])  # gates 6 channels of 8; not 1x1
def test_squeeze_excite_names_weights_that_do_not_fit(w2_shape):
    import onnxpy

    nodes = [helper.make_node("SqueezeExcite", ["x", "w1", "", "w2"], ["y"], domain="ai.onnxpy")]
    inits = [_const("w1", _x(4, 8, 1, 1)), _const("w2", _x(*w2_shape))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 8, 3, 3])],
                              [helper.make_tensor_value_info("y", F, None)], initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnxpy", 1)])
    session = onnxpy.InferenceSession(proto.SerializeToString())
    with pytest.raises(onnxpy.RuntimeException, match=r"SqueezeExcite.*" + re.escape(str(w2_shape))):
        session.run(None, {"x": _x(1, 8, 3, 3)})


# 11. Products by a constant matrix, packed once (PackedMatMul)

PACKED = pytest.mark.skipif(not linalg.packing_applies(), reason="the packed tiles need AVX-512 (avx512f)")


@PACKED
@pytest.mark.parametrize("m, k, n", [(1, 5, 3), (12, 64, 32), (13, 300, 33), (25, 513, 70), (200, 700, 100),
                                     (64, 768, 256), (19, 70, 40), (22, 64, 64)])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_matmul_kernel_matches_numpy(m, k, n, bias):
    # partial row tiles (a band's last panel of 1-8 rows in 4-row tail tiles, a whole one, 9-11 rows
    # in a 12-row tile), blocks of the inner dimension and column blocks, with and without a bias
    a, w, b = _x(m, k), _x(k, n), _x(n) if bias else None
    got = linalg.jit().packed_matmul(a, linalg.pack_columns(w), linalg.pack_bias(b, n), n)
    expected = a.astype(np.float64) @ w + (0 if b is None else b)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * math.sqrt(k))


def _ort_session_pair(proto, threads=1):
    import onnxpy

    options = onnxpy.SessionOptions()
    options.intra_op_num_threads = threads
    ours = onnxpy.InferenceSession(proto.SerializeToString(), options)
    theirs = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return ours, theirs


@PACKED
@pytest.mark.parametrize("case", ["matmul", "matmul+add", "gemm transB beta", "gemm (1, N) bias"])
@pytest.mark.parametrize("threads", [1, 2])
def test_pack_weights_rewrites_products_by_constants(monkeypatch, case, threads):
    from onnxpy import parallel
    from onnxpy.passes.pack_weights import pack_weights

    monkeypatch.setattr(parallel, "_MIN_WORK", 1)
    monkeypatch.setattr(parallel, "_MIN_PIECE", 1)
    if case.startswith("matmul"):
        inits = [_const("w", _x(96, 160)), _const("b", _x(160))]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m" if case == "matmul+add" else "y"])]
        nodes += [helper.make_node("Add", ["b", "m"], ["y"])] if case == "matmul+add" else []
        proto, x = _model(nodes, [2, 20, 96], [2, 20, 160], inits), _x(2, 20, 96)
    else:
        transposed = case.startswith("gemm transB")
        inits = [_const("w", _x(160, 96) if transposed else _x(96, 160)),
                 _const("c", _x(160) if transposed else _x(1, 160))]
        nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=int(transposed),
                                  beta=0.5 if transposed else 1.0)]
        proto, x = _model(nodes, [30, 96], [30, 160], inits), _x(30, 96)
    ops, _ = _check(proto, pack_weights, [x], removed=1 if case == "matmul+add" else 0)
    assert ops == ["PackedMatMul"]
    ours, theirs = _ort_session_pair(proto, threads)
    for _ in range(2):  # Python jobs, then compiled regions
        np.testing.assert_allclose(ours.run(None, {"x": x})[0], theirs.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
    # the packed copy replaces the weight: the session keeps no (K, N) or (N, K) matrix
    assert not [v for v in ours._plan.template if isinstance(v, np.ndarray) and v.ndim == 2 and 96 in v.shape]


@PACKED
@pytest.mark.parametrize("activation", [0, RELU, GELU, FAST_GELU])
def test_packed_matmul_kernel_activates_its_tiles(activation):
    # tiles of whole and partial columns, the last of several blocks of the inner dimension
    a, w, b = _x(19, 300), _x(300, 72) / 10, _x(72)
    z = a.astype(np.float64) @ w + b
    expected = {0: z, RELU: np.maximum(z, 0), GELU: 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2))),
                FAST_GELU: 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))}[activation]
    got = linalg.jit().packed_matmul(a, linalg.pack_columns(w), linalg.pack_bias(b, 72), 72, activation)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@PACKED
@pytest.mark.parametrize("case", ["add relu", "gelu", "gelu tanh", "reshape fastgelu", "ms gelu"])
@pytest.mark.parametrize("threads", [1, 2])
def test_pack_weights_folds_the_activation(monkeypatch, case, threads):
    from onnxpy import parallel
    from onnxpy.passes.pack_weights import pack_weights

    monkeypatch.setattr(parallel, "_MIN_WORK", 1)
    monkeypatch.setattr(parallel, "_MIN_PIECE", 1)
    inits = [_const("w", _x(96, 160) / 5), _const("b", _x(160)), _const("shape", np.array([2, 10, 160]))]
    ms = helper.make_opsetid("com.microsoft", 1)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"])]
    if case == "add relu":
        nodes += [helper.make_node("Add", ["m", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    elif case.startswith("gelu"):
        nodes += [helper.make_node("Gelu", ["m"], ["y"], approximate="tanh" if case == "gelu tanh" else "none")]
    elif case == "reshape fastgelu":
        nodes += [helper.make_node("Reshape", ["m", "shape"], ["r"]),
                  helper.make_node("FastGelu", ["r"], ["y"], domain="com.microsoft")]
    else:
        nodes += [helper.make_node("Gelu", ["m"], ["y"], domain="com.microsoft")]
    y_shape = [2, 10, 160] if case == "reshape fastgelu" else [20, 160]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [20, 96])],
                              [helper.make_tensor_value_info("y", F, y_shape)], initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), ms])
    x = _x(20, 96)
    ops, model = _check(proto, pack_weights, [x], removed=len(nodes) - (2 if case == "reshape fastgelu" else 1))
    assert ops == (["PackedMatMul", "Reshape"] if case == "reshape fastgelu" else ["PackedMatMul"])
    assert model.graph.nodes[0].attributes["activation"] == {"add relu": "Relu", "gelu": "Gelu", "ms gelu": "Gelu"}.get(
        case, "FastGelu")
    ours, theirs = _ort_session_pair(proto, threads)
    for _ in range(2):  # Python jobs, then compiled regions
        np.testing.assert_allclose(ours.run(None, {"x": x})[0], theirs.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


@PACKED
def test_pack_weights_leaves_an_activation_whose_input_is_read_again():
    from onnxpy.passes.pack_weights import pack_weights

    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["r"]),
             helper.make_node("Add", ["m", "r"], ["y"])]
    proto = _model(nodes, [20, 96], [20, 160], [_const("w", _x(96, 160))])
    ops, model = _check(proto, pack_weights, [_x(20, 96)], removed=0)
    assert ops == ["PackedMatMul", "Relu", "Add"] and "activation" not in model.graph.nodes[0].attributes


@pytest.mark.parametrize("change", ["two rows", "many rows", "float64", "alpha", "partial columns",
                                    "short inner dimension", "weights are an input"])
def test_pack_weights_leaves_products_that_do_not_repay(change):
    from onnxpy.passes.pack_weights import pack_weights

    rows = {"two rows": 2, "many rows": 200}.get(change, 30)
    k, n = (32 if change == "short inner dimension" else 96), \
        (40 if change == "partial columns" else 160)
    dtype = np.float64 if change == "float64" else np.float32
    kind = TensorProto.DOUBLE if change == "float64" else F
    inits = [] if change == "weights are an input" else [_const("w", _x(k, n).astype(dtype))]
    node = helper.make_node("Gemm", ["x", "w"], ["y"], alpha=2.0 if change == "alpha" else 1.0)
    inputs = [helper.make_tensor_value_info("x", kind, [rows, k])]
    inputs += [helper.make_tensor_value_info("w", kind, [k, n])] if change == "weights are an input" else []
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", kind, [rows, n])],
                              initializer=inits)
    model = loader.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert pack_weights(model, REGISTRY) is False
    assert [n.op_type for n in model.graph.nodes] == ["Gemm"]


def test_packed_matmul_names_packed_inputs_that_do_not_fit():
    a, w = _x(20, 96), _x(96, 160)
    packed, bias = linalg.pack_columns(w), linalg.pack_bias(None, 160)
    with pytest.raises(ValueError, match="W packed for k=96, n=160"):
        linalg.packed_matmul(a, packed[:-1], bias, k=96, n=160)
    with pytest.raises(ValueError, match="bias packed"):
        linalg.packed_matmul(a, packed, bias.astype(np.float64), k=96, n=160)
    with pytest.raises(ValueError, match=r"float32 A of shape \[\.\.\., 96\]"):
        linalg.packed_matmul(_x(20, 95), packed, bias, k=96, n=160)
    with pytest.raises(ValueError, match=r"activation must be one of \['FastGelu', 'Gelu', 'Relu'\], got 'Tanh'"):
        linalg.packed_matmul(a, packed, bias, k=96, n=160, activation="Tanh")


@pytest.mark.skipif(REGISTRY.resolve("ai.onnxpy", "SqueezeExcite", 1) is None, reason="no SqueezeExcite kernel")
@pytest.mark.parametrize("mean_axes, opset", [([2, 3], 17), ([-1, -2], 17), ([2, 3], 18)])
def test_squeeze_excite_fuses_a_spatial_reduce_mean(mean_axes, opset):
    # the dynamo exporter writes the block's pool as a ReduceMean over the spatial axes
    _fused_squeeze_excite_matches(_squeeze_excite_model("Relu", "HardSigmoid", mean_axes=mean_axes, opset=opset))


def test_squeeze_excite_stays_for_a_reduce_mean_over_other_axes():
    _, ops = _session_ops(_squeeze_excite_model("Relu", "HardSigmoid", mean_axes=[3], hw=(1, 9)))
    assert "ReduceMean" in ops and "SqueezeExcite" not in ops


@PACKED
def test_pack_weights_leaves_c_unread_at_beta_zero():
    # Gemm's kernel does not read C when beta is 0: an infinite C must not turn the product into NaN
    from onnxpy.passes.pack_weights import pack_weights

    inits = [_const("w", _x(96, 160)), _const("c", np.full(160, np.inf, dtype=np.float32))]
    proto = _model([helper.make_node("Gemm", ["x", "w", "c"], ["y"], beta=0.0)], [30, 96], [30, 160], inits)
    ops, model = _check(proto, pack_weights, [_x(30, 96)], removed=0)
    assert ops == ["PackedMatMul"] and not np.isinf(model.graph.initializers[model.graph.nodes[0].inputs[2]]).any()
