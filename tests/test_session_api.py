"""The onnxruntime-compatible surface, compared with onnxruntime itself."""
from __future__ import annotations

import json
import threading

import numpy as np
import onnx
import onnxruntime
import pytest

import onnxpy as ort
from tests._models import add_relu, two_inputs


def _both(model: onnx.ModelProto):
    data = model.SerializeToString()
    return ort.InferenceSession(data), onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])


def _args(args):
    return [(a.name, a.type, a.shape) for a in args]


def test_inputs_outputs_and_metadata_match_onnxruntime():
    model = add_relu()
    model.doc_string = "a doc"
    model.model_version = 7
    onnx.helper.set_model_props(model, {"author": "tests"})
    ours, theirs = _both(model)
    assert _args(ours.get_inputs()) == _args(theirs.get_inputs())
    assert _args(ours.get_outputs()) == _args(theirs.get_outputs())
    assert _args(ours.get_overridable_initializers()) == _args(theirs.get_overridable_initializers())
    a, b = ours.get_modelmeta(), theirs.get_modelmeta()
    for field in ("producer_name", "graph_name", "domain", "description", "graph_description", "version",
                  "custom_metadata_map"):
        assert getattr(a, field) == getattr(b, field), field


def test_overridable_initializer_matches_onnxruntime():
    model = add_relu()
    model.graph.input.append(onnx.helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [4]))
    ours, theirs = _both(model)
    assert _args(ours.get_overridable_initializers()) == _args(theirs.get_overridable_initializers())
    assert _args(ours.get_inputs()) == _args(theirs.get_inputs())
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    b = np.full(4, 2.0, np.float32)
    np.testing.assert_allclose(ours.run(None, {"x": x, "b": b})[0], theirs.run(None, {"x": x, "b": b})[0])
    np.testing.assert_allclose(ours.run(None, {"x": x})[0], theirs.run(None, {"x": x})[0])


def test_run_matches_onnxruntime_and_output_selection():
    ours, theirs = _both(two_inputs())
    rng = np.random.default_rng(1)
    feeds = {"a": rng.standard_normal((5, 3)).astype(np.float32), "b": rng.standard_normal((5, 3)).astype(np.float32)}
    for names in (None, [], ["z"]):
        np.testing.assert_array_equal(ours.run(names, feeds)[0], theirs.run(names, feeds)[0])


def test_inputs_are_not_mutated_and_read_only_inputs_work():
    sess = ort.InferenceSession(add_relu().SerializeToString())
    x = np.arange(8, dtype=np.float32).reshape(2, 4) - 4
    before = x.copy()
    x.setflags(write=False)
    (y,) = sess.run(None, {"x": x})
    np.testing.assert_array_equal(x, before)
    assert y.flags.writeable and not np.shares_memory(x, y)


def test_identity_output_does_not_alias_the_input():
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "id",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])]),
        opset_imports=[onnx.helper.make_opsetid("", 17)])
    x = np.ones(2, np.float32)
    (y,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    y[0] = 5
    assert x[0] == 1


def test_many_threads_match_serial_results():
    sess = ort.InferenceSession(add_relu().SerializeToString())
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((i + 1, 4)).astype(np.float32) for i in range(8)]
    serial = [sess.run(None, {"x": x})[0] for x in inputs]
    results: list = [None] * 8
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(50):
            results[i] = sess.run(None, {"x": inputs[i]})[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial):
        np.testing.assert_array_equal(got, want)


def test_session_options_and_providers():
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(add_relu().SerializeToString(), so, providers=["CPUExecutionProvider"])
    assert sess.get_session_options() is so
    assert sess.get_providers() == ["CPUExecutionProvider"] == ort.get_available_providers()
    assert sess.get_provider_options() == {"CPUExecutionProvider": {}}
    assert ort.get_device() == "CPU"
    assert isinstance(ort.__version__, str)
    x = np.ones((1, 4), np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], [[2.0, 0.0, 1.5, 0.5]])
    sess.set_providers(["CPUExecutionProvider"])
    assert {k: int(v) for k, v in ort.GraphOptimizationLevel.__members__.items()} == {
        k: int(v) for k, v in onnxruntime.GraphOptimizationLevel.__members__.items()}


def test_optimized_model_filepath_writes_a_valid_model(tmp_path):
    path = tmp_path / "optimized.onnx"
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(path)
    ort.InferenceSession(add_relu().SerializeToString(), so)
    saved = onnx.load(str(path))
    onnx.checker.check_model(saved)
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    want = onnxruntime.InferenceSession(add_relu().SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got[0], want[0])


def test_profiling_writes_a_chrome_trace(tmp_path):
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "prof_")
    sess = ort.InferenceSession(add_relu().SerializeToString(), so)
    sess.run(None, {"x": np.ones((2, 4), np.float32)})
    path = sess.end_profiling()
    events = json.load(open(path))
    assert {e["args"]["op_name"] for e in events} == {"Add", "Relu"}
    assert all(e["ph"] == "X" and e["dur"] >= 0 for e in events)


def test_capi_exception_path_matches_onnxruntime():
    from onnxpy.capi.onnxruntime_pybind11_state import InvalidArgument

    sess = ort.InferenceSession(add_relu().SerializeToString())
    with pytest.raises(InvalidArgument):
        sess.run(None, {"x": np.ones((2, 4), np.float64)})


def test_sequence_outputs_do_not_alias_the_inputs():
    seq = onnx.helper.make_tensor_sequence_value_info("s", onnx.TensorProto.FLOAT, None)
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("SequenceConstruct", ["x", "x"], ["s"])], "seq",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])], [seq]),
        opset_imports=[onnx.helper.make_opsetid("", 17)])
    x = np.ones(2, np.float32)
    ours = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    theirs = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert isinstance(ours, list) and len(ours) == len(theirs) == 2
    ours[0][0] = 7
    assert x[0] == 1


def test_optimized_model_with_fused_contrib_op_runs_in_onnxruntime(tmp_path):
    """A GELU written out at opset 14 is fused into com.microsoft::Gelu; the saved model imports
    that domain and onnxruntime runs it with the same result."""
    h = onnx.helper
    consts = {"sqrt2": np.sqrt(2.0), "one": 1.0, "half": 0.5}
    nodes = [h.make_node("Div", ["x", "sqrt2"], ["a"]), h.make_node("Erf", ["a"], ["e"]),
             h.make_node("Add", ["e", "one"], ["c"]), h.make_node("Mul", ["x", "c"], ["m"]),
             h.make_node("Mul", ["m", "half"], ["y"])]
    graph = h.make_graph(nodes, "gelu", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 8])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 8])],
                         initializer=[onnx.numpy_helper.from_array(np.array(v, np.float32), k) for k, v in consts.items()])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 14)])
    path = tmp_path / "fused.onnx"
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(path)
    x = np.random.default_rng(4).standard_normal((3, 8)).astype(np.float32)
    ours = ort.InferenceSession(model.SerializeToString(), so).run(None, {"x": x})[0]
    saved = onnx.load(str(path))
    assert [(n.domain, n.op_type) for n in saved.graph.node] == [("com.microsoft", "Gelu")]
    theirs = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
