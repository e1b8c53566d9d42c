"""Models rewritten by onnxruntime's own tools: quantize_dynamic / quantize_static, the transformers
optimizer (with and without float16 conversion) and the optimized model a session saves at
ORT_ENABLE_EXTENDED. Each result is run with onnxpy and onnxruntime on the same inputs, and each test
asserts the contrib / quantized operators it is meant to exercise are in the model."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers import optimizer

import onnxpy

import torch  # noqa: E402 - test dependencies, installed by scripts/test.sh
import torchvision  # noqa: E402
import transformers  # noqa: E402

REL_TOL = 1e-4  # float models: max |onnxpy - onnxruntime| relative to max |onnxruntime|
# Quantized models: float rounding-order differences flip a value across a rounding boundary now and
# then, which moves it by one quantization step (1/127 to 1/255 of the tensor's range) and propagates.
# onnxruntime shows the same against itself: on the static QDQ resnet18, ORT_DISABLE_ALL (DequantizeLinear
# -> Conv -> QuantizeLinear in float) and ORT_ENABLE_ALL (fused QLinearConv, integer requantization)
# differ by 3.8e-2 of max |output|. So the tolerance is that spread measured on each model (times 1.5),
# and at least QUANT_REL_TOL, a few quantization steps.
QUANT_REL_TOL = 2e-2
# Float16 models: onnxruntime's CPU provider runs the float16 contrib ops in float32 behind inserted
# Casts and drops the float16 rounding between neighbouring float32 nodes ("InsertedPrecisionFreeCast"),
# so onnxpy, which rounds every float16 tensor, differs by a few float16 ulps (2^-10 = 9.8e-4 relative).
FP16_REL_TOL = 2e-3
HIDDEN, HEADS, SEQ = 64, 4, 16


class _Bert(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        config = transformers.BertConfig(vocab_size=1000, hidden_size=HIDDEN, num_hidden_layers=2,
                                         num_attention_heads=HEADS, intermediate_size=2 * HIDDEN,
                                         max_position_embeddings=64, attn_implementation="eager")
        self.model = transformers.BertModel(config).eval()

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state


class _Gpt2(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        config = transformers.GPT2Config(vocab_size=1000, n_embd=HIDDEN, n_layer=2, n_head=HEADS, n_positions=64,
                                         attn_implementation="eager")
        self.model = transformers.GPT2Model(config).eval()

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state


class _Mlp(torch.nn.Sequential):
    """Gemm + Relu and Gemm + Sigmoid, which onnxruntime fuses into FusedGemm."""

    def __init__(self) -> None:
        super().__init__(torch.nn.Linear(HIDDEN, 2 * HIDDEN), torch.nn.ReLU(), torch.nn.Linear(2 * HIDDEN, 8),
                         torch.nn.Sigmoid())


class _RmsNorm(torch.nn.Module):
    """Linear then RMS normalization (the T5 / LLaMA pattern onnxruntime fuses into
    SimplifiedLayerNormalization)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(HIDDEN, HIDDEN)
        self.weight = torch.nn.Parameter(torch.rand(HIDDEN) + 0.5)

    def forward(self, x):
        y = self.linear(x)
        return self.weight * (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6))


def _feeds(name: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if name in ("resnet18", "mobilenet_v2"):
        return {"x": rng.standard_normal((1, 3, 64, 64)).astype(np.float32)}
    if name == "rmsnorm":
        return {"x": rng.standard_normal((2, SEQ, HIDDEN)).astype(np.float32)}
    if name == "mlp":
        return {"x": rng.standard_normal((4, HIDDEN)).astype(np.float32)}
    ids = rng.integers(0, 1000, (2, SEQ))
    mask = np.ones((2, SEQ), np.int64)
    mask[1, 10:] = 0
    if name == "gpt2":
        return {"input_ids": ids, "attention_mask": mask}
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros((2, SEQ), np.int64)}


