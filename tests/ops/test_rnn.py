"""RNN, GRU and LSTM at every registered version against onnxruntime (float32 and float16) and
onnx.reference (float64): directions, layouts, sequence_lens, initial states, peepholes, clip,
activations with alpha/beta, linear_before_reset and input_forget. Versions onnxruntime does not
run (before 7) are compared with onnxruntime's result for the same node at opset 7."""
from __future__ import annotations

import numpy as np
import onnx.defs
import pytest
from onnx import helper

from tests.ops._oracle import check, run_onnxpy, run_onnxruntime

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
SEQ, BATCH, INPUT, HIDDEN = 4, 3, 2, 5


def versions(op: str) -> list[int]:
    schemas = onnx.defs.get_all_schemas_with_history()
    return sorted({s.since_version for s in schemas if s.domain == "" and s.name == op})


def case(op, opset, *, direction="forward", layout=0, bias=True, lens=None, initial=False, peepholes=False,
         dtype=np.float32, seed=0, **attrs):
    """A one-node model and its feeds; optional inputs left out are passed as ""."""
    rng = np.random.default_rng(seed)
    nd = 2 if direction == "bidirectional" else 1
    g = GATES[op]

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.7).astype(dtype)

    x_shape = (BATCH, SEQ, INPUT) if layout else (SEQ, BATCH, INPUT)
    state_shape = (BATCH, nd, HIDDEN) if layout else (nd, BATCH, HIDDEN)
    feeds = {"X": rand(*x_shape), "W": rand(nd, g * HIDDEN, INPUT), "R": rand(nd, g * HIDDEN, HIDDEN)}
    if bias:
        feeds["B"] = rand(nd, 2 * g * HIDDEN)
    if lens is not None:
        feeds["sequence_lens"] = np.array(lens, np.int32)
    if initial:
        feeds["initial_h"] = rand(*state_shape)
        if op == "LSTM":
            feeds["initial_c"] = rand(*state_shape)
    if peepholes:
        feeds["P"] = rand(nd, 3 * HIDDEN)
    order = ["X", "W", "R", "B", "sequence_lens", "initial_h"] + (["initial_c", "P"] if op == "LSTM" else [])
    names = [n if n in feeds else "" for n in order]
    while not names[-1]:
        names.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    if opset >= 14:
        attrs["layout"] = layout
    if direction != "forward":
        attrs["direction"] = direction
    node = helper.make_node(op, names, outputs, hidden_size=HIDDEN, **attrs)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for n, v in feeds.items()]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(o, elem, None) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 21 else 10
    return model, feeds


