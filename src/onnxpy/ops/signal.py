"""Signal processing: DFT, STFT, the cosine-sum windows and MelWeightMatrix.

Complex tensors travel as real tensors whose last axis holds (real, imaginary); a real signal has
a last axis of size 1 (https://onnx.ai/onnx/operators/onnx__DFT.html).
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.ops._helpers import first, normalize_axis
from onnxpy.registry import kernel


def _to_complex(x: np.ndarray) -> np.ndarray:
    """``[..., 1]`` (real) or ``[..., 2]`` (real, imag) as a complex array without the last axis."""
    if x.ndim < 2 or x.shape[-1] not in (1, 2):
        raise ValueError(f"signal must have a last axis of size 1 (real) or 2 (complex), got shape {x.shape}")
    ctype = np.complex128 if x.dtype == np.float64 else np.complex64
    if x.shape[-1] == 1:
        return x[..., 0].astype(ctype)
    return (x[..., 0] + 1j * x[..., 1]).astype(ctype)


def _from_complex(z: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1).astype(dtype)


def _length(value, default: int) -> int:
    if value is None or np.asarray(value).size == 0:
        return default
    n = int(first(value))
    if n <= 0:
        raise ValueError(f"DFT/STFT length must be positive, got {n}")
    return n


def _dft(x: np.ndarray, dft_length, axis: int, inverse: int, onesided: int) -> np.ndarray:
    axis = normalize_axis(axis, x.ndim)
    if axis == x.ndim - 1:
        raise ValueError("DFT axis cannot be the last (real/imaginary) axis")
    z = _to_complex(x)
    if inverse and onesided:
        n = _length(dft_length, 2 * (z.shape[axis] - 1))
        return np.fft.irfft(z, n=n, axis=axis)[..., None].astype(x.dtype)
    n = _length(dft_length, z.shape[axis])
    z = np.fft.ifft(z, n=n, axis=axis) if inverse else np.fft.fft(z, n=n, axis=axis)
    if onesided:
        z = np.take(z, np.arange(n // 2 + 1), axis=axis)
    return _from_complex(z, x.dtype)


@kernel("DFT", since=17)
def dft_17(input, dft_length=None, *, axis=1, inverse=0, onesided=0):
    """DFT-17: the axis is an attribute."""
    return _dft(input, dft_length, axis, inverse, onesided)


@kernel("DFT", since=20)
def dft_20(input, dft_length=None, axis=None, *, inverse=0, onesided=0):
    """DFT-20: the axis is an optional input (default -2)."""
    return _dft(input, dft_length, -2 if axis is None else int(first(axis)), inverse, onesided)


@kernel("STFT", since=17)
def stft(signal, frame_step, window=None, frame_length=None, *, onesided=1):
    """Short-time Fourier transform: (batch, frames, bins, 2)."""
    if signal.ndim != 3:
        raise ValueError(f"STFT signal must be (batch, length, 1|2), got shape {signal.shape}")
    step = int(first(frame_step))
    if step <= 0:
        raise ValueError(f"STFT frame_step must be positive, got {step}")
    length = signal.shape[1]
    n_fft = _length(frame_length, length if window is None else len(window))
    width = n_fft if window is None else len(window)
    if width > length:
        raise ValueError(f"STFT frame of {width} samples is longer than the signal ({length})")
    if onesided and signal.shape[-1] == 2:
        raise ValueError("STFT onesided output requires a real signal")
    frames = 1 + (length - width) // step
    z = _to_complex(signal)[:, np.arange(frames)[:, None] * step + np.arange(width)]
    if window is not None:
        z = z * window.astype(z.real.dtype)
    spectrum = np.fft.fft(z, n=n_fft, axis=2)
    if onesided:
        spectrum = spectrum[:, :, : n_fft // 2 + 1]
    return _from_complex(spectrum, signal.dtype)


def _cosine_window(size, periodic: int, output_datatype: int, coeffs: tuple[float, ...]) -> np.ndarray:
    """sum_k (-1)^k a_k cos(2 pi k n / N), N = size (periodic) or size - 1 (symmetric)."""
    n = int(first(size))
    if n < 0:
        raise ValueError(f"window size must be non-negative, got {n}")
    denom = n if periodic else n - 1
    if denom <= 0:  # a symmetric window of one sample is [1], as in PyTorch
        return np.ones(n, dtype=ir.dtype_of(output_datatype))
    phase = 2 * np.pi * np.arange(n) / denom
    w = sum((-1) ** k * a * np.cos(k * phase) for k, a in enumerate(coeffs))
    return np.asarray(w, dtype=np.float64).astype(ir.dtype_of(output_datatype))


@kernel("HannWindow", since=17)
def hann_window(size, *, output_datatype=1, periodic=1):
    """Hann window."""
    return _cosine_window(size, periodic, output_datatype, (0.5, 0.5))


@kernel("HammingWindow", since=17)
def hamming_window(size, *, output_datatype=1, periodic=1):
    """Hamming window with alpha = 25/46."""
    return _cosine_window(size, periodic, output_datatype, (25 / 46, 21 / 46))


@kernel("BlackmanWindow", since=17)
def blackman_window(size, *, output_datatype=1, periodic=1):
    """Blackman window."""
    return _cosine_window(size, periodic, output_datatype, (0.42, 0.5, 0.08))


@kernel("MelWeightMatrix", since=17)
def mel_weight_matrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, *,
                      output_datatype=1):
    """Triangular mel filter bank, (dft_length // 2 + 1, num_mel_bins)."""
    n_mel = int(first(num_mel_bins))
    n_dft = int(first(dft_length))
    rate = float(first(sample_rate))
    low, high = (float(first(v)) for v in (lower_edge_hertz, upper_edge_hertz))
    if n_mel <= 0 or n_dft <= 0 or rate <= 0 or not 0 <= low < high:
        raise ValueError("MelWeightMatrix needs positive bins, dft_length, sample_rate and 0 <= lower < upper edge")
    low_mel, high_mel = (2595 * np.log10(1 + f / 700) for f in (low, high))
    # onnxruntime and the reference split the mel range into num_mel_bins + 2 steps
    mels = low_mel + np.arange(n_mel + 2) * (high_mel - low_mel) / (n_mel + 2)
    hz = 700 * (10 ** (mels / 2595) - 1)
    edges = np.floor((n_dft + 1) * hz / rate).astype(np.int64)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    j = np.arange(n_dft // 2 + 1)[:, None]
    rising = np.where(center > left, (j - left) / np.maximum(center - left, 1), (j == center).astype(np.float64))
    falling = (right - j) / np.maximum(right - center, 1)
    out = np.where((j >= center) & (j < right), falling, np.where((j >= left) & (j <= center), rising, 0.0))
    return out.astype(ir.dtype_of(output_datatype))
