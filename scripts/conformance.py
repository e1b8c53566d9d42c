"""Run the ONNX conformance suite and report pass counts per suite and optimization level.

    python scripts/conformance.py                      # print the table
    python scripts/conformance.py --update-readme      # also rewrite the README's table
    python scripts/conformance.py --update-known-failures  # rewrite known_failures.toml from this run

The run ignores known_failures.toml (ONNXPY_CONFORMANCE_IGNORE_KNOWN=1), so the counts are real
passes; --update-known-failures keeps the hand-written reason of every entry that still fails.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.conformance import known_failures  # noqa: E402

SUITES = {"Node": "node", "Simple": "simple", "PyTorchConverted": "pytorch-converted",
          "PyTorchOperator": "pytorch-operator", "Real": "light model zoo"}
LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_ALL")
MARKERS = ("<!-- conformance:start -->", "<!-- conformance:end -->")


def run_suite(workers: int) -> dict[tuple[str, str, str], str | None]:
    """{(suite, level, test): None if passed else the failure message}."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "junit.xml")
        env = dict(os.environ, ONNXPY_CONFORMANCE_IGNORE_KNOWN="1")
        cmd = [sys.executable, "-m", "pytest", "tests/conformance", "-q", "-p", "no:cacheprovider", "-W", "ignore",
               f"--junitxml={xml}", "-o", "junit_logging=no"] + (["-n", str(workers)] if workers > 1 else [])
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False)
        results = {}
        for case in ET.parse(xml).getroot().iter("testcase"):
            m = re.search(r"OnnxBackend(\w+?)ModelTest_(ORT_\w+)$", case.get("classname", ""))
            if not m:
                continue
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            message = None if problem is None else (problem.get("message") or "failed")
            results[(m.group(1), m.group(2), re.sub(r"_cpu$", "", case.get("name")))] = message
        return results


def table(results: dict) -> str:
    counts = collections.defaultdict(lambda: [0, 0])
    for (suite, level, _), message in results.items():
        counts[(suite, level)][1] += 1
        counts[(suite, level)][0] += message is None
    lines = ["| suite | " + " | ".join(LEVELS) + " |", "|---|" + "---|" * len(LEVELS)]
    for suite, label in SUITES.items():
        cells = [f"{counts[(suite, lv)][0]} / {counts[(suite, lv)][1]}" for lv in LEVELS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _reason(message: str) -> tuple[str, str]:
    m = re.search(r"(\S+::\S+) at opset \d+ \([^)]*\): no kernel", message)
    if m:
        return "missing-kernel", f"no kernel yet for {m.group(1)}"
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    return "wrong-result", first[:200]


def write_known_failures(results: dict) -> None:
    old = {e.test: e for e in known_failures.load()}
    failing = collections.defaultdict(set)
    for (_, level, test), message in results.items():
        if message is not None:
            failing[test].add(level)
    groups = collections.defaultdict(list)
    for test in sorted(failing):
        levels = tuple(sorted(failing[test])) if len(failing[test]) < len(LEVELS) else ("all",)
        message = next(m for (_, _, t), m in results.items() if t == test and m)
        category, reason = (old[test].category, old[test].reason) if test in old else _reason(message)
        mode = old[test].mode if test in old else "xfail"
        groups[(category, reason, mode, levels)].append(test)
    out = ["# Conformance tests expected to fail, grouped by reason.",
           "# Regenerate with: python scripts/conformance.py --update-known-failures", ""]
    for (category, reason, mode, levels), tests in sorted(groups.items()):
        out += ["[[group]]", f"category = {category!r}", f"reason = {_toml_str(reason)}", f"mode = {mode!r}"]
        if levels != ("all",):
            out.append(f"levels = {list(levels)!r}".replace("'", '"'))
        out.append("tests = [" + ", ".join(f'"{t}"' for t in tests) + "]")
        out.append("")
    with open(known_failures.PATH, "w") as f:
        f.write("\n".join(out))


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def update_readme(text: str) -> None:
    path = os.path.join(ROOT, "README.md")
    readme = open(path).read()
    start, end = readme.index(MARKERS[0]) + len(MARKERS[0]), readme.index(MARKERS[1])
    with open(path, "w") as f:
        f.write(readme[:start] + "\n" + text + "\n" + readme[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--update-known-failures", action="store_true")
    args = parser.parse_args()
    results = run_suite(args.workers)
    text = table(results)
    print(text)
    if args.update_readme:
        update_readme(text)
    if args.update_known_failures:
        write_known_failures(results)


if __name__ == "__main__":
    main()
