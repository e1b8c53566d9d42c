"""Graph passes, grouped by optimization level.

A pass is a function ``(model, registry) -> bool`` that rewrites ``model`` in place and says
whether it changed anything. The required passes run at every level; the optional ones run
repeatedly, up to a cap, until none changes the model.
"""
from __future__ import annotations

from typing import Callable

from onnxpy import ir
from onnxpy.passes.constant_folding import fold_constants
from onnxpy.passes.cse import eliminate_common_subexpressions
from onnxpy.passes.dead_code import eliminate_dead_code
from onnxpy.passes.fuse_activation import fuse_conv_activation
from onnxpy.passes.fuse_attention import fuse_attention
from onnxpy.passes.fuse_conv_bn import fuse_conv_batchnorm
from onnxpy.passes.fuse_gelu import fuse_gelu
from onnxpy.passes.fuse_layernorm import fuse_layer_normalization
from onnxpy.passes.fuse_matmul_add import fuse_matmul_add
from onnxpy.passes.fuse_squeeze_excite import fuse_squeeze_excite
from onnxpy.passes.fuse_swish import fuse_swish
from onnxpy.passes.gradient import TRAINING, expand_gradients
from onnxpy.passes.identity import eliminate_identities
from onnxpy.passes.inline_functions import inline_functions
from onnxpy.passes.pack_weights import pack_weights
from onnxpy.passes.shape_folding import fold_shape_subgraphs
from onnxpy.passes.transpose_reshape import cancel_transposes_reshapes
from onnxpy.registry import Registry

Pass = Callable[[ir.Model, Registry], bool]

ORT_DISABLE_ALL, ORT_ENABLE_BASIC, ORT_ENABLE_EXTENDED, ORT_ENABLE_LAYOUT, ORT_ENABLE_ALL = 0, 1, 2, 3, 99

REQUIRED: tuple[Pass, ...] = (inline_functions, expand_gradients)
# Operators that a required pass rewrites into others instead of a kernel running them.
EXPANDED_OPS = frozenset({(TRAINING, "Gradient")})
BY_LEVEL: dict[int, tuple[Pass, ...]] = {
    ORT_ENABLE_BASIC: (eliminate_identities, fold_constants, fold_shape_subgraphs, eliminate_common_subexpressions,
                       cancel_transposes_reshapes, eliminate_dead_code),
    ORT_ENABLE_EXTENDED: (fuse_conv_batchnorm, fuse_matmul_add, fuse_layer_normalization, fuse_gelu, fuse_swish,
                          fuse_conv_activation, fuse_squeeze_excite, fuse_attention),
    ORT_ENABLE_LAYOUT: (pack_weights,),
    ORT_ENABLE_ALL: (),
}
MAX_ROUNDS = 8


def passes_for(level: int) -> tuple[Pass, ...]:
    """The optional passes enabled at ``level`` (levels are cumulative)."""
    return tuple(p for lvl, group in sorted(BY_LEVEL.items()) if lvl <= level for p in group)


def run_passes(model: ir.Model, level: int, registry: Registry) -> ir.Model:
    """Apply the required passes, then the level's passes to a fixpoint (capped)."""
    for p in REQUIRED:
        p(model, registry)
    optional = passes_for(level)
    for _ in range(MAX_ROUNDS):
        changed = False
        for p in optional:
            changed |= p(model, registry)
        if not changed:
            break
    return model
