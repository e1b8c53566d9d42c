"""onnxpy.timing: the block-interleaved side-by-side timing behind `onnxpy bench` and benchmarks/bench.py."""
from __future__ import annotations

from onnxpy import timing


def test_blocks_alternate_with_an_untimed_settling_call(monkeypatch):
    calls, pauses = [], []
    monkeypatch.setattr(timing.time, "sleep", pauses.append)
    runners = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    medians = timing.interleaved_medians(runners, repeat=7, warmup=2)
    # warm-up 2 each; then blocks of 5 and 2, each block after one untimed call, first runner flipping
    expected = ["a"] * 2 + ["b"] * 2 + ["a"] * 6 + ["b"] * 6 + ["b"] * 3 + ["a"] * 3
    assert calls == expected
    assert pauses == [timing.SETTLE_S] * 4
    assert set(medians) == {"a", "b"} and all(m >= 0 for m in medians.values())


def test_the_median_is_of_the_timed_calls_only(monkeypatch):
    monkeypatch.setattr(timing.time, "sleep", lambda s: None)
    clock = iter(range(1000))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    # every perf_counter() call advances the fake clock by one second: each timed call spans one
    medians = timing.interleaved_medians({"only": lambda: None}, repeat=3, warmup=1)
    assert medians == {"only": 1000.0}
