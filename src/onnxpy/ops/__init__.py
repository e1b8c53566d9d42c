"""Kernels, one module per operator family; importing this package registers them all."""
from onnxpy.ops import (  # noqa: F401
    autodiff, contrib, control_flow, conv, elementwise, image, linalg, ml, nn, normalization, pool, quantize, random,
    reduce, rnn, sequence, shape, signal, strings, tensor, training, transformer,
)
