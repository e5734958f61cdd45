"""The private-stream adapters on loopback: against the exchange simulator (subscribe / authenticate,
decode every pushed order change exactly, reconnect after a drop, back off after a refusal, answer
Deribit heartbeats) and against a local ``websockets.serve`` replaying recorded frames with a
malformed one among them (logged with its payload and skipped)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs
from websockets.asyncio.server import ServerConnection, serve

from tradebot.adapters.venues.binance_user_stream import BinanceUserStream
from tradebot.adapters.venues.ccxt_schemas import deribit_instrument
from tradebot.adapters.venues.deribit_user_stream import DeribitUserStream
from tradebot.adapters.venues.user_stream import UserStream, UserStreamConfig, UserStreamStatus
from tradebot.adapters.venues.user_stream_schemas import AccountPosition
from tradebot.app.daemon.interlock import check_interlock
from tradebot.app.daemon.user_stream import build_user_stream
from tradebot.app.daemon.venue_router import build_venue
from tradebot.app.settings import Settings
from tradebot.core.domain import Asset, ClientOrderId, Instrument, OrderStatus, Side, Symbol
from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.binance_private import API_KEY, API_SECRET
from tradebot.exchange_sim.deribit_private import CLIENT_ID, CLIENT_SECRET
from tradebot.ports import OrderReport

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "user_stream"
START_MS = 1679529600000 + 3600_000
FAST = UserStreamConfig(open_timeout_s=2, backoff_initial_s=0.05, backoff_max_s=0.2, refused_backoff_s=0.3)
BTC = Instrument(symbol=Symbol("BTC/USDT"), base=Asset("BTC"), quote=Asset("USDT"), tick_size=D("0.01"),
                 step_size=D("0.00001"))  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    structlog.reset_defaults()


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSim]:
    async with ExchangeSim(SimConfig(data_dir=FIXTURE, start_ms=START_MS, minute_wall_s=3600.0)) as s:
        yield s


class Running:
    """A stream's task and its queue."""

    def __init__(self, stream: UserStream, queue: asyncio.Queue[Any]) -> None:
        self.stream, self.queue = stream, queue
        self.task = asyncio.create_task(stream.run())

    async def next(self, kind: type | tuple[type, ...] = object, timeout_s: float = 5) -> Any:
        while True:
            item = await asyncio.wait_for(self.queue.get(), timeout_s)
            if isinstance(item, kind):
                return item

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def binance_stream(url: str, *, key: str = API_KEY, secret: str = API_SECRET,
                   cid: dict[str, str] | None = None) -> Running:  # fmt: skip
    queue: asyncio.Queue[Any] = asyncio.Queue()
    names = cid or {}
    stream = BinanceUserStream(api_key=key, secret=secret, markets={"BTCUSDT": BTC}, url=url, queue=queue,
                               config=FAST, client_order_id=lambda w: ClientOrderId(names.get(w, w)))  # fmt: skip
    return Running(stream, queue)


async def test_binance_stream_delivers_each_order_change_exactly(sim: ExchangeSim) -> None:
    run = binance_stream(
        sim.binance_ws_url, cid={"tb-wire-1": "our-long-client-order-id"}
    )  # base URL: path added
    assert (await run.next(UserStreamStatus)).up is True
    orders = sim.binance_orders
    orders.place(
        symbol="BTCUSDT", side="BUY", type="MARKET", qty=D("0.012"), price=None, client_order_id="tb-wire-1"
    )
    new, filled = await run.next(OrderReport), await run.next(OrderReport)
    t = orders.trades[-1]
    assert (new.client_order_id, new.status, new.filled_qty, new.fills) == (
        "our-long-client-order-id", OrderStatus.ACCEPTED, D(0), ())  # fmt: skip
    assert (filled.status, filled.qty, filled.filled_qty, filled.avg_price) == (
        OrderStatus.FILLED, D("0.012"), D("0.012"), t.price)  # fmt: skip
    (fill,) = filled.fills
    assert (fill.trade_id, fill.client_order_id, fill.side, fill.qty, fill.price, fill.fee_quote, fill.ts_ms) == (
        str(t.trade_id), "our-long-client-order-id", Side.BUY, t.qty, t.price, t.fee, t.ts_ms)  # fmt: skip
    account = await run.next(AccountPosition)
    assert account.balances["USDT"] == (orders.free["USDT"], D(0))
    await run.stop()


async def test_binance_stream_reconnects_after_a_drop_and_backs_off_after_a_refusal(sim: ExchangeSim) -> None:
    run = binance_stream(sim.binance_ws_api_url)
    await run.next(UserStreamStatus)
    sim.faults.binance.user.drop()
    down = await run.next(UserStreamStatus)
    up = await run.next(UserStreamStatus)
    assert (down.up, up.up, run.stream.stats.connects, run.stream.stats.subscribed) == (False, True, 2, 2)
    await run.stop()
    with capture_logs() as logs:
        bad = binance_stream(sim.binance_ws_api_url, secret="not-the-secret")
        await asyncio.sleep(1.0)
        refusals = bad.stream.stats.refusals
        await bad.stop()
    # refused_backoff_s = 0.3 s: about 3-4 attempts in 1 s, never the 0.05 s reconnect rate (20)
    assert 1 <= refusals <= 5 and bad.stream.stats.subscribed == 0
    refused = [e for e in logs if e["event"] == "user_stream_refused"]
    assert refused and refused[0]["code"] == -1022
    assert "not-the-secret" not in json.dumps(logs, default=str)


