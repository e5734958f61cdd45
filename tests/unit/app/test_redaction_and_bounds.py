"""Redaction keeps websocket URLs intact and masks a ``?password=`` query; every numeric setting has
a finite, bounded range (before: 1e100 as the order cap stalled the engine, NaN/inf were accepted)."""

from __future__ import annotations

import os

import pytest

from tradebot.app.logging import REDACTED, redact_text
from tradebot.app.settings import load_settings
from tradebot.errors import ConfigError


@pytest.mark.parametrize(
    "url",
    [
        "wss://stream.binance.com:9443/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m",
        "wss://ws-api.binance.com:443/ws-api/v3",
        "ws://127.0.0.1:8765/ws/solusdt@kline_1m",
    ],
)
def test_websocket_urls_are_not_garbled(url: str) -> None:
    assert redact_text(f"connecting to {url}") == f"connecting to {url}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "database postgresql+asyncpg://bot@db:5432/tradebot?password=s3cr3t&ssl=require is not usable",
            f"database postgresql+asyncpg://bot@db:5432/tradebot?password={REDACTED}&ssl=require is not usable",
        ),
        ("postgresql://bot:pa55word@db/x", f"postgresql://bot:{REDACTED}@db/x"),
        ("https://x/y?a=1&token=abcd1234", f"https://x/y?a=1&token={REDACTED}"),
    ],
)
def test_passwords_in_urls_and_queries_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        (
            "TRADEBOT_PLANNER__MAX_ORDER_NOTIONAL",
            "1e100",
            "planner.max_order_notional: Value error, must be at most 1e+12",
        ),
        ("TRADEBOT_PLANNER__MIN_ORDER_NOTIONAL", "NaN", "planner.min_order_notional"),
        (
            "TRADEBOT_DAEMON__POLL_INTERVAL_S",
            "nan",
            "daemon.poll_interval_s: Input should be a finite number",
        ),
        (
            "TRADEBOT_DAEMON__RECONCILE_INTERVAL_S",
            "1e12",
            "daemon.reconcile_interval_s: Value error, must be at most 604800",
        ),
        ("TRADEBOT_BACKTEST__SLIPPAGE_BPS", "inf", "backtest.slippage_bps: Input should be a finite number"),
        (
            "TRADEBOT_BACKTEST__INITIAL_CASH",
            "1e300",
            "backtest.initial_cash: Value error, must be at most 1e+15",
        ),
        ("TRADEBOT_FEEDS__BINANCE__MAX_LAG_MS", "1000000000000000", "feeds.binance.max_lag_ms"),
        ("TRADEBOT_FEEDS__BACKFILL__RETRY_ATTEMPTS", "1000000", "feeds.backfill.retry_attempts"),
    ],
)
def test_numbers_out_of_any_sane_range_are_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert named in str(info.value)
    assert value in str(info.value)
