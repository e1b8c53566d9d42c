"""Element-wise math, comparison, logic and activations, with multidirectional broadcasting."""
from __future__ import annotations

import numpy as np

from onnxpy.registry import kernel


@kernel("Add", since=7)
def add(a, b):
    return np.add(a, b)


@kernel("Relu", since=6)
def relu(x):
    return np.maximum(x, x.dtype.type(0))
