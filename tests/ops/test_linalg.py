"""MatMul, Gemm, Einsum and Det at every registered version, against float64 numpy computations
written in the test and onnx.reference; output dtypes checked exactly."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from tests.ops._oracle import check, node_model, run_onnxpy

RNG = np.random.default_rng(1)


@pytest.fixture(autouse=True)
def fresh_rng():
    """The same data for a test whatever runs before it (e.g. under pytest-xdist)."""
    global RNG
    RNG = np.random.default_rng(1)


def rand(shape, dtype=np.float32):
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(0, 5, size=shape).astype(dtype)
    return RNG.normal(size=shape).astype(dtype)


MATMUL_SHAPES = [((3,), (3,)), ((3,), (2, 3, 4)), ((2, 3, 4, 5), (5,)), ((3, 4), (4, 5)), ((2, 3, 4), (4, 6)),
                 ((2, 1, 3, 4), (5, 4, 2)), ((0, 3), (3, 2)), ((2, 0), (0, 3)), ((1, 0, 3), (3, 2))]


@pytest.mark.parametrize("opset", [1, 9, 13])
@pytest.mark.parametrize("a_shape,b_shape", MATMUL_SHAPES)
def test_matmul_shapes(opset, a_shape, b_shape):
    a, b = rand(a_shape), rand(b_shape)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
    check(node_model("MatMul", {"a": a, "b": b}, ["y"], opset=opset), {"a": a, "b": b}, expected=[want], rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float64, np.int32, np.int64, np.uint32,
                                   np.uint64])
def test_matmul_dtypes(dtype):
    a, b = rand((2, 3, 8), dtype), rand((8, 4), dtype)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(dtype)
    check(node_model("MatMul", {"a": a, "b": b}, ["y"], opset=13), {"a": a, "b": b}, expected=[want], rtol=1e-2)


def test_matmul_mismatch_raises():
    feeds = {"a": rand((2, 3)), "b": rand((4, 2))}
    with pytest.raises(Exception):
        run_onnxpy(node_model("MatMul", feeds, ["y"], opset=13), feeds)


def gemm_oracle(a, b, c, alpha=1.0, beta=1.0, transA=0, transB=0):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    y = alpha * (a64.T if transA else a64) @ (b64.T if transB else b64)
    if c is not None:
        y = y + beta * c.astype(np.float64)
    return y.astype(a.dtype)


@pytest.mark.parametrize("opset", [1, 6, 7, 9, 11, 13])
@pytest.mark.parametrize("transA,transB", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, -2.0), (2.0, 0.0)])
def test_gemm_full_bias(opset, transA, transB, alpha, beta):
    a = rand((4, 3) if transA else (3, 4))
    b = rand((5, 4) if transB else (4, 5))
    c = rand((3, 5))
    feeds = {"a": a, "b": b, "c": c}
    model = node_model("Gemm", feeds, ["y"], opset=opset, alpha=alpha, beta=beta, transA=transA, transB=transB)
    check(model, feeds, expected=[gemm_oracle(a, b, c, alpha, beta, transA, transB)])


@pytest.mark.parametrize("opset", [7, 9, 11, 13])
@pytest.mark.parametrize("c_shape", [(), (1,), (5,), (3, 1), (1, 5)])
def test_gemm_bias_broadcasts_from_7(opset, c_shape):
    a, b, c = rand((3, 4)), rand((4, 5)), rand(c_shape)
    feeds = {"a": a, "b": b, "c": c}
    check(node_model("Gemm", feeds, ["y"], opset=opset, beta=0.5), feeds, expected=[gemm_oracle(a, b, c, beta=0.5)])


@pytest.mark.parametrize("opset", [1, 6])
def test_gemm_broadcast_attribute_before_7(opset):
    a, b, c = rand((3, 4)), rand((4, 5)), rand((5,))
    feeds = {"a": a, "b": b, "c": c}
    check(node_model("Gemm", feeds, ["y"], opset=opset, broadcast=1), feeds, expected=[gemm_oracle(a, b, c)])
    with pytest.raises(Exception, match="does not equal"):
        run_onnxpy(node_model("Gemm", feeds, ["y"], opset=opset), feeds)


@pytest.mark.parametrize("opset", [11, 13])
def test_gemm_without_bias(opset):
    a, b = rand((3, 4)), rand((5, 4))
    feeds = {"a": a, "b": b}
    check(node_model("Gemm", feeds, ["y"], opset=opset, transB=1, alpha=3.0), feeds,
          expected=[gemm_oracle(a, b, None, alpha=3.0, transB=1)])


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float64, np.int32, np.int64, np.uint32])
def test_gemm_dtypes(dtype):
    a, b, c = rand((3, 4), dtype), rand((4, 5), dtype), rand((5,), dtype)
    feeds = {"a": a, "b": b, "c": c}
    check(node_model("Gemm", feeds, ["y"], opset=13), feeds, expected=[gemm_oracle(a, b, c)], rtol=1e-2)


def test_gemm_bias_too_large_raises():
    feeds = {"a": rand((3, 4)), "b": rand((4, 5)), "c": rand((2, 3, 5))}
    with pytest.raises(Exception, match="broadcast to"):
        run_onnxpy(node_model("Gemm", feeds, ["y"], opset=13), feeds)


EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ("...ii->...i", [(3, 4, 4)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("i,i", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij, jk , kl -> il", [(2, 3), (3, 4), (4, 5)]),
    ("ii", [(4, 4)]),
    ("", [()]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("bhqk,bhkd->bqhd", [(2, 3, 4, 6), (2, 3, 6, 5)]),
    ("abc,cd->dba", [(2, 3, 4), (4, 5)]),
    ("ij,kj->ikj", [(2, 3), (4, 3)]),
    ("ij,ij", [(2, 3), (2, 3)]),
    ("ab,cd->", [(2, 3), (4, 5)]),
    ("ab,b->a", [(0, 3), (3,)]),
]


@pytest.mark.parametrize("equation,shapes", EINSUM_CASES, ids=[e for e, _ in EINSUM_CASES])
@pytest.mark.parametrize("opset", [12, 28])
def test_einsum(equation, shapes, opset):
    xs = [rand(s) for s in shapes]
    feeds = {f"x{i}": x for i, x in enumerate(xs)}
    want = np.einsum(equation.replace(" ", ""), *[x.astype(np.float64) for x in xs]).astype(np.float32)
    check(node_model("Einsum", feeds, ["y"], opset=opset, equation=equation), feeds, expected=[want], rtol=1e-5)


def test_einsum_implicit_output_sorts_upper_case_first():
    # https://onnx.ai/onnx/operators/onnx__Einsum.html: implicit output labels in ASCII order, "A" < "a"
    a, b = rand((2, 3)), rand((3, 4))
    feeds = {"a": a, "b": b}
    want = np.einsum("bA,AB->Bb", a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
    check(node_model("Einsum", feeds, ["y"], opset=12, equation="bA,AB"), feeds, expected=[want])


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float64, np.int32, np.int64, np.uint8])
def test_einsum_dtypes(dtype):
    a, b = rand((2, 3, 4), dtype), rand((2, 4, 5), dtype)
    feeds = {"a": a, "b": b}
    want = np.einsum("bij,bjk->bik", a.astype(np.float64), b.astype(np.float64)).astype(dtype)
    check(node_model("Einsum", feeds, ["y"], opset=28, equation="bij,bjk->bik"), feeds, expected=[want], rtol=1e-2)


@pytest.mark.parametrize("opset", [11, 22])
@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4), (2, 1, 2, 2), (0, 3, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_det(opset, shape, dtype):
    x = rand(shape, dtype)
    want = np.asarray(np.linalg.det(x.astype(np.float64))).astype(dtype)
    tol = 1e-2 if dtype == np.float16 else 1e-5
    check(node_model("Det", {"x": x}, ["y"], opset=opset), {"x": x}, expected=[want], rtol=tol, atol=tol / 10)


def test_det_non_square_raises():
    with pytest.raises(Exception, match="square"):
        run_onnxpy(node_model("Det", {"x": rand((2, 3))}, ["y"], opset=11), {"x": rand((2, 3))})
