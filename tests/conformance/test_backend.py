"""The official ONNX backend test suite (node, simple, pytorch-converted, pytorch-operator and the
light model zoo), run through ``onnx.backend.test.BackendTest`` at ORT_DISABLE_ALL and ORT_ENABLE_ALL.

Known failures come from ``known_failures.toml``; ``xfail`` entries become
``unittest.expectedFailure``, so a test that starts passing fails the run until its entry is removed.
``scripts/conformance.py`` sets ONNXPY_CONFORMANCE_IGNORE_KNOWN=1 to count real passes.
"""
import os

import onnx.backend.test

from onnxpy.backend import DisableAllBackend, OnnxpyBackend
from tests.conformance import known_failures

LEVELS = {"ORT_DISABLE_ALL": DisableAllBackend, "ORT_ENABLE_ALL": OnnxpyBackend}


def _suite(level: str, backend: type) -> dict:
    runner = onnx.backend.test.BackendTest(backend, __name__)
    entries = [] if os.environ.get("ONNXPY_CONFORMANCE_IGNORE_KNOWN") else known_failures.load()
    for entry in entries:
        if "all" in entry.levels or level in entry.levels:
            (runner.xfail if entry.mode == "xfail" else runner.exclude)(entry.pattern())
    cases = {}
    for name, case in runner.test_cases.items():
        for attr in [a for a in vars(case) if a.endswith("_cuda")]:
            delattr(case, attr)  # onnxpy runs on the CPU only; CUDA variants are not generated
        case.__name__ = case.__qualname__ = f"{name}_{level}"
        cases[case.__name__] = case
    return cases


for _level, _backend in LEVELS.items():
    globals().update(_suite(_level, _backend))
