"""Reductions (Reduce*, ArgMax/ArgMin), scans (CumSum/CumProd), the softmax family, TopK and the
classification losses (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from onnxpy.ops._helpers import JIT_FLOATS, normalize_axes, normalize_axis, scalar_int, softmax, trailing_sums, widen
from onnxpy.registry import kernel


def _extreme(ufunc: np.ufunc, lowest: bool) -> Callable:
    """ReduceMax/ReduceMin: an empty set gives -inf/+inf, or the dtype's min/max for integers."""
    def reduce(x, axes, keepdims):
        if x.dtype.kind == "f":
            initial = -np.inf if lowest else np.inf
        elif x.dtype.kind == "b":
            initial = not lowest
        else:
            info = np.iinfo(x.dtype)
            initial = info.min if lowest else info.max
        return ufunc.reduce(x, axis=axes, keepdims=keepdims, initial=initial)
    return reduce


def _sum(x, axes, keepdims):
    """np.add.reduce; over the trailing axes of a C-contiguous float32 or float64 x, ``trailing_sums``."""
    lead = x.ndim - len(axes)
    if x.dtype in JIT_FLOATS and x.size and x.flags.c_contiguous and axes == tuple(range(lead, x.ndim)):
        sums = trailing_sums(x, len(axes))
        return sums.reshape(sums.shape + (1,) * len(axes)) if keepdims else sums
    return np.add.reduce(x, axis=axes, keepdims=keepdims)


def _mean(x, axes, keepdims):
    count = math.prod(x.shape[a] for a in axes)
    return _sum(x, axes, keepdims) / x.dtype.type(count)


def _log_sum_exp(x, axes, keepdims):
    peak = np.maximum.reduce(x, axis=axes, keepdims=True, initial=-np.inf)
    peak = np.where(np.isfinite(peak), peak, x.dtype.type(0))
    out = np.log(np.add.reduce(np.exp(x - peak), axis=axes, keepdims=True)) + peak
    return out if keepdims else np.squeeze(out, axis=axes)


# op -> (reduction of the widened input over a tuple of axes, whether it needs a float input)
_REDUCTIONS: dict[str, tuple[Callable, bool]] = {
    "ReduceSum": (_sum, False),
    "ReduceSumSquare": (lambda x, axes, kd: np.add.reduce(x * x, axis=axes, keepdims=kd), False),
    "ReduceL1": (lambda x, axes, kd: np.add.reduce(np.abs(x), axis=axes, keepdims=kd), False),
    "ReduceL2": (lambda x, axes, kd: np.sqrt(np.add.reduce(x * x, axis=axes, keepdims=kd)), True),
    "ReduceLogSum": (lambda x, axes, kd: np.log(np.add.reduce(x, axis=axes, keepdims=kd)), True),
    "ReduceLogSumExp": (_log_sum_exp, True),
    "ReduceMean": (_mean, True),
    "ReduceProd": (lambda x, axes, kd: np.multiply.reduce(x, axis=axes, keepdims=kd), False),
    "ReduceMax": (_extreme(np.maximum, lowest=True), False),
    "ReduceMin": (_extreme(np.minimum, lowest=False), False),
}

# Opset in which ``axes`` moved from an attribute to an optional input.
_AXES_INPUT_SINCE = {op: 13 if op == "ReduceSum" else 18 for op in _REDUCTIONS}


def _reduce(op: str, data: np.ndarray, axes, keepdims: int, noop_with_empty_axes: int) -> np.ndarray:
    """The one reduction driver: empty or missing ``axes`` reduce everything, or nothing when
    ``noop_with_empty_axes`` is set."""
    fn, need_float = _REDUCTIONS[op]
    axes = normalize_axes(axes, data.ndim)
    if not axes:
        if noop_with_empty_axes:
            return data
        axes = tuple(range(data.ndim))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = fn(widen(data, need_float), axes, bool(keepdims))
        return np.asarray(out).astype(data.dtype, copy=False)


