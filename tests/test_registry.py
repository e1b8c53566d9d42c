"""The kernel registry against onnx.defs: versions, attribute sets and defaults."""
from __future__ import annotations

import inspect

import numpy as np
import onnx
import onnx.defs
import pytest
from onnx import helper

from onnxpy.registry import REGISTRY

SCHEMA_DOMAINS = {"", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training"}


def _schema_versions(domain: str, op: str) -> list[int]:
    return sorted({s.since_version for s in onnx.defs.get_all_schemas_with_history()
                   if s.domain == domain and s.name == op})


def _served(spec) -> list[int]:
    """Schema versions resolved to this kernel."""
    return [v for v in _schema_versions(spec.domain, spec.op_type)
            if REGISTRY.resolve(spec.domain, spec.op_type, v) is spec]


# onnxruntime's own default-domain versions, which onnx.defs does not know: its LayerNormalization
# (from version 1, before ONNX's 17) and SimplifiedLayerNormalization, both written by its optimizers.
ORT_DEFAULT_DOMAIN = {("", "LayerNormalization", 1), ("", "SimplifiedLayerNormalization", 1)}

SPECS = sorted((s for s in REGISTRY
                if s.domain in SCHEMA_DOMAINS and (s.domain, s.op_type, s.since) not in ORT_DEFAULT_DOMAIN),
               key=lambda s: (s.domain, s.op_type, s.since))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.domain or 'ai.onnx'}:{s.op_type}-{s.since}")
def test_since_is_a_schema_version(spec):
    assert spec.since in _schema_versions(spec.domain, spec.op_type), (
        f"{spec.op_type} registered since {spec.since}, schema versions are {_schema_versions(spec.domain, spec.op_type)}")


def _same(kernel_default, schema_default) -> bool:
    if isinstance(schema_default, bytes):
        schema_default = schema_default.decode()
    if isinstance(schema_default, list) and schema_default and isinstance(schema_default[0], bytes):
        schema_default = [s.decode() for s in schema_default]
    if isinstance(schema_default, float):
        return kernel_default is not None and np.float32(kernel_default) == np.float32(schema_default)
    if isinstance(schema_default, list):
        return list(kernel_default or []) == schema_default
    return kernel_default == schema_default


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.domain or 'ai.onnx'}:{s.op_type}-{s.since}")
def test_attributes_and_defaults_match_every_served_schema(spec):
    params = {p.name: p for p in inspect.signature(spec.fn).parameters.values()
              if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "ctx"}
    for version in _served(spec):
        schema = onnx.defs.get_schema(spec.op_type, version, spec.domain)
        assert set(params) == set(schema.attributes), (
            f"{spec.op_type}-{version}: kernel attributes {sorted(params)} != schema {sorted(schema.attributes)}")
        for name, attr in schema.attributes.items():
            default = params[name].default
            if attr.required:
                assert default is inspect.Parameter.empty, f"{spec.op_type}-{version}.{name} is required"
            elif attr.default_value.type != onnx.AttributeProto.UNDEFINED:
                want = helper.get_attribute_value(attr.default_value)
                assert _same(default, want), f"{spec.op_type}-{version}.{name}: default {default!r} != {want!r}"


def test_attributes_read_from_code_match_the_signature():
    """Every kernel's attributes, required attributes and ctx flag (read from its code object at
    registration) are those its signature declares as keyword-only."""
    for spec in REGISTRY:
        params = [p for p in inspect.signature(spec.fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        names = {p.name for p in params} - {"ctx"}
        assert spec.attributes == names, spec.op_type
        assert spec.required == {p.name for p in params if p.default is inspect.Parameter.empty} - {"ctx"}
        assert spec.wants_ctx == any(p.name == "ctx" for p in params)


def test_kernels_that_are_not_plain_functions_are_read_by_signature():
    import functools

    from onnxpy.registry import Registry

    def base(x, *, alpha=1.0, mode):
        return x

    registry = Registry()
    registry.kernel("A", since=1)(functools.partial(base, mode="m"))
    registry.kernel("B", since=1)(functools.wraps(base)(lambda x, *, beta: x))
    a, b = registry.resolve("", "A", 1), registry.resolve("", "B", 1)
    assert a.attributes == {"alpha", "mode"} and a.required == set()
    assert b.attributes == {"alpha", "mode"} and b.required == {"mode"}  # the signature of what it wraps
