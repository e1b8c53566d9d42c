"""Read ``known_failures.toml``: the conformance tests expected to fail, each with a reason."""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass

PATH = os.path.join(os.path.dirname(__file__), "known_failures.toml")


@dataclass(frozen=True)
class Entry:
    test: str          # test name without the device suffix, e.g. "test_dft"
    category: str
    reason: str
    mode: str          # "xfail" (must fail; a pass is reported) or "exclude" (can never run)
    levels: tuple[str, ...]

    def pattern(self) -> str:
        return f"^{re.escape(self.test)}_cpu$"


def load(path: str = PATH) -> list[Entry]:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    entries = []
    for group in data.get("group", []):
        for test in group["tests"]:
            entries.append(Entry(
                test=test, category=group["category"], reason=group["reason"],
                mode=group.get("mode", "xfail"), levels=tuple(group.get("levels", ("all",))),
            ))
    return entries
