"""onnxpy side by side with onnxruntime (and onnx.reference, capped) on a suite of real models.

    python benchmarks/bench.py                         # the whole suite, 1 and 2 threads, batch 1
    python benchmarks/bench.py --models resnet18 bert_base --threads 2 --batch 8

For every model and exporter: medians of interleaved runs per thread count (blocks A x5, B x5,
B x5, A x5, ..., each after a 0.25 s pause and an untimed run, after warm-up: onnxpy.timing), the ratio onnxpy/onnxruntime,
session-creation times, peak resident memory (each runtime in its own process), FLOPs and latency
as a multiple of the FLOP bound from a measured numpy matmul peak. Writes
benchmarks/results/latest.json and latest.md (latest-b8.* for --batch 8). The environment's
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed for the benchmark's processes, as a user's
machine would not have them (the BLAS kernel in use is reported), and so is
PYTHONDONTWRITEBYTECODE: an installed package has its bytecode compiled, and session creation
in a fresh process (which includes the import) would otherwise time Python compiling the sources.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SANDBOX_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "PYTHONDONTWRITEBYTECODE")


def _worker(kind: str, **params) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SANDBOX_VARS}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--params", json.dumps(params)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _limit_threads(threads: int):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def _sessions(path: str, threads: int, runtimes: list[str]) -> tuple[dict, dict]:
    created, sessions = {}, {}
    for name in runtimes:
        start = time.perf_counter()
        if name == "onnxpy":
            import onnxpy

            so = onnxpy.SessionOptions()
            so.intra_op_num_threads = threads
            sess = onnxpy.InferenceSession(path, so)
        else:
            import onnxruntime

            so = onnxruntime.SessionOptions()
            so.intra_op_num_threads = threads
            sess = onnxruntime.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        created[name] = time.perf_counter() - start
        sessions[name] = sess
    return sessions, created


def _feeds(path: str) -> dict:
    import numpy as np

    with np.load(path + ".inputs.npz") as data:
        return {k: data[k] for k in data.files}


def work_time(path: str, threads: int, repeat: int, warmup: int) -> dict:
    feeds = _feeds(path)
    with _limit_threads(threads):
        sessions, created = _sessions(path, threads, ["onnxpy", "onnxruntime"])  # times the imports too
        from onnxpy.timing import interleaved_medians

        runners = {name: (lambda s=sess: s.run(None, feeds)) for name, sess in sessions.items()}
        medians = interleaved_medians(runners, repeat, warmup)
    return {"median_ms": medians, "create_ms": {k: v * 1e3 for k, v in created.items()}}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def work_memory(path: str, runtime: str, threads: int) -> dict:
    """Peak resident memory of creating the session and running it 3 times, above the
    resident memory once the runtime is imported (Linux: the high-water mark is reset first)."""
    feeds = _feeds(path)
    __import__("onnxpy" if runtime == "onnxpy" else "onnxruntime")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    base = _status_kb("VmRSS")
    with _limit_threads(threads):
        sessions, _ = _sessions(path, threads, [runtime])
        for _ in range(3):
            sessions[runtime].run(None, feeds)
    return {"peak_mb": (_status_kb("VmHWM") - base) / 1024}


def work_reference(path: str, cap_s: float) -> dict:
    from onnx.reference import ReferenceEvaluator

    feeds = _feeds(path)
    ref = ReferenceEvaluator(path)
    times = []
    deadline = time.perf_counter() + cap_s
    while not times or (time.perf_counter() < deadline and len(times) < 5):
        start = time.perf_counter()
        ref.run(None, feeds)
        times.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(times) * 1e3, "runs": len(times)}


def work_peak(threads: int) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_info

    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    with _limit_threads(threads):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(5))
    blas = [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"]
    return {"gflops": 2 * 2048 ** 3 / best / 1e9, "blas": blas}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops(path: str, feeds: dict) -> float:
    """Multiply-add FLOPs (x2) of Conv, ConvTranspose, MatMul and Gemm with the given input shapes.

    Dims that shape inference leaves unknown are batch dims in this suite: they count as the batch."""
    import numpy as np
    import onnx

    model = onnx.load(path)
    for inp in model.graph.input:
        if inp.name in feeds:
            for dim, size in zip(inp.type.tensor_type.shape.dim, feeds[inp.name].shape):
                dim.dim_value = size
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    batch = next(iter(feeds.values())).shape[0]
    shapes = {v.name: [d.dim_value or batch for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0.0
    for node in model.graph.node:
        ins = [shapes.get(n) for n in node.input]
        out = shapes.get(node.output[0])
        if not out or not all(ins[:2]) or 0 in out:
            continue
        if node.op_type in ("Conv", "ConvTranspose"):
            w = ins[1]
            per_out = int(np.prod(w[1:])) if node.op_type == "Conv" else int(np.prod(w[2:])) * w[0] // max(out[1], 1)
            total += 2.0 * int(np.prod(out)) * per_out
        elif node.op_type == "MatMul":
            total += 2.0 * int(np.prod(out)) * ins[0][-1]
        elif node.op_type == "Gemm":
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            total += 2.0 * int(np.prod(out)) * (ins[0][0] if trans_a else ins[0][-1])
    return total


def run_suite(args) -> dict:
    import numpy as np

    sys.path[:0] = [ROOT, os.path.join(ROOT, "src")]
    from benchmarks.models import MODELS, export

    results = {"batch": args.batch,
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpus": os.cpu_count(), "python": platform.python_version()},
               "peak": {t: _worker("peak", threads=t) for t in args.threads}, "models": []}
    for name in args.models or list(MODELS):
        for exporter in args.exporters:
            entry = {"model": name, "exporter": exporter, "batch": args.batch}
            try:
                path, feeds = export(name, exporter, args.cache, args.batch)
            except Exception as e:  # noqa: BLE001 - an exporter failure is a result to report
                entry["error"] = f"export failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
                results["models"].append(entry)
                continue
            np.savez(path + ".inputs.npz", **feeds)
            entry["gflop"] = flops(path, feeds) / 1e9
            entry["time"] = {t: _worker("time", path=path, threads=t, repeat=args.repeat, warmup=args.warmup)
                             for t in args.threads}
            entry["memory"] = {rt: _worker("memory", path=path, runtime=rt, threads=max(args.threads))
                               for rt in ("onnxpy", "onnxruntime")}
            if args.reference_cap > 0:
                entry["reference"] = _worker("reference", path=path, cap_s=args.reference_cap)
            results["models"].append(entry)
            print(_row(entry, results["peak"]), flush=True)
    return results


def _row(entry: dict, peak: dict) -> str:
    if "error" in entry:
        return f"| {entry['model']} | {entry['exporter']} | {entry['error']} |"
    cells = [entry["model"], entry["exporter"], f"{entry['gflop']:.2f}"]
    for t, res in entry["time"].items():
        if "error" in res:
            cells += [res["error"][:60], "", "", ""]
            continue
        ours, theirs = res["median_ms"]["onnxpy"], res["median_ms"]["onnxruntime"]
        bound = entry["gflop"] / peak[t]["gflops"] * 1e3 if peak[t].get("gflops") else float("nan")
        cells += [f"{ours:.2f}", f"{theirs:.2f}", f"{ours / theirs:.2f}", f"{ours / bound:.1f}" if bound else "-"]
    ref = entry.get("reference", {})
    cells.append(f"{ref['median_ms']:.0f}" if "median_ms" in ref else "-")
    mem = entry["memory"]
    cells.append(" / ".join(f"{mem[r].get('peak_mb', float('nan')):.0f}" for r in ("onnxpy", "onnxruntime")))
    t = max(entry["time"])
    created = entry["time"][t].get("create_ms", {})
    cells.append(" / ".join(f"{created.get(r, float('nan')):.0f}" for r in ("onnxpy", "onnxruntime")))
    return "| " + " | ".join(cells) + " |"


def _geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def markdown(results: dict, threads: list[int]) -> str:
    head = ["model", "exporter", "GFLOP"]
    for t in threads:
        head += [f"onnxpy ms ({t}t)", f"ort ms ({t}t)", f"ratio ({t}t)", f"x FLOP bound ({t}t)"]
    head += ["onnx.reference ms", "peak MB onnxpy / ort", "create ms onnxpy / ort"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [_row(e, results["peak"]) for e in results["models"]]
    for t in threads:
        ratios = [e["time"][t]["median_ms"]["onnxpy"] / e["time"][t]["median_ms"]["onnxruntime"]
                  for e in results["models"] if "time" in e and "median_ms" in e["time"][t]]
        if ratios:
            lines.append(f"\nGeometric-mean ratio onnxpy/onnxruntime at {t} thread(s): {_geomean(ratios):.2f} "
                         f"over {len(ratios)} runs")
    most = max(threads)  # onnx.reference runs with numpy's default (all-core) BLAS threads
    speedups = [e["reference"]["median_ms"] / e["time"][most]["median_ms"]["onnxpy"]
                for e in results["models"] if "median_ms" in e.get("reference", {})
                and "median_ms" in e["time"][most]]
    if speedups:
        lines.append(f"\nonnx.reference / onnxpy ({most} thread(s)): geometric mean {_geomean(speedups):.1f}x, "
                     f"smallest {min(speedups):.1f}x, over the {len(speedups)} runs onnx.reference completed")
    lines.insert(0, f"Batch size {results.get('batch', 1)}.\n")
    peak = results["peak"]
    lines.append("\nMachine: " + json.dumps(results["machine"]) + "; numpy matmul peak: "
                 + ", ".join(f"{t} thread(s) {p.get('gflops', 0):.0f} GFLOP/s" for t, p in peak.items())
                 + "; BLAS: " + json.dumps(next(iter(peak.values())).get("blas")))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--exporters", nargs="*", default=["torchscript", "dynamo"])
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reference-cap", type=float, default=20.0, help="seconds of onnx.reference per model")
    parser.add_argument("--cache", default=os.path.join(ROOT, "benchmarks", ".cache"))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        fn = {"time": work_time, "memory": work_memory, "reference": work_reference, "peak": work_peak}[args.worker]
        print(json.dumps(fn(**json.loads(args.params))))
        return
    results = run_suite(args)
    os.makedirs(args.out, exist_ok=True)
    stem = "latest" if args.batch == 1 else f"latest-b{args.batch}"
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        json.dump(results, f, indent=1)
    text = markdown(results, args.threads)
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
