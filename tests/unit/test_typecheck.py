"""The type checker is part of ``make test`` and fails it on a type error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _recipe(target: str) -> list[str]:
    # The command lines of a Makefile target (tab-indented lines after "target:").
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{target}:", line))
    out = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        out.append(line.strip())
    return out


def test_make_test_runs_mypy_before_the_tests() -> None:
    recipe = _recipe("test")
    mypy = next(i for i, cmd in enumerate(recipe) if cmd == "$(BIN)/mypy")
    pytest_ = next(i for i, cmd in enumerate(recipe) if "pytest" in cmd)
    assert mypy < pytest_


def test_mypy_with_the_project_config_fails_on_a_deliberate_type_error(tmp_path: Path) -> None:
    # The core is checked strictly: a str where a Decimal is declared, and an unannotated function.
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from decimal import Decimal\n"
        "from tradebot.core.domain import to_decimal\n"
        "x: Decimal = to_decimal(1.5)\n"
        "y: Decimal = 'oops'\n",
        encoding="utf-8",
    )
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert (
        'bad.py:4: error: Incompatible types in assignment (expression has type "str", variable has type "Decimal")'
        in run.stdout
    )
    assert "Found 1 error in 1 file" in run.stdout
