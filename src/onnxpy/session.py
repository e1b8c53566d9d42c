"""The onnxruntime-compatible API: ``InferenceSession``, ``SessionOptions``, ``RunOptions``, ``NodeArg``.

The session only composes the pipeline ``load -> passes -> plan -> execute``; no graph logic
lives here.
"""
from __future__ import annotations

import contextlib
import enum
import json
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from onnxpy import ir, loader, memory, parallel, passes
from onnxpy.errors import InvalidArgument
from onnxpy.executor import check_feeds, execute, profiled
from onnxpy.plan import build, check_defined
from onnxpy.registry import REGISTRY

CPU = "CPUExecutionProvider"
# Providers onnxruntime builds may offer; asking for one of these is not an error, only unavailable here.
KNOWN_PROVIDERS = frozenset({
    "TensorrtExecutionProvider", "CUDAExecutionProvider", "MIGraphXExecutionProvider", "ROCMExecutionProvider",
    "OpenVINOExecutionProvider", "DnnlExecutionProvider", "VitisAIExecutionProvider", "QNNExecutionProvider",
    "NnapiExecutionProvider", "VSINPUExecutionProvider", "JsExecutionProvider", "CoreMLExecutionProvider",
    "ArmNNExecutionProvider", "ACLExecutionProvider", "DmlExecutionProvider", "RknpuExecutionProvider",
    "WebNNExecutionProvider", "WebGpuExecutionProvider", "XnnpackExecutionProvider", "CANNExecutionProvider",
    "AzureExecutionProvider", "NvTensorRTRTXExecutionProvider", CPU,
})


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = passes.ORT_DISABLE_ALL
    ORT_ENABLE_BASIC = passes.ORT_ENABLE_BASIC
    ORT_ENABLE_EXTENDED = passes.ORT_ENABLE_EXTENDED
    ORT_ENABLE_LAYOUT = passes.ORT_ENABLE_LAYOUT
    ORT_ENABLE_ALL = passes.ORT_ENABLE_ALL


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class SessionOptions:
    """Options for an ``InferenceSession``, named as in onnxruntime."""

    def __init__(self) -> None:
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.enable_profiling = False
        self.profile_file_prefix = "onnxruntime_profile_"
        self.optimized_model_filepath = ""
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.logid = ""
        self.enable_cpu_mem_arena = True
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.use_deterministic_compute = False
        self._config: dict[str, str] = {}

    def add_session_config_entry(self, key: str, value: str) -> None:
        self._config[key] = value

    def get_session_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise InvalidArgument(f"session config entry {key!r} is not set")
        return self._config[key]


class RunOptions:
    """Per-call options, named as in onnxruntime."""

    def __init__(self) -> None:
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.logid = ""
        self.run_tag = ""
        self.terminate = False
        self.only_execute_path_to_fetches = False
        self._config: dict[str, str] = {}

    def add_run_config_entry(self, key: str, value: str) -> None:
        self._config[key] = value

    def get_run_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise InvalidArgument(f"run config entry {key!r} is not set")
        return self._config[key]


@dataclass(frozen=True)
class NodeArg:
    """A graph input or output: ``name``, ``type`` such as ``'tensor(float)'`` and ``shape``."""

    name: str
    type: str
    shape: list[int | str | None] | None

    @staticmethod
    def of(info: ir.ValueInfo) -> "NodeArg":
        t = info.type
        shape = list(t.shape) if isinstance(t, ir.TensorType) and t.shape is not None else None
        if isinstance(t, ir.TensorType) and t.shape is None:
            shape = []
        return NodeArg(info.name, str(t) if t is not None else "unknown", shape)


@dataclass(frozen=True)
class ModelMetadata:
    producer_name: str
    graph_name: str
    domain: str
    description: str
    graph_description: str
    version: int
    custom_metadata_map: dict[str, str] = field(default_factory=dict)


def get_available_providers() -> list[str]:
    return [CPU]


def get_all_providers() -> list[str]:
    return sorted(KNOWN_PROVIDERS)


def get_device() -> str:
    return "CPU"


