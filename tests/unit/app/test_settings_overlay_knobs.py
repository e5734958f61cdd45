"""The overlay knobs at config load: management.atr_timeframe, management.reentry(_periods) and
risk.daily_loss_action reach the core configs, and bad values are refused naming the key and value."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tradebot.app.settings import build_engine_config, load_settings
from tradebot.core.domain import Timeframe
from tradebot.errors import ConfigError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No TRADEBOT_* variable or .env file of the caller may leak into the settings.
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def _config(**overrides: Any):
    return build_engine_config(load_settings(**overrides), run_id="t", base_timeframe=Timeframe.M1)


def test_the_knobs_reach_the_core_configs() -> None:
    config = _config(
        management={
            "preset": "managed",
            "atr_timeframe": "4h",
            "reentry": "after_periods",
            "reentry_periods": 3,
        },
        risk={"daily_loss_action": "block_entries"},
    )
    assert (config.management.atr_timeframe, config.management_atr_timeframe) == ("4h", Timeframe.H4)
    assert (config.management.reentry, config.management.reentry_periods) == ("after_periods", 3)
    assert config.risk.daily_loss_action == "block_entries"


def test_the_defaults_are_todays_behaviour() -> None:
    config = _config(management={"preset": "managed"})
    assert config.management.atr_timeframe is None
    assert config.management_atr_timeframe is Timeframe.H1  # the rebalance timeframe
    assert config.management.reentry == "stream_change"
    assert config.risk.daily_loss_action == "close_all"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"management": {"preset": "managed", "atr_timeframe": "15m"}},
            "management.atr_timeframe must be one of the stream timeframes or the rebalance timeframe "
            "['1h', '4h', '1d'], was '15m'",
        ),
        (
            {"streams": [{"timeframe": "1h"}], "management": {"atr_timeframe": "4h"}},
            "management.atr_timeframe must be one of the stream timeframes or the rebalance timeframe "
            "['1h'], was '4h'",
        ),
        (
            {"management": {"atr_timeframe": "2h"}},
            "management.atr_timeframe must be one of ['1m', '3m', '5m', '15m', '30m', '1h', '4h', '1d'] "
            "or unset, was '2h'",
        ),
        (
            {"management": {"reentry": "on_dip"}},
            "management.reentry must be one of ['stream_change', 'after_periods', 'new_high'], was 'on_dip'",
        ),
        ({"management": {"reentry_periods": 0}}, "management.reentry_periods must be an integer >= 1, was 0"),
        (
            {"risk": {"daily_loss_action": "sell"}},
            "risk.daily_loss_action must be one of ['close_all', 'block_entries'], was 'sell'",
        ),
    ],
    ids=[
        "atr-not-a-stream",
        "atr-not-a-stream-1h-only",
        "atr-not-a-timeframe",
        "reentry",
        "periods",
        "action",
    ],
)
def test_bad_values_are_refused_at_load_naming_the_key_and_value(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(**overrides)


def test_stops_rest_at_the_venue_by_default_in_testnet_and_live_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    by_mode = {}
    for mode in ("backtest", "paper", "testnet"):
        monkeypatch.setenv("TRADEBOT_MODE", mode)
        settings = load_settings()
        by_mode[mode] = (settings.stops_at_venue, settings.venue_stops)
        config = build_engine_config(settings, run_id="r", base_timeframe=Timeframe.M1)
        assert config.stops_at_venue is settings.venue_stops
    assert by_mode == {"backtest": (None, False), "paper": (None, False), "testnet": (None, True)}
    monkeypatch.setenv("TRADEBOT_STOPS_AT_VENUE", "false")
    assert load_settings().venue_stops is False  # testnet, switched off
    monkeypatch.setenv("TRADEBOT_MODE", "paper")
    monkeypatch.setenv("TRADEBOT_STOPS_AT_VENUE", "true")
    assert load_settings().venue_stops is True
