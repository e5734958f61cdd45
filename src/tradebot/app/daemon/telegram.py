"""Telegram alerts and commands of a running daemon (optional; ``TRADEBOT_TELEGRAM__ENABLED``).

Alerts go to every configured chat: fills, stop exits, daily-loss halts, a pause or resume, a
reconciliation mismatch, a feed stale for longer than ``TRADEBOT_TELEGRAM__FEED_STALE_ALERT_S``
(and its recovery), start and stop. Commands are answered only in the configured chats (any other
chat is ignored, logged without its text): ``/status``, ``/positions``, ``/pnl``, ``/pause`` and
``/resume``. ``/pause`` blocks new entries and increases and nothing else (exits, stops and the
daily-loss halt go on); ``/resume`` lifts only that pause, never a daily-loss halt. Both reach the
engine only as a :class:`~tradebot.core.domain.TradingControl` queued for the engine task.

The hooks run on the engine task and never wait: a message goes into a bounded outbox (the oldest
is dropped when it is full, and counted) that the observer's own task sends, beside a
``getUpdates`` long-poll for commands (python-telegram-bot's :class:`telegram.Bot` on
``TRADEBOT_TELEGRAM__API_BASE_URL``). Telegram being unreachable or refusing is logged as a warning
(at most once a minute per kind) and never stops the daemon. At shutdown the stop message and what
is still queued are sent for at most :attr:`TelegramObserver.flush_s` seconds. The bot token is a
registered secret (:func:`tradebot.app.daemon.bootstrap.secrets_of`), masked in every log line,
request URLs (``/bot<token>/``) included.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog
from telegram import Bot, Update
from telegram.error import RetryAfter
from telegram.request import HTTPXRequest

from tradebot.app.daemon.observers import DaemonControl, DaemonObserver
from tradebot.app.daemon.status import pnl_totals
from tradebot.core.domain import (
    FeedStatus,
    Fill,
    PositionEvent,
    PositionEventType,
    TradingControl,
    TradingState,
)

if TYPE_CHECKING:
    from tradebot.app.daemon.daemon import Daemon
    from tradebot.app.settings import Settings

log = structlog.get_logger("tradebot.telegram")

ET = PositionEventType
#: Longest Telegram message (characters); longer texts are cut.
MAX_TEXT = 4096
HELP = (
    "Commands: /status (state, equity, cash, feed lag), /positions, /pnl, "
    "/pause (block new entries and increases), /resume (lift the pause)"
)


def _num(value: Decimal | float | str, places: int | None = None) -> str:
    """A decimal without exponent or trailing zeros (``places`` rounds first)."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places))
    text = f"{d:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _seconds(retry_after: Any) -> float:
    # RetryAfter.retry_after is an int (seconds) or a timedelta, depending on the PTB version.
    total = getattr(retry_after, "total_seconds", None)
    return float(total()) if callable(total) else float(retry_after)


