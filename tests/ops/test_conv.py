"""Conv, ConvTranspose, Col2Im, DeformConv and CausalConvWithState at every registered version, against
PyTorch/torchvision, onnxruntime, onnx.reference and numpy computations written from the spec."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from onnx import TensorProto

import onnxpy
from onnxpy.ops import conv as conv_module
from onnxpy.ops._helpers import HARD_SWISH, SWISH, window_geometry
from tests.ops._oracle import check, node_model, run_onnxpy

RNG = np.random.default_rng(0)
FLOAT = TensorProto.FLOAT
TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def torch_conv(x, w, b, strides, dilations, pads, group):
    """Conv via PyTorch, asymmetric pads applied with F.pad (last axis first)."""
    n = x.ndim - 2
    torch_pads = [p for d in reversed(range(n)) for p in (pads[d], pads[n + d])]
    xt = F.pad(torch.from_numpy(x.astype(np.float64)), torch_pads)
    bt = None if b is None else torch.from_numpy(b.astype(np.float64))
    y = TORCH_CONV[n](xt, torch.from_numpy(w.astype(np.float64)), bt, stride=strides, dilation=dilations, groups=group)
    return y.numpy().astype(x.dtype)


CONV_CASES = [
    # x shape, w shape, strides, dilations, pads, group
    ((2, 3, 9), (4, 3, 3), [1], [1], [1, 1], 1),
    ((1, 4, 11), (8, 2, 3), [2], [2], [0, 2], 2),
    ((2, 3, 7, 8), (5, 3, 3, 3), [1, 1], [1, 1], [1, 1, 1, 1], 1),
    ((1, 4, 9, 7), (6, 2, 3, 2), [2, 1], [1, 2], [1, 0, 2, 1], 2),
    ((2, 6, 8, 8), (6, 1, 3, 3), [1, 1], [1, 1], [1, 1, 1, 1], 6),     # depthwise
    ((1, 4, 9, 9), (8, 1, 3, 3), [2, 2], [1, 1], [1, 1, 1, 1], 4),     # depthwise, multiplier 2
    ((2, 8, 5, 5), (4, 8, 1, 1), [1, 1], [1, 1], [0, 0, 0, 0], 1),     # 1x1: one matmul
    ((2, 8, 6, 5), (6, 4, 1, 1), [2, 2], [1, 1], [0, 0, 0, 0], 2),     # strided grouped 1x1
    ((1, 4, 5, 5), (3, 4, 1, 1), [1, 1], [1, 1], [1, 0, 0, 1], 1),     # padded 1x1
    ((1, 2, 5, 6, 7), (4, 2, 3, 3, 3), [1, 2, 1], [1, 1, 2], [1, 0, 1, 1, 1, 0], 1),
    ((2, 4, 4, 5, 6), (4, 2, 2, 3, 1), [1, 1, 1], [1, 1, 1], [0, 1, 0, 0, 1, 0], 2),
]


@pytest.mark.parametrize("opset", [1, 11, 22])
@pytest.mark.parametrize("xs,ws,strides,dilations,pads,group", CONV_CASES)
def test_conv_explicit_pads(opset, xs, ws, strides, dilations, pads, group):
    x, w, b = rand(*xs), rand(*ws), rand(ws[0])
    model = node_model("Conv", {"x": x, "w": w, "b": b}, ["y"], opset=opset, strides=strides,
                       dilations=dilations, pads=pads, group=group)
    check(model, {"x": x, "w": w, "b": b}, expected=[torch_conv(x, w, b, strides, dilations, pads, group)],
          rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("xs,ws", [
    ((2, 16, 30, 37), (4, 16, 3, 3)),        # 144 * 37 patch elements per output row: bands of 6 rows
    ((1, 8, 11, 12, 10), (4, 4, 3, 3, 3)),   # 216 * 120 per row: the 256-column minimum, bands of 3
    ((1, 6, 40, 30), (6, 2, 3, 3)),          # grouped: 54 * 30 per row, bands of 20 rows
])
def test_conv_im2col_in_row_bands(monkeypatch, xs, ws):
    monkeypatch.setattr(conv_module, "_COLS_BUDGET", 1 << 15)
    monkeypatch.setattr(conv_module, "_GROUPED_COLS_BUDGET", 1 << 15)
    x, w = rand(*xs), rand(*ws)
    n, group = x.ndim - 2, xs[1] // ws[1]
    pads = [1] * (2 * n)
    model = node_model("Conv", {"x": x, "w": w}, ["y"], opset=22, pads=pads, group=group)
    check(model, {"x": x, "w": w}, expected=[torch_conv(x, w, None, [1] * n, [1] * n, pads, group)],
          rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("xs,ws,strides,dilations,pads", [
    ((2, 5, 13, 11), (5, 1, 3, 3), [1, 1], [1, 1], [1, 1, 1, 1]),
    ((1, 6, 16, 15), (6, 1, 3, 3), [2, 2], [1, 1], [0, 0, 1, 1]),     # the usual stride-2 padding
    ((1, 4, 17, 12), (12, 1, 5, 3), [3, 2], [1, 1], [2, 1, 0, 2]),    # multiplier 3, odd strides
    ((2, 3, 12, 14), (3, 1, 3, 3), [1, 2], [2, 3], [2, 3, 1, 0]),     # dilated
    ((1, 2, 4, 5), (2, 1, 5, 5), [1, 1], [1, 1], [4, 4, 4, 4]),       # padding wider than the input
    ((1, 3, 9, 9), (3, 1, 3, 3), [2, 2], [1, 1], [0, 0, 0, 0]),       # input rows the output never reads
    ((1, 960, 7, 7), (960, 1, 3, 3), [1, 1], [1, 1], [1, 1, 1, 1]),
    ((2, 4, 20), (8, 1, 5), [2], [2], [3, 1]),                       # 1-D
    # vectors of channels (at least 16 channels and at most 16x16 outputs, or at least 32 channels:
    # _jit._depthwise_lanes): a last block of fewer channels than lanes, planes of fewer pixels than
    # lanes or not a multiple, rows of other than eight pixels
    ((2, 200, 7, 7), (200, 1, 5, 5), [1, 1], [1, 1], [2, 2, 2, 2]),
    ((1, 48, 13, 13), (48, 1, 3, 3), [1, 1], [1, 1], [1, 1, 1, 1]),
    ((1, 16, 10, 10), (16, 1, 3, 3), [2, 2], [1, 1], [0, 0, 0, 0]),     # input rows the output never reads
    ((1, 40, 14, 14), (40, 1, 5, 5), [1, 1], [1, 1], [2, 2, 2, 2]),
    ((1, 32, 20, 21), (32, 1, 3, 3), [1, 1], [1, 1], [1, 1, 1, 1]),     # larger outputs: 32 channels and more
    ((2, 48, 37, 35), (48, 1, 5, 5), [2, 2], [1, 1], [2, 1, 2, 2]),
    ((1, 24, 20, 21), (24, 1, 3, 3), [1, 1], [1, 1], [1, 1, 1, 1]),     # fewer: flat runs
    ((1, 144, 8, 7), (144, 1, 3, 3), [1, 1], [1, 1], [1, 0, 2, 1]),    # asymmetric
    ((1, 40, 15, 14), (40, 1, 5, 5), [2, 2], [1, 1], [1, 2, 2, 1]),     # stride 2 to 7x7
    ((2, 24, 8, 8), (24, 1, 3, 3), [1, 1], [2, 2], [2, 2, 2, 2]),       # dilated
    ((1, 32, 7, 10), (32, 1, 3, 5), [1, 2], [1, 1], [1, 2, 1, 2]),      # neither 3x3 nor 5x5
    ((1, 20, 3, 4), (20, 1, 5, 5), [1, 1], [1, 1], [2, 2, 2, 2]),       # no interior pixel
    ((2, 16, 50), (16, 1, 3), [1], [1], [1, 1]),                       # 1-D, channels-last
    # stride 1, output of the input's size, rows of at most 32: flat runs (_jit._depthwise_flat)
    ((2, 3, 12, 11), (6, 1, 3, 3), [1, 1], [1, 1], [1, 1, 1, 1]),       # multiplier 2
    ((1, 4, 13, 9), (4, 1, 3, 3), [1, 1], [2, 2], [2, 2, 2, 2]),        # dilated
    ((1, 5, 10, 12), (5, 1, 2, 3), [1, 1], [1, 1], [0, 2, 1, 0]),       # asymmetric: all padding on one side
    ((1, 2, 3, 4), (2, 1, 5, 5), [1, 1], [1, 1], [2, 2, 2, 2]),         # kernel wider than the image
    ((1, 3, 9, 40), (3, 1, 3, 3), [1, 1], [1, 1], [1, 1, 1, 1]),        # rows of 40: sliding windows
    # one input channel: windows up to 31 output channels, im2col + GEMM from 32 (conv._MAX_WINDOW_MULTIPLIER)
    ((2, 1, 20, 21), (16, 1, 3, 3), [1, 1], [1, 1], [1, 1, 1, 1]),
    ((2, 1, 20, 21), (64, 1, 5, 5), [1, 1], [1, 1], [2, 2, 2, 2]),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_conv_depthwise(xs, ws, strides, dilations, pads, dtype):
    """C/group == 1 runs the compiled one-pass kernel (ops/_jit.py) for 1-D and 2-D."""
    x, w, b = rand(*xs, dtype=dtype), rand(*ws, dtype=dtype), rand(ws[0], dtype=dtype)
    model = node_model("Conv", {"x": x, "w": w, "b": b}, ["y"], opset=22, strides=strides,
                       dilations=dilations, pads=pads, group=xs[1])
    tol = {np.float32: 1e-4, np.float64: 1e-10, np.float16: 1e-2}[dtype]
    check(model, {"x": x, "w": w, "b": b}, expected=[torch_conv(x, w, b, strides, dilations, pads, xs[1])],
          rtol=tol, atol=tol)


@pytest.mark.parametrize("xs, ws, strides, pads", [
    ((1, 3, 11, 12), (3, 1, 3, 3), [1, 1], [1, 1, 1, 1]),
    ((1, 3, 11, 12), (6, 1, 5, 5), [1, 1], [2, 2, 2, 2]),      # 25 taps: the last pass has one missing tap
    ((2, 2, 13, 13), (2, 1, 7, 7), [2, 2], [3, 3, 3, 3]),      # 49 taps, stride 2
    ((1, 3, 9, 40), (3, 1, 5, 5), [1, 1], [2, 2, 2, 2]),       # rows of 40: sliding windows
    ((1, 4, 20), (4, 1, 5), [1], [2, 2]),                      # 1-D
    ((1, 20, 7, 7), (20, 1, 5, 5), [1, 1], [2, 2, 2, 2]),      # vectors of channels
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_depthwise_keeps_infinities(xs, ws, strides, pads, dtype):
    """Infinite inputs give infinite outputs, not NaN: the missing third taps (weight 0) of the
    sliding-window and flat kernels read zeros, never an input's inf (0 x inf is NaN). Weights are positive, so no inf
    meets a -inf in a window and PyTorch's result has no NaN."""
    x, w, b = rand(*xs, dtype=dtype), np.abs(rand(*ws, dtype=dtype)) + 0.1, rand(ws[0], dtype=dtype)
    x.reshape(-1)[[5, 17]] = np.inf
    x.reshape(-1)[-3] = -np.inf
    expected = torch_conv(x, w, b, strides, [1] * len(strides), pads, xs[1])
    assert np.isinf(expected).any() and not np.isnan(expected).any()
    model = node_model("Conv", {"x": x, "w": w, "b": b}, ["y"], opset=22, strides=strides, pads=pads, group=xs[1])
    check(model, {"x": x, "w": w, "b": b}, expected=[expected], rtol=1e-4, atol=1e-4)


