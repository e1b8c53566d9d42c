"""Control flow: If, Loop and Scan, whose graph attributes arrive as callable sub-plans."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from onnxpy import ir
from onnxpy.ops._helpers import first, normalize_axis, truth
from onnxpy.registry import kernel


@kernel("If", since=1)
def if_(cond, *, then_branch, else_branch):
    """Run ``then_branch`` or ``else_branch``; their outputs (tensors, sequences, optionals) are the node's."""
    return tuple((then_branch if truth(cond, "If condition") else else_branch)())


@kernel("Loop", since=1)
def loop(M, cond, *v_initial, body, ctx):
    """Run ``body(i, cond, *carried)`` while ``i < M`` and ``cond`` hold; returns the final
    loop-carried values, then each scan output stacked along a new first axis."""
    trip_count = None if M is None else int(first(M))
    keep_going = True if cond is None else truth(cond, "Loop input cond")
    carried = list(v_initial)
    n = len(carried)
    graph_outputs = ctx.node.attributes["body"].outputs[1 + n:]
    collected: list[list[Any]] = [[] for _ in graph_outputs]
    i = 0
    # As in onnxruntime, the body's condition output always counts: the spec ignores it when the
    # cond input is omitted (https://onnx.ai/onnx/operators/onnx__Loop.html), which would make a
    # loop with neither M nor cond endless.
    while keep_going and (trip_count is None or i < trip_count):
        outs = body(np.asarray(i, dtype=np.int64), np.asarray(keep_going), *carried)
        keep_going = truth(outs[0], "Loop body condition output")
        carried = outs[1:1 + n]
        for acc, value in zip(collected, outs[1 + n:]):
            acc.append(value)
        i += 1
    return (*carried, *(_stack(acc, 0, info) for acc, info in zip(collected, graph_outputs)))


@kernel("Scan", since=9)
def scan(*initial_state_and_scan_inputs, body, num_scan_inputs, scan_input_axes=None, scan_input_directions=None,
         scan_output_axes=None, scan_output_directions=None, ctx):
    """Iterate ``body`` over slices of the scan inputs along their axes, carrying the states;
    per-iteration scan outputs are stacked along ``scan_output_axes``."""
    n = len(initial_state_and_scan_inputs) - num_scan_inputs
    states, inputs = list(initial_state_and_scan_inputs[:n]), initial_state_and_scan_inputs[n:]
    axes = [normalize_axis(a, x.ndim) for a, x in zip(scan_input_axes or [0] * len(inputs), inputs)]
    out_info = ctx.node.attributes["body"].outputs[n:]
    states, collected = _scan_iterations(body, states, inputs, axes, scan_input_directions or [0] * len(inputs),
                                         len(out_info))
    out_axes = scan_output_axes or [0] * len(collected)
    out_dirs = scan_output_directions or [0] * len(collected)
    scanned = []
    for acc, info, axis, direction in zip(collected, out_info, out_axes, out_dirs):
        scanned.append(_stack(acc[::-1] if direction else acc, axis, info))
    return (*states, *scanned)


@kernel("Scan", since=8)
def scan_8(sequence_lens, *initial_state_and_scan_inputs, body, num_scan_inputs, directions=None, ctx):
    """Scan-8: axis 0 of every input is a batch axis, scan inputs are scanned along axis 1, each
    batch entry for its ``sequence_lens`` steps; scan outputs are zero past that length."""
    n = len(initial_state_and_scan_inputs) - num_scan_inputs
    states, inputs = initial_state_and_scan_inputs[:n], initial_state_and_scan_inputs[n:]
    if not inputs:
        raise ValueError("Scan needs at least one scan input")
    batch, max_len = inputs[0].shape[:2]
    lens = np.full(batch, max_len, np.int64) if sequence_lens is None else np.asarray(sequence_lens).reshape(-1)
    if lens.shape[0] != batch or np.any(lens < 0) or np.any(lens > max_len):
        raise ValueError(f"Scan sequence_lens {lens.tolist()} do not fit batch {batch} of length {max_len}")
    out_info = ctx.node.attributes["body"].outputs[n:]
    final_states: list[list[Any]] = [[] for _ in states]
    outputs: list[list[np.ndarray]] = [[] for _ in out_info]
    for b in range(batch):
        length = int(lens[b])
        sliced = [x[b, :length] for x in inputs]
        states_b, collected = _scan_iterations(
            body, [s[b] for s in states], sliced, [0] * len(sliced), directions or [0] * len(sliced), len(out_info))
        for acc, s in zip(final_states, states_b):
            acc.append(s)
        for acc, items, info in zip(outputs, collected, out_info):
            stacked = _stack(items, 0, info)
            pad = [(0, max_len - length)] + [(0, 0)] * (stacked.ndim - 1)
            acc.append(np.pad(stacked, pad))
    return (*(np.stack(s) for s in final_states), *(np.stack(o) for o in outputs))


def _scan_iterations(body: Callable, states: list[Any], inputs: Sequence[np.ndarray], axes: Sequence[int],
                     directions: Sequence[int], n_scan_outputs: int) -> tuple[list[Any], list[list[Any]]]:
    """Call ``body(*states, *slices)`` for each step along ``axes``; returns the final states and,
    per scan output, the list of its per-step values."""
    lengths = {x.shape[a] for x, a in zip(inputs, axes)}
    if len(lengths) > 1:
        raise ValueError(f"Scan inputs have different lengths {sorted(lengths)} along their scan axes")
    length = lengths.pop() if lengths else 0
    steps = [np.moveaxis(x, a, 0)[::-1 if d else 1] for x, a, d in zip(inputs, axes, directions)]
    n = len(states)
    collected: list[list[Any]] = [[] for _ in range(n_scan_outputs)]
    for t in range(length):
        outs = body(*states, *(s[t] for s in steps))
        states = outs[:n]
        for acc, value in zip(collected, outs[n:]):
            acc.append(value)
    return states, collected


def _stack(items: list[np.ndarray], axis: int, info: ir.ValueInfo) -> np.ndarray:
    """Per-iteration values stacked on a new ``axis``; with no iteration, an empty array shaped
    from the body output's declared type."""
    if items:
        return np.stack(items, axis=normalize_axis(axis, items[0].ndim + 1))
    t = info.type
    if not isinstance(t, ir.TensorType) or t.shape is None:
        raise ValueError(f"zero iterations: the element type of scan output {info.name!r} is not declared")
    shape = [d if isinstance(d, int) else 0 for d in t.shape]
    axis = normalize_axis(axis, len(shape) + 1)
    return np.empty(shape[:axis] + [0] + shape[axis:], dtype=t.dtype)