class TelegramObserver(DaemonObserver):
    """Sends the daemon's alerts to the configured chats and answers their commands.

    Parameters
    ----------
    settings
        ``settings.telegram`` must be enabled with a token and chat ids (checked at load).
    poll_timeout_s
        Long-poll timeout of ``getUpdates``, seconds.
    outbox_size
        Messages queued at most; the oldest is dropped beyond (:attr:`dropped`).
    flush_s
        At shutdown, seconds to send the stop message and what is still queued.
    """

    name = "telegram"

    def __init__(
        self,
        settings: Settings,
        *,
        poll_timeout_s: float = 25.0,
        outbox_size: int = 200,
        flush_s: float = 5.0,
    ) -> None:
        cfg = settings.telegram
        if cfg.token is None or not cfg.chat_ids:
            raise ValueError("telegram needs a token and at least one chat id")
        self._token = cfg.token.get_secret_value()
        self._base_url = cfg.api_base_url.rstrip("/")
        self.chat_ids: tuple[int, ...] = tuple(cfg.chat_ids)
        self._stale_alert_ms = int(cfg.feed_stale_alert_s * 1000)
        self._poll_timeout_s = poll_timeout_s
        self.flush_s = flush_s
        self._outbox: deque[tuple[int, str]] = deque()
        self._outbox_size = outbox_size
        self._wake = asyncio.Event()
        self._daemon: Daemon | None = None
        self._last_status: dict[str, Any] = {}
        self._stale_since: dict[str, int] = {}
        self._stale_alerted: set[str] = set()
        self._stop_sent = False
        self._started_wall = time.time()
        self._warned: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        #: Counters: messages sent, failed (dropped after an error), dropped (outbox full).
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        # httpx logs every request (the long-poll too) at INFO: keep it to warnings.
        for name in ("httpx", "httpcore", "telegram"):
            logging.getLogger(name).setLevel(logging.WARNING)

    # ------------------------------------------------------------------ hooks (engine task; never wait)
    def on_started(self, daemon: Daemon) -> None:
        self._daemon = daemon
        c = daemon.c
        if c is None:
            return
        state = str(c.engine.trading_state) + (" (paused)" if c.engine.paused else "")
        self.broadcast(
            f"▶️ tradebot started: run {c.run_id} ({c.settings.mode}, {c.settings.venue}), "
            f"{', '.join(c.symbols)}; {'resumed' if c.resumed else 'new run'}; trading {state}"
        )

    def on_record(self, record: object) -> None:
        if type(record) is Fill:
            quote = record.symbol.split("/")[-1]
            self.broadcast(
                f"Fill: {record.side.value.upper()} {_num(record.qty)} {record.symbol} @ {_num(record.price)}, "
                f"fee {_num(record.fee_quote, 4)} {quote}"
            )
        elif type(record) is PositionEvent:
            text = self._event_text(record)
            if text:
                self.broadcast(text)

    def on_feed_status(self, status: FeedStatus) -> None:
        sym = status.symbol
        if status.stale:
            self._stale_since.setdefault(sym, status.ts_ms)
            return
        since = self._stale_since.pop(sym, None)
        if sym in self._stale_alerted:
            self._stale_alerted.discard(sym)
            took = "" if since is None else f" after {(status.ts_ms - since) / 60_000:.0f} min"
            self.broadcast(f"✅ Feed {sym} recovered{took}; entries allowed again")

    def on_status(self, fields: dict[str, Any]) -> None:
        self._last_status = dict(fields)
        self.check_stale()

    def on_stopped(self, reason: str) -> None:
        # Normally already sent by the task as it was cancelled (it stops before this hook runs).
        if not self._stop_sent:
            self._queue_stop(reason)

    def task(self, control: DaemonControl) -> Any:
        return self._run(control)

    # ------------------------------------------------------------------ outbox
    def broadcast(self, text: str) -> None:
        """Queue ``text`` for every configured chat."""
        for chat in self.chat_ids:
            self.send(chat, text)

    def send(self, chat_id: int, text: str) -> None:
        """Queue ``text`` for ``chat_id`` (the oldest queued message is dropped when the outbox is full)."""
        if len(self._outbox) >= self._outbox_size:
            self._outbox.popleft()
            self.dropped += 1
            self._warn("telegram_outbox_full", dropped=self.dropped)
        self._outbox.append((chat_id, text[:MAX_TEXT]))
        self._wake.set()

    def _queue_stop(self, reason: str) -> None:
        self._stop_sent = True
        c = self._daemon.c if self._daemon is not None else None
        where = f" run {c.run_id}" if c is not None else ""
        self.broadcast(f"⏹ tradebot stopped{where}: {reason or 'shutdown'}")

    # ------------------------------------------------------------------ alerts
    def _event_text(self, ev: PositionEvent) -> str | None:
        kind = ev.event_type
        if kind is ET.STOP_EXIT:
            pnl = [f"{ev.profit_pct:+.2f} %"] if ev.profit_pct is not None else []
            if ev.r_multiple is not None:
                pnl.append(f"{ev.r_multiple:+.2f} R")
            result = f"; P/L {', '.join(pnl)}" if pnl else ""
            return (
                f"🛑 Stop exit {ev.symbol} @ {_num(ev.price)}: {ev.trigger_reason}{result}; "
                f"size {_num(ev.size_before)} -> {_num(ev.size_after)}"
            )
        if kind is ET.DAILY_LOSS_HALT:
            return f"⛔ Daily-loss halt: {ev.trigger_reason}; {ev.action_taken}"
        if kind is ET.RECONCILE_MISMATCH:
            return f"⚠️ Reconciliation mismatch {ev.symbol}: {ev.trigger_reason}; {ev.action_taken}"
        if kind is ET.RISK_BLOCK and ev.indicators.get("rule") in ("pause", "resume"):
            return f"⏸ {ev.trigger_reason}: {ev.action_taken}"
        if kind is ET.TRADING_RESUMED:
            return f"▶️ Trading resumed ({ev.trigger_reason}): {ev.action_taken}"
        return None

    def check_stale(self, now_ms: int | None = None) -> None:
        """Alert once for each feed stale for at least ``feed_stale_alert_s`` (by the daemon's clock)."""
        if not self._stale_since:
            return
        if now_ms is None:
            c = self._daemon.c if self._daemon is not None else None
            if c is None:
                return
            now_ms = c.clock.now_ms()
        for sym, since in self._stale_since.items():
            if sym not in self._stale_alerted and now_ms - since >= self._stale_alert_ms:
                self._stale_alerted.add(sym)
                self.broadcast(
                    f"⚠️ Feed {sym} stale for {(now_ms - since) / 60_000:.0f} min: "
                    "no entries or increases on it until it recovers"
                )

    # ------------------------------------------------------------------ commands
    def handle_text(self, chat_id: int, text: str, control: DaemonControl) -> None:
        """Answer one message (a command) of ``chat_id``; other chats are ignored."""
        if chat_id not in self.chat_ids:
            log.info("telegram_chat_ignored", chat_id=chat_id)
            return
        if not text.startswith("/"):
            return
        command = text.split()[0].split("@")[0].lower()
        handlers: dict[str, Callable[[int, DaemonControl], str]] = {
            "/status": self._status,
            "/positions": self._positions,
            "/pnl": self._pnl,
            "/pause": self._pause,
            "/resume": self._resume,
        }
        handler = handlers.get(command)
        log.info("telegram_command", chat_id=chat_id, command=command if handler else "unknown")
        self.send(chat_id, handler(chat_id, control) if handler else HELP)

    def _status(self, _chat: int, _control: DaemonControl) -> str:
        d = self._daemon
        if d is None or d.c is None:
            return "Starting: no status yet."
        f = d.status()
        engine = d.c.engine
        lag = f.get("feed_lag_ms")
        lines = [
            f"Status of run {d.c.run_id} ({d.c.settings.mode}):",
            f"trading {f['trading_state']}" + (" (paused)" if engine.paused else ""),
            f"equity {f['equity_quote'] or 'n/a'}, cash {f['cash_quote']} {engine.config.quote}",
            "exposure "
            + (", ".join(f"{a} {v}" for a, v in f["exposure_quote"].items() if Decimal(v) != 0) or "none"),
            f"open orders {f['open_orders']}, candles {f['candles_processed']}",
            "feed lag " + ("n/a" if lag is None else f"{lag / 1000:.1f} s"),
        ]
        stale = sorted(self._stale_since)
        if stale:
            lines.append("stale feeds " + ", ".join(stale))
        return "\n".join(lines)

    def _positions(self, _chat: int, _control: DaemonControl) -> str:
        d = self._daemon
        if d is None or d.c is None:
            return "Starting: no positions yet."
        engine = d.c.engine
        ledger, marks = engine.ledger, engine.marks_decimal()
        lines = []
        for sym in engine.symbols:
            qty = ledger.position(sym)
            if qty == 0:
                continue
            mark = marks.get(sym)
            upnl = "n/a" if mark is None else _num(ledger.unrealized(sym, mark), 2)
            lines.append(
                f"{sym}: {_num(qty)} @ avg {_num(ledger.avg_entry(sym), 4)}, "
                f"mark {'n/a' if mark is None else _num(mark)}, unrealized {upnl}"
            )
        return "Positions:\n" + "\n".join(lines) if lines else "No open positions."

    def _pnl(self, _chat: int, _control: DaemonControl) -> str:
        d = self._daemon
        if d is None or d.c is None:
            return "Starting: no PnL yet."
        engine = d.c.engine
        ledger, marks = engine.ledger, engine.marks_decimal()
        realized, fees, unrealized, _complete = pnl_totals(ledger, marks)
        quote = engine.config.quote
        lines = [
            f"PnL ({quote}): realized {_num(realized, 2)}, fees {_num(fees, 2)}, "
            f"net {_num(realized - fees, 2)}, unrealized {_num(unrealized, 2)}"
        ]
        start = engine.config.initial_cash
        if len(marks) == len(engine.symbols):
            equity = ledger.equity(marks)
            change = (equity / start - 1) * 100 if start else Decimal(0)
            lines.append(f"equity {_num(equity, 2)} vs start {_num(start, 2)} ({change:+.2f} %)")
        return "\n".join(lines)

    def _pause(self, chat: int, control: DaemonControl) -> str:
        d = self._daemon
        if d is None or d.c is None:
            return "Starting: try again in a moment."
        if "operator" in d.c.engine.pauses:
            return "Already paused. /resume lifts the pause."
        control.submit(
            TradingControl(
                state=TradingState.REDUCING,
                reason=f"telegram /pause by chat {chat}",
                ts_ms=d.c.clock.now_ms(),
            )
        )
        return (
            "Pausing: no new entries or increases; exits, stops and the daily-loss halt go on. "
            "/resume lifts the pause."
        )

    def _resume(self, chat: int, control: DaemonControl) -> str:
        d = self._daemon
        if d is None or d.c is None:
            return "Starting: try again in a moment."
        engine = d.c.engine
        halted = engine.trading_state is TradingState.HALTED
        note = " A halt stays in force (a daily-loss halt ends at the next UTC day)." if halted else ""
        if "venue" in engine.pauses:
            note += " New entries stay paused while the venue is unavailable (resumed when it answers)."
        if "operator" not in engine.pauses:
            return f"Not paused; trading {engine.trading_state}.{note}"
        control.submit(
            TradingControl(
                state=TradingState.ACTIVE, reason=f"telegram /resume by chat {chat}", ts_ms=d.c.clock.now_ms()
            )
        )
        return f"Resuming: the pause is lifted.{note}"

    # ------------------------------------------------------------------ the task
    def _new_bot(self) -> Bot:
        return Bot(
            self._token,
            base_url=f"{self._base_url}/bot",
            request=HTTPXRequest(connection_pool_size=4, read_timeout=10.0, connect_timeout=5.0),
            get_updates_request=HTTPXRequest(
                connection_pool_size=1, read_timeout=self._poll_timeout_s + 10.0, connect_timeout=5.0
            ),
        )

    async def _run(self, control: DaemonControl) -> None:
        bot = self._new_bot()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._send_loop(bot), name="telegram-send")
                tg.create_task(self._poll_loop(bot, control), name="telegram-poll")
        except asyncio.CancelledError:
            # The daemon is stopping: say so, and send what is queued for at most flush_s seconds.
            if not self._stop_sent:
                self._queue_stop(self._daemon.stopped_by if self._daemon is not None else "")
            try:
                async with asyncio.timeout(self.flush_s):
                    while self._outbox:
                        chat, text = self._outbox.popleft()
                        await self._send(bot, chat, text, retry=False)
            except TimeoutError:
                self._warn("telegram_flush_timeout", left=len(self._outbox))
            raise
        except Exception as exc:  # a bug here must not take the daemon down
            log.warning("telegram_stopped", error=repr(exc))
        finally:
            try:
                await bot.shutdown()
            except Exception as exc:
                log.debug("telegram_shutdown_failed", error=repr(exc))

    async def _send_loop(self, bot: Bot) -> None:
        while True:
            if not self._outbox:
                self._wake.clear()
                try:
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                except TimeoutError:
                    self.check_stale()
                continue
            chat, text = self._outbox.popleft()
            await self._send(bot, chat, text)

    async def _send(self, bot: Bot, chat: int, text: str, *, retry: bool = True) -> None:
        for attempt in (1, 2):
            try:
                await bot.send_message(chat_id=chat, text=text)
            except RetryAfter as exc:
                if retry and attempt == 1:
                    await asyncio.sleep(min(_seconds(exc.retry_after), 30.0))
                    continue
                self.failed += 1
                self._warn("telegram_send_failed", error=repr(exc), failed=self.failed)
            except Exception as exc:
                self.failed += 1
                self._warn("telegram_send_failed", error=repr(exc), failed=self.failed)
            else:
                self.sent += 1
            return

    async def _poll_loop(self, bot: Bot, control: DaemonControl) -> None:
        offset: int | None = None
        backoff = 1.0
        while True:
            try:
                updates = await bot.get_updates(
                    offset=offset, timeout=int(self._poll_timeout_s), allowed_updates=["message"]
                )
            except Exception as exc:
                self._warn("telegram_poll_failed", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = 1.0
            for update in updates:
                offset = update.update_id + 1
                try:
                    self._on_update(update, control)
                except Exception as exc:
                    log.warning("telegram_update_failed", update_id=update.update_id, error=repr(exc))

    def _on_update(self, update: Update, control: DaemonControl) -> None:
        msg = update.message
        if msg is None or not msg.text:
            return
        if msg.date.timestamp() < self._started_wall - 60:
            # Sent while the daemon was down: a stale /pause must not act on a later run.
            log.info("telegram_old_message_ignored", chat_id=msg.chat_id, update_id=update.update_id)
            return
        self.handle_text(msg.chat_id, msg.text, control)

    def _warn(self, event: str, **fields: Any) -> None:
        # At most one warning a minute per kind; the suppressed ones are counted in the next.
        now = time.monotonic()
        last = self._warned.get(event)
        if last is not None and now - last < 60.0:
            self._suppressed[event] = self._suppressed.get(event, 0) + 1
            return
        self._warned[event] = now
        log.warning(event, suppressed=self._suppressed.pop(event, 0), **fields)
