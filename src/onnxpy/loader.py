"""The protobuf edge: ModelProto (from a path, bytes or object) to ``ir.Model`` and back.

This is the only module that touches ONNX protobuf types. External data is resolved inside
the model's folder only; model-local functions and subgraphs are converted recursively.
"""
from __future__ import annotations

import math
import mmap
import os
import sys
from typing import Any, BinaryIO

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from onnxpy import ir
from onnxpy.errors import Fail, InvalidGraph, InvalidProtobuf, NoModel, NoSuchFile

MIN_IR_VERSION = 3


def load(source: Any) -> ir.Model:
    """Load a model from a file path, serialized bytes or an ``onnx.ModelProto``."""
    base_dir = None
    if isinstance(source, onnx.ModelProto):
        proto = source
    elif isinstance(source, (bytes, bytearray, memoryview)):
        proto = _parse(bytes(source), "the bytes given")
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise NoSuchFile(f"model file {path!r} does not exist")
        base_dir = os.path.dirname(os.path.abspath(path))
        with open(path, "rb") as f:  # open while the weights are read from it
            data, weights = _without_weights(f, repr(path))
            proto = _parse(data, repr(path))
            return from_proto(proto, base_dir, owned=True, weights={i: (f, *at) for i, at in weights.items()})
    else:
        raise NoModel(
            f"cannot load a model from a {type(source).__name__}: expected a path, bytes or onnx.ModelProto"
        )
    return from_proto(proto, base_dir, owned=proto is not source)


# Weights are read from the file straight into their arrays: the model is parsed without the
# main graph's large initializer payloads (protobuf field raw_data), whose file offsets are noted
# by walking the wire format. The file's bytes, the parsed message and the arrays are then never
# all in memory at once (a 500 MB model peaked at twice its size), and nothing is copied twice.
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9
_SEPARATE_BYTES = 16 * 512  # payloads above this leave the parsed model (and the light copy)


def _varint(buf, pos: int, what: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise InvalidProtobuf(f"{what} is not a valid ONNX protobuf (truncated or corrupt varint)")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf, start: int, end: int, what: str):
    """``(field, wire type, key start, value start, value end)`` of each field of the message
    ``buf[start:end]``."""
    pos = start
    while pos < end:
        key_start = pos
        key, pos = _varint(buf, pos, what)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value_end = _varint(buf, pos, what)[1]
        elif wire in (1, 5):
            value_end = pos + (8 if wire == 1 else 4)
        elif wire == 2:
            length, pos = _varint(buf, pos, what)
            value_end = pos + length
        else:
            raise InvalidProtobuf(f"{what} is not a valid ONNX protobuf (wire type {wire} in field {field})")
        if value_end > end:
            raise InvalidProtobuf(f"{what} is not a valid ONNX protobuf (truncated or corrupt)")
        yield field, wire, key_start, pos, value_end
        pos = value_end


def _length_delimited(field: int, body: bytes) -> bytes:
    out, n = bytearray(), (field << 3) | 2
    for value in (n, len(body)):
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out) + body


def _without_weights(f, what: str) -> tuple[bytes, dict[int, tuple[int, int]]]:
    """The model file's bytes without the large raw_data of the main graph's initializers, and
    ``{initializer index: (file offset, length)}`` of what was left out."""
    size = os.fstat(f.fileno()).st_size
    if size == 0 or sys.byteorder != "little":
        return f.read(), {}
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        parts, weights, index = [], {}, 0  # index counts on across repeated graph fields, which protobuf merges
        for field, wire, key_start, start, end in _fields(buf, 0, size, what):
            if field != _MODEL_GRAPH or wire != 2:
                parts.append(buf[key_start:end])
                continue
            graph = []
            for g_field, g_wire, g_key, g_start, g_end in _fields(buf, start, end, what):
                if g_field != _GRAPH_INITIALIZER or g_wire != 2:
                    graph.append(buf[g_key:g_end])
                    continue
                kept, payload = [], None
                for t_field, t_wire, t_key, t_start, t_end in _fields(buf, g_start, g_end, what):
                    if t_field == _TENSOR_RAW_DATA and t_wire == 2 and t_end - t_start > _SEPARATE_BYTES:
                        payload = (t_start, t_end - t_start)
                    else:
                        kept.append(buf[t_key:t_end])
                if payload is None:
                    graph.append(buf[g_key:g_end])
                else:
                    weights[index] = payload
                    graph.append(_length_delimited(_GRAPH_INITIALIZER, b"".join(kept)))
                index += 1
            parts.append(_length_delimited(_MODEL_GRAPH, b"".join(graph)))
        return b"".join(parts), weights


