"""The benchmark's model suite, built in code with random weights and exported to ONNX.

Each entry returns ``(torch module, example inputs by name)`` at a given batch size; ``export``
writes ``<cache>/<name>-<exporter>.onnx`` once (TorchScript exporter, and ``dynamo=True``).
"""
from __future__ import annotations

import os
import warnings
from typing import Callable

import numpy as np


def _torch():
    import torch

    return torch


def _vision(name: str, size: int = 224) -> Callable:
    def build(batch: int):
        torch = _torch()
        import torchvision

        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()
        return model, {"x": torch.randn(batch, 3, size, size)}

    return build


def _super_resolution(batch: int):
    torch = _torch()
    from examples.super_resolution import SuperResolutionNet

    torch.manual_seed(0)
    return SuperResolutionNet(upscale_factor=3).eval(), {"input": torch.randn(batch, 1, 224, 224)}


def _hf(config_name: str, model_name: str, seq: int, output: str = "last_hidden_state", **config) -> Callable:
    def build(batch: int):
        torch = _torch()
        import transformers

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                torch.manual_seed(0)
                cfg = getattr(transformers, config_name)(**config)
                self.inner = getattr(transformers, model_name)(cfg).eval()

            def forward(self, input_ids):
                return getattr(self.inner(input_ids=input_ids), output)

        ids = torch.randint(0, 1000, (batch, seq), generator=torch.Generator().manual_seed(0))
        return Wrapped().eval(), {"input_ids": ids}

    return build


def _whisper_encoder(batch: int):
    torch = _torch()
    import transformers

    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6,
                                     decoder_layers=4, decoder_attention_heads=6, encoder_ffn_dim=1536,
                                     decoder_ffn_dim=1536, num_mel_bins=80)
    encoder = transformers.WhisperModel(cfg).get_encoder().eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_features):
            return self.encoder(input_features=input_features).last_hidden_state

    return Encoder().eval(), {"input_features": torch.randn(batch, 80, 3000)}


MODELS: dict[str, Callable] = {
    "super_resolution": _super_resolution,
    "resnet18": _vision("resnet18"),
    "resnet50": _vision("resnet50"),
    "mobilenet_v2": _vision("mobilenet_v2"),
    "mobilenet_v3_small": _vision("mobilenet_v3_small"),
    "efficientnet_b0": _vision("efficientnet_b0"),
    "squeezenet1_1": _vision("squeezenet1_1"),
    "convnext_tiny": _vision("convnext_tiny"),
    "vit_b_16": _vision("vit_b_16"),
    "bert_base": _hf("BertConfig", "BertModel", 128),
    "distilbert": _hf("DistilBertConfig", "DistilBertModel", 128),
    "gpt2_small": _hf("GPT2Config", "GPT2Model", 64),
    "t5_small_encoder": _hf("T5Config", "T5EncoderModel", 128, d_model=512, d_ff=2048, num_layers=6, num_heads=8),
    "whisper_tiny_encoder": _whisper_encoder,
}


def export(name: str, exporter: str, cache: str, batch: int = 1) -> tuple[str, dict[str, np.ndarray]]:
    """Export ``name`` with ``exporter`` ('torchscript' or 'dynamo'); returns the path and numpy inputs."""
    torch = _torch()
    model, inputs = MODELS[name](batch)
    path = os.path.join(cache, f"{name}-{exporter}-b{batch}.onnx")
    feeds = {k: v.numpy() for k, v in inputs.items()}
    if os.path.exists(path):
        return path, feeds
    os.makedirs(cache, exist_ok=True)
    args, names = tuple(inputs.values()), list(inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(model, args, path, dynamo=True, input_names=names, external_data=False)
        else:
            torch.onnx.export(model, args, path, dynamo=False, input_names=names, opset_version=17)
    return path, feeds
