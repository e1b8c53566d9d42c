"""onnxpy: an ONNX runtime in Python with onnxruntime's API.

``import onnxpy as ort`` works where ``import onnxruntime as ort`` did.
"""
from onnxpy import capi, ops  # noqa: F401 - ops registers every kernel
from onnxpy.errors import (  # noqa: F401
    EngineError, EPFail, Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, ModelLoaded, NoModel,
    NoSuchFile, NotImplemented, OnnxpyError, RuntimeException,
)
from onnxpy.registry import REGISTRY
from onnxpy.session import (  # noqa: F401
    ExecutionMode, GraphOptimizationLevel, InferenceSession, ModelMetadata, NodeArg, RunOptions, SessionOptions,
    get_all_providers, get_available_providers, get_device,
)

__version__ = "0.1.0"

REGISTRY.freeze()
