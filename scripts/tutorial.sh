#!/usr/bin/env bash
# The main job: the PyTorch super-resolution tutorial run with onnxpy (examples/super_resolution.py).
# Creates its own environment (.venv-tutorial) with onnxpy, a CPU build of PyTorch and Pillow.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-tutorial
.venv-tutorial/bin/python -m pip install -q --disable-pip-version-check -e . torch==2.13.0 pillow
.venv-tutorial/bin/python examples/super_resolution.py --out out "$@"