def _read_weight(t: TensorProto, f: BinaryIO, offset: int, length: int) -> np.ndarray:
    """Tensor ``t``'s array from the ``length`` raw bytes at ``offset`` in the model file ``f``, read
    straight into the array where numpy has the type's layout (onnx decodes the packed and 8-bit
    float types)."""
    count = math.prod(t.dims)
    dtype = ir.dtype_of(t.data_type) if t.data_type in _PLAIN_TYPES else None
    f.seek(offset)
    if dtype is None or count * dtype.itemsize != length:
        decoded = TensorProto()
        decoded.CopyFrom(t)
        decoded.raw_data = f.read(length)
        return tensor_from_proto(decoded, None)
    array = np.empty(tuple(t.dims), dtype=dtype)
    if f.readinto(memoryview(array.reshape(-1)).cast("B")) != length:
        raise InvalidGraph(f"tensor {t.name!r}: the model file ends inside its data")
    return array


_PLAIN_TYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.INT8,
                          TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8,
                          TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64, TensorProto.BOOL,
                          TensorProto.COMPLEX64, TensorProto.COMPLEX128})


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise InvalidProtobuf(f"{what} is not a valid ONNX protobuf (truncated or corrupt): {e}") from None
    if not proto.HasField("graph") or proto.ir_version == 0:
        raise NoModel(f"{what} is not an ONNX model: it has no graph or no IR version")
    return proto


def from_proto(proto: onnx.ModelProto, base_dir: str | None = None, owned: bool = False,
               weights: dict[int, tuple[BinaryIO, int, int]] | None = None) -> ir.Model:
    """Convert a ModelProto to the IR, resolving external data against ``base_dir``.

    With ``owned`` (the proto was parsed here, nobody else holds it), each initializer's bytes are
    dropped from the proto once converted, so the weights are not held twice. ``weights`` maps
    main-graph initializer indices to ``(open model file, offset, length)`` of the raw data left
    out of the proto."""
    if proto.ir_version < MIN_IR_VERSION:
        raise Fail(
            f"unsupported model IR version {proto.ir_version}: onnxpy runs IR versions "
            f"{MIN_IR_VERSION} to {onnx.IR_VERSION}"
        )
    if not proto.opset_import:
        raise InvalidGraph("the model has no opset import: every model must import the ai.onnx opset")
    typed = _inferred_graph(proto)
    opsets = {_domain(o.domain): o.version for o in proto.opset_import}
    functions = {}
    for f in proto.functions:
        fn = _function(f, base_dir)
        functions[(fn.domain, fn.name)] = fn
    return ir.Model(
        graph=_graph(proto.graph, base_dir, typed, owned, weights or {}),
        opset_imports=opsets,
        ir_version=proto.ir_version,
        producer_name=proto.producer_name,
        producer_version=proto.producer_version,
        domain=proto.domain,
        model_version=proto.model_version,
        doc_string=proto.doc_string,
        metadata_props={p.key: p.value for p in proto.metadata_props},
        functions=functions,
        base_dir=base_dir,
    )


LIGHT_INITIALIZER_ELEMENTS = 512


def _inferred_graph(proto: onnx.ModelProto) -> onnx.GraphProto | None:
    """The graph annotated by onnx's shape inference (value_info, subgraph types), or None where
    inference fails (it is advisory). It runs on a light copy: initializers of more than
    ``LIGHT_INITIALIZER_ELEMENTS`` elements (counted from their dims: ByteSize() would walk the
    data) are declared as typed inputs instead of copied."""
    light = onnx.ModelProto(ir_version=proto.ir_version)
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    g, src = light.graph, proto.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    g.sparse_initializer.extend(src.sparse_initializer)
    declared = {v.name for v in src.input}
    for t in src.initializer:
        if math.prod(t.dims) <= LIGHT_INITIALIZER_ELEMENTS:
            g.initializer.append(t)
        elif t.name not in declared:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    try:
        return onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False).graph
    except Exception:  # noqa: BLE001 - inference is advisory; the planner validates the graph
        return None


