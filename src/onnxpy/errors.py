"""Exceptions named as onnxruntime names them (``onnxruntime.capi.onnxruntime_pybind11_state``).

Each class also derives from the closest built-in exception so that plain Python code
(``except ValueError``, ``except FileNotFoundError``) works as well.
"""


class OnnxpyError(Exception):
    """Base class of every error onnxpy raises on purpose."""


class Fail(OnnxpyError):
    """A generic failure: the model or the call could not be handled."""


class InvalidArgument(OnnxpyError, ValueError):
    """An argument passed by the caller is wrong: an input name, dtype, shape or option."""


class NoSuchFile(OnnxpyError, FileNotFoundError):
    """A model file or external-data file does not exist."""


class NoModel(OnnxpyError):
    """The bytes or file given are not an ONNX model."""


class InvalidProtobuf(OnnxpyError):
    """The model's protobuf is truncated or corrupt."""


class InvalidGraph(OnnxpyError):
    """The graph is malformed: undefined or duplicate values, cycles, missing opset imports."""


class NotImplemented(OnnxpyError, NotImplementedError):  # noqa: A001 - onnxruntime's name
    """The model needs an operator, version, attribute or type onnxpy does not implement."""


class RuntimeException(OnnxpyError, RuntimeError):
    """A kernel failed while running; the message names the node."""


class EngineError(OnnxpyError):
    """An internal engine error."""


class ModelLoaded(OnnxpyError):
    """Kept for name compatibility with onnxruntime."""


class EPFail(OnnxpyError):
    """Kept for name compatibility with onnxruntime: an execution provider failed."""


__all__ = [
    "OnnxpyError", "Fail", "InvalidArgument", "NoSuchFile", "NoModel", "InvalidProtobuf",
    "InvalidGraph", "NotImplemented", "RuntimeException", "EngineError", "ModelLoaded", "EPFail",
]
