"""Sequences (Python lists of arrays) and optionals (a value, or None when empty)."""
from __future__ import annotations

from typing import Any

import numpy as np

from onnxpy import ir
from onnxpy.ops._helpers import first, normalize_axis
from onnxpy.registry import kernel


@kernel("SequenceConstruct", since=11)
def sequence_construct(*inputs):
    """A sequence of the input tensors, which must share one element type."""
    _check_same_dtype(inputs)
    return list(inputs)


@kernel("SequenceEmpty", since=11)
def sequence_empty(*, dtype=None):
    """An empty sequence (its element type, float by default, is only static information)."""
    return []


@kernel("SequenceLength", since=11)
def sequence_length(input_sequence):
    """The number of tensors in the sequence, as an int64 scalar."""
    return np.asarray(len(input_sequence), dtype=np.int64)


@kernel("SequenceAt", since=11)
def sequence_at(input_sequence, position):
    """The tensor at ``position`` (negative counts from the back)."""
    return input_sequence[_position(position, len(input_sequence), "SequenceAt")]


@kernel("SequenceErase", since=11)
def sequence_erase(input_sequence, position=None):
    """The sequence without the tensor at ``position`` (default: the last one)."""
    seq = list(input_sequence)
    del seq[-1 if position is None else _position(position, len(seq), "SequenceErase")]
    return seq


@kernel("SequenceInsert", since=11)
def sequence_insert(input_sequence, tensor, position=None):
    """The sequence with ``tensor`` inserted before ``position`` (default: appended)."""
    seq = list(input_sequence)
    _check_same_dtype([*seq[:1], tensor])
    at = len(seq) if position is None else _position(position, len(seq), "SequenceInsert", end_ok=True)
    seq.insert(at, tensor)
    return seq


@kernel("SequenceMap", since=17)
def sequence_map(input_sequence, *additional_inputs, body, ctx):
    """Apply ``body`` to each element of ``input_sequence``, zipped with the elements of sequence
    ``additional_inputs`` (tensor ones are passed whole); each body output becomes a sequence."""
    n = len(input_sequence)
    for extra in additional_inputs:
        if isinstance(extra, list) and len(extra) != n:
            raise ValueError(f"SequenceMap input sequences differ in length: {n} and {len(extra)}")
    outputs: list[list[Any]] = [[] for _ in range(ctx.num_outputs)]
    for i in range(n):
        args = [extra[i] if isinstance(extra, list) else extra for extra in additional_inputs]
        for acc, value in zip(outputs, body(input_sequence[i], *args)):
            acc.append(value)
    return tuple(outputs)


@kernel("SplitToSequence", since=11)
def split_to_sequence(input, split=None, *, axis=0, keepdims=1):
    """Split ``input`` along ``axis`` into parts of the lengths in ``split`` (a scalar: equal
    parts, the last possibly shorter; omitted: parts of one, squeezed unless ``keepdims``)."""
    axis = normalize_axis(axis, input.ndim)
    size = input.shape[axis]
    if split is None:
        parts = np.split(input, size, axis=axis)
        return parts if keepdims else [np.squeeze(p, axis=axis) for p in parts]
    split = np.asarray(split)
    if split.ndim == 0:
        step = int(split)
        if step <= 0:
            raise ValueError(f"SplitToSequence split must be positive, got {step}")
        return np.split(input, np.arange(step, size, step), axis=axis)
    if split.ndim != 1 or np.any(split < 0) or int(split.sum()) != size:
        raise ValueError(
            f"SplitToSequence split {split.tolist()} must be non-negative lengths summing to {size} (axis {axis})")
    return np.split(input, np.cumsum(split)[:-1], axis=axis)


@kernel("ConcatFromSequence", since=11)
def concat_from_sequence(input_sequence, *, axis, new_axis=0):
    """Concatenate the sequence's tensors along ``axis``, or stack them on a new axis."""
    if not input_sequence:
        raise ValueError("ConcatFromSequence needs a non-empty sequence")
    rank = input_sequence[0].ndim
    if new_axis:
        return np.stack(input_sequence, axis=normalize_axis(axis, rank + 1))
    return np.concatenate(input_sequence, axis=normalize_axis(axis, rank))


@kernel("Optional", since=15)
def optional(input=None, *, type=None):
    """An optional holding ``input``, or an empty one (None) of the attribute's ``type``."""
    if input is None and type is None:
        raise ValueError("Optional without an input needs the 'type' attribute")
    if type is not None and not isinstance(type, (ir.TensorType, ir.SequenceType)):
        raise TypeError(f"Optional holds a tensor or a sequence, not {type}")
    return input


@kernel("OptionalHasElement", since=15)
def optional_has_element(input=None):
    """Whether the optional holds a value (a plain tensor or sequence always does)."""
    return np.asarray(input is not None)


@kernel("OptionalGetElement", since=15)
def optional_get_element(input):
    """The optional's value (a plain tensor or sequence is returned as it is)."""
    if input is None:
        raise ValueError("OptionalGetElement got an empty optional")
    return input


def _position(position: np.ndarray, n: int, op: str, end_ok: bool = False) -> int:
    """``position`` as an index into a sequence of ``n``, negative values counting from the back;
    ``end_ok`` also accepts ``n`` (an insertion at the end)."""
    p = int(first(position))
    high = n if end_ok else n - 1
    if not -n <= p <= high:
        raise ValueError(f"{op} position {p} is out of range [{-n}, {high}]")
    return p + n if p < 0 else p


def _check_same_dtype(tensors) -> None:
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"sequence elements must share one element type, got {sorted(map(str, dtypes))}")
