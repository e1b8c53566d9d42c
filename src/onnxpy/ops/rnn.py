"""Recurrent layers: RNN, GRU and LSTM, one time step at a time, vectorized over the batch.

The input projection ``X @ W^T + Wb`` is computed for all steps at once; each step then does
one ``h @ R^T`` matmul. ``sequence_lens`` freezes a batch entry's state past its length and
zeroes its outputs there; the reverse direction reads each entry's own valid steps backwards.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from onnxpy.ops._helpers import compute_dtype, sigmoid
from onnxpy.registry import kernel

Activation = Callable[[np.ndarray], np.ndarray]

# name -> (uses alpha, uses beta, default alpha, default beta, fn(x, alpha, beta)); the defaults
# follow onnxruntime (rnn_helpers.cc), as the spec leaves them open.
_ACTIVATIONS: dict[str, tuple[bool, bool, float, float, Callable]] = {
    "relu": (False, False, 0.0, 0.0, lambda x, a, b: np.maximum(x, 0)),
    "tanh": (False, False, 0.0, 0.0, lambda x, a, b: np.tanh(x)),
    "sigmoid": (False, False, 0.0, 0.0, lambda x, a, b: sigmoid(x)),
    "affine": (True, True, 0.0, 0.0, lambda x, a, b: a * x + b),
    "leakyrelu": (True, False, 0.01, 0.0, lambda x, a, b: np.where(x >= 0, x, a * x)),
    "thresholdedrelu": (True, False, 0.0, 0.0, lambda x, a, b: np.where(x >= a, x, 0)),
    "scaledtanh": (True, True, 0.0, 0.0, lambda x, a, b: a * np.tanh(b * x)),
    "hardsigmoid": (True, True, 0.2, 0.5, lambda x, a, b: np.clip(a * x + b, 0, 1)),
    "elu": (True, False, 1.0, 0.0, lambda x, a, b: np.where(x >= 0, x, a * (np.exp(x) - 1))),
    "softsign": (False, False, 0.0, 0.0, lambda x, a, b: x / (1 + np.abs(x))),
    "softplus": (False, False, 0.0, 0.0, lambda x, a, b: np.logaddexp(x, 0)),
}

_RNN_ACTIVATIONS = ["Tanh", "Tanh"]


@kernel("RNN", since=14)
def rnn(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None, activation_beta=None,
        activations=_RNN_ACTIVATIONS, clip=None, direction="forward", hidden_size=None, layout=0):
    """Simple RNN: ``Ht = f(Xt W^T + Ht-1 R^T + Wb + Rb)``; returns ``(Y, Y_h)``."""
    return _recurrent(_rnn_cell, 1, ["Tanh"], X, W, R, B, sequence_lens, [initial_h], None,
                      activation_alpha, activation_beta, activations, clip, direction, hidden_size, layout)


@kernel("RNN", since=7)
def rnn_7(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None, activation_beta=None,
          activations=_RNN_ACTIVATIONS, clip=None, direction="forward", hidden_size=None):
    """RNN-7: without ``layout`` (sequence-major)."""
    return _recurrent(_rnn_cell, 1, ["Tanh"], X, W, R, B, sequence_lens, [initial_h], None,
                      activation_alpha, activation_beta, activations, clip, direction, hidden_size, 0)


@kernel("RNN", since=1)
def rnn_1(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None, activation_beta=None,
          activations=_RNN_ACTIVATIONS, clip=None, direction="forward", hidden_size=None, output_sequence=0):
    """RNN-1: ``output_sequence`` is accepted; Y is returned whenever the node lists it."""
    return rnn_7(X, W, R, B, sequence_lens, initial_h, activation_alpha=activation_alpha,
                 activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                 hidden_size=hidden_size)


@kernel("GRU", since=14)
def gru(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None, activation_beta=None,
        activations=None, clip=None, direction="forward", hidden_size=None, layout=0, linear_before_reset=0):
    """GRU with gates ``z, r, h`` (activations ``f=Sigmoid, g=Tanh`` by default); returns ``(Y, Y_h)``."""
    return _recurrent(_gru_cell(linear_before_reset), 3, ["Sigmoid", "Tanh"], X, W, R, B, sequence_lens,
                      [initial_h], None, activation_alpha, activation_beta, activations, clip, direction,
                      hidden_size, layout)


@kernel("GRU", since=7)
def gru_7(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None, activation_beta=None,
          activations=None, clip=None, direction="forward", hidden_size=None, linear_before_reset=0):
    """GRU-7: without ``layout`` (sequence-major)."""
    return gru(X, W, R, B, sequence_lens, initial_h, activation_alpha=activation_alpha,
               activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
               hidden_size=hidden_size, linear_before_reset=linear_before_reset)


@kernel("GRU", since=3)
def gru_3(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None, activation_beta=None,
          activations=None, clip=None, direction="forward", hidden_size=None, linear_before_reset=0,
          output_sequence=0):
    """GRU-3: ``output_sequence`` is accepted; Y is returned whenever the node lists it."""
    return gru_7(X, W, R, B, sequence_lens, initial_h, activation_alpha=activation_alpha,
                 activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                 hidden_size=hidden_size, linear_before_reset=linear_before_reset)


@kernel("GRU", since=1)
def gru_1(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None, activation_beta=None,
          activations=None, clip=None, direction="foward", hidden_size=None, output_sequence=0):
    """GRU-1: no ``linear_before_reset``; the schema's default direction is spelt ``"foward"``."""
    return gru_7(X, W, R, B, sequence_lens, initial_h, activation_alpha=activation_alpha,
                 activation_beta=activation_beta, activations=activations, clip=clip,
                 direction="forward" if direction == "foward" else direction, hidden_size=hidden_size)


