"""Mirror of ``onnxruntime.capi`` so that ``ort.capi.onnxruntime_pybind11_state.X`` resolves."""
from onnxpy.capi import onnxruntime_pybind11_state

__all__ = ["onnxruntime_pybind11_state"]
