"""The core stays pure: no clock, no I/O, no randomness, no logging (STYLE.md rules 1-3).

Two guards: an AST walk over ``src/tradebot/core/**.py`` for the standard-library modules and calls
import-linter cannot see (it only knows packages), and import-linter's contracts from
``pyproject.toml`` (layers, forbidden I/O libraries, independence of the core parts).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORE = ROOT / "src" / "tradebot" / "core"

#: Standard-library modules the core must not import (nor any of their submodules).
FORBIDDEN_MODULES = frozenset(
    {"asyncio", "time", "logging", "random", "socket", "threading", "os", "io", "sqlite3"}
)
#: Calls that read the clock or draw randomness, by fully qualified name.
FORBIDDEN_CALLS = frozenset(
    {
        "datetime.datetime.now",
        "datetime.datetime.utcnow",
        "datetime.datetime.today",
        "datetime.date.today",
        "time.time",
        "time.time_ns",
        "time.monotonic",
        "time.perf_counter",
        "uuid.uuid1",
        "uuid.uuid4",
    }
)


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _dotted(node: ast.expr) -> str | None:
    # "a.b.c" for a Name/Attribute chain, else None.
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def violations(source: str, filename: str = "<string>") -> list[str]:
    """Return ``"<file>:<line>: <problem>"`` for every forbidden import or call in ``source``."""
    tree = ast.parse(source, filename=filename)
    aliases: dict[str, str] = {}  # local name → fully qualified name
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or _top(alias.name)] = alias.name if alias.asname else _top(alias.name)
                if _top(alias.name) in FORBIDDEN_MODULES:
                    found.append(f"{filename}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            if _top(node.module) in FORBIDDEN_MODULES:
                found.append(f"{filename}:{node.lineno}: from {node.module} import …")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name is None:
                continue
            head, _, rest = name.partition(".")
            qualified = aliases.get(head, head) + (f".{rest}" if rest else "")
            if qualified in FORBIDDEN_CALLS:
                found.append(f"{filename}:{node.lineno}: call of {qualified}()")
    return sorted(found)


def _core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_core_folder_is_where_the_walk_looks() -> None:
    names = {p.relative_to(CORE).as_posix() for p in _core_files()}
    assert {"engine/engine.py", "domain/market.py", "portfolio/ledger.py", "execution/planner.py"} <= names


def test_core_modules_import_no_clock_io_randomness_or_logging() -> None:
    problems = [
        v
        for path in _core_files()
        for v in violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import asyncio", ["x.py:1: import asyncio"]),
        ("import os.path", ["x.py:1: import os.path"]),
        ("from logging import getLogger", ["x.py:1: from logging import …"]),
        ("import random as r\nr.random()", ["x.py:1: import random"]),
        ("from io import StringIO", ["x.py:1: from io import …"]),
        ("import threading, socket", ["x.py:1: import socket", "x.py:1: import threading"]),
        ("import sqlite3", ["x.py:1: import sqlite3"]),
        (
            "def f():\n    import time\n    return time.time()",
            ["x.py:2: import time", "x.py:3: call of time.time()"],
        ),
        ("from datetime import datetime\nx = datetime.now()", ["x.py:2: call of datetime.datetime.now()"]),
        (
            "from datetime import datetime as dt\nx = dt.utcnow()",
            ["x.py:2: call of datetime.datetime.utcnow()"],
        ),
        ("import datetime\nx = datetime.date.today()", ["x.py:2: call of datetime.date.today()"]),
        ("from datetime import date\nx = date.today()", ["x.py:2: call of datetime.date.today()"]),
        ("import uuid\nx = uuid.uuid4()", ["x.py:2: call of uuid.uuid4()"]),
        # Allowed: pure conversions and deterministic ids.
        ("from datetime import UTC, datetime\nx = datetime.fromtimestamp(0, tz=UTC)", []),
        ("import uuid\nx = uuid.uuid5(uuid.NAMESPACE_URL, 'a')", []),
        ("import itertools, math, statistics", []),
        ("from tradebot.core.domain import Timeframe\nTimeframe.now()", []),
    ],
)
def test_the_walk_catches_each_forbidden_import_and_call(source: str, expected: list[str]) -> None:
    assert violations(source, "x.py") == sorted(expected)


def test_import_linter_contracts_are_kept() -> None:
    pyproject = ROOT / "pyproject.toml"
    contracts = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
    names = [c["name"] for c in contracts]
    assert len(names) >= 4  # layers, forbidden I/O libraries, core independence, errors
    exe = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(exe), "--config", str(pyproject), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    for name in names:
        assert f"{name} KEPT" in report, report
    assert f"Contracts: {len(names)} kept, 0 broken." in report