def _domain(domain: str) -> str:
    return "" if domain == "ai.onnx" else domain


def type_from_proto(tp: onnx.TypeProto) -> ir.Type | None:
    """Convert a TypeProto; ``None`` when the type is not given."""
    kind = tp.WhichOneof("value")
    if kind == "tensor_type" or kind == "sparse_tensor_type":
        tt = getattr(tp, kind)
        if tt.elem_type == 0:
            return None
        shape = None
        if tt.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
            )
        return ir.TensorType(ir.dtype_of(tt.elem_type), shape)
    if kind == "sequence_type":
        return ir.SequenceType(type_from_proto(tp.sequence_type.elem_type))
    if kind == "map_type":
        return ir.MapType(ir.dtype_of(tp.map_type.key_type), type_from_proto(tp.map_type.value_type))
    if kind == "optional_type":
        return ir.OptionalType(type_from_proto(tp.optional_type.elem_type))
    return None


def _value_info(vi: onnx.ValueInfoProto) -> ir.ValueInfo:
    return ir.ValueInfo(vi.name, type_from_proto(vi.type) if vi.HasField("type") else None, vi.doc_string)


def tensor_from_proto(t: TensorProto, base_dir: str | None) -> np.ndarray:
    """A TensorProto's array, reading external data from inside ``base_dir`` only."""
    if t.data_location == TensorProto.EXTERNAL:
        t = _inline_external_data(t, base_dir)
    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - a malformed tensor is a model error, not ours
        raise InvalidGraph(f"tensor {t.name!r} cannot be decoded: {e}") from None


def _inline_external_data(t: TensorProto, base_dir: str | None) -> TensorProto:
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if base_dir is None:
        raise NoSuchFile(
            f"tensor {t.name!r} stores its data in external file {location!r}, but the model was not "
            "loaded from a path: load it from its file so the data can be found beside it"
        )
    root = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(root, location))
    if not location or os.path.isabs(location) or os.path.commonpath([root, path]) != root:
        raise InvalidGraph(
            f"tensor {t.name!r}: external data location {location!r} is outside the model's folder {root!r}"
        )
    if not os.path.isfile(path):
        raise NoSuchFile(f"tensor {t.name!r}: external data file {path!r} does not exist")
    offset = int(info.get("offset", 0))
    size = os.path.getsize(path)
    length = int(info["length"]) if "length" in info else size - offset
    if offset < 0 or length < 0 or offset + length > size:
        raise InvalidGraph(
            f"tensor {t.name!r}: external data file {path!r} has {size} bytes, but the tensor needs "
            f"bytes {offset} to {offset + length}"
        )
    with open(path, "rb") as f:
        f.seek(offset)
        raw = f.read(length)
    inlined = TensorProto()
    inlined.CopyFrom(t)
    del inlined.external_data[:]
    inlined.data_location = TensorProto.DEFAULT
    inlined.raw_data = raw
    return inlined


def _sparse_to_dense(sp: onnx.SparseTensorProto, base_dir: str | None) -> np.ndarray:
    values = tensor_from_proto(sp.values, base_dir)
    indices = tensor_from_proto(sp.indices, base_dir)
    dense = np.zeros(tuple(sp.dims), dtype=values.dtype)
    if indices.ndim == 1:
        dense.reshape(-1)[indices] = values
    else:
        dense[tuple(indices.T)] = values
    return dense


def _graph(g: onnx.GraphProto, base_dir: str | None, typed: onnx.GraphProto | None = None,
           owned: bool = False, weights: dict[int, tuple[BinaryIO, int, int]] | None = None) -> ir.Graph:
    """Convert a graph; nodes, outputs and value_info come from ``typed`` (the shape-inferred
    copy) when given, inputs and initializers from ``g``."""
    inits = {}
    for i, t in enumerate(g.initializer):
        inits[t.name] = _read_weight(t, *weights[i]) if weights and i in weights else tensor_from_proto(t, base_dir)
        if owned:
            t.ClearField("raw_data")
    for sp in g.sparse_initializer:
        inits[sp.values.name] = _sparse_to_dense(sp, base_dir)
    annotated = typed if typed is not None else g
    return ir.Graph(
        name=g.name,
        inputs=[_value_info(v) for v in g.input],
        outputs=[_value_info(v) for v in annotated.output],
        nodes=[_node(n, base_dir) for n in annotated.node],
        initializers=inits,
        value_info={v.name: _value_info(v) for v in annotated.value_info},
        doc_string=g.doc_string,
    )


