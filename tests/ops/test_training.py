"""ai.onnx.preview.training optimizers against onnx.reference and formulas written out here."""
from __future__ import annotations

import numpy as np
import pytest

from tests.ops._oracle import check, node_model, run_reference

DOMAIN = "ai.onnx.preview.training"
RNG = np.random.default_rng(2)


def _tensors(count: int, shapes=((3, 4), (5,))) -> list[np.ndarray]:
    return [RNG.standard_normal(s).astype(np.float32) for _ in range(count) for s in shapes]


def _feeds(r: float, t: int, tensors: list[np.ndarray]) -> dict:
    feeds = {"r": np.array(r, dtype=np.float32), "t": np.array(t, dtype=np.int64)}
    feeds.update((f"in{i}", v) for i, v in enumerate(tensors))
    return feeds


def _model(op, feeds, n_out, **attrs):
    return node_model(op, feeds, [f"out{i}" for i in range(n_out)], opset=1, domain=DOMAIN, **attrs)


@pytest.mark.parametrize("t", [0, 3])
def test_adagrad_multiple_tensors(t):
    x1, x2, g1, g2, h1, h2 = _tensors(3)
    h1, h2 = np.abs(h1), np.abs(h2)
    feeds = _feeds(0.1, t, [x1, x2, g1, g2, h1, h2])
    attrs = dict(decay_factor=0.1, epsilon=1e-5, norm_coefficient=0.01)
    expected = []
    for x, g, h in ((x1, g1, h1), (x2, g2, h2)):
        grad = 0.01 * x + g
        h_new = h + grad * grad
        expected.append(((x - 0.1 / (1 + t * 0.1) * grad / (np.sqrt(h_new) + 1e-5)).astype(np.float32), h_new))
    outs = [e[0] for e in expected] + [e[1] for e in expected]
    check(_model("Adagrad", feeds, 4, **attrs), feeds, expected=outs, rtol=1e-5, atol=1e-6)
    check(_model("Adagrad", feeds, 4, **attrs), feeds, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", [0, 5])
def test_adam_single_and_multiple(t):
    x, g, v, h = _tensors(4, shapes=((6,),))
    h = np.abs(h)
    feeds = _feeds(0.05, t, [x, g, v, h])
    attrs = dict(alpha=0.8, beta=0.95, epsilon=1e-4, norm_coefficient=0.02, norm_coefficient_post=0.1)
    model = _model("Adam", feeds, 3, **attrs)
    # the reference promotes a single tensor's update to float64 for t > 0
    check(model, feeds, expected=[e.astype(np.float32) for e in run_reference(model, feeds)], rtol=1e-5, atol=1e-6)
    tensors = _tensors(4)
    tensors[6:] = [np.abs(a) for a in tensors[6:]]
    feeds = _feeds(0.05, t, tensors)
    check(_model("Adam", feeds, 6), feeds, rtol=1e-5, atol=1e-6)


def test_adam_formula_with_bias_correction():
    x, g, v, h = _tensors(4, shapes=((6,),))
    h = np.abs(h)
    feeds = _feeds(0.05, 2, [x, g, v, h])
    v_new = 0.9 * v + 0.1 * g
    h_new = 0.999 * h + 0.001 * g * g
    rate = 0.05 * np.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2)
    x_new = x - rate * v_new / (np.sqrt(h_new) + 1e-6)
    check(_model("Adam", feeds, 3), feeds, expected=[x_new.astype(np.float32), v_new, h_new], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["standard", "nesterov"])
@pytest.mark.parametrize("t", [0, 1])
def test_momentum(mode, t):
    tensors = _tensors(3)
    feeds = _feeds(0.1, t, tensors)
    attrs = dict(alpha=0.9, beta=0.5, mode=mode, norm_coefficient=0.001)
    check(_model("Momentum", feeds, 4, **attrs), feeds, rtol=1e-5, atol=1e-6)
    x, g, v = tensors[0], tensors[2], tensors[4]
    grad = 0.001 * x + g
    v_new = 0.9 * v + (0.5 if t > 0 else 1.0) * grad
    x_new = x - 0.1 * (v_new if mode == "standard" else grad + 0.9 * v_new)
    single = _feeds(0.1, t, [x, g, v])
    expected = [x_new.astype(np.float32), v_new]
    check(_model("Momentum", single, 2, **attrs), single, expected=expected, rtol=1e-5, atol=1e-6)


def test_float64_tensors_keep_their_dtype():
    x, g, h = (a.astype(np.float64) for a in _tensors(3, shapes=((4,),)))
    feeds = _feeds(0.1, 1, [x, g, np.abs(h)])
    feeds["r"] = feeds["r"].astype(np.float64)
    check(_model("Adagrad", feeds, 2), feeds, rtol=1e-6, atol=1e-7)
