"""Each test process gets its own ONNX_HOME for the official suite's light models."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _own_onnx_home(tmp_path_factory):
    """The suite writes each light model's generated inputs under ONNX_HOME (~/.onnx by default) and
    reads them back: two workers running the same model at once (its two optimization levels) read
    each other's half-written files ("The element type in the input tensor is UNDEFINED"). Each
    process gets a folder of its own, removed with pytest's temporary folders."""
    previous = os.environ.get("ONNX_HOME")
    os.environ["ONNX_HOME"] = str(tmp_path_factory.mktemp("onnx_home"))
    yield
    if previous is None:
        del os.environ["ONNX_HOME"]
    else:
        os.environ["ONNX_HOME"] = previous