def _module(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name in ("resnet18", "mobilenet_v2"):
        return _calibrate_batch_norms(getattr(torchvision.models, name)(weights=None))
    return {"bert": _Bert, "gpt2": _Gpt2, "mlp": _Mlp, "rmsnorm": _RmsNorm}[name]().eval()


def _calibrate_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode with its BatchNorm statistics taken from a random batch: with the
    initial ones, a random mobilenet_v2's outputs shrink to 1e-9 and quantize to noise."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    with torch.no_grad():
        model.train()(torch.randn(4, 3, 64, 64))
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(name, opset)``: the TorchScript-exported model's path, exported once per module."""
    root = tmp_path_factory.mktemp("ort_tools")
    cache: dict[tuple[str, int], str] = {}

    def get(name: str, opset: int = 17) -> str:
        if (name, opset) not in cache:
            feeds = _feeds(name)
            path = str(root / f"{name}_{opset}.onnx")
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(_module(name), tuple(torch.from_numpy(v) for v in feeds.values()), path,
                                  dynamo=False, input_names=list(feeds), opset_version=opset,
                                  dynamic_axes={n: {0: "batch"} for n in feeds})
            cache[name, opset] = path
        return cache[name, opset]

    return get


def _op_types(path: str) -> set[str]:
    """``domain:op_type`` of every node (the default domain written as ``ai.onnx``)."""
    return {f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in onnx.load(path).graph.node}


def _check(path: str, name: str, expected_ops: set[str], rel_tol: float = REL_TOL, quantized: bool = False,
           spread_of: str | None = None) -> None:
    """Assert ``expected_ops`` are in the model and onnxpy's outputs match onnxruntime's: within
    ``rel_tol`` of max |output|, or for a ``quantized`` model within onnxruntime's own spread on the
    model (or on the model ``spread_of``, the one it was derived from)."""
    ops = _op_types(path)
    print(path.rsplit("/", 1)[-1], sorted(ops))
    assert expected_ops <= ops, f"missing {sorted(expected_ops - ops)} in {sorted(ops)}"
    feeds = _feeds(name)
    ours = onnxpy.InferenceSession(path).run(None, feeds)
    theirs = _run_onnxruntime(path, feeds, onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL)
    source = spread_of or path
    spread_all = theirs if source == path else _run_onnxruntime(source, feeds,
                                                                onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL)
    spread_none = _run_onnxruntime(source, feeds, onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL)
    assert len(ours) == len(theirs)
    for a, b, c, d in zip(ours, theirs, spread_none, spread_all):
        assert a.dtype == b.dtype and a.shape == b.shape
        scale = float(np.max(np.abs(b)))
        if quantized:
            rel_tol = max(QUANT_REL_TOL, 1.5 * float(np.max(np.abs(c - d))) / scale)
        err = float(np.max(np.abs(a.astype(np.float64) - b)))
        assert err <= rel_tol * scale, f"max error {err}, max |onnxruntime| {scale}, tolerance {rel_tol}"


def _run_onnxruntime(path: str, feeds: dict, level) -> list[np.ndarray]:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = level
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _save_optimized(source: str, target: str) -> str:
    """The model an onnxruntime session at ORT_ENABLE_EXTENDED saves (ALL adds NCHWc layouts, which
    are tied to the machine and have no ONNX kernels)."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = target
    onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return target


class _Calibration(CalibrationDataReader):
    """Two batches of random inputs."""

    def __init__(self, name: str) -> None:
        self.batches = iter([_feeds(name)] * 2)

    def get_next(self):
        return next(self.batches, None)


@pytest.fixture(scope="module")
def preprocessed(exported, tmp_path_factory):
    """``preprocessed(name)``: the exported model after onnxruntime's quantization pre-processing
    (shape inference and constant folding, without which quantize_static finds no Conv bias)."""
    root = tmp_path_factory.mktemp("pre")
    cache: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in cache:
            cache[name] = str(root / f"{name}.onnx")
            quant_pre_process(exported(name), cache[name])
        return cache[name]

    return get


CNN_INTEGER = {"ai.onnx:ConvInteger", "ai.onnx:MatMulInteger", "ai.onnx:DynamicQuantizeLinear"}
QUANTIZED = ["resnet18", "mobilenet_v2", "bert"]


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("weight_type", [QuantType.QInt8, QuantType.QUInt8], ids=["qint8", "quint8"])
@pytest.mark.parametrize("name", QUANTIZED)
def test_quantize_dynamic(name, weight_type, per_channel, preprocessed, tmp_path):
    path = str(tmp_path / "dynamic.onnx")
    quantize_dynamic(preprocessed(name), path, weight_type=weight_type, per_channel=per_channel)
    expected = {"ai.onnx:MatMulInteger", "ai.onnx:DynamicQuantizeLinear"}
    _check(path, name, expected | ({"ai.onnx:ConvInteger"} if name != "bert" else set()), quantized=True)


@pytest.mark.parametrize("name", QUANTIZED)
def test_quantize_dynamic_then_saved_optimized(name, preprocessed, tmp_path):
    """The dynamically quantized model as an ORT_ENABLE_EXTENDED session saves it: DynamicQuantizeLinear
    + MatMulInteger + scaling fused into DynamicQuantizeMatMul / MatMulIntegerToFloat."""
    path = str(tmp_path / "dynamic.onnx")
    quantize_dynamic(preprocessed(name), path, weight_type=QuantType.QUInt8, per_channel=True)
    path = _save_optimized(path, str(tmp_path / "fused.onnx"))
    expected = {"com.microsoft:DynamicQuantizeMatMul"}
    if name == "bert":
        expected |= {"com.microsoft:MatMulIntegerToFloat", "com.microsoft:Gelu", "com.microsoft:SkipLayerNormalization"}
    _check(path, name, expected, quantized=True)


STATIC_OPS = {
    ("cnn", "qdq"): {"ai.onnx:QuantizeLinear", "ai.onnx:DequantizeLinear", "ai.onnx:Conv"},
    ("cnn", "qoperator"): {"ai.onnx:QLinearConv", "com.microsoft:QGemm", "com.microsoft:QLinearAdd",
                           "com.microsoft:QLinearGlobalAveragePool"},
    ("cnn", "qdq_fused"): {"ai.onnx:QLinearConv", "com.microsoft:QGemm", "com.microsoft:QLinearGlobalAveragePool"},
    ("bert", "qdq"): {"ai.onnx:QuantizeLinear", "ai.onnx:DequantizeLinear", "ai.onnx:MatMul"},
    ("bert", "qoperator"): {"ai.onnx:QLinearMatMul", "com.microsoft:QLinearAdd", "com.microsoft:QLinearMul",
                            "com.microsoft:QLinearSoftmax"},
    ("bert", "qdq_fused"): {"ai.onnx:QLinearMatMul", "com.microsoft:QLinearAdd", "com.microsoft:QLinearSoftmax"},
}


@pytest.mark.parametrize("form", ["qdq", "qoperator", "qdq_fused"])
@pytest.mark.parametrize("name", QUANTIZED)
def test_quantize_static(name, form, preprocessed, tmp_path):
    """QDQ and QOperator formats; ``qdq_fused`` is the QDQ model as onnxruntime saves it after fusing
    the QDQ groups into QLinear* operators."""
    path = str(tmp_path / "static.onnx")
    fmt = QuantFormat.QOperator if form == "qoperator" else QuantFormat.QDQ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the masked attention logits calibrate to an infinite scale
        quantize_static(preprocessed(name), path, _Calibration(name), quant_format=fmt)
    source = path
    if form == "qdq_fused":  # its QDQ groups that stay unfused run in float, as in the QDQ model: the
        # QDQ model's spread in onnxruntime (float or fused integer convolutions) applies to it too
        path = _save_optimized(path, str(tmp_path / "fused.onnx"))
    _check(path, name, STATIC_OPS["bert" if name == "bert" else "cnn", form], quantized=True, spread_of=source)


TRANSFORMER_OPS = {
    "bert": {"com.microsoft:Attention", "com.microsoft:EmbedLayerNormalization",
             "com.microsoft:SkipLayerNormalization", "com.microsoft:BiasGelu"},
    "gpt2": {"com.microsoft:FastGelu", "com.microsoft:SkipLayerNormalization"},
}


@pytest.mark.parametrize("float16", [False, True], ids=["float32", "float16"])
@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_transformers_optimizer(name, float16, exported, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimizer.optimize_model(exported(name), model_type=name, num_heads=HEADS, hidden_size=HIDDEN)
        if float16:
            optimized.convert_float_to_float16(keep_io_types=True)
    path = str(tmp_path / "optimized.onnx")
    optimized.save_model_to_file(path)
    _check(path, name, TRANSFORMER_OPS[name], FP16_REL_TOL if float16 else REL_TOL)


SAVED_OPS = {
    ("resnet18", 17): {"com.microsoft:FusedConv"},
    ("mobilenet_v2", 17): {"com.microsoft:FusedConv"},
    ("bert", 17): {"com.microsoft:FusedMatMul", "com.microsoft:BiasGelu"},
    ("gpt2", 17): {"com.microsoft:FusedMatMul", "com.microsoft:FastGelu"},
    ("mlp", 17): {"com.microsoft:FusedGemm"},
    # below opset 17, onnxruntime fuses into its own default-domain LayerNormalization-1
    ("gpt2", 14): {"ai.onnx:LayerNormalization", "com.microsoft:FastGelu"},
    ("rmsnorm", 14): {"ai.onnx:SimplifiedLayerNormalization"},
}


@pytest.mark.parametrize(("name", "opset"), list(SAVED_OPS), ids=lambda v: str(v))
def test_session_saved_optimized_model(name, opset, exported, tmp_path):
    path = _save_optimized(exported(name, opset), str(tmp_path / "saved.onnx"))
    _check(path, name, SAVED_OPS[name, opset])
