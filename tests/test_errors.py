"""Every bad input raises a typed onnxpy error whose message names the culprit."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxpy as ort
from tests._models import add_relu, two_inputs

X = np.ones((2, 4), dtype=np.float32)


@pytest.fixture(scope="module")
def session():
    return ort.InferenceSession(add_relu().SerializeToString())


def test_unknown_input_name_lists_valid_ones(session):
    with pytest.raises(ort.InvalidArgument, match=r"'nope'.*\['x'\]"):
        session.run(None, {"x": X, "nope": X})


def test_missing_required_input(session):
    with pytest.raises(ort.InvalidArgument, match=r"missing required input.*'x'"):
        session.run(None, {})


def test_wrong_dtype(session):
    with pytest.raises(ort.InvalidArgument, match=r"'x'.*tensor\(double\).*tensor\(float\)"):
        session.run(None, {"x": X.astype(np.float64)})


def test_wrong_rank(session):
    with pytest.raises(ort.InvalidArgument, match=r"'x'.*rank.*got 3.*expected 2"):
        session.run(None, {"x": np.ones((1, 2, 4), np.float32)})


def test_wrong_static_dim(session):
    with pytest.raises(ort.InvalidArgument, match=r"'x'.*axis 1.*got 5.*expected 4"):
        session.run(None, {"x": np.ones((2, 5), np.float32)})


def test_inconsistent_symbolic_dim():
    sess = ort.InferenceSession(two_inputs().SerializeToString())
    with pytest.raises(ort.InvalidArgument, match=r"'N'.*2.*'a'.*3.*'b'"):
        sess.run(None, {"a": np.ones((2, 3), np.float32), "b": np.ones((3, 3), np.float32)})


def test_unknown_output_name(session):
    with pytest.raises(ort.InvalidArgument, match=r"'out'.*\['y'\]"):
        session.run(["out"], {"x": X})


def test_not_an_array(session):
    with pytest.raises(ort.InvalidArgument, match=r"'x'.*numpy array"):
        session.run(None, {"x": [[1.0] * 4]})


def test_feed_not_a_dict(session):
    with pytest.raises(ort.InvalidArgument, match="input_feed must be a dict"):
        session.run(None, [X])


def test_missing_file(tmp_path):
    path = tmp_path / "absent.onnx"
    with pytest.raises(ort.NoSuchFile, match="absent.onnx"):
        ort.InferenceSession(str(path))


def test_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_bytes(b"\xff\xfe this is a text file, not a protobuf \x00\x01")
    with pytest.raises((ort.InvalidProtobuf, ort.NoModel), match="notes.onnx"):
        ort.InferenceSession(str(path))


def test_protobuf_without_graph_is_no_model():
    with pytest.raises(ort.NoModel, match="not an ONNX model"):
        ort.InferenceSession(onnx.ModelProto(producer_name="no graph here").SerializeToString())


def test_truncated_protobuf():
    model = add_relu()
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones(4096, np.float32), "b"))
    data = model.SerializeToString()
    with pytest.raises(ort.InvalidProtobuf, match="truncated or corrupt"):
        ort.InferenceSession(data[: len(data) // 2])


def test_unsupported_ir_version():
    model = add_relu()
    model.ir_version = 2
    with pytest.raises(ort.Fail, match="IR version 2"):
        ort.InferenceSession(model.SerializeToString())


def test_missing_opset_import():
    model = add_relu()
    del model.opset_import[:]
    with pytest.raises(ort.InvalidGraph, match="opset import"):
        ort.InferenceSession(model.SerializeToString())


def test_node_domain_not_imported():
    model = add_relu()
    model.graph.node[1].domain = "com.example"
    with pytest.raises(ort.InvalidGraph, match=r"'relu'.*com.example.*not import"):
        ort.InferenceSession(model.SerializeToString())


def test_undefined_value():
    model = add_relu()
    model.graph.node[1].input[0] = "ghost"
    with pytest.raises(ort.InvalidGraph, match=r"'relu'.*'ghost'"):
        ort.InferenceSession(model.SerializeToString())


def test_duplicate_value_name():
    model = add_relu()
    model.graph.node[1].output[0] = "s"
    model.graph.output[0].name = "s"
    with pytest.raises(ort.InvalidGraph, match=r"'s'.*more than once"):
        ort.InferenceSession(model.SerializeToString())


def test_cycle():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    nodes = [helper.make_node("Add", ["x", "c"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["c"], name="second"),
             helper.make_node("Relu", ["a"], ["y"], name="out")]
    model = helper.make_model(helper.make_graph(nodes, "cyc", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ort.InvalidGraph, match=r"cycle.*'first'.*'second'|cycle.*'second'.*'first'"):
        ort.InferenceSession(model.SerializeToString())


def test_unsupported_operators_are_all_listed_at_creation():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    nodes = [helper.make_node("FrobnicateA", ["x"], ["a"], name="fa", domain="com.example"),
             helper.make_node("FrobnicateB", ["a"], ["y"], name="fb", domain="com.example")]
    model = helper.make_model(helper.make_graph(nodes, "unsup", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 3)])
    with pytest.raises(ort.NotImplemented) as info:
        ort.InferenceSession(model.SerializeToString())
    message = str(info.value)
    for expected in ("com.example::FrobnicateA at opset 3", "'fa'", "com.example::FrobnicateB at opset 3", "'fb'"):
        assert expected in message


def test_unknown_provider_raises_and_unavailable_one_warns():
    with pytest.raises(ort.InvalidArgument, match="NoSuchExecutionProvider"):
        ort.InferenceSession(add_relu().SerializeToString(), providers=["NoSuchExecutionProvider"])
    with pytest.raises(ort.InvalidArgument, match="none of the requested providers"):
        ort.InferenceSession(add_relu().SerializeToString(), providers=["CUDAExecutionProvider"])
    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider"):
        sess = ort.InferenceSession(add_relu().SerializeToString(),
                                    providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]


def test_kernel_failure_names_the_node():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"], name="the_add")], "g", [x, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString())
    with pytest.raises(ort.RuntimeException, match="'the_add'"):
        sess.run(None, {"x": np.ones((2, 3), np.float32), "b": np.ones((4, 5), np.float32)})


def _external_model(tmp_path, location: str, length: int | None = None) -> str:
    model = add_relu()
    tensor = model.graph.initializer[0]
    raw = numpy_helper.to_array(tensor).tobytes()
    (tmp_path / "weights.bin").write_bytes(raw)
    tensor.ClearField("float_data")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": "0", "length": str(length if length is not None else len(raw))}
    for k, v in entries.items():
        tensor.external_data.add(key=k, value=v)
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_external_data_is_read_from_the_model_folder(tmp_path):
    sess = ort.InferenceSession(_external_model(tmp_path, "weights.bin"))
    np.testing.assert_array_equal(sess.run(None, {"x": X})[0], np.maximum(X + [1.0, -1.0, 0.5, -0.5], 0))


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    path = _external_model(inner, "../weights.bin")
    (tmp_path / "weights.bin").write_bytes((inner / "weights.bin").read_bytes())
    with pytest.raises(ort.InvalidGraph, match=r"'b'.*outside the model's folder"):
        ort.InferenceSession(path)


def test_external_data_missing_or_short(tmp_path):
    path = _external_model(tmp_path, "weights.bin")
    os.remove(tmp_path / "weights.bin")
    with pytest.raises(ort.NoSuchFile, match=r"'b'.*weights.bin"):
        ort.InferenceSession(path)
    path = _external_model(tmp_path, "weights.bin", length=64)
    with pytest.raises(ort.InvalidGraph, match=r"'b'.*has 16 bytes"):
        ort.InferenceSession(path)
