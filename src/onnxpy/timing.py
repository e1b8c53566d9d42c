"""Side-by-side timing of runtimes in one process, as `onnxpy bench` and benchmarks/bench.py do it."""
from __future__ import annotations

import statistics
import time
from typing import Callable

BLOCK = 5
SETTLE_S = 0.25


def interleaved_medians(runners: dict[str, Callable[[], object]], repeat: int, warmup: int) -> dict[str, float]:
    """Median milliseconds of ``repeat`` timed calls of each runner, after ``warmup`` calls each.

    Timed calls alternate between the runners in blocks of ``BLOCK`` (A A A A A, B B B B B, B ...,
    A ...), each block after a ``SETTLE_S`` pause and one untimed call: runtimes leave worker
    threads busy-waiting after a run (onnxruntime's pool, OpenBLAS's for up to ~0.1 s), which on a
    small machine slows whatever the other runtime runs next several times over (measured on 2
    cores: mobilenet_v2 at 2 threads, onnxruntime 4.2 ms alone, 17 ms when each run followed onnxpy's).
    """
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners.items())
    for i in range(0, repeat, BLOCK):
        for name, fn in order if i // BLOCK % 2 == 0 else order[::-1]:
            time.sleep(SETTLE_S)  # the other runtime's idle threads stop spinning
            fn()  # not timed: caches and this runtime's threads warm up again
            for _ in range(min(BLOCK, repeat - i)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}
