"""onnxpy's own small intermediate representation: values with types, nodes, graphs, models.

Names and the use-def shape follow onnx-ir; only what an executor needs is kept. Nothing here
knows about protobuf: ``loader`` converts to and from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import ml_dtypes

Dim = Union[int, str, None]

# ONNX TensorProto element type -> (numpy dtype, ONNX type name as onnxruntime prints it).
_ELEM_TYPES: dict[int, tuple[Any, str]] = {
    1: (np.float32, "float"), 2: (np.uint8, "uint8"), 3: (np.int8, "int8"),
    4: (np.uint16, "uint16"), 5: (np.int16, "int16"), 6: (np.int32, "int32"),
    7: (np.int64, "int64"), 8: (np.object_, "string"), 9: (np.bool_, "bool"),
    10: (np.float16, "float16"), 11: (np.float64, "double"), 12: (np.uint32, "uint32"),
    13: (np.uint64, "uint64"), 14: (np.complex64, "complex64"), 15: (np.complex128, "complex128"),
    16: (ml_dtypes.bfloat16, "bfloat16"), 17: (ml_dtypes.float8_e4m3fn, "float8e4m3fn"),
    18: (ml_dtypes.float8_e4m3fnuz, "float8e4m3fnuz"), 19: (ml_dtypes.float8_e5m2, "float8e5m2"),
    20: (ml_dtypes.float8_e5m2fnuz, "float8e5m2fnuz"), 21: (ml_dtypes.uint4, "uint4"),
    22: (ml_dtypes.int4, "int4"), 23: (ml_dtypes.float4_e2m1fn, "float4e2m1"),
    24: (ml_dtypes.float8_e8m0fnu, "float8e8m0"), 25: (ml_dtypes.uint2, "uint2"),
    26: (ml_dtypes.int2, "int2"), 27: (ml_dtypes.float6_e2m3fn, "float6e2m3"),
    28: (ml_dtypes.float6_e3m2fn, "float6e3m2"),
}
_DTYPE_TO_ELEM = {np.dtype(dt): code for code, (dt, _) in _ELEM_TYPES.items()}


def dtype_of(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX ``TensorProto.DataType`` code."""
    try:
        return np.dtype(_ELEM_TYPES[elem_type][0])
    except KeyError:
        raise ValueError(f"unknown ONNX element type {elem_type}") from None


def elem_type_of(dtype: Any) -> int:
    """The ONNX element type code of a numpy dtype (``str`` arrays map to string)."""
    dt = np.dtype(dtype)
    if dt.kind == "U":
        return 8
    try:
        return _DTYPE_TO_ELEM[dt]
    except KeyError:
        raise ValueError(f"numpy dtype {dt} has no ONNX element type") from None


def dtype_from_name(name: str) -> np.dtype:
    """The numpy dtype of an ONNX type name such as ``float`` or ``int64``."""
    for dt, onnx_name in _ELEM_TYPES.values():
        if onnx_name == name:
            return np.dtype(dt)
    raise ValueError(f"unknown ONNX type name {name!r}")


def dtype_name(dtype: Any) -> str:
    """ONNX's name of a numpy dtype, e.g. ``float`` for float32."""
    return _ELEM_TYPES[elem_type_of(dtype)][1]


@dataclass(frozen=True)
class TensorType:
    dtype: np.dtype
    shape: tuple[Dim, ...] | None = None  # None: rank unknown

    def __str__(self) -> str:
        return f"tensor({dtype_name(self.dtype)})"


@dataclass(frozen=True)
class SequenceType:
    elem: "Type | None"

    def __str__(self) -> str:
        return f"seq({self.elem})"


@dataclass(frozen=True)
class MapType:
    key: np.dtype
    value: "Type | None"

    def __str__(self) -> str:
        return f"map({dtype_name(self.key)},{self.value})"


@dataclass(frozen=True)
class OptionalType:
    elem: "Type | None"

    def __str__(self) -> str:
        return f"optional({self.elem})"


Type = Union[TensorType, SequenceType, MapType, OptionalType]


@dataclass(eq=False)
class ValueInfo:
    """A named value of a graph's interface (input, output) or an annotation on an inner value."""

    name: str
    type: Type | None = None
    doc_string: str = ""


@dataclass(eq=False)
class Node:
    """One operator call. ``inputs``/``outputs`` are value names; ``""`` marks an omitted one.

    ``attributes`` hold parsed Python values: int, float, str, numpy array, Graph, Type or lists.
    ``attribute_refs`` maps an attribute to the enclosing function's attribute it refers to.
    ``opset`` overrides the graph's opset import for nodes inlined from a function body.
    """

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any] = field(default_factory=dict)
    domain: str = ""
    name: str = ""
    attribute_refs: dict[str, str] = field(default_factory=dict)
    opset: int | None = None
    doc_string: str = ""

    def describe(self) -> str:
        """How error messages name this node."""
        dom = f"{self.domain}." if self.domain else ""
        return f"{dom}{self.op_type} node {self.name!r}" if self.name else f"unnamed {dom}{self.op_type} node"

    def subgraphs(self) -> list["Graph"]:
        """The graphs among the attributes (a list, not a generator: passes ask every node, and most
        have none)."""
        found = []
        for value in self.attributes.values():
            if isinstance(value, Graph):
                found.append(value)
            elif isinstance(value, list) and value and isinstance(value[0], Graph):  # lists are of one kind
                found.extend(value)
        return found


@dataclass(eq=False)
class Graph:
    name: str
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    nodes: list[Node]
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    value_info: dict[str, ValueInfo] = field(default_factory=dict)
    doc_string: str = ""

    def outer_references(self) -> set[str]:
        """Names this graph (and its nested graphs) read but does not define: outer-scope captures."""
        defined = {v.name for v in self.inputs} | set(self.initializers)
        used: set[str] = set()
        for node in self.nodes:
            used.update(n for n in node.inputs if n)
            for sub in node.subgraphs():
                used |= sub.outer_references()
            defined.update(node.outputs)
        used.update(v.name for v in self.outputs)
        return used - defined


@dataclass(eq=False)
class Function:
    """A model-local function (FunctionProto) or an operator schema's function body."""

    name: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attributes: list[str]
    attribute_defaults: dict[str, Any]
    nodes: list[Node]
    opset_imports: dict[str, int]


@dataclass(eq=False)
class Model:
    graph: Graph
    opset_imports: dict[str, int]
    ir_version: int = 8
    producer_name: str = ""
    producer_version: str = ""
    domain: str = ""
    model_version: int = 0
    doc_string: str = ""
    metadata_props: dict[str, str] = field(default_factory=dict)
    functions: dict[tuple[str, str], Function] = field(default_factory=dict)
    base_dir: str | None = None
