"""The ``onnxpy`` command line: ``info``, ``check``, ``run``, ``profile``, ``verify``, ``bench``.

Built on the public API only.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from typing import Any, Sequence

import numpy as np

import onnxpy
from onnxpy import ir
from onnxpy.errors import OnnxpyError
from onnxpy.timing import interleaved_medians


def _dims(pairs: Sequence[str]) -> dict[str, int]:
    out = {}
    for p in pairs:
        name, _, value = p.partition("=")
        if not value.isdigit():
            raise SystemExit(f"--dim expects NAME=SIZE, got {p!r}")
        out[name] = int(value)
    return out


def random_feeds(session: onnxpy.InferenceSession, dims: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs matching the session's inputs; symbolic or unknown dims from ``dims`` (default 1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in session.get_inputs():
        if not arg.type.startswith("tensor("):
            raise SystemExit(f"input {arg.name!r} has type {arg.type}: pass it with --inputs")
        shape = [d if isinstance(d, int) else dims.get(d, 1) if isinstance(d, str) else 1 for d in arg.shape or []]
        dt = ir.dtype_from_name(arg.type[len("tensor("):-1])
        if dt.kind == "f":
            feeds[arg.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind in "iu":
            feeds[arg.name] = rng.integers(0, 2, size=shape).astype(dt)
        elif dt.kind == "b":
            feeds[arg.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise SystemExit(f"cannot make random data for input {arg.name!r} of type {arg.type}: use --inputs")
    return feeds


def _feeds(args, session) -> dict[str, Any]:
    if args.inputs:
        with np.load(args.inputs, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    return random_feeds(session, _dims(args.dim), args.seed)


def _session(path: str, level: str = "ORT_ENABLE_ALL", threads: int = 0, profile: bool = False):
    so = onnxpy.SessionOptions()
    so.graph_optimization_level = onnxpy.GraphOptimizationLevel[level]
    so.intra_op_num_threads = threads
    so.enable_profiling = profile
    so.profile_file_prefix = os.path.join(tempfile.gettempdir(), "onnxpy_profile_")
    return onnxpy.InferenceSession(path, so)


def cmd_info(args) -> None:
    import onnx

    model = onnx.load(args.model, load_external_data=False)
    print(f"model: {args.model}")
    print(f"  IR version {model.ir_version}, producer {model.producer_name} {model.producer_version}".rstrip())
    print("  opsets: " + ", ".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in model.opset_import))
    session = _session(args.model, "ORT_DISABLE_ALL")
    for title, nodes in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        print(f"  {title}:")
        for a in nodes:
            print(f"    {a.name}: {a.type} {a.shape}")
    counts = collections.Counter((n.domain or "ai.onnx", n.op_type) for n in model.graph.node)
    print(f"  {len(model.graph.node)} nodes, {len(model.graph.initializer)} initializers; ops:")
    for (domain, op), n in counts.most_common():
        print(f"    {n:5d}  {domain}::{op}")


def cmd_check(args) -> None:
    _session(args.model, args.level)
    print(f"{args.model}: every node has a kernel; the model loads and plans")


def cmd_run(args) -> None:
    session = _session(args.model, args.level, args.threads)
    feeds = _feeds(args, session)
    outputs = session.run(None, feeds)
    for arg, value in zip(session.get_outputs(), outputs):
        if isinstance(value, np.ndarray):
            summary = f"{value.dtype}{list(value.shape)}"
            if value.size and value.dtype.kind in "fiub":
                summary += f" min {value.min():.6g} max {value.max():.6g} mean {value.astype(np.float64).mean():.6g}"
            print(f"{arg.name}: {summary}")
        else:
            print(f"{arg.name}: {type(value).__name__} {value!r:.200}")
    if args.save:
        np.savez(args.save, **{a.name: v for a, v in zip(session.get_outputs(), outputs) if isinstance(v, np.ndarray)})
        print(f"outputs saved to {args.save}")


def cmd_profile(args) -> None:
    warm = _session(args.model, args.level, args.threads)
    feeds = _feeds(args, warm)
    warm.run(None, feeds)  # loads the compiled kernels and starts the threads: not what a profile should show
    session = _session(args.model, args.level, args.threads, profile=True)
    for _ in range(args.repeat):
        session.run(None, feeds)
    path = session.end_profiling()
    with open(path) as f:
        events = json.load(f)
    by_op: dict[str, list[float]] = collections.defaultdict(list)
    for e in events:
        by_op[e["args"]["op_name"]].append(e["dur"])
    total = sum(sum(v) for v in by_op.values()) or 1.0
    print(f"per-op-type time over {args.repeat} runs, after a warm-up run (trace: {path})")
    print(f"{'op':<28}{'calls':>8}{'total ms':>12}{'share':>8}")
    for op, durs in sorted(by_op.items(), key=lambda kv: -sum(kv[1])):
        print(f"{op:<28}{len(durs):>8}{sum(durs) / 1e3:>12.2f}{sum(durs) / total:>8.1%}")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise SystemExit("this command compares with onnxruntime: pip install onnxruntime") from None
    return onnxruntime


def cmd_verify(args) -> None:
    ort = _onnxruntime()
    session = _session(args.model, args.level)
    feeds = _feeds(args, session)
    ours = session.run(None, feeds)
    theirs = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"]).run(None, feeds)
    worst = 0.0
    for arg, a, b in zip(session.get_outputs(), ours, theirs):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            raise SystemExit(f"{arg.name}: onnxpy gives {a.dtype}{list(a.shape)}, onnxruntime {b.dtype}{list(b.shape)}")
        diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
        rel = diff / max(float(np.max(np.abs(b.astype(np.float64)))) if b.size else 0.0, 1e-30)
        worst = max(worst, rel)
        print(f"{arg.name}: max abs diff {diff:.3g}, relative to max |onnxruntime| {rel:.3g}")
    if worst > args.rtol:
        raise SystemExit(f"outputs differ from onnxruntime by {worst:.3g} > {args.rtol}")
    print("onnxpy agrees with onnxruntime")


def cmd_bench(args) -> None:
    session = _session(args.model, args.level, args.threads)
    feeds = _feeds(args, session)
    runners = {"onnxpy": lambda: session.run(None, feeds)}
    if args.compare == "onnxruntime":
        ort = _onnxruntime()
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        other = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
        runners["onnxruntime"] = lambda: other.run(None, feeds)
    medians = interleaved_medians(runners, args.repeat, args.warmup)
    for name, ms in medians.items():
        print(f"{name:<12} median {ms:9.3f} ms over {args.repeat} runs")
    if "onnxruntime" in medians:
        print(f"ratio onnxpy/onnxruntime: {medians['onnxpy'] / medians['onnxruntime']:.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onnxpy", description="Run and inspect ONNX models with onnxpy.")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn, help_text: str, data: bool = True):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("model", help="path to an .onnx file")
        p.add_argument("--level", default="ORT_ENABLE_ALL", choices=list(onnxpy.GraphOptimizationLevel.__members__))
        if data:
            p.add_argument("--inputs", help=".npz file of inputs by name (default: random data)")
            p.add_argument("--dim", action="append", default=[], help="size of a symbolic dim, NAME=SIZE (default 1)")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--threads", type=int, default=0, help="intra_op_num_threads (0: default)")
        p.set_defaults(fn=fn)
        return p

    command("info", cmd_info, "inputs, outputs, opsets and operator counts", data=False)
    command("check", cmd_check, "load and plan the model; report unsupported operators", data=False)
    command("run", cmd_run, "run once and summarise the outputs").add_argument("--save", help="write outputs to .npz")
    command("profile", cmd_profile, "per-op-type time from a profiled run").add_argument("--repeat", type=int, default=10)
    command("verify", cmd_verify, "compare outputs with onnxruntime").add_argument("--rtol", type=float, default=1e-4)
    bench = command("bench", cmd_bench, "median latency, optionally side by side with onnxruntime")
    bench.add_argument("--compare", choices=["onnxruntime"])
    bench.add_argument("--repeat", type=int, default=20)
    bench.add_argument("--warmup", type=int, default=3)

    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except OnnxpyError as e:
        print(f"onnxpy {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