def _register_reduction(op: str) -> None:
    @kernel(op, since=1)
    def reduce_axes_attribute(data, *, axes=None, keepdims=1):
        """Opsets before the axes input: ``axes`` is an attribute, absent meaning all axes."""
        return _reduce(op, data, axes, keepdims, 0)

    @kernel(op, since=_AXES_INPUT_SINCE[op])
    def reduce_axes_input(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        """``axes`` is an optional int64 input."""
        return _reduce(op, data, axes, keepdims, noop_with_empty_axes)


for _op in _REDUCTIONS:
    _register_reduction(_op)


def _arg_extreme(fn: Callable, data: np.ndarray, axis: int, keepdims: int, select_last_index: int) -> np.ndarray:
    axis = normalize_axis(axis, data.ndim)
    if data.shape[axis] == 0:
        raise ValueError(f"cannot take the arg-extreme of an empty axis {axis} (shape {data.shape})")
    if select_last_index:
        index = data.shape[axis] - 1 - fn(np.flip(data, axis), axis=axis, keepdims=bool(keepdims))
    else:
        index = fn(data, axis=axis, keepdims=bool(keepdims))
    return np.asarray(index, dtype=np.int64)


def _register_arg(op: str, fn: Callable) -> None:
    @kernel(op, since=1)
    def arg_extreme_1(data, *, axis=0, keepdims=1):
        """Index of the first extreme along ``axis``, as int64."""
        return _arg_extreme(fn, data, axis, keepdims, 0)

    @kernel(op, since=12)
    def arg_extreme_12(data, *, axis=0, keepdims=1, select_last_index=0):
        """Index of the first (or, with ``select_last_index``, last) extreme along ``axis``."""
        return _arg_extreme(fn, data, axis, keepdims, select_last_index)


_register_arg("ArgMax", np.argmax)
_register_arg("ArgMin", np.argmin)


def _accumulate(ufunc: np.ufunc, x: np.ndarray, axis, exclusive: int, reverse: int) -> np.ndarray:
    """CumSum/CumProd: a running ``ufunc`` along ``axis``, optionally exclusive and/or reversed."""
    axis = normalize_axis(scalar_int(axis, "axis"), x.ndim)
    work = widen(x)
    if reverse:
        work = np.flip(work, axis)
    out = ufunc.accumulate(work, axis=axis, dtype=work.dtype)
    if exclusive:
        lead = (slice(None),) * axis
        shifted = np.empty_like(out)
        shifted[lead + (slice(0, 1),)] = ufunc.identity
        shifted[lead + (slice(1, None),)] = out[lead + (slice(None, -1),)]
        out = shifted
    if reverse:
        out = np.flip(out, axis)
    return np.ascontiguousarray(out, dtype=x.dtype)


@kernel("CumSum", since=11)
def cumsum(x, axis, *, exclusive=0, reverse=0):
    """Cumulative sum along ``axis``."""
    return _accumulate(np.add, x, axis, exclusive, reverse)


@kernel("CumProd", since=26)
def cumprod(x, axis, *, exclusive=0, reverse=0):
    """Cumulative product along ``axis``."""
    return _accumulate(np.multiply, x, axis, exclusive, reverse)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    shifted -= np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return shifted


def _hardmax(x: np.ndarray, axis: int) -> np.ndarray:
    out = np.zeros_like(x)
    np.put_along_axis(out, np.argmax(x, axis=axis, keepdims=True), 1, axis=axis)
    return out


def _along_axis(fn: Callable, x: np.ndarray, axis: int, coerce_2d: bool) -> np.ndarray:
    """Apply ``fn`` along ``axis`` (opset >= 13), or, before opset 13, to the input coerced to
    2-D as [prod(shape[:axis]), prod(shape[axis:])] along its second dimension
    (https://github.com/onnx/onnx/blob/main/docs/Changelog.md#Softmax-11)."""
    axis = normalize_axis(axis, x.ndim)
    # float16 runs natively, rounding after each step as the onnx reference and the function
    # bodies that use these ops do (the fp16 attention node tests compare bit-close with that);
    # bfloat16 sums need float32 to stay accurate
    work = x if x.dtype == np.float16 else widen(x)
    if coerce_2d:
        rows = math.prod(x.shape[:axis])
        out = fn(work.reshape(rows, math.prod(x.shape[axis:])), 1).reshape(x.shape)
    else:
        out = fn(work, axis)
    return out.astype(x.dtype, copy=False)


def _register_softmax_family(op: str, fn: Callable) -> None:
    @kernel(op, since=1)
    def coerced_2d(input, *, axis=1):
        """Opsets 1-12: computed on the input flattened to 2-D at ``axis``."""
        return _along_axis(fn, input, axis, coerce_2d=True)

    @kernel(op, since=13)
    def along_axis(input, *, axis=-1):
        """Computed along the single dimension ``axis``."""
        return _along_axis(fn, input, axis, coerce_2d=False)


_register_softmax_family("Softmax", softmax)
_register_softmax_family("LogSoftmax", _log_softmax)
_register_softmax_family("Hardmax", _hardmax)


def _sorted_order(values: np.ndarray, largest: int) -> np.ndarray:
    """Positions sorting each row of ``values`` (ascending, or descending when ``largest``);
    equal values keep their order, so the lower position comes first."""
    if not largest:
        return np.argsort(values, axis=1, kind="stable")
    # a stable ascending sort of the reversed rows, read backwards: descending, ties in order
    order = np.argsort(values[:, ::-1], axis=1, kind="stable")
    return values.shape[1] - 1 - order[:, ::-1]


def _preselect(rows: np.ndarray, k: int, largest: int) -> np.ndarray | None:
    """Ascending column indices of each row's top ``k`` (ties to the lower index) in linear
    time, or ``None`` when NaNs make the partition ambiguous."""
    n = rows.shape[1]
    pivot = n - k if largest else k - 1
    kth = np.partition(rows, pivot, axis=1)[:, pivot:pivot + 1]
    better = rows > kth if largest else rows < kth
    tie = rows == kth
    need = k - np.count_nonzero(better, axis=1)[:, None]
    if (np.count_nonzero(tie, axis=1)[:, None] != need).any():
        tie &= np.cumsum(tie, axis=1) <= need
    columns = np.flatnonzero(better | tie) % n
    return columns.reshape(len(rows), k) if columns.size == len(rows) * k else None


def _top_k(x: np.ndarray, k: int, axis: int, largest: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest (or smallest) values along ``axis``, sorted, ties broken by the lower
    index first; and their int64 indices."""
    axis = normalize_axis(axis, x.ndim)
    n = x.shape[axis]
    if not 0 <= k <= n:
        raise ValueError(f"k={k} is out of range for axis {axis} of size {n}")
    moved = np.moveaxis(x, axis, -1)
    rows = moved.reshape(math.prod(moved.shape[:-1]), n)
    candidates = _preselect(rows, k, largest) if 0 < 4 * k < n and rows.size else None
    if candidates is None:
        index = _sorted_order(rows, largest)[:, :k]
    else:
        index = np.take_along_axis(candidates, _sorted_order(np.take_along_axis(rows, candidates, 1), largest), 1)
    index = np.moveaxis(index.reshape(moved.shape[:-1] + (k,)), -1, axis)
    return np.take_along_axis(x, index, axis=axis), index.astype(np.int64, copy=False)


@kernel("TopK", since=1)
def top_k_1(X, *, axis=-1, k):
    """Opset 1: ``k`` is an attribute; the largest values, sorted."""
    return _top_k(X, int(k), axis, 1)


@kernel("TopK", since=10)
def top_k_10(X, K, *, axis=-1):
    """Opset 10: ``K`` is a 1-element int64 input; the largest values, sorted."""
    return _top_k(X, scalar_int(K, "K"), axis, 1)


@kernel("TopK", since=11)
def top_k(X, K, *, axis=-1, largest=1, sorted=1):
    """Opset 11+: ``largest`` selects largest or smallest; results are always sorted (the
    order is undefined by the spec when ``sorted`` is 0)."""
    return _top_k(X, scalar_int(K, "K"), axis, largest)


def _nll(log_prob: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: str,
         ignore_index: int | None) -> np.ndarray:
    """Negative log-likelihood of ``target`` classes in ``log_prob`` [N, C, d1, ...]."""
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    if log_prob.ndim < 2 or target.shape != log_prob.shape[:1] + log_prob.shape[2:]:
        raise ValueError(f"target shape {target.shape} does not match input shape {log_prob.shape} (N, C, d1, ...)")
    classes = log_prob.shape[1]
    target = target.astype(np.int64, copy=False)
    ignored = target == ignore_index if ignore_index is not None else np.zeros(target.shape, bool)
    safe = np.where(ignored, 0, target)
    if safe.size and (safe.min() < 0 or safe.max() >= classes):
        raise ValueError(f"target values must lie in [0, {classes}) or equal ignore_index={ignore_index}")
    work = widen(log_prob)
    picked = np.take_along_axis(work, safe[:, None], axis=1)[:, 0]
    w = widen(weight)[safe] if weight is not None else np.ones(safe.shape, work.dtype)
    w = np.where(ignored, work.dtype.type(0), w)
    loss = -picked * w
    if reduction == "sum":
        loss = np.sum(loss)
    elif reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = np.sum(loss) / np.sum(w)
    return np.asarray(loss).astype(log_prob.dtype, copy=False)


@kernel("NegativeLogLikelihoodLoss", since=12)
def negative_log_likelihood_loss(input, target, weight=None, *, ignore_index=None, reduction="mean"):
    """``-input[n, target[n, d...], d...] * weight[target]``, then reduced; a mean divides by
    the sum of the weights of the targets not ignored."""
    return _nll(input, target, weight, reduction, ignore_index)


@kernel("SoftmaxCrossEntropyLoss", since=12)
def softmax_cross_entropy_loss(scores, labels, weights=None, *, ignore_index=None, reduction="mean"):
    """NegativeLogLikelihoodLoss of LogSoftmax(scores) over the class axis 1; also returns the
    log-probabilities."""
    log_prob = _along_axis(_log_softmax, scores, 1, coerce_2d=False)
    return _nll(log_prob, labels, weights, reduction, ignore_index), log_prob
