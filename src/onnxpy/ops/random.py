"""Random generators: RandomNormal/Uniform(-Like), Bernoulli and Multinomial.

Each call draws from a fresh ``numpy.random.Generator``: seeded from the ``seed`` attribute when
it is set (so a node with a seed gives the same output on every run), from OS entropy otherwise.
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.registry import kernel


def _rng(seed: float | None) -> np.random.Generator:
    if seed is None:
        return np.random.default_rng()
    # the float's bit pattern, so that e.g. seeds 1.0 and 1.5 give different streams
    return np.random.default_rng(int(np.float64(seed).view(np.uint64)))


def _float_dtype(dtype: int, op: str) -> np.dtype:
    dt = ir.dtype_of(dtype)
    if dt.kind != "f" and "float" not in dt.name:
        raise TypeError(f"{op} dtype must be a floating type, got {dt}")
    return dt


def _normal(shape, dtype: np.dtype, mean: float, scale: float, seed) -> np.ndarray:
    return (_rng(seed).standard_normal(tuple(shape)) * scale + mean).astype(dtype)


def _uniform(shape, dtype: np.dtype, low: float, high: float, seed) -> np.ndarray:
    return _rng(seed).uniform(low, high, tuple(shape)).astype(dtype)


@kernel("RandomNormal", since=1)
def random_normal(*, shape, dtype=1, mean=0.0, scale=1.0, seed=None):
    """Samples of N(mean, scale**2) of the given shape."""
    return _normal(shape, _float_dtype(dtype, "RandomNormal"), mean, scale, seed)


@kernel("RandomUniform", since=1)
def random_uniform(*, shape, dtype=1, high=1.0, low=0.0, seed=None):
    """Samples of U[low, high) of the given shape."""
    return _uniform(shape, _float_dtype(dtype, "RandomUniform"), low, high, seed)


def _like_dtype(x: np.ndarray, dtype: int | None, op: str) -> np.dtype:
    return x.dtype if dtype is None else _float_dtype(dtype, op)


@kernel("RandomNormalLike", since=1)
def random_normal_like(input, *, dtype=None, mean=0.0, scale=1.0, seed=None):
    """RandomNormal with the input's shape (and dtype unless ``dtype`` is set)."""
    return _normal(input.shape, _like_dtype(input, dtype, "RandomNormalLike"), mean, scale, seed)


@kernel("RandomUniformLike", since=1)
def random_uniform_like(input, *, dtype=None, high=1.0, low=0.0, seed=None):
    """RandomUniform with the input's shape (and dtype unless ``dtype`` is set)."""
    return _uniform(input.shape, _like_dtype(input, dtype, "RandomUniformLike"), low, high, seed)


@kernel("Bernoulli", since=15)
def bernoulli(input, *, dtype=None, seed=None):
    """1 with probability ``input``, else 0."""
    out = _rng(seed).random(input.shape) < input
    return out.astype(input.dtype if dtype is None else ir.dtype_of(dtype))


@kernel("Multinomial", since=7)
def multinomial(input, *, dtype=6, sample_size=1, seed=None):
    """``sample_size`` class indices per row, drawn from the unnormalized log-probabilities."""
    if input.ndim != 2:
        raise ValueError(f"Multinomial expects a [batch, classes] input, got shape {input.shape}")
    out_dtype = ir.dtype_of(dtype)
    if out_dtype not in (np.int32, np.int64):
        raise TypeError(f"Multinomial dtype must be int32 or int64, got {out_dtype}")
    logits = input.astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(probs, axis=1)
    u = _rng(seed).random((input.shape[0], sample_size)) * cdf[:, -1:]
    index = (cdf[:, None, :] <= u[:, :, None]).sum(axis=2)
    return np.minimum(index, input.shape[1] - 1).astype(out_dtype)
