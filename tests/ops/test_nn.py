"""Dropout at every registered version: inference against onnxruntime and the identity, training
against numpy's RandomState(seed) draws (the ONNX node tests' convention) or, unseeded, the
invariants of inverted dropout."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from tests.ops._oracle import check, node_model, run_onnxpy

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("opset", [12, 13, 22])
@pytest.mark.parametrize("with_ratio", [False, True])
def test_dropout_inference_onnxruntime(opset, with_ratio):
    x = rand(3, 4, 5)
    feeds = {"x": x, "r": np.array(0.3, np.float32)} if with_ratio else {"x": x}
    model = node_model("Dropout", feeds, ["y", "mask"], opset=opset, seed=1,
                       output_types={"y": TensorProto.FLOAT, "mask": TensorProto.BOOL})
    check(model, feeds, oracle="onnxruntime")


@pytest.mark.parametrize("opset", [12, 22])
@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.75])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_dropout_training_seeded(opset, ratio, dtype):
    x = rand(4, 6, dtype=dtype)
    feeds = {"x": x, "r": np.array(ratio, np.float32), "t": np.array(True)}
    keep = np.random.RandomState(7).uniform(0, 1, x.shape) >= ratio
    want = (x.astype(np.float64) * keep / (1 - ratio)).astype(dtype)
    model = node_model("Dropout", feeds, ["y", "mask"], opset=opset, seed=7)
    tol = 1e-3 if dtype == np.float16 else 1e-6
    check(model, feeds, expected=[want, keep], rtol=tol, atol=tol)


def test_dropout_training_mode_false_is_identity():
    x = rand(5, 5)
    feeds = {"x": x, "r": np.array(0.9, np.float32), "t": np.array(False)}
    check(node_model("Dropout", feeds, ["y", "mask"], opset=13), feeds, expected=[x, np.ones(x.shape, bool)])


def test_dropout_training_unseeded():
    x = np.ones((200, 50), np.float32)
    feeds = {"x": x, "r": np.array(0.5, np.float32), "t": np.array(True)}
    y, mask = run_onnxpy(node_model("Dropout", feeds, ["y", "mask"], opset=13), feeds)
    assert mask.dtype == np.bool_ and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.where(mask, np.float32(2), np.float32(0)))
    assert 0.4 < mask.mean() < 0.6


def test_dropout_bad_ratio():
    feeds = {"x": rand(2, 2), "r": np.array(1.0, np.float32), "t": np.array(True)}
    with pytest.raises(Exception, match="ratio"):
        run_onnxpy(node_model("Dropout", feeds, ["y"], opset=13), feeds)


def test_dropout_10_bool_mask():
    """The mask marks kept elements, all of them in inference (as Dropout-12's node tests expect);
    onnxruntime's Dropout-10 kernel writes an all-False mask instead."""
    x = rand(3, 4)
    model = node_model("Dropout", {"x": x}, ["y", "mask"], opset=10, ratio=0.2)
    check(model, {"x": x}, expected=[x, np.ones(x.shape, bool)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_7_mask_has_data_type(dtype):
    """Dropout-7's mask output has type T; in inference nothing is dropped: all ones."""
    x = rand(3, 4, dtype=dtype)
    model = node_model("Dropout", {"x": x}, ["y", "mask"], opset=7, ratio=0.2)
    check(model, {"x": x}, expected=[x, np.ones(x.shape, dtype)])


@pytest.mark.parametrize("opset,attrs", [(1, {"consumed_inputs": [0]}), (6, {})])
def test_dropout_old_is_test(opset, attrs):
    """Before version 7, is_test=1 is the identity; the default is_test=0 is training mode."""
    x = rand(40, 50)
    model = node_model("Dropout", {"x": x}, ["y", "mask"], opset=opset, is_test=1, **attrs)
    check(model, {"x": x}, expected=[x, np.ones(x.shape, np.float32)])
    y, mask = run_onnxpy(node_model("Dropout", {"x": x}, ["y", "mask"], opset=opset, ratio=0.25, **attrs), {"x": x})
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_allclose(y, x * mask / np.float32(0.75), rtol=1e-6)
    assert 0.6 < mask.mean() < 0.9