@kernel("LSTM", since=14)
def lstm(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *, activation_alpha=None,
         activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None, input_forget=0,
         layout=0):
    """LSTM with gates ``i, o, f, c``, optional peepholes ``P`` (``i, o, f``) and activations
    ``f=Sigmoid, g=Tanh, h=Tanh`` by default; returns ``(Y, Y_h, Y_c)``."""
    return _recurrent(_lstm_cell(input_forget), 4, ["Sigmoid", "Tanh", "Tanh"], X, W, R, B, sequence_lens,
                      [initial_h, initial_c], P, activation_alpha, activation_beta, activations, clip, direction,
                      hidden_size, layout)


@kernel("LSTM", since=7)
def lstm_7(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *, activation_alpha=None,
           activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None, input_forget=0):
    """LSTM-7: without ``layout`` (sequence-major)."""
    return lstm(X, W, R, B, sequence_lens, initial_h, initial_c, P, activation_alpha=activation_alpha,
                activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                hidden_size=hidden_size, input_forget=input_forget)


@kernel("LSTM", since=1)
def lstm_1(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *, activation_alpha=None,
           activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None, input_forget=0,
           output_sequence=0):
    """LSTM-1: ``output_sequence`` is accepted; Y is returned whenever the node lists it."""
    return lstm_7(X, W, R, B, sequence_lens, initial_h, initial_c, P, activation_alpha=activation_alpha,
                  activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                  hidden_size=hidden_size, input_forget=input_forget)


Cell = Callable[..., list[np.ndarray]]


def _rnn_cell(xw, states, r_t, rb, p, acts, clip):
    (f,) = acts
    return [f(clip(xw + states[0] @ r_t + rb))]


def _gru_cell(linear_before_reset: int) -> Cell:
    def cell(xw, states, r_t, rb, p, acts, clip):
        f, g = acts
        h = states[0]
        n = h.shape[-1]
        zr = f(clip(xw[:, :2 * n] + h @ r_t[:, :2 * n] + rb[:2 * n]))
        z, r = zr[:, :n], zr[:, n:]
        if linear_before_reset:
            candidate = xw[:, 2 * n:] + r * (h @ r_t[:, 2 * n:] + rb[2 * n:])
        else:
            candidate = xw[:, 2 * n:] + (r * h) @ r_t[:, 2 * n:] + rb[2 * n:]
        return [(1 - z) * g(clip(candidate)) + z * h]
    return cell


def _lstm_cell(input_forget: int) -> Cell:
    def cell(xw, states, r_t, rb, p, acts, clip):
        f, g, h_act = acts
        h, c = states
        n = h.shape[-1]
        gates = xw + h @ r_t + rb
        i_pre, o_pre, f_pre, c_pre = (gates[:, k * n:(k + 1) * n] for k in range(4))
        if p is not None:
            i_pre = i_pre + p[:n] * c
            f_pre = f_pre + p[2 * n:] * c
        i = f(clip(i_pre))
        forget = 1 - i if input_forget else f(clip(f_pre))
        c_new = forget * c + i * g(clip(c_pre))
        if p is not None:
            o_pre = o_pre + p[n:2 * n] * c_new
        return [f(clip(o_pre)) * h_act(c_new), c_new]
    return cell