async def test_a_malformed_frame_is_logged_with_its_payload_and_skipped() -> None:
    # a local server replaying the docs' events with a broken frame among them
    events = json.loads((RECORDED / "ws_user_execution_report_partial_fill_sequence_docs.json").read_text())
    events = [{**e, "s": "BTCUSDT"} for e in events if e["e"] == "executionReport"]

    async def handler(ws: ServerConnection) -> None:
        request = json.loads(await ws.recv())
        await ws.send(json.dumps({"id": request["id"], "status": 200, "result": {"subscriptionId": 0}}))
        await ws.send(json.dumps({"subscriptionId": 0, "event": events[0]}))
        await ws.send('{"subscriptionId": 0, "event": {"e": "executionReport", "s": "BTCUSDT", "X": "NEW"')
        await ws.send(json.dumps({"subscriptionId": 0, "event": {**events[1], "l": "NaN?"}}))
        for e in events[1:]:
            await ws.send(json.dumps({"subscriptionId": 0, "event": e}))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with capture_logs() as logs:
            run = binance_stream(f"ws://127.0.0.1:{port}")
            await run.next(UserStreamStatus)
            got = [await run.next(OrderReport) for _ in range(4)]
            await run.stop()
    assert [r.status for r in got] == [OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED,
                                       OrderStatus.PARTIALLY_FILLED, OrderStatus.EXPIRED]  # fmt: skip
    assert [f.trade_id for r in got for f in r.fills] == ["7", "8"]
    rejected = [e for e in logs if e["event"] == "user_stream_frame_rejected"]
    assert len(rejected) == 2 and run.stream.stats.frames_rejected == 2
    assert rejected[0]["raw"].endswith('"X": "NEW"') and "not JSON" in rejected[0]["reason"]
    assert rejected[1]["raw"].startswith('{"subscriptionId": 0, "event": {"e": "executionReport"')
    assert "executionReport.l must be a decimal number, was 'NaN?'" in rejected[1]["reason"]


async def test_deribit_stream_authenticates_subscribes_and_answers_heartbeats(sim: ExchangeSim) -> None:
    raw = next(i for i in sim.deribit_rest.instruments if i["instrument_name"] == "BTC_USDC-PERPETUAL")
    inst = deribit_instrument(raw, Symbol("BTC/USDC:USDC"))
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stream = DeribitUserStream(client_id=CLIENT_ID, secret=CLIENT_SECRET, url=sim.deribit_ws_url, queue=queue,
                               markets={"BTC_USDC-PERPETUAL": (inst, False)}, heartbeat_s=0.3, config=FAST)  # fmt: skip
    run = Running(stream, queue)
    assert (await run.next(UserStreamStatus)).up is True
    await asyncio.sleep(1.0)  # three heartbeats: an unanswered one would close the connection
    assert stream.stats.connects == 1 and sim.deribit_user.auths == ["ok"]
    orders = sim.deribit_orders
    orders.place(symbol="BTC_USDC-PERPETUAL", side="BUY", type="MARKET", qty=D("0.01"), price=None,
                 client_order_id="lab-1")  # fmt: skip
    new, trades, filled = [await run.next(OrderReport) for _ in range(3)]
    t = orders.trades[-1]
    assert (new.status, trades.status, filled.status) == (
        OrderStatus.ACCEPTED,
        OrderStatus.UNKNOWN,
        OrderStatus.FILLED,
    )
    (fill,) = trades.fills
    assert (fill.trade_id, fill.client_order_id, fill.side, fill.qty, fill.price, fill.fee_quote) == (
        f"USDC-T{t.trade_id}", "lab-1", Side.BUY, t.qty, t.price, t.fee)  # fmt: skip
    await run.stop()
    refused = DeribitUserStream(client_id=CLIENT_ID, secret="wrong", url=sim.deribit_ws_url, queue=asyncio.Queue(),
                                markets={"BTC_USDC-PERPETUAL": (inst, False)}, config=FAST)  # fmt: skip
    bad = Running(refused, refused.queue)
    await asyncio.sleep(0.5)
    await bad.stop()
    assert (
        refused.stats.refusals >= 1
        and refused.stats.subscribed == 0
        and "unauthorized" in sim.deribit_user.auths
    )


async def test_the_daemon_builds_the_stream_of_its_mode_and_none_when_switched_off(
    sim: ExchangeSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    settings = Settings(
        mode="testnet",
        testnet_api_key=SecretStr(API_KEY),
        testnet_api_secret=SecretStr(API_SECRET),
        symbols=("BTC/USDT",),
        feeds={"binance": {"ws_url": sim.binance_ws_url, "rest_url": sim.binance_rest_url, "backoff_max_s": 3,
                           "open_timeout_s": 4}},
        exchange={"binance": {"rest_url": sim.binance_rest_url, "ws_url": sim.binance_ws_url, "recv_window_ms": 7000}},
    )  # type: ignore[arg-type]  # fmt: skip
    endpoints = check_interlock(settings)
    async with AsyncExitStack() as stack:
        venue = build_venue(settings, endpoints, stack)
        await venue.load_instruments(["BTC/USDT"])
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stream = build_user_stream(settings, endpoints, venue, queue)
        assert isinstance(stream, BinanceUserStream)
        assert stream.url == sim.binance_ws_api_url  # the host-only setting gets /ws-api/v3
        assert (stream.config.backoff_max_s, stream.config.open_timeout_s, stream.config.recv_window_ms) == (
            3,
            4,
            7000,
        )
        run = Running(stream, queue)
        assert (await run.next(UserStreamStatus)).up is True
        await run.stop()
        off = settings.model_copy(
            update={"daemon": settings.daemon.model_copy(update={"user_stream": False})}
        )
        assert build_user_stream(off, endpoints, venue, queue) is None
