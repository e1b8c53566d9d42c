"""``onnx.backend.base.Backend`` over onnxpy, for the official ONNX backend test suite."""
from __future__ import annotations

from typing import Any, Sequence

import onnx
from onnx.backend.base import Backend, BackendRep

from onnxpy.session import GraphOptimizationLevel, InferenceSession, SessionOptions


class OnnxpyBackendRep(BackendRep):
    def __init__(self, session: InferenceSession, input_names: list[str]) -> None:
        self.session = session
        self.input_names = input_names

    def run(self, inputs: Any, **kwargs: Any) -> list[Any]:
        if isinstance(inputs, dict):
            feeds = inputs
        else:
            seq = inputs if isinstance(inputs, (list, tuple)) else [inputs]
            feeds = dict(zip(self.input_names, seq))
        return self.session.run(None, feeds)


class OnnxpyBackend(Backend):
    """The backend at a given optimization level (subclass and set ``level``)."""

    level = GraphOptimizationLevel.ORT_ENABLE_ALL

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return True

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> OnnxpyBackendRep:
        options = SessionOptions()
        options.graph_optimization_level = cls.level
        session = InferenceSession(model, options)
        names = [a.name for a in session.get_inputs() + session.get_overridable_initializers()]
        return OnnxpyBackendRep(session, names)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> list[Any]:
        return cls.prepare(model, device).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[Any], device: str = "CPU",
                 outputs_info: Any = None, **kwargs: Any) -> list[Any]:
        raise NotImplementedError("onnxpy runs whole models; use prepare() or run_model()")


class DisableAllBackend(OnnxpyBackend):
    level = GraphOptimizationLevel.ORT_DISABLE_ALL


prepare = OnnxpyBackend.prepare
run_model = OnnxpyBackend.run_model
supports_device = OnnxpyBackend.supports_device