# a few input channels (a network's stem) and output rows of at least two vectors: the direct kernel
DIRECT_CASES = [
    ((1, 3, 40, 70), (16, 3, 3, 3), [2, 2], [1, 1, 1, 1]),     # a stem: stride 2
    ((1, 3, 30, 101), (16, 3, 7, 7), [2, 2], [3, 3, 3, 3]),    # resnet's stem: odd pad, odd width
    ((2, 3, 21, 37), (13, 3, 3, 3), [1, 1], [1, 1, 1, 1]),     # 13 channels, rows of 37, two images
    ((1, 1, 30, 40), (40, 1, 5, 5), [1, 1], [2, 2, 2, 2]),     # one input channel, 5x5
    ((1, 4, 19, 70), (9, 4, 3, 5), [2, 2], [0, 2, 1, 0]),      # asymmetric pads, a 3x5 kernel
    ((3, 2, 11, 64), (8, 2, 1, 1), [1, 1], [0, 1, 1, 0]),      # 1x1 padded, three images
    ((1, 3, 25, 80), (8, 3, 7, 7), [3, 2], [3, 3, 3, 3]),      # row stride 3
    ((1, 16, 12, 40), (24, 16, 3, 3), [1, 1], [1, 1, 1, 1]),   # 16 input channels, 3x3
    ((2, 32, 9, 50), (9, 32, 3, 3), [1, 1], [1, 1, 1, 1]),     # 32 input channels, few outputs
]