def _recurrent(cell: Cell, n_gates: int, default_acts: list[str], X, W, R, B, sequence_lens,
               initial: list[Any], P, alphas, betas, activations, clip, direction, hidden_size, layout):
    """Run ``cell`` over the sequence in each direction; returns ``(Y, *final states)``."""
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"direction must be forward, reverse or bidirectional, got {direction!r}")
    num_dir = 2 if direction == "bidirectional" else 1
    out_dtype = X.dtype
    dt = compute_dtype(X.dtype)
    x = X.astype(dt, copy=False)
    if layout:
        x = x.transpose(1, 0, 2)
        initial = [None if s is None else s.transpose(1, 0, 2) for s in initial]
    seq_len, batch, _ = x.shape
    hidden = R.shape[-1] if hidden_size is None else hidden_size
    if W.shape[0] != num_dir or W.shape[1] != n_gates * hidden or R.shape[1:] != (n_gates * hidden, hidden):
        raise ValueError(f"W {W.shape} and R {R.shape} do not fit direction {direction!r} with "
                         f"{n_gates} gates of hidden_size {hidden}")
    acts = _activations(activations or default_acts * num_dir, len(default_acts), num_dir, alphas, betas, dt)
    clipper = (lambda v: v) if clip is None else (lambda v: np.clip(v, -clip, clip))
    steps = np.arange(seq_len)[:, None]
    masked = sequence_lens is not None
    lens = np.asarray(sequence_lens, dtype=np.int64).reshape(-1) if masked else np.full(batch, seq_len)
    if lens.shape != (batch,) or np.any(lens < 0) or np.any(lens > seq_len):
        raise ValueError(f"sequence_lens {lens.tolist()} do not fit batch {batch} of length {seq_len}")
    valid = steps < lens
    # Each entry is reversed within its own length; the same index maps back (an involution).
    rev = np.where(valid, lens - 1 - steps, steps)
    cols = np.arange(batch)
    y = np.zeros((seq_len, num_dir, batch, hidden), dt)
    finals = [np.zeros((num_dir, batch, hidden), dt) for _ in initial]
    for d in range(num_dir):
        backward = direction == "reverse" or d == 1
        wb, rb = (np.zeros(n_gates * hidden, dt),) * 2 if B is None else np.split(B[d].astype(dt), 2)
        xd = x[rev, cols] if backward else x
        xw = (xd.reshape(seq_len * batch, x.shape[2]) @ W[d].astype(dt).T + wb).reshape(seq_len, batch, len(wb))
        r_t = np.ascontiguousarray(R[d].astype(dt).T)
        p = None if P is None else P[d].astype(dt)
        states = [np.zeros((batch, hidden), dt) if s is None else s[d].astype(dt) for s in initial]
        yd = y[:, d]
        for t in range(seq_len):
            new = cell(xw[t], states, r_t, rb, p, acts[d], clipper)
            if not masked:
                states = new
                yd[t] = new[0]
            else:
                m = valid[t][:, None]
                states = [np.where(m, a, b) for a, b in zip(new, states)]
                yd[t] = np.where(m, new[0], 0)
        if backward:
            y[:, d] = yd[rev, cols]
        for acc, s in zip(finals, states):
            acc[d] = s
    if layout:
        y, finals = y.transpose(2, 0, 1, 3), [s.transpose(1, 0, 2) for s in finals]
    return tuple(np.ascontiguousarray(v, dtype=out_dtype) for v in (y, *finals))


def _activations(names: Sequence[str], per_dir: int, num_dir: int, alphas, betas, dt) -> list[list[Activation]]:
    """Per direction, its activation functions with their alpha/beta bound. As in onnxruntime,
    one direction's list serves both directions, a longer list's extra names are unused (RNN's
    default lists two for one direction), and alphas/betas are consumed in order by the
    functions that take them."""
    if len(names) == per_dir:
        names = list(names) * num_dir
    names = names[:per_dir * num_dir]
    if len(names) != per_dir * num_dir:
        raise ValueError(f"expected {per_dir * num_dir} activations, got {list(names)}")
    alphas, betas = iter(alphas or []), iter(betas or [])
    funcs = []
    for name in names:
        entry = _ACTIVATIONS.get(name.lower())
        if entry is None:
            raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
        uses_a, uses_b, default_a, default_b, fn = entry
        a = dt.type(next(alphas, default_a)) if uses_a else None
        b = dt.type(next(betas, default_b)) if uses_b else None
        funcs.append(lambda v, fn=fn, a=a, b=b: fn(v, a, b).astype(dt, copy=False))
    return [funcs[i * per_dir:(i + 1) * per_dir] for i in range(num_dir)]
