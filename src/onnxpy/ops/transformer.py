"""Transformer building blocks: Attention, RotaryEmbedding, SwiGLU."""
from __future__ import annotations

import numpy as np

from onnxpy import ir, parallel
from onnxpy.ops._helpers import softmax as softmax_of, swish
from onnxpy.registry import kernel


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Attention's softmax: a fully masked (all -inf) row gives zeros instead of NaN."""
    return softmax_of(x, axis, empty_rows_zero=True)


def grouped_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, N, S, X) @ (B, Nkv, X, Y) -> (B, N, S, Y), query head ``h`` using key/value head
    ``h // (N / Nkv)``: the heads of a group are stacked along rows, so one BLAS GEMM serves each
    group (broadcast 5-D matmuls are several times slower)."""
    batch, heads, rows, inner = a.shape
    kv_heads = b.shape[1]
    stacked = a.reshape(batch, kv_heads, heads // kv_heads * rows, inner)
    return parallel.matmul(stacked, b).reshape(batch, heads, rows, -1)


_SCORES_BLOCK = 1 << 17  # score elements of one block of query rows (512 KB in float32: in L2)
_SCORES_IN_CACHE = 1 << 20  # score tensors up to this many elements stay in cache unblocked (measured:
# blocking BERT's 12 x 128 x 128 scores costs 1.4x, Whisper's 6 x 1500 x 1500 save 0.7x)


@kernel("AttentionCore", since=1, domain="ai.onnxpy")
def attention_core(Q, K, V, B=None, *, scale=1.0):
    """``MatMul(Softmax(MatMul(Q, K) * scale + B), V)`` (numpy matmul broadcasting, softmax over the
    last axis), fused by ``passes/fuse_attention.py``: a block of query rows at a time, whose scores
    are made, scaled, biased, normalized and multiplied by V while they are in cache; the blocks are
    spread over the session's threads."""
    matrices = min(Q.ndim, K.ndim, V.ndim) >= 2  # else matmul's vector forms
    if matrices and (K.shape[-2] != Q.shape[-1] or V.shape[-2] != K.shape[-1]):
        raise ValueError(f"attention shapes do not chain: Q {Q.shape} @ K {K.shape} @ V {V.shape}")
    if not matrices or Q.size // Q.shape[-1] * K.shape[-1] <= _SCORES_IN_CACHE:
        scores = _scaled(parallel.matmul(Q, K), scale)  # small (or vectors): nothing to gain by blocks
        return parallel.matmul(softmax_of(scores if B is None else parallel.binary(np.add, scores, B), -1), V)
    rows, cols = Q.shape[-2], K.shape[-1]
    batch = np.broadcast_shapes(Q.shape[:-2], K.shape[:-2], V.shape[:-2],
                                () if B is None else B.shape[:-2])
    if B is not None:
        B = np.broadcast_to(B, batch + (rows, cols))  # also checks that B fits the scores
    q, k, v = (np.broadcast_to(a, batch + a.shape[-2:]) for a in (Q, K, V))
    y = np.empty(batch + (rows, V.shape[-1]), dtype=np.result_type(Q, K, V))
    step = max(1, min(rows, _SCORES_BLOCK // max(cols, 1)))
    blocks = [(np.unravel_index(i, batch), r0) for i in range(int(np.prod(batch))) for r0 in range(0, rows, step)]

    def block(task: int) -> None:
        at, r0 = blocks[task]
        part = slice(r0, r0 + step)
        scores = _scaled(np.matmul(q[at][part], k[at]), scale)
        if B is not None:
            scores += B[at][part]
        np.matmul(softmax_of(scores, -1), v[at], out=y[at][part])

    parallel.for_each(block, len(blocks))
    return y


def _scaled(scores: np.ndarray, scale: float) -> np.ndarray:
    """Fresh ``scores`` times ``scale``, in place, in their dtype (1: as they are)."""
    if scale != 1.0:
        scores *= scores.dtype.type(scale)
    return scores


def _split_heads(x: np.ndarray, num_heads: int | None) -> np.ndarray:
    """(B, S, H*D) -> (B, H, S, D); 4-D inputs pass through."""
    if x.ndim == 4:
        return x
    if x.ndim != 3 or not num_heads or x.shape[2] % num_heads:
        raise ValueError(f"3-D attention input of shape {x.shape} needs q_num_heads/kv_num_heads dividing its "
                         f"hidden size (got {num_heads})")
    b, s, hidden = x.shape
    return x.reshape(b, s, num_heads, hidden // num_heads).transpose(0, 2, 1, 3)


def _allowed_keys(q_len: int, kv_len: int, offset: np.ndarray | int, *, is_causal: int, left: int,
                  right: int) -> np.ndarray | None:
    """Boolean (…, q, kv) structure mask: query i attends key j iff j <= i + offset (causal) and
    ``p - left <= j <= p + right`` with ``p = i + offset`` (windows; -1 is unbounded)."""
    if not is_causal and left < 0 and right < 0:
        return None
    diff = np.arange(q_len)[:, None] + np.reshape(offset, (-1, 1, 1, 1)) - np.arange(kv_len)
    allowed = np.ones(diff.shape, bool)
    if is_causal:
        allowed &= diff >= 0
    if left >= 0:
        allowed &= diff <= left
    if right >= 0:
        allowed &= -diff <= right
    return allowed


def _attention_bias(attn_mask, nonpad_kv_seqlen, allowed, batch: int, kv_len: int, dtype) -> np.ndarray | None:
    """Additive (…, q, kv) bias: a float mask (padded to ``kv_len`` with -inf), and -inf where a
    boolean mask, the causal/window structure or ``nonpad_kv_seqlen`` disallows a key."""
    bias = None
    if attn_mask is not None:
        pad = [(0, 0)] * (attn_mask.ndim - 1) + [(0, kv_len - attn_mask.shape[-1])]
        if attn_mask.dtype == np.bool_:
            mask = np.pad(attn_mask, pad, constant_values=False)
            allowed = mask if allowed is None else allowed & mask
        else:
            bias = np.pad(attn_mask.astype(dtype), pad, constant_values=-np.inf)
    if nonpad_kv_seqlen is not None:
        valid = (np.arange(kv_len) < nonpad_kv_seqlen.reshape(batch, 1, 1, 1))
        allowed = valid if allowed is None else allowed & valid
    if allowed is not None:
        structure = np.where(allowed, dtype.type(0), dtype.type(-np.inf))
        bias = structure if bias is None else bias + structure
    return bias


def attention(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *, is_causal=0,
              kv_num_heads=None, q_num_heads=None, qk_matmul_output_mode=0, scale=None, softcap=0.0,
              softmax_precision=None, left_window_size=-1, right_window_size=-1, num_outputs=4):
    """Scaled dot-product attention of the ONNX Attention op (all versions); see its spec."""
    if (past_key is None) != (past_value is None):
        raise ValueError("past_key and past_value must be given together")
    if nonpad_kv_seqlen is not None and past_key is not None:
        raise ValueError("nonpad_kv_seqlen cannot be combined with past_key/past_value")
    out_dtype = Q.dtype
    # float16 runs in float32; bfloat16 stays native, rounding like the reference's node test data
    dtype = np.dtype(np.float32) if Q.dtype == np.float16 else Q.dtype
    q = _split_heads(Q, q_num_heads)
    k = _split_heads(K, kv_num_heads)
    v = _split_heads(V, kv_num_heads)
    present_key = k if past_key is None else np.concatenate([past_key, k], axis=2)
    present_value = v if past_value is None else np.concatenate([past_value, v], axis=2)
    batch, heads, q_len, head_size = q.shape
    kv_heads, kv_len = present_key.shape[1], present_key.shape[2]
    if heads % kv_heads or present_value.shape[1] != kv_heads:
        raise ValueError(f"{heads} query heads cannot be grouped over {kv_heads} key/value heads")
    root = dtype.type(np.sqrt(1 / np.sqrt(head_size) if scale is None else scale))
    raw = grouped_matmul(q.astype(dtype) * root, (present_key.astype(dtype) * root).swapaxes(-1, -2))
    capped = softcap * np.tanh(raw / dtype.type(softcap)) if softcap > 0 else raw

    if nonpad_kv_seqlen is not None and past_key is None:
        offset = nonpad_kv_seqlen.astype(np.int64) - q_len
    else:
        offset = 0 if past_key is None else past_key.shape[2]
    allowed = _allowed_keys(q_len, kv_len, offset, is_causal=is_causal, left=left_window_size,
                            right=right_window_size)
    bias = _attention_bias(attn_mask, nonpad_kv_seqlen, allowed, batch, kv_len, dtype)
    scores = capped if bias is None else capped + bias
    probs = softmax(scores.astype(ir.dtype_of(softmax_precision) if softmax_precision else dtype, copy=False))
    if bias is not None:
        # a fully masked row yields zeros, not a uniform distribution or NaN
        probs = np.where(np.isneginf(bias.max(axis=-1, keepdims=True)), probs.dtype.type(0), probs)
    probs = probs.astype(dtype, copy=False)
    y = grouped_matmul(probs, present_value.astype(dtype))
    if Q.ndim == 3:
        y = y.transpose(0, 2, 1, 3).reshape(batch, q_len, -1)
    outputs = [y.astype(out_dtype), present_key, present_value]
    if num_outputs > 3:
        qk = (raw, capped, scores, probs)[qk_matmul_output_mode]
        outputs.append(qk.astype(out_dtype))
    return tuple(outputs)


@kernel("Attention", since=23)
def attention_23(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *, is_causal=0,
                 kv_num_heads=None, q_num_heads=None, qk_matmul_output_mode=0, scale=None, softcap=0.0,
                 softmax_precision=None, ctx):
    """Attention-23/24 (24 adds the ``nonpad_kv_seqlen`` input)."""
    return attention(Q, K, V, attn_mask, past_key, past_value, nonpad_kv_seqlen, is_causal=is_causal,
                     kv_num_heads=kv_num_heads, q_num_heads=q_num_heads,
                     qk_matmul_output_mode=qk_matmul_output_mode, scale=scale, softcap=softcap,
                     softmax_precision=softmax_precision, num_outputs=ctx.num_outputs)


@kernel("Attention", since=25)
def attention_25(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *, is_causal=0,
                 kv_num_heads=None, left_window_size=-1, q_num_heads=None, qk_matmul_output_mode=0,
                 right_window_size=-1, scale=None, softcap=0.0, softmax_precision=None, ctx):
    """Attention-25: sliding windows; head counts are only allowed with 3-D inputs."""
    if Q.ndim == 4 and (q_num_heads is not None or kv_num_heads is not None):
        raise ValueError("q_num_heads and kv_num_heads must not be set for 4-D inputs")
    if left_window_size < -1 or right_window_size < -1:
        raise ValueError("left_window_size and right_window_size must be -1 or non-negative")
    return attention(Q, K, V, attn_mask, past_key, past_value, nonpad_kv_seqlen, is_causal=is_causal,
                     kv_num_heads=kv_num_heads, q_num_heads=q_num_heads,
                     qk_matmul_output_mode=qk_matmul_output_mode, scale=scale, softcap=softcap,
                     softmax_precision=softmax_precision, left_window_size=left_window_size,
                     right_window_size=right_window_size, num_outputs=ctx.num_outputs)


def rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, *, interleaved: int) -> np.ndarray:
    """Rotate pairs of the last axis of ``x`` by angles with ``cos``/``sin`` (last axis half as long):
    interleaved pairs (x0, x1), (x2, x3)… or halves (x[:d/2], x[d/2:])."""
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
    else:
        x1, x2 = np.split(x, 2, axis=-1)
    real = cos * x1 - sin * x2
    imag = sin * x1 + cos * x2
    if interleaved:
        return np.stack([real, imag], axis=-1).reshape(x.shape)
    return np.concatenate([real, imag], axis=-1)


@kernel("RotaryEmbedding", since=23)
def rotary_embedding(X, cos_cache, sin_cache, position_ids=None, *, interleaved=0, num_heads=None,
                     rotary_embedding_dim=0):
    """Rotary position embedding of (B, H, S, D) or (B, S, H*D) input (``num_heads`` for 3-D)."""
    if X.ndim == 3:
        if not num_heads:
            raise ValueError("RotaryEmbedding of a 3-D input needs num_heads")
        x = X.reshape(X.shape[0], X.shape[1], num_heads, -1).transpose(0, 2, 1, 3)
    else:
        x = X
    dim = rotary_embedding_dim or x.shape[-1]
    if position_ids is not None:
        cos_cache, sin_cache = cos_cache[position_ids], sin_cache[position_ids]
    if cos_cache.shape[-1] * 2 != dim or sin_cache.shape[-1] * 2 != dim:
        raise ValueError(f"cos/sin caches of last dimension {cos_cache.shape[-1]}/{sin_cache.shape[-1]} do not "
                         f"match half the rotary dimension {dim}")
    cos, sin = cos_cache[:, None].astype(X.dtype), sin_cache[:, None].astype(X.dtype)
    y = np.concatenate([rotate(x[..., :dim], cos, sin, interleaved=interleaved), x[..., dim:]], axis=-1)
    return y.transpose(0, 2, 1, 3).reshape(X.shape) if X.ndim == 3 else y


@kernel("SwiGLU", since=28)
def swiglu(A, B, *, alpha=1.0):
    """``A * sigmoid(alpha * A) * B`` for same-shaped ``A`` and ``B``."""
    if A.shape != B.shape or A.dtype != B.dtype:
        raise ValueError(f"SwiGLU needs inputs of one shape and dtype, got {A.shape} {A.dtype} and "
                         f"{B.shape} {B.dtype}")
    a = A.astype(np.float32) if A.dtype != np.float64 else A
    y = swish(a, alpha)
    y *= B
    return y.astype(A.dtype, copy=False)


def _per_head(x: np.ndarray, heads: int) -> np.ndarray:
    """(B, T, H*D) -> (B, H, T, D) in float32 (the recurrence's precision)."""
    b, t, hd = x.shape
    if hd % heads:
        raise ValueError(f"last dimension {hd} of shape {x.shape} is not divisible by {heads} heads")
    return x.reshape(b, t, heads, hd // heads).transpose(0, 2, 1, 3).astype(np.float32)


@kernel("LinearAttention", since=27)
def linear_attention(query, key, value, past_state=None, decay=None, beta=None, *, chunk_size=64, kv_num_heads,
                     q_num_heads, scale=0.0, update_rule="gated_delta"):
    """Recurrent linear attention (linear, gated, delta or gated-delta state update), token by
    token; query heads share the state of their key/value head group."""
    if update_rule not in ("linear", "gated", "delta", "gated_delta"):
        raise ValueError(f"unknown update_rule {update_rule!r}")
    gated, delta = update_rule in ("gated", "gated_delta"), update_rule in ("delta", "gated_delta")
    if gated != (decay is not None) or delta != (beta is not None):
        raise ValueError(f"update_rule {update_rule!r} needs decay {'given' if gated else 'omitted'} and "
                         f"beta {'given' if delta else 'omitted'}")
    if q_num_heads % kv_num_heads:
        raise ValueError(f"q_num_heads {q_num_heads} is not a multiple of kv_num_heads {kv_num_heads}")
    b, t, _ = query.shape
    q = _per_head(query, q_num_heads)
    k, v = _per_head(key, kv_num_heads), _per_head(value, kv_num_heads)
    d_k, d_v = k.shape[-1], v.shape[-1]
    q = q.reshape(b, kv_num_heads, q_num_heads // kv_num_heads, t, d_k)
    if gated:
        g = decay.reshape(b, t, kv_num_heads, -1).transpose(0, 2, 1, 3).astype(np.float32)
        g = np.exp(g)[..., None]  # (B, Hkv, T, 1 or d_k, 1)
    if delta:
        rate = beta.reshape(b, t, -1).transpose(0, 2, 1)[..., None].astype(np.float32)  # (B, Hkv or 1, T, 1)
    state = np.zeros((b, kv_num_heads, d_k, d_v), np.float32) if past_state is None else \
        past_state.astype(np.float32)
    out = np.empty((b, kv_num_heads, q.shape[2], t, d_v), np.float32)
    for i in range(t):
        if gated:
            state = state * g[:, :, i]
        v_i = v[:, :, i]
        if delta:
            v_i = rate[:, :, i] * (v_i - np.einsum("bhdm,bhd->bhm", state, k[:, :, i]))
        state = state + k[:, :, i, :, None] * v_i[:, :, None, :]
        out[:, :, :, i] = np.matmul(q[:, :, :, i], state)
    factor = np.float32(scale or 1 / np.sqrt(d_k))
    y = (out * factor).reshape(b, q_num_heads, t, d_v).transpose(0, 2, 1, 3).reshape(b, t, -1)
    return y.astype(query.dtype), state.astype(query.dtype if past_state is None else past_state.dtype)


@kernel("FlexAttention", since=1, domain="ai.onnx.preview")
def flex_attention(Q, K, V, *, prob_mod=None, scale=None, score_mod=None, softmax_precision=None):
    """Scaled dot-product attention with optional ``score_mod``/``prob_mod`` subgraphs applied to
    the (B, Hq, L, S) scores and probabilities, in ``softmax_precision`` (float32, or float64 for
    double inputs, by default)."""
    if Q.ndim != 4 or K.ndim != 4 or V.ndim != 4:
        raise ValueError(f"FlexAttention needs rank-4 Q, K, V, got {Q.shape}, {K.shape}, {V.shape}")
    b, heads, length, head_size = Q.shape
    kv_heads = K.shape[1]
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads cannot be grouped over {kv_heads} key/value heads")
    dtype = ir.dtype_of(softmax_precision) if softmax_precision else \
        np.dtype(np.float64 if Q.dtype == np.float64 else np.float32)
    scores = grouped_matmul(Q.astype(dtype), K.astype(dtype).swapaxes(-1, -2))
    scores = scores * dtype.type(1 / np.sqrt(head_size) if scale is None else scale)
    if score_mod is not None:
        scores = np.asarray(score_mod(scores)[0], dtype)
    probs = softmax(scores)
    if prob_mod is not None:
        probs = np.asarray(prob_mod(probs)[0], dtype)
    return grouped_matmul(probs, V.astype(dtype)).astype(Q.dtype)
