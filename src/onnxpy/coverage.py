"""Which operator schema versions onnxpy runs, and how (kernel, inlined function body, missing)."""
from __future__ import annotations

from dataclasses import dataclass

import onnx.defs

from onnxpy.passes import EXPANDED_OPS
from onnxpy.registry import REGISTRY

SCHEMA_DOMAINS = ("", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training")


@dataclass(frozen=True)
class Row:
    domain: str
    op: str
    version: int
    how: str  # "kernel", "function", "expanded" (rewritten by a required pass) or "missing"


def _has_body(schema: onnx.defs.OpSchema, version: int) -> bool:
    if schema.has_function and schema.get_function_with_opset_version(version) is not None:
        return True
    return bool(schema.has_context_dependent_function)


def schema_coverage() -> list[Row]:
    """One row per (domain, op, since_version) of every schema onnx.defs defines."""
    rows = []
    for s in onnx.defs.get_all_schemas_with_history():
        if s.domain not in SCHEMA_DOMAINS:
            continue
        if REGISTRY.resolve(s.domain, s.name, s.since_version) is not None:
            how = "kernel"
        elif (s.domain, s.name) in EXPANDED_OPS:
            how = "expanded"
        elif _has_body(s, s.since_version):
            how = "function"
        else:
            how = "missing"
        rows.append(Row(s.domain, s.name, s.since_version, how))
    return sorted(set(rows), key=lambda r: (r.domain, r.op, r.version))


def contrib_ops() -> list[str]:
    """Operators registered in the com.microsoft domain."""
    return sorted({spec.op_type for spec in REGISTRY if spec.domain == "com.microsoft"})
