"""``tradebot demo`` input: a --days the data cannot cover is refused (it was capped or "completed"),
and the shipped sample is found from any working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradebot.cli import DEFAULT_DATA, default_data_dir

REPO = Path(__file__).resolve().parents[2]
TRADEBOT = str(Path(sys.executable).parent / "tradebot")


def _demo(cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    argv = [
        TRADEBOT,
        "demo",
        "--db",
        f"sqlite+aiosqlite:///{cwd / 'demo.db'}",
        "--out",
        str(cwd / "out"),
        *flags,
    ]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize(
    ("days", "named"),
    [
        ("0", "--days must be a positive number of days, was 0.0"),
        ("-2", "--days must be a positive number of days, was -2.0"),
        ("60", "--days 60: the 1m candles in"),
    ],
)
def test_a_demo_longer_than_the_data_or_empty_is_refused(tmp_path: Path, days: str, named: str) -> None:
    done = _demo(tmp_path, "--days", days)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "demo.db").exists()


def test_the_sample_is_found_outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == REPO / DEFAULT_DATA
    done = _demo(tmp_path, "--days", "0.5")
    assert done.returncode == 0, done.stderr
    assert f"replaying {REPO / DEFAULT_DATA}" in done.stdout.replace("\n", "")
    assert list((tmp_path / "out").glob("*/summary.json"))
