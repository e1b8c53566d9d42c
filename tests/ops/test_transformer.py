"""Attention (23, 24, 25), RotaryEmbedding and SwiGLU against onnx.reference, onnxruntime and
independent numpy formulas."""
import ml_dtypes
import numpy as np
import pytest

from tests.ops._oracle import check, node_model, run_onnxpy

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def sdpa(q, k, v, bias=None, scale=None):
    """Plain scaled dot-product attention in float64 on (B, H, S, D) arrays, K/V heads repeated."""
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    reps = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, reps, axis=1), np.repeat(v, reps, axis=1)
    s = q @ k.swapaxes(-1, -2) * (1 / np.sqrt(q.shape[-1]) if scale is None else scale)
    if bias is not None:
        s = s + bias
    p = np.exp(s - s.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True) @ v


def outputs(n):
    return ["Y", "present_key", "present_value", "qk"][:n]


@pytest.mark.parametrize("opset", [23, 24, 25])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (4, 1)])
def test_attention_4d_gqa_matches_formula(opset, heads):
    hq, hkv = heads
    q, k, v = rand(2, hq, 3, 8), rand(2, hkv, 5, 8), rand(2, hkv, 5, 6)
    feeds = {"Q": q, "K": k, "V": v}
    check(node_model("Attention", feeds, ["Y"], opset=opset), feeds, expected=[sdpa(q, k, v).astype(np.float32)],
          rtol=1e-5, atol=1e-6)


def test_attention_3d_heads_scale_softcap_against_reference():
    feeds = {"Q": rand(2, 3, 16), "K": rand(2, 5, 8), "V": rand(2, 5, 12)}
    model = node_model("Attention", feeds, outputs(1), opset=23, q_num_heads=4, kv_num_heads=2, scale=0.3,
                       softcap=2.0)
    check(model, feeds)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_attention_past_present_and_qk_modes(mode):
    feeds = {"Q": rand(1, 2, 2, 4), "K": rand(1, 2, 2, 4), "V": rand(1, 2, 2, 4), "attn_mask": rand(2, 5),
             "past_key": rand(1, 2, 3, 4), "past_value": rand(1, 2, 3, 4)}
    model = node_model("Attention", feeds, outputs(4), opset=23, qk_matmul_output_mode=mode, softcap=3.0,
                       is_causal=1, output_types=dict.fromkeys(outputs(4), 1))
    # mode 0 is the raw product (the reference wrongly softcaps it); onnxruntime writes a finite
    # large negative instead of -inf for masked entries in mode 2, the reference follows the spec
    check(model, feeds, oracle="reference" if mode == 2 else "onnxruntime")


def test_attention_bool_mask_and_causal_bottom_right():
    q, k, v = rand(1, 1, 2, 4), rand(1, 1, 4, 4), rand(1, 1, 4, 4)
    mask = np.array([[True, False, True, True], [True, True, True, True]])
    feeds = {"Q": q, "K": k, "V": v, "attn_mask": mask}
    # without a cache the causal offset is 0: query i sees key j iff j <= i
    allowed = mask & (np.arange(4) <= np.arange(2)[:, None])
    bias = np.where(allowed, 0, -np.inf)
    check(node_model("Attention", feeds, ["Y"], opset=23, is_causal=1), feeds,
          expected=[sdpa(q, k, v, bias).astype(np.float32)])


def test_attention_fully_masked_row_is_zero():
    feeds = {"Q": rand(1, 1, 2, 4), "K": rand(1, 1, 3, 4), "V": rand(1, 1, 3, 4),
             "attn_mask": np.array([[False, False, False], [True, True, False]])}
    y = run_onnxpy(node_model("Attention", feeds, ["Y"], opset=23), feeds)[0]
    np.testing.assert_array_equal(y[0, 0, 0], 0)
    assert np.isfinite(y).all()


def test_attention_24_nonpad_kv_seqlen():
    q, k, v = rand(2, 2, 1, 4), rand(2, 2, 5, 4), rand(2, 2, 5, 4)
    lengths = np.array([3, 5], np.int64)
    feeds = {"Q": q, "K": k, "V": v}
    model = node_model("Attention", {**feeds, "": None}, ["Y"], opset=24, initializers={"L": lengths})
    model.graph.node[0].input[:] = ["Q", "K", "V", "", "", "", "L"]
    bias = np.where(np.arange(5) < lengths[:, None, None, None], 0, -np.inf)
    check(model, feeds, expected=[sdpa(q, k, v, bias).astype(np.float32)])


@pytest.mark.parametrize("window", [(2, 0), (1, 1), (-1, 0)])
def test_attention_25_sliding_window(window):
    left, right = window
    q, k, v = rand(1, 2, 4, 4), rand(1, 2, 4, 4), rand(1, 2, 4, 4)
    feeds = {"Q": q, "K": k, "V": v}
    diff = np.arange(4)[:, None] - np.arange(4)
    allowed = np.ones((4, 4), bool)
    if left >= 0:
        allowed &= diff <= left
    if right >= 0:
        allowed &= -diff <= right
    model = node_model("Attention", feeds, ["Y"], opset=25, left_window_size=left, right_window_size=right)
    check(model, feeds, expected=[sdpa(q, k, v, np.where(allowed, 0, -np.inf)).astype(np.float32)])


