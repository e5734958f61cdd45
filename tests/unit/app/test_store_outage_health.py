"""A store outage in the health file fails ``tradebot healthcheck``; its grace period is a bounded
setting (``TRADEBOT_DAEMON__STORE_OUTAGE_GRACE_S``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tradebot.app.daemon.health import check_health, write_health
from tradebot.app.settings import load_settings
from tradebot.errors import ConfigError

NOW_MS = 1_700_000_000_000


def _report(**extra: Any) -> dict[str, Any]:
    return {
        "written_wall_ms": NOW_MS - 1_000, "run_id": "paper-binance", "mode": "paper",
        "venue": "binance", "feed_lag_ms": 2_000, "trading_state": "normal",
        "store_unavailable_since_ms": None, "store_error": None, "store_outages": 0,
    } | extra  # fmt: skip


def test_healthy_once_the_store_is_back(tmp_path: Path) -> None:
    write_health(tmp_path / "h.json", _report(store_outages=2))
    ok, line = check_health(tmp_path / "h.json", max_age_s=60, max_feed_lag_s=300, now_ms=NOW_MS)
    assert ok, line


def test_unhealthy_while_the_store_is_unavailable_naming_the_error_and_its_length(tmp_path: Path) -> None:
    write_health(
        tmp_path / "h.json",
        _report(store_unavailable_since_ms=NOW_MS - 42_000, store_error="OSError: connection refused"),
    )
    ok, line = check_health(tmp_path / "h.json", max_age_s=60, max_feed_lag_s=300, now_ms=NOW_MS)
    assert not ok
    assert line.startswith(
        "unhealthy: database unavailable for 42 s, trading paused (OSError: connection refused)"
    )


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    return monkeypatch


def test_grace_period_defaults_to_five_minutes_and_is_set_by_its_variable(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert load_settings().daemon.store_outage_grace_s == 300.0
    clean_env.setenv("TRADEBOT_DAEMON__STORE_OUTAGE_GRACE_S", "2.5")
    assert load_settings().daemon.store_outage_grace_s == 2.5


@pytest.mark.parametrize("value", ["0", "-1", "86401", "inf", "nan"])
def test_grace_period_out_of_range_is_refused(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("TRADEBOT_DAEMON__STORE_OUTAGE_GRACE_S", value)
    with pytest.raises(ConfigError, match=r"daemon\.store_outage_grace_s"):
        load_settings()
