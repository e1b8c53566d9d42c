"""The command line, on a small model; ``verify`` checks against onnxruntime."""
from __future__ import annotations

import re

import numpy as np
import pytest

from onnxpy import cli
from tests._models import add_relu


@pytest.fixture()
def model_path(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(add_relu().SerializeToString())
    return str(path)


def test_info_lists_inputs_outputs_and_ops(model_path, capsys):
    assert cli.main(["info", model_path]) == 0
    out = capsys.readouterr().out
    assert "x: tensor(float) ['N', 4]" in out and "ai.onnx::Add" in out and "ai.onnx::Relu" in out


def test_check_and_verify(model_path, capsys):
    assert cli.main(["check", model_path]) == 0
    assert cli.main(["verify", model_path, "--dim", "N=3"]) == 0
    assert "onnxpy agrees with onnxruntime" in capsys.readouterr().out


def test_run_with_inputs_file_and_save(model_path, tmp_path, capsys):
    inputs = tmp_path / "in.npz"
    np.savez(inputs, x=np.full((2, 4), 3.0, np.float32))
    saved = tmp_path / "out.npz"
    assert cli.main(["run", model_path, "--inputs", str(inputs), "--save", str(saved)]) == 0
    np.testing.assert_array_equal(np.load(saved)["y"], np.maximum(np.full((2, 4), 3.0) + [1, -1, 0.5, -0.5], 0))
    assert "y: float32[2, 4]" in capsys.readouterr().out


def test_profile_and_bench(model_path, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["profile", model_path, "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    assert "Add" in out and "Relu" in out
    assert re.search(r"^Add +3 ", out, re.M), out  # the three profiled runs; the warm-up run is not counted
    assert cli.main(["bench", model_path, "--compare", "onnxruntime", "--repeat", "3", "--warmup", "1"]) == 0
    assert "ratio onnxpy/onnxruntime" in capsys.readouterr().out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path / "missing.onnx")]) == 1
    assert "NoSuchFile" in capsys.readouterr().err