def _node(n: onnx.NodeProto, base_dir: str | None) -> ir.Node:
    attrs, refs = {}, {}
    for a in n.attribute:
        if a.ref_attr_name:
            refs[a.name] = a.ref_attr_name
        else:
            attrs[a.name] = attribute_value(a, base_dir)
    return ir.Node(
        op_type=n.op_type, inputs=list(n.input), outputs=list(n.output), attributes=attrs,
        domain=_domain(n.domain), name=n.name, attribute_refs=refs, doc_string=n.doc_string,
    )


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="surrogateescape")


def attribute_value(a: AttributeProto, base_dir: str | None = None) -> Any:
    """The Python value of an attribute: scalars, str, arrays, ir.Graph, ir.Type or lists of them."""
    t = a.type
    if t == AttributeProto.FLOAT:
        return a.f
    if t == AttributeProto.INT:
        return a.i
    if t == AttributeProto.STRING:
        return _text(a.s)
    if t == AttributeProto.TENSOR:
        return tensor_from_proto(a.t, base_dir)
    if t == AttributeProto.SPARSE_TENSOR:
        return _sparse_to_dense(a.sparse_tensor, base_dir)
    if t == AttributeProto.GRAPH:
        return _graph(a.g, base_dir)
    if t == AttributeProto.TYPE_PROTO:
        return type_from_proto(a.tp)
    if t == AttributeProto.FLOATS:
        return list(a.floats)
    if t == AttributeProto.INTS:
        return list(a.ints)
    if t == AttributeProto.STRINGS:
        return [_text(s) for s in a.strings]
    if t == AttributeProto.TENSORS:
        return [tensor_from_proto(x, base_dir) for x in a.tensors]
    if t == AttributeProto.SPARSE_TENSORS:
        return [_sparse_to_dense(x, base_dir) for x in a.sparse_tensors]
    if t == AttributeProto.GRAPHS:
        return [_graph(x, base_dir) for x in a.graphs]
    if t == AttributeProto.TYPE_PROTOS:
        return [type_from_proto(x) for x in a.type_protos]
    raise InvalidGraph(f"attribute {a.name!r} has an undefined type ({t})")


def _function(f: onnx.FunctionProto, base_dir: str | None) -> ir.Function:
    defaults = {a.name: attribute_value(a, base_dir) for a in f.attribute_proto}
    return ir.Function(
        name=f.name,
        domain=_domain(f.domain),
        inputs=list(f.input),
        outputs=list(f.output),
        attributes=list(f.attribute) + list(defaults),
        attribute_defaults=defaults,
        nodes=[_node(n, base_dir) for n in f.node],
        opset_imports={_domain(o.domain): o.version for o in f.opset_import},
    )