DIRECTIONS = ["forward", "reverse", "bidirectional"]


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("lens, initial", [(None, False), ([4, 1, 3], True), ([2, 4, 0], False)])
def test_directions_lengths_initial_states(op, direction, lens, initial):
    for opset in (14, 22):
        model, feeds = case(op, opset, direction=direction, lens=lens, initial=initial, peepholes=op == "LSTM")
        check(model, feeds, oracle="onnxruntime", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_batch_major_layout(op, direction):
    """onnxruntime's CPU kernels refuse layout=1: compare with its layout=0 result, transposed."""
    model, feeds = case(op, 14, direction=direction, layout=1, lens=[4, 1, 3], initial=True)
    seq_major = {k: v.transpose(1, 0, 2) if k in ("X", "initial_h", "initial_c") else v for k, v in feeds.items()}
    y, *states = run_onnxruntime(case(op, 14, direction=direction, lens=[4, 1, 3], initial=True)[0], seq_major)
    check(model, feeds, expected=[y.transpose(2, 0, 1, 3), *(s.transpose(1, 0, 2) for s in states)],
          rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_every_version(op):
    for opset in versions(op):
        model, feeds = case(op, opset, direction="bidirectional", lens=[3, 4, 2], initial=True, seed=opset)
        if opset >= 7:
            check(model, feeds, oracle="onnxruntime", rtol=1e-4, atol=1e-5)
            continue
        # Before 7 the node also had output_sequence (GRU-1: direction defaulting to "foward").
        expected = run_onnxruntime(*case(op, 7, direction="bidirectional", lens=[3, 4, 2], initial=True, seed=opset))
        check(model, feeds, expected=expected, rtol=1e-4, atol=1e-5)
        check(case(op, opset, output_sequence=1, seed=opset)[0], case(op, 7, seed=opset)[1],
              expected=run_onnxruntime(*case(op, 7, seed=opset)), rtol=1e-4, atol=1e-5)


ACTIVATIONS_PER_DIRECTION = {"RNN": 1, "GRU": 2, "LSTM": 3}
ACTIVATIONS = {
    "RNN": [(["LeakyRelu"], [0.2], []), (["HardSigmoid", "Affine"], [0.3, 0.7], [0.4, 0.1]),
            (["ThresholdedRelu"], [0.1], []), (["Elu", "Softsign"], [], [])],
    "GRU": [(["HardSigmoid", "ScaledTanh"], [0.3, 0.8], [0.4, 1.2]), (["Sigmoid", "Relu"], [], []),
            (["HardSigmoid", "Softplus", "Sigmoid", "LeakyRelu"], [], [])],
    "LSTM": [(["HardSigmoid", "Tanh", "Softsign"], [0.25], [0.45]),
             (["Sigmoid", "Elu", "Affine", "HardSigmoid", "Tanh", "ScaledTanh"], [0.9, 0.5, 0.2, 0.6],
              [0.1, 0.3, 0.7])],
}


@pytest.mark.parametrize("op, activations", [(op, a) for op, acts in ACTIVATIONS.items() for a in acts])
def test_activations_with_alpha_beta(op, activations):
    names, alphas, betas = activations
    direction = "bidirectional" if len(names) == 2 * ACTIVATIONS_PER_DIRECTION[op] else "forward"
    attrs = {"activations": names}
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    model, feeds = case(op, 14, direction=direction, initial=True, **attrs)
    check(model, feeds, oracle="onnxruntime", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_clip(op):
    model, feeds = case(op, 14, direction="bidirectional", clip=0.3, lens=[4, 2, 3], peepholes=op == "LSTM")
    check(model, feeds, oracle="onnxruntime", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("linear_before_reset", [0, 1])
@pytest.mark.parametrize("opset", [3, 7, 14])
def test_gru_linear_before_reset(opset, linear_before_reset):
    model, feeds = case("GRU", opset, direction="reverse", initial=True, linear_before_reset=linear_before_reset)
    if opset >= 7:
        check(model, feeds, oracle="onnxruntime", rtol=1e-4, atol=1e-5)
    else:
        oracle = case("GRU", 7, direction="reverse", initial=True, linear_before_reset=linear_before_reset)
        check(model, feeds, expected=run_onnxruntime(*oracle), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [7, 14, 22])
def test_lstm_input_forget_and_peepholes(opset):
    model, feeds = case("LSTM", opset, direction="bidirectional", initial=True, peepholes=True, input_forget=1,
                        lens=[1, 4, 3])
    check(model, feeds, oracle="onnxruntime", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_without_bias_and_only_some_outputs(op):
    model, feeds = case(op, 14, bias=False)
    del model.graph.output[0]
    model.graph.node[0].output[0] = ""
    check(model, feeds, oracle="onnxruntime", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_float16_keeps_its_dtype(op):
    model, feeds = case(op, 14, direction="bidirectional", initial=True, dtype=np.float16)
    check(model, feeds, oracle="onnxruntime", rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_float64_against_reference(op):
    model, feeds = case(op, 14, initial=True, dtype=np.float64)
    check(model, feeds, oracle="reference", rtol=1e-10, atol=1e-12)


def test_wrong_weight_shape_fails():
    model, feeds = case("GRU", 14)
    feeds["W"] = feeds["W"][:, :-1]
    model.graph.input[1].type.tensor_type.shape.dim[1].dim_value -= 1
    with pytest.raises(Exception, match="do not fit direction"):
        run_onnxpy(model, feeds)


def test_unknown_activation_fails():
    model, feeds = case("RNN", 14, activations=["Gelu"])
    with pytest.raises(Exception, match="unknown activation 'Gelu'"):
        run_onnxpy(model, feeds)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_empty_sequence_returns_the_initial_state(op):
    model, feeds = case(op, 14, direction="bidirectional", initial=True)
    feeds["X"] = feeds["X"][:0]
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    states = [feeds["initial_h"]] + ([feeds["initial_c"]] if op == "LSTM" else [])
    check(model, feeds, expected=[np.zeros((0, 2, BATCH, HIDDEN), np.float32), *states])
