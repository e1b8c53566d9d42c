#!/usr/bin/env bash
# All tests: unit tests, onnxruntime parity, exported PyTorch models and the official ONNX
# conformance suite at two optimization levels. Creates its own environment (.venv) with the
# test dependencies pinned in pyproject.toml (onnx, onnxruntime, torch, torchvision, transformers, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
.venv/bin/python -m pytest -n 2 tests "$@"
