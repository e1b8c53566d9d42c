"""Every operator schema version in onnx.defs runs, except a reasoned allow-list that may only shrink;
and docs/operators.md is the current generated table."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib

from onnxpy import coverage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOWLIST = os.path.join(os.path.dirname(__file__), "coverage_allowlist.toml")


def _allowed() -> dict[str, str]:
    with open(ALLOWLIST, "rb") as f:
        data = tomllib.load(f)
    return {op: group["reason"] for group in data.get("group", []) for op in group["ops"]}


def _key(row) -> str:
    return f"{row.domain or 'ai.onnx'}::{row.op}-{row.version}"


def test_every_schema_version_runs_or_is_allowed():
    allowed = _allowed()
    missing = {_key(r) for r in coverage.schema_coverage() if r.how == "missing"}
    assert not missing - set(allowed), f"schema versions without a kernel or function body: {sorted(missing - set(allowed))}"
    assert not set(allowed) - missing, f"now supported, remove from the allow-list: {sorted(set(allowed) - missing)}"


def test_support_table_is_current():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "support_table.py"), "--check"])
    assert result.returncode == 0, "docs/operators.md is stale: run python scripts/support_table.py"
