"""``tradebot run`` with ``[management.ml]`` (issue 16, item 5): the daemon loads the model at start
and logs its card's hash, and refuses (exit 2, the mismatch named) a model it cannot trust — before it
opens the database or calls a venue.

The venue URL points at a closed port, so a start that gets past the model fails later with exit 1
("cannot reach binance"): that proves the model was accepted and the refusal came first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_ml_backtest import ml_config, trained  # noqa: F401  (the module fixture: dataset + models)
from test_start_errors import _closed_port

TRADEBOT = str(Path(sys.executable).parent / "tradebot")


def _run(tmp_path: Path, config: Path) -> tuple[int, list[dict[str, Any]], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env |= {
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "TRADEBOT_MODE": "paper",
        "TRADEBOT_FEEDS__BINANCE__REST_URL": f"http://127.0.0.1:{_closed_port()}",
    }
    done = subprocess.run(
        [TRADEBOT, "run", "--migrate", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr


def _events(lines: list[dict[str, Any]]) -> list[str]:
    return [str(line.get("event")) for line in lines]


@pytest.fixture
def models_copy(trained: tuple[Path, Path], tmp_path: Path) -> Path:  # noqa: F811
    folder = tmp_path / "models"
    shutil.copytree(trained[1], folder)
    return folder


def test_the_daemon_logs_the_model_s_card_hash_at_start(models_copy: Path, tmp_path: Path) -> None:
    from tradebot.app.ml.model import load_predictor
    from tradebot.core.ml.predictor import MlThresholds

    expected = load_predictor(
        models_copy, stream_timeframes=("1h", "4h", "1d"), thresholds=MlThresholds()
    ).card_sha256
    code, lines, stderr = _run(tmp_path, ml_config(tmp_path, models_copy))
    assert code == 1, stderr[-3000:]  # past the model: the closed venue port stops it
    loaded = [line for line in lines if line.get("event") == "ml_model_loaded"]
    assert len(loaded) == 1
    assert loaded[0]["card_sha256"] == expected and len(expected) == 64
    assert loaded[0]["version"] == expected[:16]
    assert set(loaded[0]["outputs"]) >= {"recovered", "additional_return"}
    assert "cannot reach binance" in lines[-1]["error"]


def test_a_corrupt_model_file_is_refused_with_exit_2_before_the_database(
    models_copy: Path, tmp_path: Path
) -> None:
    model = models_copy / "recovered" / "model.txt"
    model.write_text(model.read_text(encoding="utf-8").replace("tree", "treX", 1), encoding="utf-8")
    code, lines, stderr = _run(tmp_path, ml_config(tmp_path, models_copy))
    assert code == 2, stderr[-3000:]
    last = lines[-1]
    assert last["event"] == "command_failed" and last["exit_code"] == 2
    assert "recovered" in last["error"] and "SHA-256" in last["error"]
    assert "its card says" in last["error"]
    events = _events(lines)
    assert "ml_model_loaded" not in events and "database_ready" not in events
    assert "Traceback" not in stderr


def test_a_model_trained_on_other_features_is_refused_naming_the_feature(
    models_copy: Path, tmp_path: Path
) -> None:
    card_path = models_copy / "additional_return" / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["features"] = [f if f != "rsi" else "rsi_7" for f in card["features"]]
    card_path.write_text(json.dumps(card), encoding="utf-8")
    code, lines, stderr = _run(tmp_path, ml_config(tmp_path, models_copy))
    assert code == 2, stderr[-3000:]
    error = lines[-1]["error"]
    assert "additional_return" in error and "rsi" in error
    assert "database_ready" not in _events(lines)
