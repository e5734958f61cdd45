"""A ``TRADEBOT_*`` variable that names no setting is refused, like the same typo in TOML."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradebot.app.settings import check_environment, load_settings
from tradebot.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("TRADEBOT_PLANER__BAND_FRACTION", "'PLANER' is not a setting under TRADEBOT_*; known: ALLOCATION,"),
        (
            "TRADEBOT_PLANNER__BAND_FRACTON",
            "'BAND_FRACTON' is not a setting under TRADEBOT_PLANNER__*; known: BAND",
        ),
        ("TRADEBOT_FEEDS__BINANCE__WS_ULR", "'WS_ULR' is not a setting under TRADEBOT_FEEDS__BINANCE__*"),
        ("tradebot_mod", "'MOD' is not a setting"),
    ],
)
def test_a_typo_in_an_environment_variable_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, message: str
) -> None:
    monkeypatch.setenv(name, "0.1")
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")) as err:
        load_settings()
    assert f"environment variable {name}" in str(err.value)


def test_known_variables_and_the_non_settings_ones_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    check_environment(
        {
            "TRADEBOT_PLANNER__BAND_FRACTION": "0.1",
            "TRADEBOT_FEEDS__BINANCE__WS_URL": "wss://x",
            "TRADEBOT_RISK__MAX_LEVERAGE": "1",  # dict sections: checked by the engine configuration
            "TRADEBOT_CONFIG_FILE": "x.toml",
            "TRADEBOT_ALEMBIC_DIR": "alembic",
            "TRADEBOT_TEST_PG_ADMIN_URL": "postgresql://x",
            "OTHER": "1",
        }
    )
    monkeypatch.setenv("TRADEBOT_PLANNER__BAND_FRACTION", "0.07")
    assert load_settings().planner.band_fraction == pytest.approx(0.07)


def test_the_cli_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env["TRADEBOT_PLANER__BAND_FRACTION"] = "0.1"
    tradebot = str(Path(sys.executable).parent / "tradebot")
    argv = [tradebot, "backtest", "--data", str(REPO / "data" / "sample"), "--no-db"]
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    assert "environment variable TRADEBOT_PLANER__BAND_FRACTION" in done.stderr
    assert "Traceback" not in done.stderr