def test_attention_25_rejects_heads_with_4d():
    feeds = {"Q": rand(1, 2, 2, 4), "K": rand(1, 2, 2, 4), "V": rand(1, 2, 2, 4)}
    with pytest.raises(Exception, match="4-D"):
        run_onnxpy(node_model("Attention", feeds, ["Y"], opset=25, q_num_heads=2, kv_num_heads=2), feeds)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float64])
def test_attention_keeps_dtype(dtype):
    q, k, v = rand(1, 2, 3, 4), rand(1, 2, 3, 4), rand(1, 2, 3, 4)
    feeds = {"Q": q.astype(dtype), "K": k.astype(dtype), "V": v.astype(dtype)}
    y = check(node_model("Attention", feeds, ["Y"], opset=23), feeds,
              expected=[sdpa(*feeds.values()).astype(dtype)], rtol=2e-2, atol=2e-2)
    assert y[0].dtype == dtype


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rank, dim", [(4, 0), (3, 0), (4, 4)])
def test_rotary_embedding(interleaved, rank, dim):
    x = rand(2, 3, 5, 8) if rank == 4 else rand(2, 5, 24)
    half = (dim or 8) // 2
    feeds = {"X": x, "cos": rand(10, half), "sin": rand(10, half),
             "pos": RNG.integers(0, 10, (2, 5)).astype(np.int64)}
    attrs = {"num_heads": 3} if rank == 3 else {}
    model = node_model("RotaryEmbedding", feeds, ["Y"], opset=23, interleaved=interleaved,
                       rotary_embedding_dim=dim, **attrs)
    check(model, feeds, rtol=1e-5, atol=1e-5)


def test_rotary_embedding_without_position_ids():
    feeds = {"X": rand(2, 2, 3, 4), "cos": rand(2, 3, 2), "sin": rand(2, 3, 2)}
    model = node_model("RotaryEmbedding", feeds, ["Y"], opset=23, output_types={"Y": 1})
    check(model, feeds, oracle="onnxruntime", atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_swiglu(dtype):
    a, b = (rand(3, 7) * 5).astype(dtype), rand(3, 7, dtype=dtype)
    feeds = {"A": a, "B": b}
    a64 = a.astype(np.float64)
    expected = a64 / (1 + np.exp(-1.7 * a64)) * b
    y = check(node_model("SwiGLU", feeds, ["Y"], opset=28, alpha=1.7), feeds, expected=[expected.astype(dtype)],
              rtol=1e-3 if dtype == np.float16 else 1e-5)
    assert y[0].dtype == dtype


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
@pytest.mark.parametrize("heads", [(2, 2), (4, 2)])
def test_linear_attention(rule, heads):
    hq, hkv = heads
    b, t, dk, dv = 2, 5, 4, 3
    feeds = {"query": rand(b, t, hq * dk), "key": rand(b, t, hkv * dk) * 0.3, "value": rand(b, t, hkv * dv),
             "past_state": rand(b, hkv, dk, dv)}
    names = ["query", "key", "value", "past_state", "", ""]
    if rule in ("gated", "gated_delta"):
        feeds["decay"] = -np.abs(rand(b, t, hkv * dk if rule == "gated" else hkv))
        names[4] = "decay"
    if rule in ("delta", "gated_delta"):
        feeds["beta"] = RNG.random((b, t, 1 if hq == 4 else hkv)).astype(np.float32)
        names[5] = "beta"
    model = node_model("LinearAttention", feeds, ["Y", "state"], opset=27, q_num_heads=hq, kv_num_heads=hkv,
                       update_rule=rule)
    model.graph.node[0].input[:] = names
    check(model, feeds, rtol=1e-5, atol=1e-5)


def test_linear_attention_fp16_without_past_and_bad_inputs():
    feeds = {"query": rand(1, 3, 8, dtype=np.float16), "key": rand(1, 3, 8, dtype=np.float16),
             "value": rand(1, 3, 8, dtype=np.float16)}
    model = node_model("LinearAttention", feeds, ["Y", "state"], opset=27, q_num_heads=2, kv_num_heads=2,
                       update_rule="linear", scale=0.5)
    y = check(model, feeds, rtol=1e-3, atol=1e-3)
    assert y[0].dtype == y[1].dtype == np.float16
    bad = node_model("LinearAttention", feeds, ["Y", "state"], opset=27, q_num_heads=2, kv_num_heads=2)
    with pytest.raises(Exception, match="decay"):
        run_onnxpy(bad, feeds)


def _mod_graph(op_type, constant):
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node(op_type, ["x", "c"], ["y"])
    return helper.make_graph([node], "mod", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                             initializer=[numpy_helper.from_array(np.asarray(constant, np.float32), "c")])


@pytest.mark.parametrize("mods", [{}, {"score_mod": ("Add", "causal")}, {"prob_mod": ("Mul", 2.0)}])
def test_flex_attention(mods):
    q, k, v = rand(1, 4, 3, 8), rand(1, 2, 3, 8), rand(1, 2, 3, 5)
    causal = np.where(np.arange(3) <= np.arange(3)[:, None], 0, -np.inf).astype(np.float32)
    attrs = {name: _mod_graph(op, causal if c == "causal" else c) for name, (op, c) in mods.items()}
    feeds = {"Q": q, "K": k, "V": v}
    model = node_model("FlexAttention", feeds, ["Y"], opset=1, domain="ai.onnx.preview", scale=0.25, **attrs)
    bias = causal if "score_mod" in mods else None
    expected = sdpa(q, k, v, bias, scale=0.25) * (2.0 if "prob_mod" in mods else 1.0)
    check(model, feeds, expected=[expected.astype(np.float32)], atol=1e-5)
