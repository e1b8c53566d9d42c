"""Internal kernels (domain ``onnxpy.autodiff``) that the Gradient expansion pass emits."""
from __future__ import annotations

import numpy as np

from onnxpy.registry import kernel

DOMAIN = "onnxpy.autodiff"


@kernel("FillLike", since=1, domain=DOMAIN)
def fill_like(x, *, value):
    """An array of ``x``'s shape and dtype filled with ``value`` (the seed and zero gradients)."""
    return np.full(np.shape(x), value, dtype=x.dtype)


@kernel("UnbroadcastLike", since=1, domain=DOMAIN)
def unbroadcast_like(grad, x):
    """Sum ``grad`` over the axes along which ``x`` was broadcast, giving ``x``'s shape."""
    extra = grad.ndim - x.ndim
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(x.shape) if n == 1 and grad.shape[i + extra] != 1)
    summed = grad.sum(axis=axes, keepdims=True) if axes else grad
    return np.asarray(summed.reshape(x.shape), dtype=x.dtype)


@kernel("SwapLastAxes", since=1, domain=DOMAIN)
def swap_last_axes(x):
    return np.swapaxes(x, -1, -2)


@kernel("ReluGrad", since=1, domain=DOMAIN)
def relu_grad(grad, x):
    return np.where(x > 0, grad, np.zeros((), grad.dtype))


@kernel("SigmoidGrad", since=1, domain=DOMAIN)
def sigmoid_grad(grad, y):
    """``grad * y * (1 - y)`` with ``y = sigmoid(x)``."""
    return grad * y * (y.dtype.type(1) - y)


@kernel("TanhGrad", since=1, domain=DOMAIN)
def tanh_grad(grad, y):
    """``grad * (1 - y^2)`` with ``y = tanh(x)``."""
    return grad * (y.dtype.type(1) - y * y)

