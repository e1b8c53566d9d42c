"""Linear algebra: MatMul, Gemm, Einsum and Det."""
from __future__ import annotations

import functools
import math

import numpy as np

from onnxpy import parallel
from onnxpy.ops._helpers import JIT_FLOATS, PACKED_COLUMNS, PACKED_DEPTH, PRODUCT_ACTIVATIONS, jit, widen
from onnxpy.registry import kernel


def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``parallel.matmul(a, b)``; one row times a matrix (a classifier at batch 1), float32 or
    float64, as a compiled matrix-vector product split over the pool's threads where that pays."""
    if (a.ndim == 2 and b.ndim == 2 and a.shape[0] == 1 and a.dtype == b.dtype and a.dtype in JIT_FLOATS
            and (b.flags.c_contiguous or b.T.flags.c_contiguous) and parallel.threads() > 1):
        y = jit().matrix_vector(a[0], b)
        if y is not None:
            return y[None]
    return parallel.matmul(a, b)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy-semantics matmul; a stack of matrices times one matrix runs as one BLAS call."""
    if a.ndim > 2 and b.ndim == 2:
        rows = a.reshape(math.prod(a.shape[:-1]), a.shape[-1])
        return parallel.matmul(rows, b).reshape(*a.shape[:-1], b.shape[-1])
    return product(a, b)


@kernel("MatMul", since=1)
def matmul(A, B):
    """Matrix product with numpy.matmul semantics (batch broadcasting, 1-D promotion)."""
    if A.ndim == 0 or B.ndim == 0:
        raise ValueError(f"MatMul inputs must have rank >= 1, got shapes {A.shape} and {B.shape}")
    return np.asarray(_matmul(widen(A), widen(B))).astype(A.dtype, copy=False)


def _gemm(A, B, C, alpha: float, beta: float, transA: int, transB: int, c_broadcasts: bool) -> np.ndarray:
    """``alpha * A' @ B' + beta * C``; ``C`` must broadcast to (M, N), or equal it when not
    ``c_broadcasts``."""
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"Gemm inputs A and B must be 2-D, got shapes {A.shape} and {B.shape}")
    a = widen(A).T if transA else widen(A)
    b = widen(B).T if transB else widen(B)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"Gemm inner dimensions differ: A' is {a.shape}, B' is {b.shape}")
    y = product(a, b)
    if alpha != 1.0:
        y *= y.dtype.type(alpha)
    if C is not None and beta != 0.0:
        result_shape = y.shape
        c_shape = np.broadcast_shapes(C.shape, result_shape) if c_broadcasts else C.shape
        if c_shape != result_shape:
            raise ValueError(f"Gemm input C of shape {C.shape} does not "
                             f"{'broadcast to' if c_broadcasts else 'equal'} the result shape {result_shape}")
        c = widen(C)
        y += c if beta == 1.0 else c * c.dtype.type(beta)
    return y.astype(A.dtype, copy=False)


@functools.lru_cache(maxsize=1)
def packing_applies() -> bool:
    """Whether ``PackedMatMul`` runs here: its tiles are sized for AVX-512's 32 vector registers
    (with fewer, they would spill), so on an x86 Linux host whose CPU reports avx512f."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


