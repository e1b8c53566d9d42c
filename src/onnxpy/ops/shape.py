"""Shape and layout kernels: reshaping, transposing, joining and cutting, padding, tiling,
depth/space moves, and the ops that make tensors from shapes or attributes."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from onnxpy import ir
from onnxpy.ops._helpers import ints, normalize_axes, normalize_axis, zero_of
from onnxpy.registry import kernel


def _frozen(value: np.ndarray) -> np.ndarray:
    """A read-only view, so that a value held by the plan (an attribute) is never written."""
    view = value.view()
    view.flags.writeable = False
    return view


def _reshape(data, shape, allowzero):
    dims = ints(shape)
    if dims.count(-1) > 1:
        raise ValueError(f"shape {dims} has more than one -1")
    if any(d < -1 for d in dims):
        raise ValueError(f"shape {dims} has a negative dimension other than -1")
    if allowzero and 0 in dims and -1 in dims:
        raise ValueError(f"shape {dims} has both 0 and -1, which allowzero=1 forbids")
    if not allowzero:
        for i, d in enumerate(dims):
            if d == 0:
                if i >= data.ndim:
                    raise ValueError(f"shape {dims} copies dimension {i} (0) from an input of rank {data.ndim}")
                dims[i] = data.shape[i]
    known = math.prod(d for d in dims if d != -1)
    if (-1 in dims and (known == 0 or data.size % known)) or (-1 not in dims and known != data.size):
        raise ValueError(f"cannot reshape a tensor of shape {data.shape} ({data.size} elements) to {ints(shape)}")
    return data.reshape(dims)


@kernel("Reshape", since=1)
def reshape_1(data, *, consumed_inputs=None, shape=None):
    """Reshape-1: the target shape is the ``shape`` attribute."""
    if shape is None:
        raise ValueError("Reshape-1 needs the 'shape' attribute")
    return _reshape(data, shape, 0)


@kernel("Reshape", since=5)
def reshape_5(data, shape):
    """Reshape-5 to 13: 0 copies the input dimension, -1 is inferred."""
    return _reshape(data, shape, 0)


@kernel("Reshape", since=14)
def reshape(data, shape, *, allowzero=0):
    """Reshape; with ``allowzero`` a 0 in ``shape`` is a real zero dimension."""
    return _reshape(data, shape, allowzero)


@kernel("Transpose", since=1)
def transpose(data, *, perm=None):
    """Permute axes (reversed when ``perm`` is absent)."""
    if perm is not None and sorted(perm) != list(range(data.ndim)):
        raise ValueError(f"perm {perm} is not a permutation of the {data.ndim} axes")
    return np.transpose(data, perm)


def _concat(inputs, axis):
    if not inputs:
        raise ValueError("Concat needs at least one input")
    first = inputs[0]
    if first.ndim == 0:
        raise ValueError("Concat cannot join scalars")
    if any(x.dtype != first.dtype for x in inputs):
        raise TypeError(f"Concat inputs have different types: {[str(x.dtype) for x in inputs]}")
    if any(x.ndim != first.ndim for x in inputs):
        raise ValueError(f"Concat inputs have different ranks: {[x.shape for x in inputs]}")
    axis = normalize_axis(axis, first.ndim)
    if any(x.shape[:axis] + x.shape[axis + 1:] != first.shape[:axis] + first.shape[axis + 1:] for x in inputs):
        raise ValueError(f"Concat inputs differ outside axis {axis}: {[x.shape for x in inputs]}")
    return np.concatenate(inputs, axis=axis)


@kernel("Concat", since=1)
def concat_1(*inputs, axis=None):
    """Concat-1: ``axis`` defaults to 1."""
    return _concat(inputs, 1 if axis is None else axis)


@kernel("Concat", since=4)
def concat(*inputs, axis):
    """Join tensors along ``axis``."""
    return _concat(inputs, axis)


def _split(x, axis, split, parts, uneven=False):
    """Cut ``x`` along ``axis`` into the lengths ``split``, or into ``parts`` equal pieces
    (with ``uneven`` the last piece may be smaller, as in Split-18's ``num_outputs``)."""
    axis = normalize_axis(axis, x.ndim)
    dim = x.shape[axis]
    if split is not None:
        sizes = ints(split)
        if len(sizes) != parts or any(s < 0 for s in sizes) or sum(sizes) != dim:
            raise ValueError(f"split {sizes} does not cut axis {axis} of length {dim} into {parts} outputs")
    elif uneven:
        chunk = -(-dim // parts)
        sizes = [chunk] * (parts - 1) + [dim - chunk * (parts - 1)]
        if sizes[-1] < 0:
            raise ValueError(f"axis {axis} of length {dim} cannot be split into {parts} outputs")
    else:
        if dim % parts:
            raise ValueError(f"axis {axis} of length {dim} cannot be split into {parts} equal outputs")
        sizes = [dim // parts] * parts
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


@kernel("Split", since=1)
def split_1(input, split_input=None, *, axis=None, split=None, ctx):
    """Split-1: lengths from the second input or the ``split`` attribute; ``axis`` defaults to 0."""
    lengths = split_input if split_input is not None else split
    return _split(input, 0 if axis is None else axis, lengths, ctx.num_outputs)


@kernel("Split", since=2)
def split_2(input, *, axis=0, split=None, ctx):
    """Split-2 to 11: lengths from the ``split`` attribute, else equal parts."""
    return _split(input, axis, split, ctx.num_outputs)


@kernel("Split", since=13)
def split_13(input, split=None, *, axis=0, ctx):
    """Split-13: lengths from the ``split`` input, else equal parts."""
    return _split(input, axis, split, ctx.num_outputs)


@kernel("Split", since=18)
def split(input, split=None, *, axis=0, num_outputs=None, ctx):
    """Split-18: the ``split`` input or ``num_outputs`` (last part smaller when uneven)."""
    if (split is None) == (num_outputs is None):
        raise ValueError("Split needs exactly one of the 'split' input and the 'num_outputs' attribute")
    if num_outputs is not None and num_outputs != ctx.num_outputs:
        raise ValueError(f"num_outputs={num_outputs} but the node has {ctx.num_outputs} outputs")
    return _split(input, axis, split, ctx.num_outputs, uneven=True)


def _slice(data, starts, ends, axes, steps):
    starts, ends = ints(starts), ints(ends)
    axes = list(range(len(starts))) if axes is None else [normalize_axis(a, data.ndim) for a in ints(axes)]
    steps = [1] * len(starts) if steps is None else ints(steps)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes} repeat an axis")
    index = [slice(None)] * data.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step == 0:
            raise ValueError("Slice steps cannot be 0")
        dim = data.shape[axis]
        start, end = (v + dim if v < 0 else v for v in (start, end))
        # clamping per https://onnx.ai/onnx/operators/onnx__Slice.html: ends reach -1 when stepping back
        low, high = (0, dim) if step > 0 else (-1, dim - 1)
        start, end = min(max(start, 0), high), min(max(end, low), high)
        index[axis] = slice(start, None if end < 0 else end, step)
    return data[tuple(index)]


@kernel("Slice", since=1)
def slice_1(data, *, axes=None, ends, starts):
    """Slice-1: ``starts``, ``ends`` and ``axes`` are attributes; steps are 1."""
    return _slice(data, starts, ends, axes, None)


@kernel("Slice", since=10)
def slice_(data, starts, ends, axes=None, steps=None):
    """Slice with negative indices, clamping and negative steps."""
    return _slice(data, starts, ends, axes, steps)


def _squeeze(data, axes):
    if axes is None:
        return data.reshape([d for d in data.shape if d != 1])
    axes = normalize_axes(axes, data.ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"Squeeze axes {axes} repeat an axis")
    if any(data.shape[a] != 1 for a in axes):
        raise ValueError(f"cannot squeeze axes {list(axes)} of shape {data.shape}: a squeezed dimension must be 1")
    return np.squeeze(data, axis=axes)


@kernel("Squeeze", since=1)
def squeeze_1(data, *, axes=None):
    """Squeeze-1 and 11: ``axes`` attribute; all size-1 dimensions when absent."""
    return _squeeze(data, axes)


@kernel("Squeeze", since=13)
def squeeze(data, axes=None):
    """Squeeze: ``axes`` input; all size-1 dimensions when absent."""
    return _squeeze(data, axes)


def _unsqueeze(data, axes):
    axes = normalize_axes(axes, data.ndim + len(ints(axes)))
    if len(set(axes)) != len(axes):
        raise ValueError(f"Unsqueeze axes {axes} repeat an axis")
    return np.expand_dims(data, axes)


@kernel("Unsqueeze", since=1)
def unsqueeze_1(data, *, axes):
    """Unsqueeze-1 and 11: ``axes`` attribute (positions in the output)."""
    return _unsqueeze(data, axes)


@kernel("Unsqueeze", since=13)
def unsqueeze(data, axes):
    """Unsqueeze: ``axes`` input (positions in the output)."""
    return _unsqueeze(data, axes)


@kernel("Flatten", since=1)
def flatten(input, *, axis=1):
    """Flatten to 2-D: dimensions before ``axis`` form the rows."""
    rank = input.ndim
    if not -rank <= axis <= rank:
        raise ValueError(f"Flatten axis {axis} is out of range for rank {rank}")
    axis = axis + rank if axis < 0 else axis
    return input.reshape(math.prod(input.shape[:axis]), math.prod(input.shape[axis:]))


@kernel("Shape", since=1)
def shape_1(data):
    """The shape as a 1-D int64 tensor."""
    return np.array(data.shape, dtype=np.int64)


@kernel("Shape", since=15)
def shape(data, *, end=None, start=0):
    """The shape dimensions ``start:end`` (clamped) as a 1-D int64 tensor."""
    rank = data.ndim
    start, end = (min(max(v + rank if v < 0 else v, 0), rank) for v in (start, rank if end is None else end))
    return np.array(data.shape[start:end], dtype=np.int64)


@kernel("Size", since=1)
def size(data):
    """The number of elements as an int64 scalar."""
    return np.asarray(data.size, dtype=np.int64)


@kernel("ConstantOfShape", since=9)
def constant_of_shape(input, *, value=None):
    """A tensor of shape ``input`` filled with the one element of ``value`` (float32 0)."""
    fill = np.zeros(1, dtype=np.float32) if value is None else value
    if fill.size != 1:
        raise ValueError(f"ConstantOfShape value must have one element, got shape {fill.shape}")
    dims = ints(input)
    if any(d < 0 for d in dims):
        raise ValueError(f"ConstantOfShape shape {dims} has a negative dimension")
    return np.full(dims, fill.reshape(()), dtype=fill.dtype)


def _scalar(value, name):
    value = np.asarray(value)
    if value.size != 1:
        raise ValueError(f"Range {name} must be a scalar, got shape {value.shape}")
    return value.reshape(())


def _range(start, limit, delta, compute):
    """``start + i * delta`` for ``i < ceil((limit - start) / delta)``, computed in ``compute``
    for floating types, exactly for integers."""
    start, limit, delta = _scalar(start, "start"), _scalar(limit, "limit"), _scalar(delta, "delta")
    dtype = start.dtype
    if limit.dtype != dtype or delta.dtype != dtype:
        raise TypeError(f"Range inputs differ in type: {start.dtype}, {limit.dtype}, {delta.dtype}")
    if delta == 0:
        raise ValueError("Range delta cannot be 0")
    if dtype.kind in "iu":
        s, d = int(start), int(delta)
        n = max(-((s - int(limit)) // d), 0)
        return (s + d * np.arange(n, dtype=np.int64)).astype(dtype)
    s, l, d = (float(v.astype(compute)) for v in (start, limit, delta))
    if not all(math.isfinite(v) for v in (s, l, d)):
        raise ValueError(f"Range inputs must be finite, got start={s}, limit={l}, delta={d}")
    n = max(math.ceil((l - s) / d), 0)
    return (compute.type(s) + np.arange(n, dtype=compute) * compute.type(d)).astype(dtype)


@kernel("Range", since=11)
def range_11(start, limit, delta):
    """Range-11: float types are computed in double, as numpy.arange does."""
    return _range(start, limit, delta, np.dtype(np.float64))


@kernel("Range", since=27)
def range_(start, limit, delta, *, stash_type=1):
    """Range: float16/bfloat16 are computed in ``stash_type``, other floats in double."""
    low = start.dtype in (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
    return _range(start, limit, delta, ir.dtype_of(stash_type) if low else np.dtype(np.float64))


@kernel("Constant", since=1)
def constant_1(*, value):
    """Constant-1 and 9: the ``value`` tensor."""
    return _frozen(value)


@kernel("Constant", since=11)
def constant_11(*, sparse_value=None, value=None):
    """Constant-11: ``value`` or ``sparse_value`` (densified by the loader)."""
    return constant(sparse_value=sparse_value, value=value)


@kernel("Constant", since=12)
def constant(*, sparse_value=None, value=None, value_float=None, value_floats=None, value_int=None,
             value_ints=None, value_string=None, value_strings=None):
    """Constant: exactly one of the value attributes, as a tensor of its type."""
    given = [(name, v, dt) for name, v, dt in (
        ("value", value, None), ("sparse_value", sparse_value, None),
        ("value_float", value_float, np.float32), ("value_floats", value_floats, np.float32),
        ("value_int", value_int, np.int64), ("value_ints", value_ints, np.int64),
        ("value_string", value_string, object), ("value_strings", value_strings, object),
    ) if v is not None]
    if len(given) != 1:
        raise ValueError(f"Constant needs exactly one value attribute, got {[g[0] for g in given] or 'none'}")
    _, v, dtype = given[0]
    return _frozen(np.asarray(v, dtype=dtype))


@kernel("Identity", since=1)
def identity(input):
    """The input itself: a tensor, a sequence (a new list of the same arrays) or an optional."""
    return list(input) if isinstance(input, list) else input


@kernel("Expand", since=8)
def expand(input, shape):
    """Broadcast ``input`` against ``shape`` (a read-only broadcast view)."""
    dims = tuple(ints(shape))
    try:
        out = np.broadcast_shapes(input.shape, dims)
    except ValueError:
        raise ValueError(f"cannot expand shape {input.shape} to {list(dims)}") from None
    return np.broadcast_to(input, out)


@kernel("Tile", since=1)
def tile_1(input, tiles, axis):
    """Tile-1: repeat ``tiles`` times along one ``axis`` (both scalar inputs)."""
    repeats = [1] * input.ndim
    repeats[normalize_axis(int(np.asarray(axis).reshape(())), input.ndim)] = int(np.asarray(tiles).reshape(()))
    return tile(input, repeats)


@kernel("Tile", since=6)
def tile(input, repeats):
    """Repeat ``input`` ``repeats[i]`` times along each axis ``i``."""
    reps = ints(repeats)
    if len(reps) != input.ndim or any(r < 0 for r in reps):
        raise ValueError(f"Tile repeats {reps} must be {input.ndim} non-negative counts")
    return np.tile(input, reps)


_PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad(data, pads, mode, value, axes=None):
    """Pad (or crop, for negative pads) ``[begin..., end...]`` along ``axes`` (default all)."""
    if mode not in _PAD_MODES:
        raise ValueError(f"Pad mode {mode!r} is not one of {list(_PAD_MODES)}")
    pads = ints(pads)
    axes = list(range(data.ndim)) if axes is None else [normalize_axis(a, data.ndim) for a in ints(axes)]
    if len(set(axes)) != len(axes):
        raise ValueError(f"Pad axes {axes} repeat an axis")
    if len(pads) != 2 * len(axes):
        raise ValueError(f"Pad needs {2 * len(axes)} pads for {len(axes)} axes, got {pads}")
    width = [(0, 0)] * data.ndim
    for i, axis in enumerate(axes):
        width[axis] = (pads[i], pads[i + len(axes)])
    if any(max(-b, 0) + max(-e, 0) > dim for (b, e), dim in zip(width, data.shape)):
        raise ValueError(f"negative pads {pads} remove more than the shape {data.shape} holds")
    data = data[tuple(slice(max(-b, 0), dim - max(-e, 0)) for (b, e), dim in zip(width, data.shape))]
    width = [(max(b, 0), max(e, 0)) for b, e in width]
    if mode != "constant":
        if any(w != (0, 0) and dim == 0 for w, dim in zip(width, data.shape)):
            raise ValueError(f"Pad mode {mode!r} cannot pad an empty axis (shape {data.shape})")
        return np.pad(data, width, mode=mode)
    fill = zero_of(data.dtype) if value is None else np.asarray(value)
    if fill.size != 1:
        raise ValueError(f"Pad constant_value must be a scalar, got shape {fill.shape}")
    return np.pad(data, width, mode="constant", constant_values=fill.reshape(()).astype(data.dtype))


@kernel("Pad", since=1)
def pad_1(data, *, mode="constant", paddings, value=0.0):
    """Pad-1: ``paddings`` attribute."""
    return _pad(data, paddings, mode, value)


@kernel("Pad", since=2)
def pad_2(data, *, mode="constant", pads, value=0.0):
    """Pad-2: ``pads`` and ``value`` attributes."""
    return _pad(data, pads, mode, value)


@kernel("Pad", since=11)
def pad(data, pads, constant_value=None, axes=None, *, mode="constant"):
    """Pad: ``pads``, ``constant_value`` and (from 18) ``axes`` inputs; wrap mode from 19."""
    return _pad(data, pads, mode, constant_value, axes)


def _blocks(x, blocksize):
    if x.ndim != 4:
        raise ValueError(f"expected a 4-D [N, C, H, W] input, got shape {x.shape}")
    if blocksize < 1:
        raise ValueError(f"blocksize must be positive, got {blocksize}")
    return x.shape


def _depth_to_space(x, blocksize, mode):
    n, c, h, w = _blocks(x, blocksize)
    bs = blocksize
    if c % (bs * bs):
        raise ValueError(f"channels {c} are not a multiple of blocksize² ({bs * bs})")
    if mode == "DCR":
        tmp = x.reshape(n, bs, bs, c // (bs * bs), h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        tmp = x.reshape(n, c // (bs * bs), bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise ValueError(f"DepthToSpace mode must be 'DCR' or 'CRD', got {mode!r}")
    return tmp.reshape(n, c // (bs * bs), h * bs, w * bs)


@kernel("DepthToSpace", since=1)
def depth_to_space_1(input, *, blocksize):
    """DepthToSpace-1: DCR order."""
    return _depth_to_space(input, blocksize, "DCR")


@kernel("DepthToSpace", since=11)
def depth_to_space(input, *, blocksize, mode="DCR"):
    """Move channel blocks into ``blocksize`` x ``blocksize`` spatial blocks."""
    return _depth_to_space(input, blocksize, mode)


def _space_to_depth(x, blocksize, mode):
    n, c, h, w = _blocks(x, blocksize)
    bs = blocksize
    if h % bs or w % bs:
        raise ValueError(f"height {h} and width {w} must be multiples of blocksize {bs}")
    perms = {"DCR": (0, 3, 5, 1, 2, 4), "CRD": (0, 1, 3, 5, 2, 4)}
    if mode not in perms:
        raise ValueError(f"SpaceToDepth mode must be 'DCR' or 'CRD', got {mode!r}")
    tmp = x.reshape(n, c, h // bs, bs, w // bs, bs).transpose(perms[mode])
    return tmp.reshape(n, c * bs * bs, h // bs, w // bs)


@kernel("SpaceToDepth", since=1)
def space_to_depth_1(input, *, blocksize):
    """SpaceToDepth-1 and 13: DCR order."""
    return _space_to_depth(input, blocksize, "DCR")


@kernel("SpaceToDepth", since=28)
def space_to_depth(input, *, blocksize, mode="DCR"):
    """Move ``blocksize`` x ``blocksize`` spatial blocks into channels."""
    return _space_to_depth(input, blocksize, mode)


@kernel("EyeLike", since=9)
def eye_like(input, *, dtype=None, k=0):
    """A 2-D tensor shaped like ``input`` with ones on diagonal ``k``."""
    if input.ndim != 2:
        raise ValueError(f"EyeLike needs a 2-D input, got shape {input.shape}")
    return np.eye(*input.shape, k=k, dtype=input.dtype if dtype is None else ir.dtype_of(dtype))
