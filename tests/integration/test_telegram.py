"""Telegram alerts and commands against a local fake Bot API server (no test reaches Telegram).

* The demo (paper, one simulated day) with Telegram on: the configured chat gets a start message and
  fill messages; ``/status`` is answered in the configured chat and another chat's is ignored (that
  chat receives nothing at all); ``/pause`` is confirmed and blocks entries and nothing else: the
  engine is paused (REDUCING) with the pause on record, and no buy is sent after it; the stop
  message comes at the end.
* The observer alone: a daily-loss halt and a stop exit reach every configured chat; an unreachable
  Bot API never raises into the daemon and the bounded outbox drops its oldest messages.
* Settings: enabled without a token or chat ids is refused at load; the token is a registered
  secret, masked in log text and in Bot API URLs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from fake_telegram import FakeBotApi

from tradebot.adapters.store import SqlEventStore
from tradebot.app.daemon.bootstrap import secrets_of
from tradebot.app.daemon.telegram import TelegramObserver
from tradebot.app.demo.demo import DemoOptions, run_demo
from tradebot.app.logging import REDACTED, redact_text, register_secrets
from tradebot.app.settings import Settings, load_settings
from tradebot.core.domain import FeedStatus, PositionEvent, PositionEventType, Side, Symbol, TradingState
from tradebot.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
TOKEN = "123456789:AAcanaryTelegramTokenQ1w2e3r4t5y6"
ALLOWED, OTHER = 1001, 2002


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def _settings(base_url: str, chats: tuple[int, ...] = (ALLOWED,)) -> Settings:
    return load_settings(
        telegram={"enabled": True, "token": TOKEN, "chat_ids": list(chats), "api_base_url": base_url}
    )


class _Control:
    def __init__(self) -> None:
        self.events: list[object] = []

    def submit(self, event: object) -> None:
        self.events.append(event)


def _event(kind: PositionEventType, **fields: Any) -> PositionEvent:
    base: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "seq": 1,
        "position_id": None,
        "event_type": kind,
        "symbol": Symbol("BTC/USDT"),
        "event_time_ms": 1_700_000_000_000,
        "price": Decimal("25000.5"),
        "size_before": Decimal("0"),
        "size_after": Decimal("0"),
        "trigger_reason": "",
        "action_taken": "",
    }
    return PositionEvent(**{**base, **fields})


# ---------------------------------------------------------------- the demo, end to end


@pytest.mark.timeout(120)
async def test_demo_sends_fills_answers_status_only_to_its_chat_and_pause_blocks_entries(
    tmp_path: Path,
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    async with FakeBotApi(TOKEN) as api:
        settings = _settings(api.base_url)
        demo = asyncio.create_task(
            run_demo(settings, DemoOptions(data_dir=SAMPLE, days=1.0, db_url=db, paper=True))
        )
        try:
            await api.wait_for(lambda: any(t.startswith("Fill: BUY") for t in api.texts()))
            assert api.texts(ALLOWED)[0].startswith("▶️ tradebot started: run demo-")
            api.push_text(OTHER, "/status")
            api.push_text(ALLOWED, "/status@tradebot_test_bot")
            await api.wait_for(lambda: any(t.startswith("Status of run") for t in api.texts()))
            api.push_text(ALLOWED, "/pause")
            await api.wait_for(
                lambda: any(t.startswith("⏸ telegram /pause by chat 1001") for t in api.texts())
            )
            api.push_text(ALLOWED, "/positions")
            api.push_text(ALLOWED, "/pnl")
            await api.wait_for(lambda: any(t.startswith("PnL (USDT)") for t in api.texts()))
        finally:
            result = await demo
        texts = api.texts(ALLOWED)
        calls = list(api.calls)

    assert api.texts(OTHER) == []  # neither answered nor alerted
    [status] = [t for t in texts if t.startswith("Status of run")]
    assert "trading active" in status and "equity " in status and "feed lag " in status
    [ack] = [t for t in texts if t.startswith("Pausing:")]
    assert "no new entries or increases" in ack
    [applied] = [t for t in texts if t.startswith("⏸ telegram /pause")]
    assert "trading state active -> reducing" in applied
    assert any(t.startswith(("Positions:\n", "No open positions.")) for t in texts)
    assert texts[-1].startswith("⏹ tradebot stopped run demo-") and texts[-1].endswith("end_of_data")
    assert {"getUpdates", "sendMessage"} <= set(calls)

    daemon = result.daemon
    assert daemon.c is not None
    engine = daemon.c.engine
    assert (engine.trading_state, engine.paused) == (TradingState.REDUCING, True)
    async with SqlEventStore(db) as store:
        events = await store.position_events(daemon.c.run_id)
        orders = await store.orders(daemon.c.run_id)
    [pause] = [e for e in events if e.trigger_reason == f"telegram /pause by chat {ALLOWED}"]
    assert pause.event_type is PositionEventType.RISK_BLOCK
    buys = [o for o in orders if o.side is Side.BUY]
    assert buys and all(o.created_ms <= pause.event_time_ms for o in buys)
    fills = [t for t in texts if t.startswith("Fill: ")]
    assert len(fills) == len({f.trade_id for f in await _fills(db, daemon.c.run_id)})


async def _fills(db: str, run_id: str) -> list[Any]:
    async with SqlEventStore(db) as store:
        return list(await store.fills(run_id))


# ---------------------------------------------------------------- the observer alone


async def test_a_halt_and_a_stop_exit_reach_every_configured_chat_and_the_stop_is_sent_at_shutdown() -> None:
    async with FakeBotApi(TOKEN) as api:
        obs = TelegramObserver(_settings(api.base_url, (ALLOWED, 3003)), poll_timeout_s=1.0)
        task = asyncio.create_task(obs.task(_Control()))
        obs.on_record(
            _event(
                PositionEventType.DAILY_LOSS_HALT,
                trigger_reason="equity 9631 <= start-of-day 10000 x (1 - 0.03) = 9700",
                action_taken="trading state active -> halted: close all, no entries until next UTC day",
            )
        )
        obs.on_record(
            _event(
                PositionEventType.STOP_EXIT,
                price=Decimal("99.0"),
                size_before=Decimal("0.5"),
                trigger_reason="low 98.5 <= stop 99 (initial)",
                profit_pct=-2.94,
                r_multiple=-1.0,
            )
        )
        obs.on_record(_event(PositionEventType.REBALANCE_BUY))  # not an alert
        await api.wait_for(lambda: len(api.sent) == 4, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for chat in (ALLOWED, 3003):
        halt, stop, bye = api.texts(chat)
        assert halt == (
            "⛔ Daily-loss halt: equity 9631 <= start-of-day 10000 x (1 - 0.03) = 9700; "
            "trading state active -> halted: close all, no entries until next UTC day"
        )
        assert stop == (
            "🛑 Stop exit BTC/USDT @ 99: low 98.5 <= stop 99 (initial); P/L -2.94 %, -1.00 R; size 0.5 -> 0"
        )
        assert bye == "⏹ tradebot stopped: shutdown"
    assert (obs.sent, obs.failed, obs.dropped) == (6, 0, 0)


async def test_an_unreachable_bot_api_never_raises_and_the_outbox_drops_its_oldest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    obs = TelegramObserver(_settings(f"http://127.0.0.1:{port}"), outbox_size=5, flush_s=0.5)
    for i in range(8):
        obs.broadcast(f"message {i}")
    assert obs.dropped == 3
    task = asyncio.create_task(obs.task(_Control()))
    await asyncio.sleep(1.0)
    assert not task.done()  # still polling and sending, failing quietly
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert obs.sent == 0 and obs.failed >= 5
    captured = capsys.readouterr()  # stdout by default, stderr once configure_logging ran in this process
    out = captured.out + captured.err
    assert out.count("telegram_send_failed") == 1  # rate-limited
    assert "telegram_poll_failed" in out
    structlog.reset_defaults()


def test_commands_of_another_chat_are_ignored_and_unknown_ones_get_the_help() -> None:
    obs = TelegramObserver(_settings("http://127.0.0.1:9"))
    control = _Control()
    obs.handle_text(OTHER, "/pause", control)
    obs.handle_text(ALLOWED, "hello", control)
    obs.handle_text(ALLOWED, "/help", control)
    assert control.events == []
    assert [chat for chat, _ in obs._outbox] == [ALLOWED]
    assert obs._outbox[0][1].startswith("Commands: /status")


# ---------------------------------------------------------------- settings and the secret


@pytest.mark.parametrize(
    ("section", "named"),
    [
        (
            {"enabled": True, "chat_ids": [1]},
            "telegram.token: Value error, telegram is enabled without a bot token",
        ),
        (
            {"enabled": True, "token": TOKEN},
            "telegram.chat_ids: Value error, telegram is enabled without chat ids",
        ),
    ],
)
def test_telegram_enabled_without_a_token_or_chats_is_refused_at_load(
    section: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as err:
        load_settings(telegram=section)
    assert named in str(err.value)
    assert TOKEN not in str(err.value)


def test_telegram_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_TELEGRAM__ENABLED", "true")
    monkeypatch.setenv("TRADEBOT_TELEGRAM__TOKEN", TOKEN)
    monkeypatch.setenv("TRADEBOT_TELEGRAM__CHAT_IDS", "[1001, -1002003004]")
    s = load_settings()
    assert s.telegram.chat_ids == (1001, -1002003004)
    assert TOKEN not in repr(s)


def test_the_bot_token_is_a_secret_masked_in_log_text_and_bot_api_urls() -> None:
    settings = _settings("http://127.0.0.1:9")
    assert TOKEN in secrets_of(settings)
    register_secrets(secrets_of(settings))
    url = f"https://api.telegram.org/bot{TOKEN}/getUpdates"
    assert (
        redact_text(f"HTTP Request: POST {url}")
        == f"HTTP Request: POST https://api.telegram.org/bot{REDACTED}/getUpdates"
    )


async def test_a_command_sent_while_the_daemon_was_down_is_not_acted_on() -> None:
    async with FakeBotApi(TOKEN) as api:
        obs = TelegramObserver(_settings(api.base_url), poll_timeout_s=1.0, flush_s=0.5)
        control = _Control()
        api.push_text(ALLOWED, "/pause", date=int(time.time()) - 3600)
        api.push_text(ALLOWED, "/help")
        task = asyncio.create_task(obs.task(control))
        await api.wait_for(lambda: len(api.sent) == 1, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert api.texts()[0].startswith("Commands: /status")
    assert control.events == []


def test_a_feed_stale_for_feed_stale_alert_s_is_alerted_once_and_its_recovery_too() -> None:
    obs = TelegramObserver(_settings("http://127.0.0.1:9"))  # feed_stale_alert_s = 600 (default)
    t0 = 1_700_000_000_000
    obs.on_feed_status(FeedStatus(symbol=Symbol("ETH/USDT"), stale=True, ts_ms=t0, reason="no candle"))
    obs.check_stale(t0 + 599_000)
    assert list(obs._outbox) == []
    obs.check_stale(t0 + 600_000)
    obs.check_stale(t0 + 900_000)
    obs.on_feed_status(FeedStatus(symbol=Symbol("ETH/USDT"), stale=False, ts_ms=t0 + 960_000))
    obs.on_feed_status(FeedStatus(symbol=Symbol("BTC/USDT"), stale=True, ts_ms=t0))
    obs.on_feed_status(FeedStatus(symbol=Symbol("BTC/USDT"), stale=False, ts_ms=t0 + 60_000))  # brief: silent
    obs.on_record(
        _event(
            PositionEventType.RECONCILE_MISMATCH,
            trigger_reason="BTC/USDT: ledger 0.5, venue 0.4",
            action_taken="trading refused until the account is checked",
        )
    )
    assert [text for _, text in obs._outbox] == [
        "⚠️ Feed ETH/USDT stale for 10 min: no entries or increases on it until it recovers",
        "✅ Feed ETH/USDT recovered after 16 min; entries allowed again",
        "⚠️ Reconciliation mismatch BTC/USDT: BTC/USDT: ledger 0.5, venue 0.4; "
        "trading refused until the account is checked",
    ]