class InferenceSession:
    """Load a model once and run it many times (``run`` is safe to call from many threads)."""

    def __init__(self, path_or_bytes: Any, sess_options: SessionOptions | None = None,
                 providers: Sequence[Any] | None = None, provider_options: Sequence[dict] | None = None,
                 **kwargs: Any) -> None:
        self._options = sess_options if sess_options is not None else SessionOptions()
        if self._options.enable_cpu_mem_arena:
            memory.keep_freed_memory()
        self._providers, self._provider_options = _choose_providers(providers, provider_options)
        self._model_path = os.fspath(path_or_bytes) if isinstance(path_or_bytes, (str, os.PathLike)) else None
        model = loader.load(path_or_bytes)
        check_defined(model.graph)
        interface = ModelInterface(model)
        level = int(self._options.graph_optimization_level)
        passes.run_passes(model, level, REGISTRY)
        if self._options.optimized_model_filepath:
            loader.save(model, self._options.optimized_model_filepath)
        self._interface = interface
        self._plan = build(model.graph, model.opset_imports, REGISTRY, fed=interface.fed_names)
        self._initializer_ids = frozenset(id(v) for v in self._plan.template if isinstance(v, np.ndarray))
        self._profile: list[tuple[ir.Node, float, float]] = []
        self._run_plan = profiled(self._plan, self._profile) if self._options.enable_profiling else self._plan
        self._profile_start = time.perf_counter()
        self._profile_start_ns = time.time_ns()
        threads = self._options.intra_op_num_threads
        spin = self._options._config.get("session.intra_op.allow_spinning", "1") != "0"
        self._pool = parallel.Pool(threads if threads > 0 else parallel.usable_cpus(), spin)

    def get_inputs(self) -> list[NodeArg]:
        return [NodeArg.of(v) for v in self._interface.inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [NodeArg.of(v) for v in self._interface.outputs]

    def get_overridable_initializers(self) -> list[NodeArg]:
        return [NodeArg.of(v) for v in self._interface.overridable]

    def get_modelmeta(self) -> ModelMetadata:
        return self._interface.meta

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {p: dict(o) for p, o in zip(self._providers, self._provider_options)}

    def get_session_options(self) -> SessionOptions:
        return self._options

    def set_providers(self, providers: Sequence[Any] | None = None,
                      provider_options: Sequence[dict] | None = None) -> None:
        self._providers, self._provider_options = _choose_providers(providers, provider_options)

    def disable_fallback(self) -> None:
        """Kept for onnxruntime compatibility: onnxpy never falls back silently."""

    def enable_fallback(self) -> None:
        """Kept for onnxruntime compatibility: onnxpy never falls back silently."""

    def get_profiling_start_time_ns(self) -> int:
        return self._profile_start_ns

    def run(self, output_names: Sequence[str] | None, input_feed: dict[str, Any],
            run_options: RunOptions | None = None) -> list[Any]:
        """Run the model; ``output_names`` None or empty returns every output, in graph order."""
        if not isinstance(input_feed, dict):
            raise InvalidArgument(f"input_feed must be a dict of input name to array, got {type(input_feed).__name__}")
        wanted = self._output_indices(output_names)
        values = check_feeds(self._plan, input_feed)
        with _one_blas_thread(), parallel.using(self._pool), np.errstate(all="ignore"):  # inf/nan: ONNX semantics
            outputs = execute(self._run_plan, values)
        fed_ids = {id(a) for v in values for a in (v if isinstance(v, list) else [v])}
        return [_own(outputs[i], fed_ids | self._initializer_ids) for i in wanted]

    def _output_indices(self, output_names: Sequence[str] | None) -> list[int]:
        names = self._plan.output_names
        if not output_names:
            return list(range(len(names)))
        bad = [n for n in output_names if n not in names]
        if bad:
            raise InvalidArgument(f"invalid output name(s) {bad}: the model's outputs are {list(names)}")
        return [names.index(n) for n in output_names]

    def end_profiling(self) -> str:
        """Write the per-node trace collected since creation (Chrome trace JSON); return its path."""
        if not self._options.enable_profiling:
            return ""
        taken = len(self._profile)  # runs in other threads may append meanwhile: keep theirs
        records = self._profile[:taken]
        del self._profile[:taken]
        pid = os.getpid()
        events = [{
            "cat": "Node", "pid": pid, "tid": 0, "ph": "X",
            "ts": round((start - self._profile_start) * 1e6, 3), "dur": round(dur * 1e6, 3),
            "name": f"{node.name or node.op_type}_kernel_time",
            "args": {"op_name": node.op_type, "provider": CPU},
        } for node, start, dur in records]
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        path = f"{self._options.profile_file_prefix}{stamp}.json"
        with open(path, "w") as f:
            json.dump(events, f)
        return path


class ModelInterface:
    """What the API reports about a model, taken before optimization passes change the graph."""

    def __init__(self, model: ir.Model) -> None:
        g = model.graph
        inits = set(g.initializers)
        self.inputs = [v for v in g.inputs if v.name not in inits]
        self.overridable = [v for v in g.inputs if v.name in inits]
        self.outputs = list(g.outputs)
        self.fed_names = [v.name for v in self.inputs + self.overridable]
        self.meta = ModelMetadata(
            producer_name=model.producer_name, graph_name=g.name, domain=model.domain,
            description=model.doc_string, graph_description=g.doc_string, version=model.model_version,
            custom_metadata_map=dict(model.metadata_props),
        )


def _own(value: Any, foreign: set[int]) -> Any:
    """Return outputs the caller may keep and write: never a view of an input or an initializer."""
    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, list):
        return [_own(v, foreign) for v in value]
    if isinstance(value, dict):
        return {k: _own(v, foreign) for k, v in value.items()}
    if not isinstance(value, np.ndarray):
        return value
    root = value
    while isinstance(root.base, np.ndarray):
        root = root.base
    if id(root) in foreign or id(value) in foreign or not value.flags.writeable:
        return value.copy()
    return value


