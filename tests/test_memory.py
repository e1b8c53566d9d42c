"""The allocator setting behind SessionOptions.enable_cpu_mem_arena: freed tensors' memory is reused
rather than handed back to the system and page-faulted in again on the next run."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_RUN = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from onnx import TensorProto, helper
    import onnxpy

    # two 40 MB intermediates a run: above glibc's default mmap threshold, and above the largest
    # threshold it can be set to (32 MB)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [10 << 20])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    nodes = [helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Sqrt", ["e"], ["s"]),
             helper.make_node("ReduceSum", ["s"], ["y"], keepdims=1)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    options = onnxpy.SessionOptions()
    options.enable_cpu_mem_arena = sys.argv[1] == "1"
    session = onnxpy.InferenceSession(model.SerializeToString(), options)
    feed = {"x": np.zeros(10 << 20, np.float32)}
    for _ in range(3):
        session.run(None, feed)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        session.run(None, feed)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
""")


def _faults_per_run(arena: bool) -> float:
    out = subprocess.run([sys.executable, "-c", _RUN, "1" if arena else "0"], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is made for glibc's malloc")
def test_arena_keeps_freed_memory_for_the_next_run():
    # without the setting glibc hands memory of the 40 MB buffers back to the system and every run
    # faults it in again (about 1600 page faults a run on the development machine)
    assert _faults_per_run(arena=False) > 500
    assert _faults_per_run(arena=True) < 50
