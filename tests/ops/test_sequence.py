"""Sequence and optional kernels at every registered version, against onnx.reference,
onnxruntime and hand-written numpy; sequences and optionals fed to and returned from
InferenceSession.run() as lists and None."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.ops._oracle import check, run_onnxpy
from tests.ops.test_control_flow import model, seq_vi, vi

F, I64, I32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32
RNG = np.random.default_rng(3)


def opt_vi(name, inner):
    return helper.make_value_info(name, helper.make_optional_type_proto(inner))


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype, elem", [(np.float32, F), (np.int64, I64), (np.float16, TensorProto.FLOAT16)])
def test_construct_length_and_at(dtype, elem):
    m = model([helper.make_node("SequenceConstruct", ["a", "b", "c"], ["s"]),
               helper.make_node("SequenceLength", ["s"], ["n"]),
               helper.make_node("SequenceAt", ["s", "p"], ["at"])],
              [vi("a", elem, None), vi("b", elem, None), vi("c", elem, None), vi("p", I32, [])],
              [seq_vi("s", elem), vi("n", I64, []), vi("at", elem, None)], 11)
    a, b, c = (rand(2, k).astype(dtype) for k in (1, 2, 3))
    for p in (0, 2, -1, -3):
        check(m, {"a": a, "b": b, "c": c, "p": np.array(p, np.int32)},
              expected=[[a, b, c], np.array(3, np.int64), [a, b, c][p]])


def test_construct_rejects_mixed_types():
    m = model([helper.make_node("SequenceConstruct", ["a", "b"], ["s"])],
              [vi("a", F, None), vi("b", I64, None)], [seq_vi("s")], 11)
    with pytest.raises(Exception, match="share one element type"):
        run_onnxpy(m, {"a": rand(1), "b": np.zeros(1, np.int64)})


def test_sequence_at_out_of_range_fails():
    m = model([helper.make_node("SequenceAt", ["s", "p"], ["y"])], [seq_vi("s"), vi("p", I64, [])], [vi("y")], 11)
    with pytest.raises(Exception, match=r"position 2 is out of range \[-2, 1\]"):
        run_onnxpy(m, {"s": [rand(1), rand(1)], "p": np.array(2, np.int64)})


@pytest.mark.parametrize("position", [None, 0, 1, 3, -1, -3])
def test_insert(position):
    names = ["s", "t"] + ([] if position is None else ["p"])
    m = model([helper.make_node("SequenceInsert", names, ["y"])],
              [seq_vi("s"), vi("t", F, None), vi("p", I64, [])][:len(names)], [seq_vi("y")], 11)
    seq, t = [rand(2), rand(3), rand(1)], rand(4)
    feeds = {"s": seq, "t": t}
    if position is not None:
        feeds["p"] = np.array(position, np.int64)
    want = list(seq)
    want.insert(len(seq) if position is None else position, t)
    check(m, feeds, expected=[want])
    assert len(seq) == 3  # the fed list is not modified


@pytest.mark.parametrize("position", [None, 0, 2, -1, -3])
def test_erase(position):
    names = ["s"] + ([] if position is None else ["p"])
    m = model([helper.make_node("SequenceErase", names, ["y"])], [seq_vi("s"), vi("p", I64, [])][:len(names)],
              [seq_vi("y")], 11)
    seq = [rand(2), rand(3), rand(1)]
    feeds = {"s": seq} if position is None else {"s": seq, "p": np.array(position, np.int64)}
    want = list(seq)
    del want[-1 if position is None else position]
    check(m, feeds, expected=[want])


def test_erase_out_of_range_fails():
    m = model([helper.make_node("SequenceErase", ["s", "p"], ["y"])], [seq_vi("s"), vi("p", I64, [])], [seq_vi("y")])
    with pytest.raises(Exception, match="out of range"):
        run_onnxpy(m, {"s": [rand(1)], "p": np.array(-2, np.int64)})


def test_empty_then_insert_keeps_dtype():
    m = model([helper.make_node("SequenceEmpty", [], ["e"], dtype=I64),
               helper.make_node("SequenceLength", ["e"], ["n0"]),
               helper.make_node("SequenceInsert", ["e", "t"], ["s"])],
              [vi("t", I64, None)], [vi("n0", I64, []), seq_vi("s", I64)], 11)
    t = np.arange(3, dtype=np.int64)
    check(m, {"t": t}, expected=[np.array(0, np.int64), [t]])


@pytest.mark.parametrize("opset", [11, 24])
@pytest.mark.parametrize("split, axis, keepdims", [
    (None, 0, 1), (None, 1, 0), (None, -1, 1), (2, 1, 0), (4, 1, 1), ([1, 3, 1], 1, 1), ([2, 1], 0, 0),
])
def test_split_to_sequence(opset, split, axis, keepdims):
    x = rand(3, 5)
    names = ["x"] + ([] if split is None else ["split"])
    feeds = {"x": x} if split is None else {"x": x, "split": np.array(split, np.int64)}
    m = model([helper.make_node("SplitToSequence", names, ["s"], axis=axis, keepdims=keepdims)],
              [vi("x", F, [3, 5]), vi("split", I64, None)][:len(names)], [seq_vi("s")], opset)
    size = x.shape[axis]
    if split is None:
        want = [np.take(x, [i], axis=axis) for i in range(size)]
        want = want if keepdims else [w.squeeze(axis) for w in want]
    elif np.ndim(split) == 0:
        want = [np.take(x, range(i, min(i + split, size)), axis=axis) for i in range(0, size, split)]
    else:
        edges = np.cumsum([0] + split)
        want = [np.take(x, range(a, b), axis=axis) for a, b in zip(edges[:-1], edges[1:])]
    check(m, feeds, expected=[want])


def test_split_to_sequence_rejects_bad_split():
    m = model([helper.make_node("SplitToSequence", ["x", "split"], ["s"])], [vi("x", F, [4]), vi("split", I64, [2])],
              [seq_vi("s")], 11)
    with pytest.raises(Exception, match="summing to 4"):
        run_onnxpy(m, {"x": rand(4), "split": np.array([1, 2], np.int64)})


@pytest.mark.parametrize("axis, new_axis", [(0, 0), (1, 0), (-1, 0), (0, 1), (2, 1), (-1, 1), (-3, 1)])
def test_concat_from_sequence(axis, new_axis):
    m = model([helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=axis, new_axis=new_axis)],
              [seq_vi("s")], [vi("y")], 11)
    seq = [rand(2, 3) for _ in range(3)]
    want = np.stack(seq, axis=axis) if new_axis else np.concatenate(seq, axis=axis)
    check(m, {"s": seq}, expected=[want])


def test_concat_from_empty_sequence_fails():
    m = model([helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=0)], [seq_vi("s")], [vi("y")], 11)
    with pytest.raises(Exception, match="non-empty sequence"):
        run_onnxpy(m, {"s": []})


def test_sequence_map_with_sequence_and_tensor_inputs_and_two_outputs():
    body = helper.make_graph(
        [helper.make_node("Add", ["a", "t"], ["sum"]), helper.make_node("Shape", ["b"], ["shape"])],
        "body", [vi("a", F, None), vi("b", F, None), vi("t", F, None)], [vi("sum", F, None), vi("shape", I64, None)])
    m = model([helper.make_node("SequenceMap", ["s1", "s2", "t"], ["o1", "o2"], body=body)],
              [seq_vi("s1"), seq_vi("s2"), vi("t", F, [1])], [seq_vi("o1"), seq_vi("o2", I64)], 17)
    s1, s2, t = [rand(2), rand(4)], [rand(1, 2), rand(3)], rand(1)
    check(m, {"s1": s1, "s2": s2, "t": t},
          expected=[[s1[0] + t, s1[1] + t], [np.array([1, 2], np.int64), np.array([3], np.int64)]])
    check(m, {"s1": [], "s2": [], "t": t}, expected=[[], []])


def test_sequence_map_lengths_must_match():
    body = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "body",
                             [vi("a", F, None), vi("b", F, None)], [vi("y", F, None)])
    m = model([helper.make_node("SequenceMap", ["s1", "s2"], ["o"], body=body)], [seq_vi("s1"), seq_vi("s2")],
              [seq_vi("o")], 17)
    with pytest.raises(Exception, match="differ in length"):
        run_onnxpy(m, {"s1": [rand(1)], "s2": [rand(1), rand(1)]})


TENSOR_F = helper.make_tensor_type_proto(F, None)
SEQ_F = helper.make_sequence_type_proto(TENSOR_F)


@pytest.mark.parametrize("opset", [15, 18, 21])
@pytest.mark.parametrize("inner", [TENSOR_F, SEQ_F])
def test_optional_input_fed_or_omitted(opset, inner):
    m = model([helper.make_node("OptionalHasElement", ["o"], ["has"]),
               helper.make_node("Identity", ["o"], ["same"])],
              [opt_vi("o", inner)], [vi("has", TensorProto.BOOL, []), opt_vi("same", inner)], opset)
    value = rand(2) if inner is TENSOR_F else [rand(2), rand(1)]
    check(m, {"o": value}, expected=[np.array(True), value])
    assert run_onnxpy(m, {"o": None}) == [np.array(False), None]
    assert run_onnxpy(m, {}) == [np.array(False), None]


@pytest.mark.parametrize("opset", [15, 18])
def test_optional_construct_and_get(opset):
    m = model([helper.make_node("Optional", ["x"], ["o"]),
               helper.make_node("OptionalGetElement", ["o"], ["y"]),
               helper.make_node("Optional", [], ["empty"], type=TENSOR_F),
               helper.make_node("OptionalHasElement", ["empty"], ["has"])],
              [vi("x", I64, [2])], [vi("y", I64, [2]), vi("has", TensorProto.BOOL, [])], opset)
    x = np.array([4, 5], np.int64)
    check(m, {"x": x}, expected=[x, np.array(False)])


def test_optional_has_element_without_input_and_get_element_of_plain_values():
    m = model([helper.make_node("OptionalHasElement", [""], ["has"]),
               helper.make_node("OptionalHasElement", ["x"], ["has_x"]),
               helper.make_node("OptionalGetElement", ["s"], ["s_out"])],
              [vi("x", F, [1]), seq_vi("s")], [vi("has", TensorProto.BOOL, []), vi("has_x", TensorProto.BOOL, []),
                                              seq_vi("s_out")], 18)
    s = [rand(1)]
    check(m, {"x": rand(1), "s": s}, expected=[np.array(False), np.array(True), s])


def test_optional_get_element_of_empty_fails():
    m = model([helper.make_node("OptionalGetElement", ["o"], ["y"])], [opt_vi("o", TENSOR_F)], [vi("y")], 18)
    with pytest.raises(Exception, match="empty optional"):
        run_onnxpy(m, {"o": None})


def test_optional_without_input_needs_type():
    m = model([helper.make_node("Optional", [], ["o"]), helper.make_node("OptionalHasElement", ["o"], ["h"])],
              [], [vi("h", TensorProto.BOOL, [])], 18)
    with pytest.raises(Exception, match="needs the 'type' attribute"):
        run_onnxpy(m, {})


def test_sequence_feed_is_checked():
    m = model([helper.make_node("SequenceLength", ["s"], ["n"])], [seq_vi("s")], [vi("n", I64, [])], 11)
    with pytest.raises(Exception, match="expects a sequence"):
        run_onnxpy(m, {"s": rand(2)})
    with pytest.raises(Exception, match="wrong data type"):
        run_onnxpy(m, {"s": [np.zeros(1, np.int64)]})
