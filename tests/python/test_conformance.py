"""Every op of protocol/ops.json is implemented by both client stubs.

(The C suite checks the other half: a dispatch handler and a SPEC.md section
for every op.) An op counts as implemented when the stub sends it: its name
appears as a string literal in a request-building call of the stub's source.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Set

ROOT = Path(__file__).resolve().parents[2]
OPS = sorted(json.loads((ROOT / "protocol" / "ops.json").read_text())["ops"])


def _literals(files, pattern: str) -> Set[str]:
    found: Set[str] = set()
    rx = re.compile(pattern)
    for f in files:
        found.update(rx.findall(f.read_text()))
    return found


def _missing(found: Set[str]) -> Dict[str, str]:
    return {op: "no request sends it" for op in OPS if op not in found}


def test_python_stub_sends_every_op() -> None:
    files = [p for p in (ROOT / "client-stubs" / "python" / "kafkad").rglob("*.py")]
    assert files
    found = _literals(files, r"""[(,]\s*["']([a-z_]+)["']""")
    assert _missing(found) == {}, "ops without a Python stub implementation"


def test_go_stub_sends_every_op() -> None:
    files = [p for p in (ROOT / "client-stubs" / "go").glob("*.go") if not p.name.endswith("_test.go")]
    assert files, "client-stubs/go has no sources"
    found = _literals(files, r'[(,]\s*"([a-z_]+)"')
    assert _missing(found) == {}, "ops without a Go stub implementation"


def test_check_detects_a_missing_op() -> None:
    # the check itself can fail: an op nobody sends is reported
    assert _missing({"hello"}) != {}