def pack_columns(w: np.ndarray) -> np.ndarray:
    """A (K, N) matrix as ``PackedMatMul`` reads it, flat: for each block of PACKED_DEPTH of K, each
    block of PACKED_COLUMNS columns row by row (columns past N as zeros). One pass over w."""
    k, n = w.shape
    blocks, whole = -(-n // PACKED_COLUMNS), n // PACKED_COLUMNS * PACKED_COLUMNS
    packed = np.empty(k * blocks * PACKED_COLUMNS, dtype=np.float32)
    for k0 in range(0, k, PACKED_DEPTH):
        rows = w[k0:k0 + PACKED_DEPTH]
        depth = rows.shape[0]
        block = packed[k0 * blocks * PACKED_COLUMNS:(k0 + depth) * blocks * PACKED_COLUMNS].reshape(
            blocks, depth, PACKED_COLUMNS)
        block[:whole // PACKED_COLUMNS] = rows[:, :whole].reshape(depth, -1, PACKED_COLUMNS).transpose(1, 0, 2)
        if whole < n:
            block[-1, :, :n - whole] = rows[:, whole:]
            block[-1, :, n - whole:] = 0
    return packed


def pack_bias(bias: np.ndarray | None, n: int) -> np.ndarray:
    """A bias broadcast over N columns (or none: zeros), padded to whole blocks of PACKED_COLUMNS."""
    padded = np.zeros(-(-n // PACKED_COLUMNS) * PACKED_COLUMNS, dtype=np.float32)
    if bias is not None:
        padded[:n] = np.broadcast_to(bias.reshape(-1), (n,))
    return padded


@kernel("PackedMatMul", since=1, domain="ai.onnxpy")
def packed_matmul(A, W, bias, *, k, n, activation=""):
    """``A @ w + bias`` for float32 A (..., K) and a constant w (K, N), given as ``W =
    pack_columns(w)`` and ``bias = pack_bias(b, N)`` (the ``pack_weights`` pass), then the
    ``activation`` (none, or a name of ``PRODUCT_ACTIVATIONS``: Relu, Gelu, FastGelu) applied to
    each tile as it is finished; the product runs on compiled register tiles over the packed
    columns, where OpenBLAS would pack w on every call."""
    if activation and activation not in PRODUCT_ACTIVATIONS:
        raise ValueError(f"PackedMatMul's activation must be one of {sorted(PRODUCT_ACTIVATIONS)}, got {activation!r}")
    if A.dtype != np.float32 or A.ndim < 2 or A.shape[-1] != k:
        raise ValueError(f"PackedMatMul expects float32 A of shape [..., {k}], got {A.dtype} {A.shape}")
    columns = -(-n // PACKED_COLUMNS) * PACKED_COLUMNS
    for name, value, size in (("W", W, k * columns), ("bias", bias, columns)):
        if value.dtype != np.float32 or value.shape != (size,):
            raise ValueError(f"PackedMatMul expects {name} packed for k={k}, n={n}: float32 of shape ({size},), "
                             f"got {value.dtype} {value.shape}")
    rows = A.reshape(-1, k)
    code = PRODUCT_ACTIVATIONS[activation] if activation else 0
    return jit().packed_matmul(rows, W, bias, n, code).reshape(*A.shape[:-1], n)


@kernel("Gemm", since=1)
def gemm_1(A, B, C, *, alpha=1.0, beta=1.0, broadcast=0, transA=0, transB=0):
    """Opsets 1-6: C broadcasts to (M, N) only when ``broadcast`` is set."""
    return _gemm(A, B, C, alpha, beta, transA, transB, c_broadcasts=bool(broadcast))


@kernel("Gemm", since=7)
def gemm(A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    """Opset 7+: C broadcasts unidirectionally to (M, N); optional from opset 11."""
    return _gemm(A, B, C, alpha, beta, transA, transB, c_broadcasts=True)


def _pair_as_matmul(equation: str, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """A two-operand einsum as one batched matmul over (batch, free-in-a, contracted,
    free-in-b) labels; ``None`` where it is not one (ellipsis, repeated labels, labels summed
    within one operand, size-1 broadcasting), for numpy.einsum to handle."""
    lhs, arrow, out = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != 2 or "." in equation:
        return None
    ta, tb = terms
    labels = ta + tb
    if not arrow:
        out = "".join(sorted(c for c in set(labels) if labels.count(c) == 1))
    if (len(set(ta)) != len(ta) or len(set(tb)) != len(tb) or len(set(out)) != len(out)
            or len(ta) != a.ndim or len(tb) != b.ndim or not set(out) <= set(labels)
            or any(c not in out for c in set(ta) ^ set(tb))):
        return None
    size = dict(zip(ta, a.shape))
    if any(size.setdefault(c, n) != n for c, n in zip(tb, b.shape)):
        return None
    batch = [c for c in out if c in ta and c in tb]
    free_a = [c for c in out if c not in tb]
    free_b = [c for c in out if c not in ta]
    contract = [c for c in ta if c in tb and c not in out]

    def matrices(x, term, rows, cols):
        x = x.transpose([term.index(c) for c in batch + rows + cols])
        return x.reshape(math.prod(size[c] for c in batch), math.prod(size[c] for c in rows),
                         math.prod(size[c] for c in cols))

    y = np.matmul(matrices(a, ta, free_a, contract), matrices(b, tb, contract, free_b))
    order = batch + free_a + free_b
    return y.reshape([size[c] for c in order]).transpose([order.index(c) for c in out])


@kernel("Einsum", since=12)
def einsum(*Inputs, equation):
    """Einstein summation; in implicit mode the output labels are sorted by ASCII code. Two
    operands run as one batched BLAS matmul where possible."""
    if not Inputs:
        raise ValueError("Einsum needs at least one input")
    equation = equation.replace(" ", "")
    xs = [widen(x) for x in Inputs]
    out = _pair_as_matmul(equation, *xs) if len(xs) == 2 else None
    if out is None:
        out = np.einsum(equation, *xs, optimize=len(xs) > 1)
    return np.asarray(out).astype(Inputs[0].dtype, copy=False)


@kernel("Det", since=11)
def det(X):
    """Determinant of each square matrix in the trailing two dimensions."""
    if X.ndim < 2 or X.shape[-1] != X.shape[-2]:
        raise ValueError(f"Det needs a tensor of square matrices [..., M, M], got shape {X.shape}")
    return np.asarray(np.linalg.det(widen(X))).astype(X.dtype, copy=False)
