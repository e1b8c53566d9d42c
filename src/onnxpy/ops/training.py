"""Optimizer steps of the ai.onnx.preview.training domain: Adagrad, Adam and Momentum.

Each node updates n tensors at once: the variadic inputs are n tensors X, then their n gradients,
then each per-tensor state (https://onnx.ai/onnx/operators/onnx_aionnx_preview_training_Adam.html).
"""
from __future__ import annotations

import math

import numpy as np

from onnxpy.ops._helpers import first
from onnxpy.registry import kernel

DOMAIN = "ai.onnx.preview.training"


def _groups(inputs: tuple, count: int, op: str) -> list[tuple[np.ndarray, ...]]:
    """Variadic inputs [X1..Xn, G1..Gn, S1..Sn, ...] as per-tensor tuples (Xi, Gi, Si, ...)."""
    if not inputs or len(inputs) % count:
        raise ValueError(f"{op} expects {count} groups of tensors, got {len(inputs)} inputs")
    n = len(inputs) // count
    return list(zip(*(inputs[k * n:(k + 1) * n] for k in range(count))))


def _scalar(value) -> float:
    return float(first(value))


def _gather(results: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Per-tensor results (Xi_new, Si_new, ...) as outputs [X1_new..Xn_new, S1_new.., ...]."""
    return tuple(out for column in zip(*results) for out in column)


@kernel("Adagrad", since=1, domain=DOMAIN)
def adagrad(r, t, *inputs, decay_factor=0.0, epsilon=1e-6, norm_coefficient=0.0):
    """X_new = X - r / (1 + t * decay) * G' / (sqrt(H + G'^2) + epsilon), G' = G + norm * X."""
    rate = _scalar(r) / (1 + _scalar(t) * decay_factor)
    results = []
    for x, g, h in _groups(inputs, 3, "Adagrad"):
        typed = x.dtype.type
        grad = typed(norm_coefficient) * x + g
        h_new = h + grad * grad
        x_new = x - typed(rate) * grad / (np.sqrt(h_new) + typed(epsilon))
        results.append((x_new.astype(x.dtype), h_new.astype(h.dtype)))
    return _gather(results)


@kernel("Momentum", since=1, domain=DOMAIN)
def momentum(r, t, *inputs, alpha, beta, mode, norm_coefficient):
    """SGD with standard or Nesterov momentum; beta applies from the second step (t > 0) on."""
    if mode not in ("standard", "nesterov"):
        raise ValueError(f"unsupported Momentum mode {mode!r}")
    rate = _scalar(r)
    beta_now = beta if _scalar(t) > 0 else 1.0
    results = []
    for x, g, v in _groups(inputs, 3, "Momentum"):
        typed = x.dtype.type
        grad = typed(norm_coefficient) * x + g
        v_new = typed(alpha) * v + typed(beta_now) * grad
        step = v_new if mode == "standard" else grad + typed(alpha) * v_new
        results.append(((x - typed(rate) * step).astype(x.dtype), v_new.astype(v.dtype)))
    return _gather(results)


@kernel("Adam", since=1, domain=DOMAIN)
def adam(r, t, *inputs, alpha=0.9, beta=0.999, epsilon=1e-6, norm_coefficient=0.0, norm_coefficient_post=0.0):
    """Adam with bias-corrected learning rate for t > 0 and optional post-update weight decay."""
    steps = _scalar(t)
    rate = _scalar(r)
    if steps > 0:
        rate = rate * math.sqrt(1 - beta ** steps) / (1 - alpha ** steps)
    results = []
    for x, g, v, h in _groups(inputs, 4, "Adam"):
        typed = x.dtype.type
        grad = typed(norm_coefficient) * x + g
        v_new = typed(alpha) * v + typed(1 - alpha) * grad
        h_new = typed(beta) * h + typed(1 - beta) * grad * grad
        x_new = x - typed(rate) * v_new / (np.sqrt(h_new) + typed(epsilon))
        results.append(((typed(1 - norm_coefficient_post) * x_new).astype(x.dtype),
                        v_new.astype(v.dtype), h_new.astype(h.dtype)))
    return _gather(results)
