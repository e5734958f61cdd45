"""The simulator's private streams, spoken to with a raw websocket client: Binance WebSocket API
``userDataStream.subscribe.signature`` (signature and timing checks, ``executionReport`` /
``outboundAccountPosition`` per order change) and Deribit ``public/auth`` + ``private/subscribe`` of
``user.orders.*.raw`` / ``user.trades.*.raw``, with the fault switches (duplicates, reordering,
drop, refusal)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.binance_private import API_KEY, API_SECRET
from tradebot.exchange_sim.binance_ws_api import signature_payload
from tradebot.exchange_sim.deribit_private import CLIENT_ID, CLIENT_SECRET
from tradebot.exchange_sim.deribit_user import client_signature

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
START_MS = 1679529600000 + 3600_000


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSim]:
    async with ExchangeSim(SimConfig(data_dir=FIXTURE, start_ms=START_MS, minute_wall_s=3600.0)) as s:
        yield s


def signed(params: dict[str, Any], secret: str = API_SECRET) -> dict[str, Any]:
    sig = hmac.new(secret.encode(), signature_payload(params).encode(), hashlib.sha256).hexdigest()
    return {**params, "signature": sig}


async def ask(ws: ClientConnection, request: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(request))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if msg.get("id") == request["id"]:
            return msg


async def frames(ws: ClientConnection, n: int, timeout_s: float = 5) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout_s)) for _ in range(n)]


async def subscribed(sim: ExchangeSim) -> ClientConnection:
    ws = await connect(sim.binance_ws_api_url)
    answer = await ask(ws, {"id": "s", "method": "userDataStream.subscribe.signature",
                            "params": signed({"apiKey": API_KEY, "timestamp": 1})})  # fmt: skip
    assert answer == {"id": "s", "status": 200, "result": {"subscriptionId": 0}}
    return ws


@pytest.mark.parametrize(
    ("params", "code", "status"),
    [
        (signed({"apiKey": "nope", "timestamp": 1}), -2015, 401),
        ({**signed({"apiKey": API_KEY, "timestamp": 1}), "timestamp": 2}, -1022, 400),  # signed another value
        (signed({"apiKey": API_KEY, "timestamp": 1}, "wrong-secret"), -1022, 400),
        (signed({"apiKey": API_KEY}), -1102, 400),
        (signed({"apiKey": API_KEY, "timestamp": 1, "recvWindow": 60001}), -1102, 400),
    ],
)
async def test_binance_subscription_is_refused_like_binance(
    sim: ExchangeSim, params: dict[str, Any], code: int, status: int
) -> None:
    async with connect(sim.binance_ws_api_url) as ws:
        answer = await ask(ws, {"id": 7, "method": "userDataStream.subscribe.signature", "params": params})
    assert answer["status"] == status and answer["error"]["code"] == code, answer
    assert sim.binance_ws_api.subscriptions() == 0


async def test_binance_timing_rule_applies_with_a_server_clock(sim: ExchangeSim) -> None:
    sim.binance_private.server_clock_ms = lambda: 100_000
    async with connect(sim.binance_ws_api_url) as ws:
        late = await ask(ws, {"id": 1, "method": "userDataStream.subscribe.signature",
                              "params": signed({"apiKey": API_KEY, "timestamp": 94_000})})  # fmt: skip
        ok = await ask(ws, {"id": 2, "method": "userDataStream.subscribe.signature",
                            "params": signed({"apiKey": API_KEY, "timestamp": 99_000})})  # fmt: skip
    assert late["error"]["code"] == -1021 and ok["status"] == 200


async def test_binance_pushes_every_order_change_with_the_account_balances(sim: ExchangeSim) -> None:
    ws = await subscribed(sim)
    orders = sim.binance_orders
    orders.place(symbol="BTCUSDT", side="BUY", type="MARKET", qty=D("0.01"), price=None, client_order_id="m1")
    new, trade, account = await frames(ws, 3)
    assert all(f["subscriptionId"] == 0 for f in (new, trade, account))
    assert (new["event"]["x"], new["event"]["X"], new["event"]["t"]) == ("NEW", "NEW", -1)
    t = orders.trades[-1]
    ev = trade["event"]
    assert (ev["e"], ev["s"], ev["c"], ev["S"], ev["o"], ev["x"], ev["X"]) == (
        "executionReport", "BTCUSDT", "m1", "BUY", "MARKET", "TRADE", "FILLED")  # fmt: skip
    assert (ev["l"], ev["L"], ev["n"], ev["N"], ev["t"], ev["i"], ev["z"]) == (
        "0.01000000", f"{t.price:.8f}", f"{t.fee:.8f}", "USDT", t.trade_id, t.order_id, "0.01000000")  # fmt: skip
    assert D(ev["Z"]) == t.qty * t.price and ev["T"] == t.ts_ms
    assert account["event"]["e"] == "outboundAccountPosition"
    assert {b["a"]: b["f"] for b in account["event"]["B"]} == {
        "BTC": "0.01000000", "USDT": f"{orders.free['USDT']:.8f}"}  # fmt: skip
    # a resting limit order, then its cancel: the cancelled order is named in C, the cancel id in c
    orders.place(
        symbol="BTCUSDT", side="BUY", type="LIMIT", qty=D("0.01"), price=D("1000"), client_order_id="l1"
    )
    new, locked = await frames(ws, 2)
    assert (
        new["event"]["w"] is True and {b["a"]: b["l"] for b in locked["event"]["B"]}["USDT"] == "10.01000000"
    )
    orders.cancel("BTCUSDT", "l1")
    cancel, _ = await frames(ws, 2)
    assert (cancel["event"]["x"], cancel["event"]["C"]) == ("CANCELED", "l1")
    assert cancel["event"]["c"] not in ("l1", "")
    await ws.close()


async def test_binance_reports_a_resting_stop_with_its_trigger_off_the_book(sim: ExchangeSim) -> None:
    ws = await subscribed(sim)
    orders = sim.binance_orders
    orders.place(symbol="BTCUSDT", side="BUY", type="MARKET", qty=D("0.01"), price=None, client_order_id="b1")
    await frames(ws, 3)
    orders.place(symbol="BTCUSDT", side="SELL", type="STOP_LOSS_LIMIT", qty=D("0.01"), price=D("20000"),
                 stop_price=D("20010"), client_order_id="s1")  # fmt: skip
    (new, _) = await frames(ws, 2)
    ev = new["event"]
    assert (ev["o"], ev["x"], ev["P"], ev["p"], ev["w"]) == ("STOP_LOSS_LIMIT", "NEW", "20010.00000000",
                                                            "20000.00000000", False)  # fmt: skip
    assert "W" not in ev  # not working before it triggers
    await ws.close()


async def test_binance_faults_duplicate_reorder_and_drop(sim: ExchangeSim) -> None:
    ws = await subscribed(sim)
    user, orders = sim.faults.binance.user, sim.binance_orders
    user.duplicate(1)
    user.out_of_order(1)
    orders.place(symbol="BTCUSDT", side="BUY", type="MARKET", qty=D("0.01"), price=None, client_order_id="m2")
    # NEW held, TRADE first (and pushed twice: the duplicate falls on it), then NEW, then the balances
    got = [f["event"].get("x", f["event"]["e"]) for f in await frames(ws, 4)]
    assert got == ["TRADE", "TRADE", "NEW", "outboundAccountPosition"]
    assert (user.swapped, user.duplicates_pushed) == (1, 1)
    user.refuse(30)
    user.drop()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    with pytest.raises(InvalidStatus, match="503"):
        await connect(sim.binance_ws_api_url)
    orders.place(
        symbol="BTCUSDT", side="SELL", type="MARKET", qty=D("0.01"), price=None, client_order_id="m3"
    )
    user.refuse_until = 0.0
    async with connect(sim.binance_ws_api_url) as again:  # nothing missed is replayed
        await ask(again, {"id": 1, "method": "userDataStream.subscribe.signature",
                          "params": signed({"apiKey": API_KEY, "timestamp": 1})})  # fmt: skip
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(again.recv(), 0.3)


async def deribit_session(sim: ExchangeSim, auth: dict[str, Any]) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(sim.deribit_ws_url)
    return ws, await ask(ws, {"jsonrpc": "2.0", "id": 1, "method": "public/auth", "params": auth})


async def test_deribit_auth_and_user_channels(sim: ExchangeSim) -> None:
    refused = [
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "wrong"},
        {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": CLIENT_SECRET},
        {"grant_type": "client_signature", "client_id": CLIENT_ID, "timestamp": 5, "nonce": "n", "data": "",
         "signature": client_signature("wrong", 5, "n")},
    ]  # fmt: skip
    codes = []
    for auth in refused:
        ws, answer = await deribit_session(sim, auth)
        codes.append(answer["error"]["code"])
        await ws.close()
    assert codes == [13004, 13004, 13009]
    ws = await connect(sim.deribit_ws_url)
    unauthed = await ask(ws, {"jsonrpc": "2.0", "id": 2, "method": "private/subscribe",
                              "params": {"channels": ["user.trades.BTC_USDC-PERPETUAL.raw"]}})  # fmt: skip
    assert unauthed["error"]["code"] == 10000
    await ws.close()
    ws, answer = await deribit_session(sim, {"grant_type": "client_signature", "client_id": CLIENT_ID,
                                             "timestamp": 5, "nonce": "n", "data": "",
                                             "signature": client_signature(CLIENT_SECRET, 5, "n")})  # fmt: skip
    assert (
        answer["result"]["token_type"] == "bearer" and answer["result"]["scope"] == "connection mainaccount"
    )
    wanted = [
        "user.orders.BTC_USDC-PERPETUAL.raw",
        "user.trades.BTC_USDC-PERPETUAL.raw",
        "user.orders.NOPE.raw",
    ]
    sub = await ask(
        ws, {"jsonrpc": "2.0", "id": 3, "method": "private/subscribe", "params": {"channels": wanted}}
    )
    assert sub["result"] == wanted[:2]
    orders = sim.deribit_orders
    orders.place(symbol="BTC_USDC-PERPETUAL", side="BUY", type="MARKET", qty=D("0.01"), price=None,
                 client_order_id="lab1")  # fmt: skip
    new, trades, filled = await frames(ws, 3)
    assert new["params"]["channel"] == wanted[0] and new["params"]["data"]["order_state"] == "open"
    t = orders.trades[-1]
    row = trades["params"]["data"][0]
    assert trades["params"]["channel"] == wanted[1]
    assert (row["trade_id"], row["label"], row["amount"], D(repr(row["price"])), row["direction"]) == (
        f"USDC-T{t.trade_id}", "lab1", 0.01, t.price, "buy")  # fmt: skip
    assert filled["params"]["data"]["order_state"] == "filled" and filled["params"]["data"]["label"] == "lab1"
    sim.faults.deribit.user.drop()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
