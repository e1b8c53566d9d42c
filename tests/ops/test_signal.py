"""Signal operators against numpy.fft, PyTorch and onnx.reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.ops._oracle import check, node_model, run_onnxpy

RNG = np.random.default_rng(1)


def _fed(inputs: dict) -> dict:
    """The feeds of a model built from ``inputs`` (an omitted optional input is named "")."""
    return {k: v for k, v in inputs.items() if k}


def _complex_pairs(z: np.ndarray, dtype) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("length", [None, 6, 12])
def test_dft_17_real_input_matches_numpy(dtype, length):
    x = RNG.standard_normal((2, 8, 3, 1)).astype(dtype)
    feeds = {"x": x}
    if length is not None:
        feeds["n"] = np.array(length, dtype=np.int64)
    expected = _complex_pairs(np.fft.fft(x[..., 0], n=length, axis=1), dtype)
    check(node_model("DFT", feeds, ["y"], opset=17), feeds, expected=[expected], rtol=1e-4, atol=1e-4)


def test_dft_17_onesided_and_axis_attribute():
    x = RNG.standard_normal((2, 3, 9, 1)).astype(np.float32)
    feeds = {"x": x}
    expected = _complex_pairs(np.fft.rfft(x[..., 0], axis=2), np.float32)
    model = node_model("DFT", feeds, ["y"], opset=17, axis=-2, onesided=1)
    check(model, feeds, expected=[expected], rtol=1e-4, atol=1e-4)


def test_dft_17_inverse_of_complex_input():
    z = RNG.standard_normal((2, 7)) + 1j * RNG.standard_normal((2, 7))
    feeds = {"x": _complex_pairs(z, np.float32)}
    expected = _complex_pairs(np.fft.ifft(z, axis=1), np.float32)
    check(node_model("DFT", feeds, ["y"], opset=17, inverse=1), feeds, expected=[expected], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, -2])
def test_dft_20_axis_input(axis):
    z = RNG.standard_normal((4, 5, 6)) + 1j * RNG.standard_normal((4, 5, 6))
    inputs = {"x": _complex_pairs(z, np.float32), "": "", "axis": np.array(axis, dtype=np.int64)}
    expected = _complex_pairs(np.fft.fft(z, axis=axis if axis >= 0 else axis + 1), np.float32)
    check(node_model("DFT", inputs, ["y"], opset=20), _fed(inputs), expected=[expected], rtol=1e-4, atol=1e-4)


def test_dft_20_default_axis_and_irfft():
    x = RNG.standard_normal((3, 10, 1)).astype(np.float32)
    feeds = {"x": x}
    spectrum = run_onnxpy(node_model("DFT", feeds, ["y"], opset=20, onesided=1), feeds)[0]
    assert spectrum.shape == (3, 6, 2) and spectrum.dtype == np.float32
    feeds = {"s": spectrum}
    check(node_model("DFT", feeds, ["y"], opset=20, inverse=1, onesided=1), feeds, expected=[x], rtol=1e-4, atol=1e-5)


def test_dft_rejects_the_last_axis():
    feeds = {"x": RNG.standard_normal((3, 4, 1)).astype(np.float32)}
    with pytest.raises(Exception, match="axis"):
        run_onnxpy(node_model("DFT", feeds, ["y"], opset=17, axis=2), feeds)


@pytest.mark.parametrize("onesided", [0, 1])
@pytest.mark.parametrize("with_window", [False, True])
def test_stft_matches_torch(onesided, with_window):
    signal = RNG.standard_normal((2, 64)).astype(np.float32)
    window = np.hanning(16).astype(np.float32)
    inputs = {"signal": signal[..., None], "step": np.array(6, dtype=np.int64)}
    if with_window:
        inputs["window"] = window
    else:
        inputs[""] = ""
        inputs["length"] = np.array(16, dtype=np.int64)
    z = torch.stft(torch.from_numpy(signal), n_fft=16, hop_length=6,
                   window=torch.from_numpy(window) if with_window else torch.ones(16),
                   center=False, onesided=bool(onesided), return_complex=True).numpy()
    expected = _complex_pairs(np.swapaxes(z, 1, 2), np.float32)
    model = node_model("STFT", inputs, ["y"], opset=17, onesided=onesided)
    check(model, _fed(inputs), expected=[expected], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("periodic", [0, 1])
@pytest.mark.parametrize("op,torch_fn", [("HannWindow", torch.hann_window), ("BlackmanWindow", torch.blackman_window)])
def test_windows_match_torch(op, torch_fn, periodic):
    feeds = {"size": np.array(11, dtype=np.int64)}
    expected = torch_fn(11, periodic=bool(periodic), dtype=torch.float64).numpy().astype(np.float32)
    check(node_model(op, feeds, ["y"], opset=17, periodic=periodic), feeds, expected=[expected], atol=1e-6)


def test_symmetric_window_of_one_sample_is_one():
    feeds = {"size": np.array(1, dtype=np.int64)}
    check(node_model("HannWindow", feeds, ["y"], opset=17, periodic=0), feeds, expected=[np.ones(1, np.float32)])


@pytest.mark.parametrize("periodic", [0, 1])
@pytest.mark.parametrize("output_datatype,dtype", [(1, np.float32), (11, np.float64), (10, np.float16)])
def test_hamming_window_dtypes(periodic, output_datatype, dtype):
    feeds = {"size": np.array(9, dtype=np.int32)}
    n = 9 if periodic else 8
    expected = (25 / 46 - 21 / 46 * np.cos(2 * np.pi * np.arange(9) / n)).astype(dtype)
    model = node_model("HammingWindow", feeds, ["y"], opset=17, periodic=periodic, output_datatype=output_datatype)
    check(model, feeds, expected=[expected], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("n_mel,dft,rate,low,high", [(8, 16, 8192, 0.0, 4096.0), (20, 512, 16000, 50.0, 7600.0)])
def test_mel_weight_matrix(n_mel, dft, rate, low, high):
    feeds = {"n": np.array(n_mel, np.int64), "d": np.array(dft, np.int64), "r": np.array(rate, np.int64),
             "lo": np.array(low, np.float32), "hi": np.array(high, np.float32)}
    check(node_model("MelWeightMatrix", feeds, ["y"], opset=17), feeds)
    check(node_model("MelWeightMatrix", feeds, ["y"], opset=17, output_datatype=11), feeds)
