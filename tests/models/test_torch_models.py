"""Real exported models: torchvision CNNs and a transformers BERT (random weights), exported with
both of PyTorch's exporters, run with onnxpy and compared with onnxruntime (and PyTorch)."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime
import pytest

import onnxpy

import torch  # noqa: E402 - test dependencies, installed by scripts/test.sh
import torchvision  # noqa: E402
import transformers  # noqa: E402

REL_TOL = 1e-4  # max |onnxpy - onnxruntime| relative to max |onnxruntime| per output


class Bert(torch.nn.Module):
    """BERT-base from a config (random weights) with keyword arguments bound for the exporters."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bert = transformers.BertModel(transformers.BertConfig()).eval()

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _cnn(name: str):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    return model, {"x": torch.randn(1, 3, 224, 224)}


def _bert():
    ids = torch.randint(0, 30522, (1, 128), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 128, dtype=torch.long)
    mask[:, 100:] = 0
    return Bert().eval(), {"input_ids": ids, "attention_mask": mask}


MODELS = {"resnet18": lambda: _cnn("resnet18"), "mobilenet_v2": lambda: _cnn("mobilenet_v2"),
          "efficientnet_b0": lambda: _cnn("efficientnet_b0"), "bert": _bert}


def _export(model, inputs: dict, path: str, dynamo: bool) -> None:
    args = tuple(inputs.values())
    names = list(inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", max=64)
            torch.onnx.export(model, args, path, dynamo=True, input_names=names, external_data=False,
                              dynamic_shapes={n: {0: batch} for n in names})
        else:
            torch.onnx.export(model, args, path, dynamo=False, input_names=names, opset_version=17,
                              dynamic_axes={n: {0: "batch"} for n in names})


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("name", list(MODELS))
def test_exported_model_matches_onnxruntime(name, dynamo, tmp_path):
    model, inputs = MODELS[name]()
    path = str(tmp_path / f"{name}.onnx")
    _export(model, inputs, path, dynamo)
    onnx.checker.check_model(path)
    feeds = {k: v.numpy() for k, v in inputs.items()}
    feeds = {k: np.concatenate([v, v[:, ::-1].copy()]) for k, v in feeds.items()}  # batch 2: dynamic axis
    ours = onnxpy.InferenceSession(path).run(None, feeds)
    theirs = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    with torch.no_grad():
        torch_out = model(*[torch.from_numpy(v) for v in feeds.values()]).numpy()
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and a.shape == b.shape
        scale = float(np.max(np.abs(b)))
        assert float(np.max(np.abs(a - b))) <= REL_TOL * scale
    np.testing.assert_allclose(ours[0], torch_out, rtol=1e-3, atol=1e-4 * float(np.max(np.abs(torch_out))))
