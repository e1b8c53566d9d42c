"""Shared helpers for per-family op tests: build a one-node model, run it with onnxpy at both
optimization levels, and compare with an independent oracle (onnx.reference or onnxruntime)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper

import onnxpy

LEVELS = (onnxpy.GraphOptimizationLevel.ORT_DISABLE_ALL, onnxpy.GraphOptimizationLevel.ORT_ENABLE_ALL)


def tensor_info(name: str, value: Any) -> onnx.ValueInfoProto:
    arr = np.asarray(value)
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape)


def node_model(op_type: str, inputs: dict[str, Any], outputs: Sequence[str], *, opset: int,
               domain: str = "", initializers: dict[str, Any] | None = None,
               output_types: dict[str, int] | None = None, **attrs: Any) -> onnx.ModelProto:
    """A model of one node. ``inputs`` maps names to example values ("" for an omitted input)."""
    initializers = initializers or {}
    names = list(inputs) + list(initializers)
    node = helper.make_node(op_type, names, list(outputs), domain=domain or None, **attrs)
    graph_inputs = [tensor_info(n, v) for n, v in inputs.items() if n]
    inits = [onnx.numpy_helper.from_array(np.asarray(v), n) for n, v in initializers.items()]
    output_types = output_types or {}
    graph_outputs = [helper.make_tensor_value_info(o, output_types.get(o, 0), None) for o in outputs if o]
    graph = helper.make_graph([node], "g", graph_inputs, graph_outputs, initializer=inits)
    imports = [helper.make_opsetid("", opset if not domain else 18)]
    if domain:
        imports.append(helper.make_opsetid(domain, opset))
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8 if opset < 21 else 10
    return model


def run_onnxpy(model: onnx.ModelProto, feeds: dict[str, Any], level=LEVELS[-1]) -> list[Any]:
    options = onnxpy.SessionOptions()
    options.graph_optimization_level = level
    return onnxpy.InferenceSession(model.SerializeToString(), options).run(None, feeds)


def run_reference(model: onnx.ModelProto, feeds: dict[str, Any]) -> list[Any]:
    from onnx.reference import ReferenceEvaluator

    return list(ReferenceEvaluator(model).run(None, feeds))


def run_onnxruntime(model: onnx.ModelProto, feeds: dict[str, Any]) -> list[Any]:
    import onnxruntime

    so = onnxruntime.SessionOptions()
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def assert_close(actual: Sequence[Any], expected: Sequence[Any], rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Same count, shapes and dtypes; values within tolerance (exact for ints, bools, strings)."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        if isinstance(e, list):
            assert isinstance(a, list) and len(a) == len(e)
            assert_close(a, e, rtol, atol)
            continue
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype, f"dtype {a.dtype} != expected {e.dtype}"
        assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape}"
        if e.dtype.kind in "fc" or e.dtype.name in ("bfloat16", "float16") or "float" in e.dtype.name:
            np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(a, e)


def check(model: onnx.ModelProto, feeds: dict[str, Any], oracle: str = "reference",
          expected: Sequence[Any] | None = None, rtol: float = 1e-5, atol: float = 1e-6) -> list[Any]:
    """Run with onnxpy at every level and compare with ``expected`` or the named oracle."""
    if expected is None:
        expected = run_reference(model, feeds) if oracle == "reference" else run_onnxruntime(model, feeds)
    result = None
    for level in LEVELS:
        result = run_onnxpy(model, feeds, level)
        assert_close(result, expected, rtol, atol)
    return result
