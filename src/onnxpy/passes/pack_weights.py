"""Products by a constant matrix → ``ai.onnxpy::PackedMatMul`` with the matrix packed once, here,
as its kernel's register tiles read it (where that kernel is registered and runs on this CPU).

OpenBLAS packs both operands on every call; with the few rows of a transformer at small batch
(64-128 tokens) packing the weight costs as much as a tenth of the product. onnxruntime's MLAS packs
constant weights when the session is made, and so does this pass. The packed copy replaces the
weight: where nothing else reads it, the original is dropped as soon as it is packed, so the model
holds one copy, as before, and making the session holds one weight more at most. Rewritten, float32 only:

- ``MatMul(A, W)``, W a constant (K, N), A of rank >= 2; with the bias of an ``Add`` that is the
  MatMul's only reader, a constant broadcasting over the last axis (shape ``(N,)``, ``(1, N)`` or
  a scalar), folded in;
- ``Gemm(A, B, C)`` with alpha 1, A not transposed, B a constant (transposed or not), C absent or a
  constant bias over columns as above (times beta; with beta 0, C is not read, as in Gemm's kernel);

each with the activation that is its result's only reader folded in, directly or after a Reshape
(which then reshapes the activated product): Relu, Gelu (exact or tanh) or com.microsoft's Gelu or
FastGelu without a bias (GPT-2's, T5's and BERT's feed-forward layers). The kernel activates each
tile while it is in L1, where the activation node made one more pass over the product in memory.

Left alone where the tiles do not repay: A known to have fewer rows than a tile, or more than
_MAX_ROWS (there OpenBLAS's packing is spread over enough rows, and its kernel runs 5-15% faster at
one thread: 1500 x 384 x 1536 17.3 against 20.0 ms, 197 x 768 x 3072 9.9 against 10.5), an inner
dimension shorter than _MIN_DEPTH, or N with a partial block of columns that would waste more than
an eighth of the work. At 64-128 rows the packed product takes 3.5 ms where OpenBLAS takes 3.9-4.0
(64 x 768 x 3072, one thread).
"""
from __future__ import annotations

import math

import numpy as np

from onnxpy import ir
from onnxpy.ops import linalg
from onnxpy.ops._helpers import PACKED_COLUMNS
from onnxpy.passes._match import MS, ONNXPY, Index, column_bias, import_domain, other_input, rewrite_each
from onnxpy.registry import Registry

_MIN_ROWS = 12  # a tile's rows: fewer run as a matrix-vector product or through BLAS
_MAX_ROWS = 192  # one band of the packed product (PACKED_BAND)
_MIN_DEPTH = 64  # a shorter inner dimension is a thin product, as fast through BLAS


def pack_weights(model: ir.Model, registry: Registry) -> bool:
    if registry.resolve(ONNXPY, "PackedMatMul", 1) is None or not linalg.packing_applies():
        return False
    graph = model.graph

    def rewrite(node: ir.Node, index: Index):
        found = _product(node, index)
        if found is None:
            return None
        a, w, bias, removed = found
        k, n = w.shape
        activation, activated, reshape = _activation(removed[-1].outputs[0], index)
        packed, packed_bias = f"{node.outputs[0]}__packed_weight", f"{node.outputs[0]}__packed_bias"
        graph.initializers[packed] = linalg.pack_columns(w)
        graph.initializers[packed_bias] = linalg.pack_bias(bias, n)
        weight = node.inputs[1]
        if index.private(weight) and weight in graph.initializers:  # (a Constant node's goes with the node)
            del graph.initializers[weight]  # freed now, before the next weight is packed
        import_domain(model, ONNXPY)
        anchor = removed[-1]
        outputs = list(anchor.outputs)
        if activated is not None:
            if reshape is None:
                outputs = list(activated.outputs)
            else:
                reshape.outputs = list(activated.outputs)  # it now reshapes the activated product
            removed = removed + [activated]
        attributes = {"k": k, "n": n, **({"activation": activation} if activation else {})}
        return removed, anchor, ir.Node("PackedMatMul", [a, packed, packed_bias], outputs, attributes, domain=ONNXPY,
                                        name=f"{anchor.name or node.name}/packed")

    return rewrite_each(graph, rewrite)


def _product(node: ir.Node, index: Index) -> tuple[str, np.ndarray, np.ndarray | None, list[ir.Node]] | None:
    """(A, the constant (K, N) matrix, the bias or None, the nodes replaced) of a product to pack."""
    if node.domain or node.op_type not in ("MatMul", "Gemm") or len(node.inputs) < 2:
        return None
    a, b = node.inputs[:2]
    w = index.const(b)
    if w is None or w.ndim != 2 or w.dtype != np.float32 or index.dtype(a) != np.float32:
        return None
    if node.op_type == "MatMul":
        bias, removed = None, [node]
        readers = index.readers.get(node.outputs[0], [])
        add = readers[0] if len(readers) == 1 and index.private(node.outputs[0]) else None
        if add is not None and add.op_type == "Add" and not add.domain:
            bias = _float32(column_bias(index.const(other_input(add, node.outputs[0]) or ""), w.shape[1]))
            if bias is not None:
                removed = [node, add]
    else:
        attrs = node.attributes
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("transA", 0):
            return None
        w = w.T if attrs.get("transB", 0) else w
        beta = attrs.get("beta", 1.0)
        c = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] and beta != 0.0 else None  # (as Gemm's kernel)
        bias = None if c is None else _float32(column_bias(index.const(c), w.shape[1]))
        if c is not None and bias is None:
            return None
        bias = None if bias is None else bias * np.float32(beta)
        removed = [node]
    return (a, w, bias, removed) if _repays(index.shape(a), *w.shape) else None


def _activation(name: str, index: Index) -> tuple[str, ir.Node | None, ir.Node | None]:
    """(The name of the product's activation, its node, the Reshape before it or None) where the
    product ``name``'s only reader is an activation ``PackedMatMul`` applies, or a Reshape whose only
    reader is one; else ("", None, None)."""
    reader = _only_reader(name, index)
    reshape = None
    if reader is not None and reader.op_type == "Reshape" and not reader.domain and reader.inputs[0] == name:
        reshape, reader = reader, _only_reader(reader.outputs[0], index)
    if reader is None or len(reader.inputs) != 1 or len(reader.outputs) != 1:
        return "", None, None
    if not reader.domain and reader.op_type == "Relu":
        activation = "Relu"
    elif not reader.domain and reader.op_type == "Gelu":
        activation = {"none": "Gelu", "tanh": "FastGelu"}.get(reader.attributes.get("approximate", "none"), "")
    elif reader.domain == MS and reader.op_type in ("Gelu", "FastGelu"):
        activation = reader.op_type
    else:
        activation = ""
    return (activation, reader, reshape) if activation else ("", None, None)


def _only_reader(name: str, index: Index) -> ir.Node | None:
    readers = index.readers.get(name, [])
    return readers[0] if len(readers) == 1 and index.private(name) else None


def _float32(bias: np.ndarray | None) -> np.ndarray | None:
    return bias if bias is not None and bias.dtype == np.float32 else None


def _repays(shape: tuple | None, k: int, n: int) -> bool:
    """Whether A of ``shape`` (rank >= 2) times a (K, N) matrix is worth the packed tiles."""
    if shape is None or len(shape) < 2 or k < _MIN_DEPTH:
        return False
    rows = shape[:-1]
    if all(isinstance(d, int) for d in rows) and not _MIN_ROWS <= math.prod(rows) <= _MAX_ROWS:
        return False
    waste = -n % PACKED_COLUMNS
    return 8 * waste <= n
