"""Dropout, every version: inference is the identity with an all-keep mask; training mode (Dropout-12's
training_mode input, or is_test=0 before version 7) zeroes elements with probability ``ratio`` and
scales the rest by 1 / (1 - ratio)."""
from __future__ import annotations

import numpy as np

from onnxpy.registry import kernel


def _dropout(data: np.ndarray, ratio: float, training: bool, seed: int | None, mask_dtype, ctx):
    """(output, mask), or the output alone when the node has no mask output. Training draws
    uniform [0, 1) numbers from numpy's RandomState(seed) and keeps those >= ratio, the generator
    of the ONNX reference and node tests."""
    if not training or ratio == 0:
        return (data, np.ones(data.shape, dtype=mask_dtype)) if ctx.num_outputs > 1 else data
    if not 0 <= ratio < 1:
        raise ValueError(f"Dropout ratio must be in [0, 1), got {ratio}")
    keep = np.random.RandomState(seed).uniform(0.0, 1.0, data.shape) >= ratio
    scale = np.asarray(1 / (1 - ratio), dtype=data.dtype)
    return data * keep.astype(data.dtype) * scale, keep.astype(mask_dtype, copy=False)


@kernel("Dropout", since=12)
def dropout(data, ratio=None, training_mode=None, *, seed=None, ctx):
    """Dropout-12+ (https://onnx.ai/onnx/operators/onnx__Dropout.html): ratio and training_mode are
    optional scalar inputs (0.5 and False by default); the mask is bool."""
    r = 0.5 if ratio is None else float(np.asarray(ratio).reshape(()))
    training = training_mode is not None and bool(np.asarray(training_mode).reshape(()))
    return _dropout(data, r, training, seed, np.bool_, ctx)


@kernel("Dropout", since=10)
def dropout_10(data, *, ratio=0.5, ctx):
    """Dropout-10: inference only, bool mask."""
    return _dropout(data, ratio, False, None, np.bool_, ctx)


@kernel("Dropout", since=7)
def dropout_7(data, *, ratio=0.5, ctx):
    """Dropout-7: inference only; the mask has the data's type."""
    return _dropout(data, ratio, False, None, data.dtype, ctx)


@kernel("Dropout", since=6)
def dropout_6(data, *, is_test=0, ratio=0.5, ctx):
    """Dropout-6: training mode unless is_test is set; the mask has the data's type."""
    return _dropout(data, ratio, not is_test, None, data.dtype, ctx)


@kernel("Dropout", since=1)
def dropout_1(data, *, consumed_inputs=None, is_test=0, ratio=0.5, ctx):
    """Dropout-1: as version 6 (consumed_inputs is a legacy optimization hint)."""
    return _dropout(data, ratio, not is_test, None, data.dtype, ctx)
