"""Random generators: seeds, dtypes, shapes and sample statistics (values are not comparable
with other runtimes, whose generators differ)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.ops._oracle import node_model, run_onnxpy


def _run(op, inputs=None, opset=22, **attrs):
    inputs = inputs or {}
    return run_onnxpy(node_model(op, inputs, ["y"], opset=opset, **attrs), inputs)[0]


@pytest.mark.parametrize("opset", [1, 22])
@pytest.mark.parametrize("op,attrs", [("RandomNormal", {"mean": 2.0, "scale": 3.0}),
                                      ("RandomUniform", {"low": -1.0, "high": 5.0})])
def test_generators_seed_shape_and_statistics(op, attrs, opset):
    a = _run(op, opset=opset, shape=[200, 300], seed=3.0, **attrs)
    b = _run(op, opset=opset, shape=[200, 300], seed=3.0, **attrs)
    c = _run(op, opset=opset, shape=[200, 300], seed=4.0, **attrs)
    assert a.shape == (200, 300) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(_run(op, opset=opset, shape=[5], **attrs), _run(op, opset=opset, shape=[5], **attrs))
    if op == "RandomNormal":
        assert abs(a.mean() - 2.0) < 0.05 and abs(a.std() - 3.0) < 0.05
    else:
        assert a.min() >= -1.0 and a.max() < 5.0 and abs(a.mean() - 2.0) < 0.05


@pytest.mark.parametrize("dtype,np_dtype", [(10, np.float16), (11, np.float64)])
def test_generator_dtype_attribute(dtype, np_dtype):
    assert _run("RandomNormal", shape=[3, 2], dtype=dtype).dtype == np_dtype
    assert _run("RandomUniform", shape=[3, 2], dtype=dtype).dtype == np_dtype


@pytest.mark.parametrize("op", ["RandomNormalLike", "RandomUniformLike"])
def test_like_generators_take_shape_and_dtype(op):
    x = np.zeros((4, 5), dtype=np.float64)
    y = _run(op, {"x": x}, seed=1.0)
    assert y.shape == (4, 5) and y.dtype == np.float64
    np.testing.assert_array_equal(y, _run(op, {"x": x}, seed=1.0))
    assert _run(op, {"x": x}, opset=1, dtype=1).dtype == np.float32


def test_random_uniform_like_of_int_input_needs_float_dtype():
    x = np.zeros((2,), dtype=np.int64)
    assert _run("RandomUniformLike", {"x": x}, dtype=10).dtype == np.float16
    with pytest.raises(Exception, match="dtype"):
        _run("RandomUniformLike", {"x": x}, dtype=7)


@pytest.mark.parametrize("opset", [15, 22])
def test_bernoulli(opset):
    p = np.tile(np.array([0.0, 1.0, 0.3], dtype=np.float32), (20000, 1))
    y = _run("Bernoulli", {"p": p}, opset=opset, seed=5.0)
    assert y.dtype == np.float32 and y.shape == p.shape
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert (y[:, 0] == 0).all() and (y[:, 1] == 1).all() and abs(y[:, 2].mean() - 0.3) < 0.02
    np.testing.assert_array_equal(y, _run("Bernoulli", {"p": p}, opset=opset, seed=5.0))
    assert _run("Bernoulli", {"p": p[:3]}, opset=opset, dtype=9).dtype == np.bool_
    assert _run("Bernoulli", {"p": p[:3].astype(np.float64)}, opset=opset).dtype == np.float64


@pytest.mark.parametrize("opset", [7, 22])
def test_multinomial(opset):
    logits = np.log(np.array([[0.2, 0.5, 0.3, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=np.float32))
    y = _run("Multinomial", {"x": logits}, opset=opset, sample_size=30000, seed=2.0)
    assert y.shape == (2, 30000) and y.dtype == np.int32  # dtype defaults to int32
    freq = np.bincount(y[0], minlength=4) / 30000
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3, 0.0], atol=0.02)
    assert (y[1] == 0).all()
    np.testing.assert_array_equal(y, _run("Multinomial", {"x": logits}, opset=opset, sample_size=30000, seed=2.0))
    assert _run("Multinomial", {"x": logits}, opset=opset, dtype=7).dtype == np.int64
