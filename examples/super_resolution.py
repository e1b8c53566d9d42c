"""The PyTorch super-resolution tutorial, end to end with onnxpy.

Defines the tutorial's SuperResolutionNet (random orthogonal weights, as the tutorial initializes
them), exports it with ``torch.onnx.export`` at opset 10 with a dynamic batch axis, checks it with
``onnx.checker``, runs it with onnxpy on an image, compares with PyTorch (rtol 1e-3, atol 1e-5)
and writes the upscaled image.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.init as init
from PIL import Image

import onnxpy as ort


class SuperResolutionNet(nn.Module):
    """The model of the PyTorch tutorial "Exporting a model from PyTorch to ONNX"."""

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(1, 64, (5, 5), (1, 1), (2, 2))
        self.conv2 = nn.Conv2d(64, 64, (3, 3), (1, 1), (1, 1))
        self.conv3 = nn.Conv2d(64, 32, (3, 3), (1, 1), (1, 1))
        self.conv4 = nn.Conv2d(32, upscale_factor ** 2, (3, 3), (1, 1), (1, 1))
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)
        for conv in (self.conv1, self.conv2, self.conv3):
            init.orthogonal_(conv.weight, init.calculate_gain("relu"))
        init.orthogonal_(self.conv4.weight)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))


def make_image(size: int = 224) -> Image.Image:
    """A deterministic test picture: colour gradients, rings and a checkerboard patch."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rings = 0.5 + 0.5 * np.sin(40 * np.hypot(xx - 0.5, yy - 0.5))
    checker = ((np.floor(xx * 16) + np.floor(yy * 16)) % 2) * (xx > 0.6) * (yy > 0.6)
    rgb = np.stack([xx * rings, yy * (1 - checker) + checker, (1 - xx) * rings], axis=-1)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="input picture (default: a generated one)")
    parser.add_argument("--out", default="out", help="folder for the model and the pictures")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    model = SuperResolutionNet(upscale_factor=3).eval()
    x = torch.randn(1, 1, 224, 224)
    path = os.path.join(args.out, "super_resolution.onnx")
    torch.onnx.export(model, x, path, dynamo=False, export_params=True, opset_version=10,
                      do_constant_folding=True, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}})
    onnx.checker.check_model(onnx.load(path))
    print(f"exported SuperResolutionNet to {path} (opset 10, dynamic batch axis) and checked it")

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    batch = torch.randn(2, 1, 224, 224)
    start = time.perf_counter()
    (ours,) = session.run(None, {"input": batch.numpy()})
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        expected = model(batch).numpy()
    np.testing.assert_allclose(expected, ours, rtol=1e-3, atol=1e-5)
    print(f"onnxpy output {ours.shape} matches PyTorch on a batch of 2 (rtol 1e-3, atol 1e-5): "
          f"max abs difference {np.max(np.abs(expected - ours)):.3g}, run took {elapsed * 1e3:.1f} ms")

    source = Image.open(args.image).convert("RGB") if args.image else make_image()
    source = source.resize((224, 224))
    source_path = os.path.join(args.out, "input.png")
    source.save(source_path)
    y, cb, cr = source.convert("YCbCr").split()
    y_in = (np.asarray(y, dtype=np.float32) / 255.0)[None, None]
    (y_out,) = session.run(["output"], {"input": y_in})
    with torch.no_grad():
        y_torch = model(torch.from_numpy(y_in)).numpy()
    np.testing.assert_allclose(y_torch, y_out, rtol=1e-3, atol=1e-5)
    y_img = Image.fromarray((np.clip(y_out[0, 0], 0, 1) * 255.0).round().astype(np.uint8), "L")
    result = Image.merge("YCbCr", [y_img, cb.resize(y_img.size, Image.BICUBIC),
                                   cr.resize(y_img.size, Image.BICUBIC)]).convert("RGB")
    result_path = os.path.join(args.out, "super_resolution.png")
    result.save(result_path)
    print(f"upscaled {source_path} {source.size} to {result_path} {result.size}; "
          f"max abs difference to PyTorch on the picture: {np.max(np.abs(y_torch - y_out)):.3g}")


if __name__ == "__main__":
    main()
