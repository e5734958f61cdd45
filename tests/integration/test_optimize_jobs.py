"""``tradebot optimize --jobs 2``: two worker processes on one SQLite study finish exactly N trials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[2]
SPACE = f"""[base]
config = "{REPO / "config" / "default.toml"}"

[params."planner.band_fraction"]
low = 0.01
high = 0.10

[params."streams.0.fast"]
low = 10
high = 40
step = 2
"""


def test_two_worker_processes_finish_exactly_n_trials(tmp_path: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text(SPACE, encoding="utf-8")
    argv = [
        str(Path(sys.executable).parent / "tradebot"), "optimize", "--data", str(REPO / "data" / "sample"),
        "--timeframe", "1h", "--space", str(space), "--trials", "9", "--jobs", "2", "--out", str(tmp_path / "o"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="tradebot", storage=f"sqlite:///{tmp_path / 'o' / 'optuna.db'}")
    trials = study.get_trials()
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 9
    assert all(t.user_attrs.get("surplus") for t in trials if t.state != TrialState.COMPLETE)
    assert len({t.number for t in trials}) == len(trials)
    best = json.loads((tmp_path / "o" / "best.json").read_text())
    assert best["values"][0] == max(t.values[0] for t in trials if t.state == TrialState.COMPLETE)
    assert "9/9 done" in done.stderr