def _choose_providers(providers: Sequence[Any] | None, options: Sequence[dict] | None) -> tuple[list[str], list[dict]]:
    if providers is None:
        return [CPU], [{}]
    names, opts = [], []
    for i, p in enumerate(providers):
        name, opt = (p[0], dict(p[1])) if isinstance(p, (tuple, list)) else (p, {})
        if options is not None and i < len(options):
            opt = dict(options[i])
        if name not in KNOWN_PROVIDERS:
            raise InvalidArgument(f"unknown execution provider {name!r}: known providers are {get_all_providers()}")
        if name != CPU:
            warnings.warn(
                f"Specified provider {name!r} is not in available provider names. "
                f"Available providers: {get_available_providers()}", RuntimeWarning, stacklevel=3,
            )
            continue
        names.append(name)
        opts.append(opt)
    if not names:
        raise InvalidArgument(
            f"none of the requested providers {[p if isinstance(p, str) else p[0] for p in providers]} is "
            f"available: onnxpy provides {get_available_providers()}"
        )
    return names, opts


_BLAS_LIBRARIES = None
_BLAS_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Hold BLAS at one thread for a run: the session's pool does the parallel work (``parallel``).

    The libraries are those loaded when a session first runs in the process (numpy's among them,
    loaded before onnxpy). Only those not already at one thread are set, and set back afterwards:
    about 5 us a run, where threadpoolctl's ``limit``, which surveys every library, takes 20. One
    whose count threadpoolctl cannot read (None) is left alone, having no value to restore. Setting
    OpenBLAS makes the calling thread threadpoolctl's controlling one: control is released after the
    run, as ``limit`` does, so that other threads can still set limits."""
    global _BLAS_LIBRARIES
    with _BLAS_LOCK:
        if _BLAS_LIBRARIES is None:
            from threadpoolctl import ThreadpoolController

            _BLAS_LIBRARIES = ThreadpoolController().select(user_api="blas").lib_controllers
    changed = [(lib, threads) for lib in _BLAS_LIBRARIES if (threads := lib.get_num_threads()) not in (None, 1)]
    for lib, _ in changed:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in changed:
            lib.set_num_threads(threads)
            release = getattr(lib, "clear_controlling_thread", None)  # OpenBLAS controllers only
            if release is not None:
                release()