@pytest.mark.parametrize("xs,ws,strides,pads", DIRECT_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_conv_direct_few_input_channels(xs, ws, strides, pads, dtype):
    from onnxpy.ops import _jit

    x, w, b = rand(*xs, dtype=dtype), rand(*ws, dtype=dtype), rand(ws[0], dtype=dtype)
    expected = torch_conv(x, w, b, strides, [1, 1], pads, 1)
    compute = np.float32 if dtype == np.float16 else dtype
    assert _jit.direct_applies(x.astype(compute), w, strides, [1, 1], list(expected.shape[2:]))
    model = node_model("Conv", {"x": x, "w": w, "b": b}, ["y"], opset=22, strides=strides, pads=pads)
    tol = {np.float32: 1e-4, np.float64: 1e-10, np.float16: 1e-2}[dtype]
    check(model, {"x": x, "w": w, "b": b}, expected=[expected], rtol=tol, atol=tol)


@pytest.mark.parametrize("xs,ws", [((1, 32, 20, 40), (64, 32, 3, 3)), ((1, 16, 20, 40), (32, 16, 1, 1)),
                                   ((1, 3, 20, 20), (16, 3, 3, 3)), ((1, 3, 20, 40), (4, 3, 3, 3))])
def test_conv_direct_stays_off_where_the_gemm_is_faster(xs, ws):
    """More input and output channels, a 1x1 kernel past the stem, short rows or few outputs:
    im2col + GEMM (or Winograd) keeps them."""
    from onnxpy.ops import _jit

    x, w = rand(*xs), rand(*ws)
    assert not _jit.direct_applies(x, w, [1, 1], [1, 1], [xs[2], xs[3]])
    assert not _jit.direct_applies(x[:, :, 0], w[:, :, 0], [1], [1], [xs[3]])  # 1-D


@pytest.mark.parametrize("clamp,hard_swish", [((0.0, 6.0), False), ((-1.0, np.inf), False), (None, True),
                                              ((0.0, 6.0), True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_direct_epilogue_and_infinities(clamp, hard_swish, dtype):
    """The direct kernel's clamp and HardSwish (FusedConv's), against PyTorch; infinite inputs stay
    infinite (positive weights: no inf meets a -inf), NaN stays NaN."""
    x, w, b = rand(2, 3, 20, 70, dtype=dtype), np.abs(rand(24, 3, 3, 3, dtype=dtype)) + 0.1, rand(24, dtype=dtype)
    x[0, 1, 4, [3, 40]] = np.inf
    x[1, 2, 9, 7] = -np.inf
    x[1, 0, 15, 60] = np.nan
    y = torch.from_numpy(torch_conv(x, w, b, [2, 2], [1, 1], [1, 1, 1, 1], 1))
    if clamp is not None:
        y = torch.clamp(y, *clamp)
    if hard_swish:
        y = F.hardswish(y)
    got = conv_module.convolve(x, w, b, pads=[1, 1, 1, 1], strides=[2, 2], clamp=clamp,
                               activation=(conv_module.HARD_SWISH, 0.0) if hard_swish else None)
    assert np.isnan(got).any() and np.isinf(got).any() == (clamp is None or clamp[1] == np.inf)
    np.testing.assert_allclose(got, y.numpy(), rtol=1e-5, atol=1e-5)


# unpadded 1x1 convolutions of at least a vector of output positions: the register-blocked kernel
POINTWISE_CASES = [
    ((2, 16, 11, 13), (24, 16, 1, 1), [1, 1]),      # 143 positions: two blocks of three vectors, then three vectors
    ((1, 300, 7, 7), (16, 300, 1, 1), [1, 1]),      # three passes over the input channels, 49 positions
    ((3, 129, 1, 17), (40, 129, 1, 1), [1, 1]),     # two passes, fewer positions than a block, three images
    ((1, 12, 6, 8), (13, 12, 1, 1), [1, 1]),        # 13 outputs: the last row block overlaps
    ((1, 24, 20, 34), (32, 24, 1, 1), [2, 2]),      # stride 2
    ((2, 8, 100), (9, 8, 1), [1]),                  # 1-D
    ((1, 8, 4, 5, 6), (16, 8, 1, 1, 1), [1, 1, 1]),  # 3-D
]


@pytest.mark.parametrize("xs,ws,strides", POINTWISE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_conv_pointwise(xs, ws, strides, dtype):
    from onnxpy.ops import _jit

    x, w, b = rand(*xs, dtype=dtype), rand(*ws, dtype=dtype), rand(ws[0], dtype=dtype)
    pads = [0] * 2 * len(strides)
    expected = torch_conv(x, w, b, strides, [1] * len(strides), pads, 1)
    compute = np.float32 if dtype == np.float16 else dtype
    assert _jit.pointwise_applies(x.astype(compute), w, pads[:len(strides)], pads[len(strides):],
                                  list(expected.shape[2:]))
    model = node_model("Conv", {"x": x, "w": w, "b": b}, ["y"], opset=22, strides=strides)
    tol = {np.float32: 1e-4, np.float64: 1e-10, np.float16: 1e-2}[dtype]
    check(model, {"x": x, "w": w, "b": b}, expected=[expected], rtol=tol, atol=tol)


@pytest.mark.parametrize("xs,ws", [((1, 64, 56, 56), (128, 64, 1, 1)),     # split by column blocks
                                   ((1, 320, 7, 7), (1280, 320, 1, 1)),    # one column block: split by rows
                                   ((1, 512, 13, 13), (1000, 512, 1, 1))])  # three (unequal): by rows
def test_conv_pointwise_two_threads(xs, ws):
    """Weights as initializers (packed once, then reused) and the work split over two threads."""
    x, w, b = rand(*xs), rand(*ws), rand(ws[0])
    model = node_model("Conv", {"x": x}, ["y"], opset=22, initializers={"w": w, "b": b})
    options = onnxpy.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxpy.InferenceSession(model.SerializeToString(), options)
    expected = torch_conv(x, w, b, [1, 1], [1, 1], [0, 0, 0, 0], 1)
    for _ in range(2):
        np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("side", [8, 13])
@pytest.mark.parametrize("m", [1000, 1001])
def test_conv_pointwise_two_threads_swish(m, side):
    """64 columns (one block) or 169 (three): 1000 output channels split by row blocks over two
    threads, each piece Swish'ing its own rows of every column block; 1001 (the last row block
    overlaps the one before) by column blocks, or in one piece."""
    from onnxpy import parallel

    x, w, b = rand(1, 128, side, side), rand(m, 128, 1, 1), rand(m)
    with parallel.using(parallel.Pool(2)):
        got = conv_module.convolve(x, w, b, activation=(SWISH, 1.0))
    expected = F.silu(torch.from_numpy(torch_conv(x, w, b, [1, 1], [1, 1], [0, 0, 0, 0], 1))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", [None, "hard_swish", "swish"])
@pytest.mark.parametrize("with_z", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_pointwise_epilogue(activation, with_z, dtype):
    """The residual z, the clamp and the activation (FusedConv's), against PyTorch, over several
    passes of input channels and a row block that overlaps; inf and NaN inputs propagate (the
    clamp and HardSwish cases), and nothing passed in is changed."""
    x, w, b = rand(2, 160, 7, 9, dtype=dtype), np.abs(rand(48, 160, 1, 1, dtype=dtype)), rand(48, dtype=dtype)
    z = rand(2, 48, 7, 9, dtype=dtype) if with_z else None
    if activation != "swish":
        x[0, 3, 2, [1, 5]] = np.inf
        x[1, 7, 6, 8] = np.nan
    clamp = (0.0, 6.0) if activation is None else None
    before = [a.copy() for a in (x, w, b) + ((z,) if with_z else ())]
    y = torch.from_numpy(torch_conv(x, w, b, [1, 1], [1, 1], [0, 0, 0, 0], 1))
    if with_z:
        y = y + torch.from_numpy(z)
    if clamp is not None:
        y = torch.clamp(y, *clamp)
    y = {None: y, "hard_swish": F.hardswish(y), "swish": F.silu(y)}[activation]
    code = {None: None, "hard_swish": (HARD_SWISH, 0.0), "swish": (SWISH, 1.0)}[activation]
    got = conv_module.convolve(x, w, b, z=z, clamp=clamp, activation=code)
    np.testing.assert_allclose(got, y.numpy(), rtol=1e-5, atol=1e-5)
    assert all(np.array_equal(a, c, equal_nan=True) for a, c in zip((x, w, b) + ((z,) if with_z else ()), before))


def test_conv_pointwise_follows_a_changed_weight():
    """Packed weights are kept only for read-only arrays (a session's initializers): a caller's
    writeable weight changed between calls gives the new result."""
    x, w = rand(1, 8, 6, 6), rand(16, 8, 1, 1)
    first = conv_module.convolve(x, w)
    w *= 2
    np.testing.assert_allclose(conv_module.convolve(x, w), 2 * first, rtol=1e-6)


@pytest.mark.parametrize("xs,ws,pads", [((1, 16, 8, 8), (32, 16, 1, 1), [1, 1, 1, 1]),   # padded
                                        ((1, 16, 8, 8), (4, 16, 1, 1), [0, 0, 0, 0]),    # 4 outputs
                                        ((1, 16, 3, 3), (32, 16, 1, 1), [0, 0, 0, 0]),   # 9 positions
                                        ((1, 200, 8, 8), (36, 200, 1, 1), [0, 0, 0, 0]),  # two passes, 36 outputs
                                        ((1, 16, 8, 8), (32, 16, 3, 3), [0, 0, 0, 0])])  # 3x3
def test_conv_pointwise_stays_off(xs, ws, pads):
    from onnxpy.ops import _jit

    x, w = rand(*xs), rand(*ws)
    out = [(s + pads[i] + pads[i + 2] - k) + 1 for i, (s, k) in enumerate(zip(xs[2:], ws[2:]))]
    assert not _jit.pointwise_applies(x, w, pads[:2], pads[2:], out)
    check(node_model("Conv", {"x": x, "w": w}, ["y"], opset=22, pads=pads), {"x": x, "w": w},
          expected=[torch_conv(x, w, None, [1, 1], [1, 1], pads, 1)], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("xs, ws", [((1, 8, 1, 1), (16, 8, 1, 1)), ((1, 96, 3, 3), (576, 96, 1, 1))])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_conv_one_small_gemm(xs, ws, bias, dtype):
    """A 1x1 convolution of one image, small enough for one GEMM: finished by numpy, or by the
    compiled pass once the output is large enough (float32, float64)."""
    x, w, b = rand(*xs, dtype=dtype), rand(*ws, dtype=dtype), rand(ws[0], dtype=dtype)
    feeds = {"x": x, "w": w, "b": b} if bias else {"x": x, "w": w}
    model = node_model("Conv", feeds, ["y"], opset=22)
    tol = {np.float32: 1e-4, np.float64: 1e-10, np.float16: 1e-2}[dtype]
    check(model, feeds, expected=[torch_conv(x, w, b if bias else None, [1, 1], [1, 1], [0, 0, 0, 0], 1)],
          rtol=tol, atol=tol)


@pytest.mark.parametrize("xs,ws,pads", [
    ((1, 8, 40, 41), (5, 8, 3, 3), [1, 1, 1, 1]),
    ((2, 9, 45, 42), (4, 9, 3, 3), [0, 0, 0, 0]),      # odd output rows: a half tile at the edge
    ((1, 16, 41, 44), (7, 16, 3, 3), [2, 0, 1, 3]),    # asymmetric, wider than the kernel
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_conv_winograd(xs, ws, pads, dtype):
    """Large 3x3 stride-1 convolutions run as Winograd F(2x2, 3x3) (ops/_jit.py)."""
    x, w, b = rand(*xs, dtype=dtype), rand(*ws, dtype=dtype), rand(ws[0], dtype=dtype)
    out = [i + p0 + p1 - 2 for i, p0, p1 in zip(xs[2:], pads[:2], pads[2:])]
    assert -(-out[0] // 2) * -(-out[1] // 2) >= conv_module._WINOGRAD_MIN_TILES
    model = node_model("Conv", {"x": x, "w": w, "b": b}, ["y"], opset=22, pads=pads)
    tol = {np.float32: 1e-4, np.float64: 1e-10, np.float16: 1e-2}[dtype]
    check(model, {"x": x, "w": w, "b": b}, expected=[torch_conv(x, w, b, [1, 1], [1, 1], pads, 1)],
          rtol=tol, atol=tol)


def test_winograd_weights_cached_only_for_read_only_arrays():
    from onnxpy.ops import _jit

    w = rand(4, 8, 3, 3)
    first = _jit._winograd_weights(w)
    w *= 2  # a writeable array may change between calls: transformed again
    np.testing.assert_allclose(_jit._winograd_weights(w), 2 * first, rtol=1e-6)
    w.setflags(write=False)
    assert _jit._winograd_weights(w) is _jit._winograd_weights(w)


def test_conv_winograd_with_initializer_weights_across_runs():
    """A session's weights are read-only, so their transform is made once and reused."""
    w, b = rand(6, 8, 3, 3), rand(6)
    x0 = rand(1, 8, 20, 22)
    model = node_model("Conv", {"x": x0}, ["y"], opset=22, initializers={"w": w, "b": b}, pads=[1, 1, 1, 1])
    session = onnxpy.InferenceSession(model.SerializeToString())
    for x in (x0, rand(1, 8, 20, 22), x0 * 3):
        np.testing.assert_allclose(session.run(None, {"x": x})[0], torch_conv(x, w, b, [1, 1], [1, 1], [1] * 4, 1),
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET"])
@pytest.mark.parametrize("xs,ws,strides,dilations", [
    ((1, 2, 7, 8), (3, 2, 3, 2), [2, 3], [1, 1]),
    ((2, 2, 10), (2, 1, 4), [3], [2]),
    ((1, 2, 5, 6, 4), (2, 2, 2, 3, 3), [1, 2, 2], [1, 1, 1]),
])
def test_conv_auto_pad(auto_pad, xs, ws, strides, dilations):
    """SAME_*: total padding (ceil(in / stride) - 1) * stride + dilated kernel - in, the odd unit at
    the end for SAME_UPPER; onnxruntime has no dilated SAME, so the oracle is PyTorch with those pads."""
    x, w = rand(*xs), rand(*ws)
    group = xs[1] // ws[1]
    n = len(strides)
    pads = [0] * (2 * n)
    if auto_pad.startswith("SAME"):
        for d, (i, s, k, dl) in enumerate(zip(xs[2:], strides, ws[2:], dilations)):
            total = max(0, (-(-i // s) - 1) * s + (k - 1) * dl + 1 - i)
            pads[d] = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            pads[n + d] = total - pads[d]
    model = node_model("Conv", {"x": x, "w": w}, ["y"], opset=11, strides=strides, dilations=dilations,
                       auto_pad=auto_pad, group=group)
    check(model, {"x": x, "w": w}, expected=[torch_conv(x, w, None, strides, dilations, pads, group)],
          rtol=1e-4, atol=1e-4)


def test_conv_same_onnxruntime():
    x, w = rand(1, 3, 7, 8), rand(4, 3, 3, 2)
    model = node_model("Conv", {"x": x, "w": w}, ["y"], opset=11, strides=[2, 3], auto_pad="SAME_LOWER",
                       output_types={"y": FLOAT})
    check(model, {"x": x, "w": w}, oracle="onnxruntime", rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_conv_dtypes(dtype):
    x, w, b = rand(1, 4, 6, 6, dtype=dtype), rand(4, 2, 3, 3, dtype=dtype), rand(4, dtype=dtype)
    pads = [1, 0, 0, 1]
    model = node_model("Conv", {"x": x, "w": w, "b": b}, ["y"], opset=22, pads=pads, group=2)
    tol = 1e-2 if dtype == np.float16 else 1e-10
    check(model, {"x": x, "w": w, "b": b}, expected=[torch_conv(x, w, b, [1, 1], [1, 1], pads, 2)], rtol=tol, atol=tol)


def test_conv_bad_shapes():
    x, w = rand(1, 3, 5, 5), rand(4, 2, 3, 3)
    with pytest.raises(Exception, match="group"):
        run_onnxpy(node_model("Conv", {"x": x, "w": w}, ["y"], opset=22), {"x": x, "w": w})
    with pytest.raises(Exception, match="kernel_shape"):
        run_onnxpy(node_model("Conv", {"x": x, "w": rand(4, 3, 3, 3)}, ["y"], opset=22, kernel_shape=[2, 2]),
                   {"x": x, "w": rand(4, 3, 3, 3)})


def test_window_geometry_same_and_ceil():
    # SAME_UPPER puts the odd padding unit at the end, SAME_LOWER at the beginning
    assert window_geometry([5], [2], [1], [1], None, "SAME_UPPER") == ([5], [0], [1])
    assert window_geometry([5], [2], [1], [1], None, "SAME_LOWER") == ([5], [1], [0])
    # ceil_mode adds a window only if it starts inside the input or the begin padding
    assert window_geometry([4], [2], [2], [1], [1, 1], "NOTSET", ceil_mode=1) == ([3], [1], [1])
    assert window_geometry([5], [2], [2], [1], [0, 0], "NOTSET", ceil_mode=1) == ([3], [0], [0])


def torch_conv_transpose(x, w, b, strides, dilations, group, output_padding, begin, out):
    """Full transposed convolution via PyTorch, then the window [begin, begin + out) of it (zeros
    outside), then the bias: the spec's definition of pads and output_shape."""
    n = x.ndim - 2
    full = TORCH_CONV_T[n](torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                           stride=strides, dilation=dilations, groups=group).numpy()
    y = np.zeros(full.shape[:2] + tuple(out))
    src, dst = [], []
    for d in range(n):
        lo, hi = max(begin[d], 0), min(begin[d] + out[d], full.shape[2 + d])
        src.append(slice(lo, hi))
        dst.append(slice(lo - begin[d], hi - begin[d]))
    y[(..., *dst)] = full[(..., *src)]
    if b is not None:
        y += b.reshape((-1,) + (1,) * n)
    return y.astype(x.dtype)


def full_size(x, w, strides, dilations, output_padding):
    return [s * (i - 1) + p + (k - 1) * d + 1
            for s, i, p, k, d in zip(strides, x.shape[2:], output_padding, w.shape[2:], dilations)]


CONVT_CASES = [
    # x shape, w shape, strides, dilations, group, output_padding
    ((2, 3, 5), (3, 2, 3), [2], [1], 1, [1]),
    ((1, 4, 4, 5), (4, 3, 3, 2), [2, 3], [1, 2], 2, [1, 0]),
    ((2, 2, 3, 3), (2, 4, 3, 3), [1, 1], [1, 1], 1, [0, 0]),
    ((1, 2, 3, 4, 2), (2, 2, 2, 3, 2), [2, 1, 2], [1, 1, 1], 1, [0, 0, 1]),
]


@pytest.mark.parametrize("opset", [1, 11, 22])
@pytest.mark.parametrize("xs,ws,strides,dilations,group,output_padding", CONVT_CASES)
def test_conv_transpose_pads(opset, xs, ws, strides, dilations, group, output_padding):
    x, w, b = rand(*xs), rand(*ws), rand(ws[1] * group)
    n = len(strides)
    pads = [int(v) for v in RNG.integers(0, 2, size=2 * n)]
    full = full_size(x, w, strides, dilations, output_padding)
    out = [f - pads[d] - pads[n + d] for d, f in enumerate(full)]
    want = torch_conv_transpose(x, w, b, strides, dilations, group, output_padding, pads[:n], out)
    model = node_model("ConvTranspose", {"x": x, "w": w, "b": b}, ["y"], opset=opset, strides=strides,
                       dilations=dilations, group=group, output_padding=output_padding, pads=pads)
    check(model, {"x": x, "w": w, "b": b}, expected=[want], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("opset", [1, 11])
@pytest.mark.parametrize("auto_pad,output_shape", [  # NOTSET without output_shape: test_conv_transpose_pads
    (a, s) for a in ["NOTSET", "SAME_UPPER", "SAME_LOWER"] for s in [None, [10, 8], [7, 6]] if a != "NOTSET" or s])
def test_conv_transpose_output_shape_and_auto_pad(opset, auto_pad, output_shape):
    """Total padding = full size - output size; its smaller half goes first for SAME_UPPER, last
    otherwise (https://onnx.ai/onnx/operators/onnx__ConvTranspose.html)."""
    x, w = rand(1, 2, 3, 3), rand(2, 3, 3, 3)
    strides, op = [3, 2], [1, 0]
    full = full_size(x, w, strides, [1, 1], op)
    out = output_shape or [3 * 3, 3 * 2]
    total = [f - o for f, o in zip(full, out)]
    begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
    want = torch_conv_transpose(x, w, None, strides, [1, 1], 1, op, begin, out)
    attrs = {"output_shape": output_shape} if output_shape else {}
    model = node_model("ConvTranspose", {"x": x, "w": w}, ["y"], opset=opset, strides=strides,
                       output_padding=op, auto_pad=auto_pad, **attrs)
    check(model, {"x": x, "w": w}, expected=[want], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("opset", [1, 11, 22])
@pytest.mark.parametrize("attrs", [
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"auto_pad": "SAME_LOWER", "strides": [2, 1]},
    {"output_shape": [8, 7], "strides": [2, 2]},
    {"output_shape": [6, 5], "strides": [2, 2], "output_padding": [1, 1]},
    {"pads": [1, 0, 0, 1], "strides": [3, 2], "output_padding": [2, 1], "group": 2},
])
def test_conv_transpose_onnxruntime(opset, attrs):
    x, w, b = rand(2, 2, 3, 3), rand(2, 2, 3, 2), rand(4 if attrs.get("group") else 2)
    feeds = {"x": x, "w": w, "b": b}
    model = node_model("ConvTranspose", feeds, ["y"], opset=opset, output_types={"y": FLOAT}, **attrs)
    check(model, feeds, oracle="onnxruntime", rtol=1e-5, atol=1e-5)


def test_conv_transpose_float16():
    x, w = rand(1, 2, 4, 4, dtype=np.float16), rand(2, 2, 3, 3, dtype=np.float16)
    want = torch_conv_transpose(x, w, None, [2, 2], [1, 1], 1, [0, 0], [1, 1], [7, 7])
    model = node_model("ConvTranspose", {"x": x, "w": w}, ["y"], opset=22, strides=[2, 2], pads=[1, 1, 1, 1])
    check(model, {"x": x, "w": w}, expected=[want], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("image,block,strides,dilations,pads", [
    ([5, 5], [2, 2], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([6, 7], [3, 2], [2, 1], [1, 2], [1, 0, 1, 2]),
    ([6, 6], [2, 3], [1, 2], [2, 1], [1, 1, 1, 1]),
])
def test_col2im_against_torch_fold(image, block, strides, dilations, pads):
    c = 3
    blocks = [(i + pads[d] + pads[2 + d] - (k - 1) * dl - 1) // s + 1
              for d, (i, k, s, dl) in enumerate(zip(image, block, strides, dilations))]
    x = rand(2, c * block[0] * block[1], blocks[0] * blocks[1])
    # torch.fold pads symmetrically: fold the padded image, then crop it
    padded = [image[0] + pads[0] + pads[2], image[1] + pads[1] + pads[3]]
    full = F.fold(torch.from_numpy(x), padded, block, dilation=dilations, stride=strides).numpy()
    want = full[:, :, pads[0]:pads[0] + image[0], pads[1]:pads[1] + image[1]]
    feeds = {"x": x, "image_shape": np.array(image, np.int64), "block_shape": np.array(block, np.int64)}
    model = node_model("Col2Im", feeds, ["y"], opset=18, strides=strides, dilations=dilations, pads=pads)
    check(model, feeds, expected=[want], rtol=1e-5, atol=1e-5)


def test_col2im_3d_reference():
    feeds = {"x": rand(1, 2 * 8, 3 * 2 * 2), "image_shape": np.array([4, 3, 3], np.int64),
             "block_shape": np.array([2, 2, 2], np.int64)}
    check(node_model("Col2Im", feeds, ["y"], opset=18), feeds, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("group,offset_group,with_mask,pads,strides,dilations", [
    (1, 1, False, [0, 0, 0, 0], [1, 1], [1, 1]),
    (2, 2, True, [1, 1, 1, 1], [2, 1], [1, 2]),
    (1, 4, True, [1, 0, 2, 1], [1, 2], [2, 1]),
])
def test_deform_conv_against_torchvision(group, offset_group, with_mask, pads, strides, dilations):
    x, w, b = rand(2, 4, 7, 6), rand(6, 4 // group, 3, 2), rand(6)
    out, _, _ = window_geometry([7, 6], [3, 2], strides, dilations, pads, "NOTSET")
    offset = (rand(2, offset_group * 6 * 2, *out) * 1.5).astype(np.float32)
    mask = RNG.uniform(0, 1, (2, offset_group * 6, *out)).astype(np.float32)
    # torchvision pads symmetrically: pad the input by the begin pads and keep the output window
    xt = F.pad(torch.from_numpy(x), [pads[1], pads[3], pads[0], pads[2]])
    want = torchvision.ops.deform_conv2d(xt, torch.from_numpy(offset), torch.from_numpy(w), torch.from_numpy(b),
                                         stride=strides, dilation=dilations,
                                         mask=torch.from_numpy(mask) if with_mask else None).numpy()
    feeds = {"x": x, "w": w, "offset": offset, "b": b, "mask": mask} if with_mask else \
        {"x": x, "w": w, "offset": offset, "b": b}
    model = node_model("DeformConv", feeds, ["y"], opset=19, group=group, offset_group=offset_group, pads=pads,
                       strides=strides, dilations=dilations)
    check(model, feeds, expected=[want], rtol=1e-4, atol=1e-4)


def test_deform_conv_1d_zero_offset_is_conv():
    x, w = rand(1, 2, 9), rand(3, 2, 3)
    offset = np.zeros((1, 3, 4), np.float32)
    feeds = {"x": x, "w": w, "offset": offset}
    model = node_model("DeformConv", feeds, ["y"], opset=22, strides=[2])
    check(model, feeds, expected=[torch_conv(x, w, None, [2], [1], [0, 0], 1)], rtol=1e-5, atol=1e-5)


def causal_conv_numpy(x, w, b, past, activation):
    k = w.shape[2]
    state = np.zeros(x.shape[:2] + (k - 1,), x.dtype) if past is None else past
    padded = np.concatenate([state, x], axis=2).astype(np.float64)
    y = np.zeros(x.shape)
    for t in range(k):
        y += padded[:, :, t:t + x.shape[2]] * w[None, :, 0, t, None]
    if b is not None:
        y += b[None, :, None]
    if activation != "none":
        y = y / (1 + np.exp(-y))
    return y.astype(x.dtype), padded[:, :, padded.shape[2] - (k - 1):].astype(x.dtype)


@pytest.mark.parametrize("k,with_bias,with_past,activation,length", [
    (4, True, True, "silu", 6), (3, False, False, "none", 5), (1, True, False, "swish", 4), (4, False, True, "none", 2),
])
def test_causal_conv_with_state(k, with_bias, with_past, activation, length):
    x, w = rand(2, 3, length), rand(3, 1, k)
    b = rand(3) if with_bias else None
    past = rand(2, 3, k - 1) if with_past else None
    inputs = {"x": x, "w": w}
    if with_bias or with_past:
        inputs["b" if with_bias else ""] = b
    if with_past:
        inputs["past"] = past
    model = node_model("CausalConvWithState", inputs, ["y", "state"], opset=27, activation=activation)
    feeds = {n: v for n, v in inputs.items() if n}
    check(model, feeds, expected=list(causal_conv_numpy(x, w, b, past, activation)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("clamp", [(0.0, np.inf), (-np.inf, 0.5), (0.0, 6.0), (0.3, -0.2), (-np.inf, np.inf)])
def test_the_numpy_epilogue_clamps_as_np_clip_and_propagates_nan(dtype, clamp):
    """The epilogue small convolutions finish with: bias, residual, then the clamp, NaN kept (as np.clip)."""
    y, b, z = rand(16, 3, dtype=dtype), rand(16, 1, dtype=dtype), rand(16, 3, dtype=dtype)
    y[2, 1], y[5, 0], z[7, 2] = np.nan, np.inf, -np.inf
    expected = np.clip(y + b + z, *(dtype(v) for v in clamp))
    result = conv_module._epilogue(y, b, z, clamp)
    assert result is y and result.dtype == dtype
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("dtype, activation", [  # the epilogue's Swish is float32 only (conv applies
    (np.float32, None), (np.float32, "hard_swish"), (np.float32, "swish"),  # float64's afterwards)
    (np.float64, None), (np.float64, "hard_swish")])
@pytest.mark.parametrize("clamp", [None, (0.0, 6.0), (-np.inf, 0.5)])
@pytest.mark.parametrize("with_z", [False, True])
def test_the_compiled_epilogue_against_numpy(dtype, activation, clamp, with_z):
    """The GEMM paths' compiled epilogue (_jit.finish) on a block of rows and columns (not a multiple
    of its 512-column blocks): bias, residual, clamp (NaN kept), then HardSwish or Swish, against
    numpy; outside the block nothing changes."""
    from onnxpy.ops import _jit
    from onnxpy.ops._helpers import HARD_SWISH, SWISH

    y, b, z = rand(7, 1300, dtype=dtype) * 5, rand(7, dtype=dtype), rand(7, 1300, dtype=dtype)
    y[2, 100], y[3, 700], y[4, 1200], z[5, 40] = np.nan, np.inf, -np.inf, np.inf
    rows, cols = (1, 6), (30, 1290)
    block = (slice(*rows), slice(*cols))
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, inf * 0 and exp's overflow: as in the kernel
        v = y[block] + (b[1:6, None] + z[block] if with_z else b[1:6, None])
        if clamp is not None:
            v = np.minimum(np.maximum(v, clamp[0]), clamp[1])
        if activation == "hard_swish":
            v = v * np.clip(v / 6 + 0.5, 0, 1)
        elif activation == "swish":
            v = v / (1 + np.exp(-1.5 * v.astype(np.float64))).astype(dtype)
    expected = y.copy()
    expected[block] = v
    code = {None: None, "hard_swish": (HARD_SWISH, 0.0), "swish": (SWISH, 1.5)}[activation]
    _jit.finish(y, b, z if with_z else None, clamp, rows, cols, code)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def _dynamic_conv_model(w, b, weights_input=False, residual=False, **attrs):
    """A Conv (FusedConv with a residual Z) on inputs of any batch and size."""
    from onnx import helper, numpy_helper

    inputs = [helper.make_tensor_value_info("x", FLOAT, ["N", w.shape[1] * attrs.get("group", 1), "H", "W"])]
    inits = [numpy_helper.from_array(b, "b")]
    if weights_input:
        inputs.append(helper.make_tensor_value_info("w", FLOAT, list(w.shape)))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    if residual:
        inputs.append(helper.make_tensor_value_info("z", FLOAT, ["N", w.shape[0], "H2", "W2"]))
        node = helper.make_node("FusedConv", ["x", "w", "b", "z"], ["y"], domain="com.microsoft",
                                activation="Relu", **attrs)
    else:
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", FLOAT, None)], initializer=inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if residual else [])
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


@pytest.mark.parametrize("ws, group, pads", [
    ((24, 8, 1, 1), 1, [0, 0, 0, 0]),      # 1x1: the compiled pointwise kernel
    ((32, 1, 3, 3), 32, [1, 1, 1, 1]),     # depthwise: vectors of channels up to 16x16, windows above
    ((16, 3, 3, 3), 1, [1, 1, 1, 1]),      # a stem: direct, or Winograd / im2col + GEMM by size
])
def test_conv_prepared_per_input_shape(ws, group, pads):
    """A node prepares its convolution once per input shape (conv.convolve with the node's ctx): runs
    alternating between shapes, and more shapes than it keeps, each match PyTorch."""
    w, b = rand(*ws), rand(ws[0])
    session = onnxpy.InferenceSession(_dynamic_conv_model(w, b, group=group, pads=pads))
    shapes = [(1, 7, 7), (2, 20, 18), (1, 7, 7)] + [(1, 5 + i, 6) for i in range(conv_module._PREPARED_SHAPES + 1)]
    for n, h, width in shapes + shapes[:3]:
        x = rand(n, ws[1] * group, h, width)
        np.testing.assert_allclose(session.run(None, {"x": x})[0], torch_conv(x, w, b, [1, 1], [1, 1], pads, group),
                                   rtol=1e-4, atol=1e-4)
    (step,) = session._plan.steps
    assert 0 < len(step.kwargs["ctx"].cache["convolutions"]) <= conv_module._PREPARED_SHAPES


def test_conv_weights_fed_each_run_are_not_kept():
    """Weights that are an input (writeable arrays, which may change between runs) are never kept
    prepared: each run convolves with the weights it is given."""
    w, b = rand(24, 8, 1, 1), rand(24)
    session = onnxpy.InferenceSession(_dynamic_conv_model(w, b, weights_input=True))
    x = rand(1, 8, 7, 7)
    for scale in (1.0, -2.0):
        w2 = w * np.float32(scale)
        np.testing.assert_allclose(session.run(None, {"x": x, "w": w2})[0],
                                   torch_conv(x, w2, b, [1, 1], [1, 1], [0, 0, 0, 0], 1), rtol=1e-4, atol=1e-4)
    w[:] = 0  # the same array, changed in place
    np.testing.assert_allclose(session.run(None, {"x": x, "w": w})[0], np.broadcast_to(b[:, None, None], (1, 24, 7, 7)))


def test_conv_prepared_still_checks_the_residual():
    """The residual Z of a prepared FusedConv is checked against the output's shape on every run."""
    w, b = rand(24, 8, 1, 1), rand(24)
    session = onnxpy.InferenceSession(_dynamic_conv_model(w, b, residual=True))
    x, z = rand(1, 8, 7, 7), rand(1, 24, 7, 7)
    expected = np.maximum(torch_conv(x, w, b, [1, 1], [1, 1], [0, 0, 0, 0], 1) + z, 0)
    np.testing.assert_allclose(session.run(None, {"x": x, "z": z})[0], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(onnxpy.RuntimeException, match=r"Z has shape \(1, 24, 6, 7\), expected the output's "
                                                      r"\(1, 24, 7, 7\)"):
        session.run(None, {"x": x, "z": rand(1, 24, 6, 7)})