def schema_function(node: ir.Node, opset: int, input_types: list[ir.Type | None]) -> ir.Function | None:
    """The function body ``onnx.defs`` gives ``node``'s operator at ``opset``, if any."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return None
    body = None
    if schema.has_function and schema.get_function_with_opset_version(opset) is not None:
        body = schema.get_function_with_opset_version(opset)
    elif schema.has_context_dependent_function and all(t is not None for t in input_types):
        node_bytes = node_to_proto(node).SerializeToString()
        types = [type_to_proto(t).SerializeToString() for t in input_types]
        try:
            body = schema.get_context_dependent_function_with_opset_version(opset, node_bytes, types)
        except Exception:  # noqa: BLE001 - the builder refuses inputs it cannot type; treat as no body
            body = None
    if body is None:
        return None
    fp = onnx.FunctionProto()
    fp.ParseFromString(body) if isinstance(body, bytes) else fp.CopyFrom(body)
    return _function(fp, None)


def type_to_proto(t: ir.Type | None) -> onnx.TypeProto:
    """Convert an IR type back to a TypeProto (an empty one for ``None``)."""
    if t is None:
        return onnx.TypeProto()
    if isinstance(t, ir.TensorType):
        shape = None if t.shape is None else list(t.shape)
        return helper.make_tensor_type_proto(ir.elem_type_of(t.dtype), shape)
    if isinstance(t, ir.SequenceType):
        return helper.make_sequence_type_proto(type_to_proto(t.elem))
    if isinstance(t, ir.MapType):
        return helper.make_map_type_proto(ir.elem_type_of(t.key), type_to_proto(t.value))
    return helper.make_optional_type_proto(type_to_proto(t.elem))


def _value_info_to_proto(v: ir.ValueInfo) -> onnx.ValueInfoProto:
    vi = onnx.ValueInfoProto(name=v.name, doc_string=v.doc_string)
    if v.type is not None:
        vi.type.CopyFrom(type_to_proto(v.type))
    return vi


def _attribute_to_proto(name: str, value: Any) -> AttributeProto:
    if isinstance(value, ir.Graph):
        return helper.make_attribute(name, graph_to_proto(value))
    if isinstance(value, np.ndarray):
        return helper.make_attribute(name, numpy_helper.from_array(value))
    if isinstance(value, (ir.TensorType, ir.SequenceType, ir.MapType, ir.OptionalType)):
        return helper.make_attribute(name, type_to_proto(value))
    if isinstance(value, list) and value and isinstance(value[0], ir.Graph):
        return helper.make_attribute(name, [graph_to_proto(g) for g in value])
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return helper.make_attribute(name, [numpy_helper.from_array(v) for v in value])
    if isinstance(value, str):
        return helper.make_attribute(name, value.encode("utf-8", errors="surrogateescape"))
    if isinstance(value, list) and value and isinstance(value[0], str):
        return helper.make_attribute(name, [v.encode("utf-8", errors="surrogateescape") for v in value])
    return helper.make_attribute(name, value)


def node_to_proto(n: ir.Node) -> onnx.NodeProto:
    proto = helper.make_node(n.op_type, n.inputs, n.outputs, name=n.name or None, domain=n.domain or None)
    for name, value in n.attributes.items():
        proto.attribute.append(_attribute_to_proto(name, value))
    for name, ref in n.attribute_refs.items():
        proto.attribute.append(AttributeProto(name=name, ref_attr_name=ref))
    return proto


def graph_to_proto(g: ir.Graph) -> onnx.GraphProto:
    return helper.make_graph(
        [node_to_proto(n) for n in g.nodes],
        g.name or "graph",
        [_value_info_to_proto(v) for v in g.inputs],
        [_value_info_to_proto(v) for v in g.outputs],
        initializer=[numpy_helper.from_array(a, name) for name, a in g.initializers.items()],
        value_info=[_value_info_to_proto(v) for v in g.value_info.values()],
        doc_string=g.doc_string or None,
    )


def _function_to_proto(f: ir.Function) -> onnx.FunctionProto:
    return helper.make_function(
        f.domain, f.name, f.inputs, f.outputs, [node_to_proto(n) for n in f.nodes],
        [helper.make_opsetid(d, v) for d, v in f.opset_imports.items()],
        attributes=[a for a in f.attributes if a not in f.attribute_defaults],
        attribute_protos=[_attribute_to_proto(k, v) for k, v in f.attribute_defaults.items()],
    )


def _saved_imports(model: ir.Model) -> dict[str, int]:
    """The model's opset imports, raised to cover nodes inlined from a function body at a higher
    opset (``node.opset``), so the saved model checks."""
    imports = dict(model.opset_imports)
    pending = [model.graph]
    while pending:
        graph = pending.pop()
        for node in graph.nodes:
            if node.opset is not None:
                imports[node.domain] = max(imports.get(node.domain, 0), node.opset)
            pending.extend(node.subgraphs())
    return imports


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """Convert the IR back to a ModelProto (used to write ``optimized_model_filepath``)."""
    proto = helper.make_model(
        graph_to_proto(model.graph),
        opset_imports=[helper.make_opsetid(d, v) for d, v in _saved_imports(model).items()],
        functions=[_function_to_proto(f) for f in model.functions.values()],
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        domain=model.domain,
        model_version=model.model_version,
        doc_string=model.doc_string,
    )
    proto.ir_version = model.ir_version
    helper.set_model_props(proto, model.metadata_props)
    return proto


def save(model: ir.Model, path: str) -> None:
    """Write the IR model to ``path`` as an ``.onnx`` file."""
    onnx.save_model(to_proto(model), path)
