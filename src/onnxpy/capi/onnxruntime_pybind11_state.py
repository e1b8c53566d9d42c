"""The exception classes under the module path onnxruntime scripts catch them from."""
from onnxpy.errors import *  # noqa: F403
from onnxpy.errors import __all__  # noqa: F401
