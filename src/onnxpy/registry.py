"""The kernel registry: ``(domain, op_type, since_version)`` to a plain function.

Kernels take ONNX inputs positionally (an omitted optional input arrives as ``None``) and
attributes as keyword-only parameters named and defaulted as in the spec. A kernel that needs
more (the number of requested outputs, the node, its opset) declares a keyword-only ``ctx``.
"""
from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from typing import Any, Callable

from onnxpy import ir


@dataclass(frozen=True)
class KernelSpec:
    fn: Callable[..., Any]
    op_type: str
    domain: str
    since: int
    attributes: frozenset[str]       # keyword-only parameters the kernel accepts
    required: frozenset[str]         # keyword-only parameters without a default
    wants_ctx: bool


@dataclass(frozen=True)
class KernelContext:
    """What a kernel that declares ``ctx`` receives, fixed when the plan is built."""

    node: ir.Node
    opset: int
    num_outputs: int
    output_types: tuple[ir.Type | None, ...]
    input_types: tuple[ir.Type | None, ...]
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def memo(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()``'s result, computed once per node of a plan (derived from attributes, which
        do not change between runs); concurrent first runs may both build, with equal results."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]


class Registry:
    """Kernels by ``(domain, op_type)``, each with its ``since`` versions."""

    def __init__(self) -> None:
        self._kernels: dict[tuple[str, str], dict[int, KernelSpec]] = {}
        self._frozen = False

    def kernel(self, op_type: str, since: int, domain: str = "") -> Callable[[Callable], Callable]:
        """Decorator registering ``fn`` for ``op_type`` from opset ``since`` on."""
        domain = "" if domain == "ai.onnx" else domain

        def register(fn: Callable) -> Callable:
            if self._frozen:
                raise RuntimeError("the kernel registry is frozen: register custom ops on a copy()")
            versions = self._kernels.setdefault((domain, op_type), {})
            if since in versions:
                raise ValueError(f"kernel {domain or 'ai.onnx'}::{op_type} since {since} registered twice")
            versions[since] = _spec(fn, op_type, domain, since)
            return fn

        return register

    def freeze(self) -> None:
        self._frozen = True

    def copy(self) -> "Registry":
        """An unfrozen copy, e.g. to add a session's custom ops."""
        other = Registry()
        other._kernels = {k: dict(v) for k, v in self._kernels.items()}
        return other

    def resolve(self, domain: str, op_type: str, opset: int) -> KernelSpec | None:
        """The kernel with the greatest ``since <= opset``, or ``None``."""
        versions = self._kernels.get((domain, op_type))
        if not versions:
            return None
        best = max((s for s in versions if s <= opset), default=None)
        return None if best is None else versions[best]

    def versions(self, domain: str, op_type: str) -> list[int]:
        return sorted(self._kernels.get((domain, op_type), {}))

    def __iter__(self):
        for versions in self._kernels.values():
            yield from versions.values()


def _spec(fn: Callable, op_type: str, domain: str, since: int) -> KernelSpec:
    kwonly, defaults = _keyword_only(fn)
    wants_ctx = "ctx" in kwonly
    attributes = frozenset(kwonly) - {"ctx"}
    return KernelSpec(
        fn=fn, op_type=op_type, domain=domain, since=since,
        attributes=attributes, required=attributes - defaults, wants_ctx=wants_ctx,
    )


def _keyword_only(fn: Callable) -> tuple[tuple[str, ...], frozenset[str]]:
    """fn's keyword-only parameters and those of them with defaults: read from a plain function's
    code object (inspect.signature, for ~400 kernels, was a quarter of the package's import time)."""
    if not isinstance(fn, types.FunctionType) or hasattr(fn, "__wrapped__"):
        params = inspect.signature(fn).parameters.values()
        kwonly = {p.name: p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        return tuple(kwonly), frozenset(n for n, p in kwonly.items() if p.default is not inspect.Parameter.empty)
    code = fn.__code__
    names = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
    return names, frozenset(fn.__kwdefaults__ or ())


REGISTRY = Registry()
kernel = REGISTRY.kernel
