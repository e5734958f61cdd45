"""The exchange simulator answers like the exchanges: each answer has the keys and value types of a
recorded answer (a real capture or the exchange's documentation example under
``tests/fixtures/<venue>/{orders,wire,user_stream}``, sources in the folders' READMEs).

Requests go over HTTP with the venues' own signing, not through ccxt, so the test sees the wire.
Keys the documentation marks as conditional are named per comparison, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import structlog
import websockets
from wire_shapes import assert_same_shape, shape_differences

from tradebot.exchange_sim import ExchangeSim, SimConfig
from tradebot.exchange_sim.binance_private import API_KEY, API_SECRET
from tradebot.exchange_sim.binance_ws import kline_frame
from tradebot.exchange_sim.deribit_private import CLIENT_ID, CLIENT_SECRET
from tradebot.exchange_sim.deribit_ws import RESOLUTIONS
from tradebot.exchange_sim.market import Bar, MarketEvent

FIX = Path(__file__).resolve().parents[1] / "fixtures"
DATA = FIX / "binance" / "ohlcv"
START_MS = 1679529600000 + 60 * 60_000

#: Documented as present only when the order sets them ("Conditional fields in Order Responses").
BINANCE_CONDITIONAL = ("stopPrice", "icebergQty", "trailingDelta", "strategyId", "strategyType")

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    # an earlier in-process CLI test may leave structlog writing to its closed capture stream
    structlog.reset_defaults()


def recorded(venue: str, name: str) -> Any:
    """A recorded answer: ``tests/fixtures/<venue>/{orders,wire,user_stream,}/<name>``."""
    for path in (FIX / venue / folder / name for folder in ("orders", "wire", "user_stream", "")):
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(name)


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSim]:
    async with ExchangeSim(
        SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=3600.0, ping_interval_s=None)
    ) as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def binance(
    http: aiohttp.ClientSession, sim: ExchangeSim, method: str, path: str, **params: str
) -> Any:
    """A signed Binance request (``timestamp`` = now and ``recvWindow`` 5000 unless given, HMAC-SHA256
    ``signature``); the JSON answer."""
    query = urlencode({"timestamp": str(int(time.time() * 1000)), "recvWindow": "5000", **params})
    signature = hmac.new(API_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    url = f"{sim.binance_rest_url}{path}?{query}&signature={signature}"
    async with http.request(method, url, headers={"X-MBX-APIKEY": API_KEY}) as r:
        return await r.json()


async def binance_public(http: aiohttp.ClientSession, sim: ExchangeSim, path: str, **params: str) -> Any:
    async with http.get(f"{sim.binance_rest_url}{path}", params=params) as r:
        return await r.json()


# ------------------------------------------------------------------------------------------ Binance


async def test_binance_new_order_answers(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    for n, (kind, name) in enumerate([("FULL", "rest_order_response_full_docs.json"),
                                      ("RESULT", "rest_order_response_result_docs.json"),
                                      ("ACK", "rest_order_response_ack_docs.json")]):  # fmt: skip
        answer = await binance(http, sim, "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
                               quantity="0.01000", newClientOrderId=f"shape-{n}", newOrderRespType=kind)  # fmt: skip
        assert_same_shape(answer, recorded("binance", name), what=f"POST /api/v3/order {kind}")


async def test_binance_order_query_open_orders_and_cancel(
    sim: ExchangeSim, http: aiohttp.ClientSession
) -> None:
    await binance(http, sim, "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                  quantity="0.01000", price="1000.00", timeInForce="GTC", newClientOrderId="rest-1")  # fmt: skip
    query = recorded("binance", "rest_query_order_docs.json")
    order = await binance(http, sim, "GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="rest-1")
    assert_same_shape(order, query, what="GET /api/v3/order", optional=BINANCE_CONDITIONAL)
    listed = await binance(http, sim, "GET", "/api/v3/openOrders", symbol="BTCUSDT")
    assert_same_shape(listed, [query], what="GET /api/v3/openOrders", optional=BINANCE_CONDITIONAL)
    cancel = await binance(http, sim, "DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="rest-1")
    assert_same_shape(cancel, recorded("binance", "rest_cancel_order_docs.json"), what="DELETE /api/v3/order")
    assert cancel["origClientOrderId"] == "rest-1" and cancel["clientOrderId"] != "rest-1"


async def test_binance_my_trades_account_and_errors(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    await binance(http, sim, "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
                  quantity="0.01000", newClientOrderId="acct-1")  # fmt: skip
    trades = await binance(http, sim, "GET", "/api/v3/myTrades", symbol="BTCUSDT")
    assert_same_shape(trades, recorded("binance", "rest_my_trades_docs.json"), what="GET /api/v3/myTrades")
    account = await binance(http, sim, "GET", "/api/v3/account")
    assert_same_shape(account, recorded("binance", "rest_account_docs.json"), what="GET /api/v3/account")
    assert account["updateTime"] == sim.binance_orders.orders[-1].updated_ms > 0
    error = await binance(http, sim, "GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="never-1")
    assert_same_shape(error, recorded("binance", "rest_error_payload_docs.json"), what="error body")


async def test_binance_klines_rows(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    rows = await binance_public(http, sim, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit="5")
    assert_same_shape(
        rows, recorded("binance", "rest_klines_real_BTCUSDT_1m.json"), what="GET /api/v3/klines"
    )
    # every decimal as Binance writes it: 8 decimals, no exponent, also for the forming candle's zero volume
    assert all(re.fullmatch(r"\d+\.\d{8}", v) for row in rows for v in (*row[1:6], row[7], row[9], row[10]))
    forming = rows[-1]
    assert (forming[5], forming[7], forming[8], forming[9]) == ("0.00000000", "0.00000000", 0, "0.00000000")


def test_binance_kline_frame_of_a_zero_volume_candle() -> None:
    bar = Bar(START_MS, "27322.27", "27322.27", "27322.27", "27322.27", "0")
    frame = json.loads(kline_frame("BTCUSDT", MarketEvent("BTCUSDT", bar, False), START_MS + 1))
    k = frame["data"]["k"]
    assert (k["v"], k["q"], k["V"], k["Q"], k["n"]) == (
        "0.00000000",
        "0.00000000",
        "0.00000000",
        "0.00000000",
        0,
    )
    assert_same_shape(frame, recorded("binance", "ws_kline_combined_real.json"), what="kline frame")


async def test_binance_exchange_info_and_its_filters(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    info = await binance_public(http, sim, "/api/v3/exchangeInfo")
    docs = recorded("binance", "rest_exchangeInfo_docs.json")
    # "sors" is present only for symbols that support smart order routing (none of ours)
    assert_same_shape(info, docs, what="GET /api/v3/exchangeInfo", optional=("sors",))
    by_type = {f["filterType"]: f for f in recorded("binance", "filters_docs.json")}
    for symbol in info["symbols"]:
        for f in symbol["filters"]:
            assert f["filterType"] in by_type, f"{symbol['symbol']}: undocumented filter {f['filterType']}"
            assert_same_shape(f, by_type[f["filterType"]], what=f"{symbol['symbol']} {f['filterType']}")
        assert symbol["permissions"] == [] and symbol["permissionSets"][0][:2] == ["SPOT", "MARGIN"]
        documented = set(recorded("binance", "enums_permissions_docs.json"))
        assert {p for s in symbol["permissionSets"] for p in s} <= documented, symbol["symbol"]
        assert "MIN_NOTIONAL" not in {f["filterType"] for f in symbol["filters"]}  # legacy, replaced
        notional = next(f for f in symbol["filters"] if f["filterType"] == "NOTIONAL")
        assert (notional["minNotional"], notional["applyMinToMarket"]) == ("5.00000000", True)
    # the docs' rateLimits are placeholders ([{}]); each limiter has the shape of enums.md's examples
    limiters = {r["rateLimitType"]: r for r in recorded("binance", "rest_rate_limiters_docs.json")}
    for limit in info["rateLimits"]:
        assert_same_shape(
            limit, limiters[limit["rateLimitType"]], what=f"rateLimits {limit['rateLimitType']}"
        )
    weight = [(r["interval"], r["intervalNum"], r["limit"]) for r in info["rateLimits"]
              if r["rateLimitType"] == "REQUEST_WEIGHT"]  # fmt: skip
    example = limiters["REQUEST_WEIGHT"]
    assert (
        weight == [(example["interval"], example["intervalNum"], example["limit"])] == [("MINUTE", 1, 6000)]
    )


async def test_binance_timing_security(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    def refusal(answer: Any) -> tuple[int, str]:
        assert_same_shape(answer, recorded("binance", "rest_error_payload_docs.json"), what="error body")
        return answer["code"], answer["msg"]

    now = int(time.time() * 1000)
    assert refusal(await binance(http, sim, "GET", "/api/v3/account", timestamp="")) == (
        -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")  # fmt: skip
    assert refusal(await binance(http, sim, "GET", "/api/v3/account", recvWindow="60001")) == (
        -1102, "'recvWindow' contains unexpected value. Cannot be greater than 60000.")  # fmt: skip
    sim.binance_private.server_clock_ms = lambda: now  # the timing rule, against a fixed server clock
    assert "balances" in await binance(http, sim, "GET", "/api/v3/account", timestamp=str(now - 4_000))
    assert refusal(await binance(http, sim, "GET", "/api/v3/account", timestamp=str(now - 6_000))) == (
        -1021, "Timestamp for this request is outside of the recvWindow.")  # fmt: skip
    assert "balances" in await binance(
        http, sim, "GET", "/api/v3/account", timestamp=str(now - 6_000), recvWindow="10000"
    )
    assert refusal(await binance(http, sim, "POST", "/api/v3/order", timestamp=str(now + 1_000), symbol="BTCUSDT",
                                 side="BUY", type="MARKET", quantity="0.01000", newClientOrderId="t-1")) == (
        -1021, "Timestamp for this request was 1000ms ahead of the server's time.")  # fmt: skip
    assert sim.binance_orders.placements == []  # refused before the order engine


def test_the_comparison_names_the_field_and_both_types() -> None:
    diffs = shape_differences({"price": 207.3, "extra": 1}, {"price": "207.3", "qty": "1"}, path="$")
    assert sorted(diffs) == [
        "$.extra: not in the recorded answer (simulator sent number 1)",
        "$.price: string expected (recorded '207.3'), simulator sent number 207.3",
        "$.qty: missing (recorded string '1')",
    ]


# ------------------------------------------------------------------------------------------ Deribit

#: Order keys present in some documented answers and not in others (``replaced``/``web`` in the
#: ``private/buy`` example, not in ``get_order_state``'s; trigger fields only for stop orders; the
#: newer fields of the captured ``nautilus_ws_order_buy_response.json``).
DERIBIT_ORDER_OPTIONAL = ("replaced", "web", "trigger", "trigger_price", "triggered", "contracts", "mmp",
                          "user_id", "reject_post_only", "risk_reducing")  # fmt: skip
#: Envelope keys: HTTP GET requests carry no id, so neither do their answers (the docs examples are
#: WS ones); real captures carry ``usIn``/``usOut``/``usDiff``/``testnet``, the docs examples omit them.
RPC_OPTIONAL = ("id", "testnet", "usIn", "usOut", "usDiff")


async def deribit(http: aiohttp.ClientSession, sim: ExchangeSim, method: str, *, secret: str = CLIENT_SECRET,
                  client_id: str = CLIENT_ID, **params: str) -> Any:  # fmt: skip
    """A ``deri-hmac-sha256`` signed ``GET /api/v2/<method>``; the JSON answer."""
    path = f"/api/v2/{method}?{urlencode(params)}"
    ts, nonce = str(int(time.time() * 1000)), "abcd1234"
    sig = hmac.new(secret.encode(), f"{ts}\n{nonce}\nGET\n{path}\n\n".encode(), hashlib.sha256).hexdigest()
    headers = {"Authorization": f"deri-hmac-sha256 id={client_id},ts={ts},sig={sig},nonce={nonce}"}
    async with http.get(f"{sim.deribit_rest_url}{path}", headers=headers) as r:
        return await r.json()


async def test_deribit_public_answers(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    instruments = await deribit(http, sim, "public/get_instruments", currency="SOL")
    assert_same_shape(instruments, recorded("deribit", "rest_get_instruments_SOL_perpetuals_real.json"),
                      what="public/get_instruments", optional=RPC_OPTIONAL)  # fmt: skip
    chart = await deribit(http, sim, "public/get_tradingview_chart_data", instrument_name="ETH_USDC-PERPETUAL",
                          resolution="5", start_timestamp=str(START_MS - 3_600_000), end_timestamp=str(START_MS))  # fmt: skip
    assert_same_shape(chart, recorded("deribit", "rest_tradingview_chart_data.json"),
                      what="public/get_tradingview_chart_data", optional=RPC_OPTIONAL)  # fmt: skip
    now = await deribit(http, sim, "public/get_time")
    assert_same_shape(now, recorded("deribit", "docs_public_get_time_response.json"), what="public/get_time",
                      optional=RPC_OPTIONAL)  # fmt: skip


async def test_deribit_chart_data_of_every_documented_resolution(
    sim: ExchangeSim, http: aiohttp.ClientSession
) -> None:
    documented = recorded("deribit", "docs_public_get_tradingview_chart_data_resolutions.json")
    assert list(RESOLUTIONS) == documented  # the REST endpoint and the chart.trades channels alike
    real = recorded("deribit", "rest_tradingview_chart_data.json")
    end = START_MS + 3 * 86_400_000  # the simulated clock stops the answer at now: the periods so far
    for resolution in documented:
        chart = await deribit(http, sim, "public/get_tradingview_chart_data", instrument_name="BTC-PERPETUAL",
                              resolution=resolution, start_timestamp=str(START_MS - 2 * 86_400_000),
                              end_timestamp=str(end))  # fmt: skip
        assert_same_shape(chart, real, what=f"chart data {resolution}", optional=RPC_OPTIONAL)
        ticks = chart["result"]["ticks"]
        assert ticks and all(t % RESOLUTIONS[resolution] == 0 for t in ticks), resolution
        assert {b - a for a, b in itertools.pairwise(ticks)} <= {RESOLUTIONS[resolution]}, resolution
    refused = await deribit(http, sim, "public/get_tradingview_chart_data", instrument_name="BTC-PERPETUAL",
                            resolution="7", start_timestamp=str(START_MS - 3_600_000), end_timestamp=str(START_MS))  # fmt: skip
    assert (refused["error"]["code"], refused["error"]["message"]) == (-32602, "Invalid params")


async def test_deribit_order_answers(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    buy = await deribit(http, sim, "private/buy", instrument_name="ETH_USDC-PERPETUAL", amount="0.5",
                        type="market", label="shape-1")  # fmt: skip
    docs_buy = recorded("deribit", "docs_private_buy_response.json")
    assert_same_shape(buy, docs_buy, what="private/buy", optional=(*RPC_OPTIONAL, *DERIBIT_ORDER_OPTIONAL))
    assert buy["result"]["order"]["price"] == buy["result"]["trades"][0]["price"]  # a number, the fill price
    state = await deribit(http, sim, "private/get_order_state", order_id=buy["result"]["order"]["order_id"])
    assert_same_shape(state, recorded("deribit", "docs_private_get_order_state_response.json"),
                      what="private/get_order_state", optional=(*RPC_OPTIONAL, *DERIBIT_ORDER_OPTIONAL))  # fmt: skip
    trades = await deribit(
        http, sim, "private/get_user_trades_by_instrument", instrument_name="ETH_USDC-PERPETUAL"
    )
    assert_same_shape(trades["result"]["trades"], docs_buy["result"]["trades"], what="user trades")
    assert trades["result"]["has_more"] is False
    await deribit(http, sim, "private/buy", instrument_name="ETH_USDC-PERPETUAL", amount="0.1", type="limit",
                  price="1000.0", label="shape-2")  # fmt: skip
    listed = await deribit(
        http, sim, "private/get_open_orders_by_instrument", instrument_name="ETH_USDC-PERPETUAL"
    )
    assert_same_shape(listed, recorded("deribit", "docs_private_get_open_orders_by_instrument_response.json"),
                      what="private/get_open_orders_by_instrument", optional=(*RPC_OPTIONAL, *DERIBIT_ORDER_OPTIONAL))  # fmt: skip
    cancel = await deribit(http, sim, "private/cancel", order_id=listed["result"][0]["order_id"])
    # the docs example cancels an untriggered stop-market order: its price is "market_price" (null
    # below: compared separately) and it has no fill fields yet; ours is a limit order
    docs_cancel = recorded("deribit", "docs_private_cancel_response.json")
    docs_cancel["result"]["price"] = None
    assert_same_shape(cancel, docs_cancel, what="private/cancel",
                      optional=(*RPC_OPTIONAL, *DERIBIT_ORDER_OPTIONAL, "average_price", "filled_amount"))  # fmt: skip
    assert (cancel["result"]["price"], cancel["result"]["order_state"]) == (1000, "cancelled")


async def test_deribit_positions_and_account_summary(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    await deribit(http, sim, "private/buy", instrument_name="ETH_USDC-PERPETUAL", amount="0.5", type="market",
                  label="pos-1")  # fmt: skip
    positions = await deribit(http, sim, "private/get_positions", currency="USDC", kind="future")
    assert_same_shape(positions, recorded("deribit", "docs_private_get_positions_response.json"),
                      what="private/get_positions", optional=RPC_OPTIONAL)  # fmt: skip
    (pos,) = positions["result"]
    fill_price = float(sim.deribit_orders.trades[0].price)
    assert (pos["size"], pos["direction"], pos["average_price"], pos["floating_profit_loss"]) == (
        0.5, "buy", fill_price, pytest.approx((pos["mark_price"] - fill_price) * 0.5))  # fmt: skip
    summary = await deribit(http, sim, "private/get_account_summary", currency="USDC", extended="true")
    # the maps are keyed by index name ("btc_usd" in the docs example); an index without positions has none
    assert_same_shape(summary, recorded("deribit", "docs_private_get_account_summary_response.json"),
                      what="private/get_account_summary", optional=(*RPC_OPTIONAL, "btc_usd"))  # fmt: skip
    plain = await deribit(http, sim, "private/get_account_summary", currency="USDC")
    assert "email" not in plain["result"] and "balance" in plain["result"]


async def test_deribit_inverse_btc_perpetual_answers(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    # the docs examples are inverse ones: amounts in USD, fees and PnL in the coin, size_currency in coins
    sim.deribit_orders.coin_accounts["BTC"] = D("1")
    flat = await deribit(http, sim, "private/get_position", instrument_name="BTC-PERPETUAL")
    # get_position's example predates "realized_funding" (get_positions' example has it)
    assert_same_shape(flat, recorded("deribit", "docs_private_get_position_response.json"),
                      what="private/get_position", optional=(*RPC_OPTIONAL, "realized_funding"))  # fmt: skip
    assert [flat["result"][k] for k in ("size", "size_currency", "average_price")] == [0, 0, 0]
    buy = await deribit(http, sim, "private/buy", instrument_name="BTC-PERPETUAL", amount="500", type="market",
                        label="inv-1")  # fmt: skip
    assert_same_shape(buy, recorded("deribit", "docs_private_buy_response.json"), what="private/buy inverse",
                      optional=(*RPC_OPTIONAL, *DERIBIT_ORDER_OPTIONAL))  # fmt: skip
    (trade,) = buy["result"]["trades"]
    price = D(repr(trade["price"]))
    fee = (D(500) / price * D("0.0005")).quantize(D("1e-8"))
    assert (trade["amount"], trade["fee_currency"], D(repr(trade["fee"])), buy["result"]["order"]["amount"]) == (
        500, "BTC", fee, 500)  # fmt: skip
    # BTC ids are plain numbers, like the docs' user.trades example on BTC-PERPETUAL
    docs_trade = recorded("deribit", "docs_sub_user_trades_notification_data.json")[0]["data"][0]
    ids = (trade["trade_id"], trade["order_id"], docs_trade["trade_id"], docs_trade["order_id"])
    assert all(re.fullmatch(r"\d+", x) for x in ids)
    positions = await deribit(http, sim, "private/get_positions", currency="BTC", kind="future")
    assert_same_shape(positions, recorded("deribit", "docs_private_get_positions_response.json"),
                      what="private/get_positions inverse", optional=RPC_OPTIONAL)  # fmt: skip
    (pos,) = positions["result"]
    mark = sim.deribit_orders.last_price("BTC-PERPETUAL")
    assert (pos["instrument_name"], pos["size"], pos["average_price"], pos["direction"]) == (
        "BTC-PERPETUAL", 500, trade["price"], "buy")  # fmt: skip
    # the docs example's relation: size_currency = delta = size / mark (50 / 7476.65 = 0.006687487)
    assert pos["size_currency"] == pos["delta"] == pytest.approx(float(D(500) / mark), rel=1e-12)
    assert pos["floating_profit_loss"] == pytest.approx(float(D(500) * (1 / price - 1 / mark)), rel=1e-9)
    summary = await deribit(http, sim, "private/get_account_summary", currency="BTC", extended="true")
    assert_same_shape(summary, recorded("deribit", "docs_private_get_account_summary_response.json"),
                      what="private/get_account_summary BTC", optional=(*RPC_OPTIONAL, "btc_usd"))  # fmt: skip
    result = summary["result"]
    assert (result["currency"], D(repr(result["balance"])), result["fees"][0]["index_name"]) == (
        "BTC", D(1) - fee, "btc_usd")  # fmt: skip
    assert result["equity"] == pytest.approx(float(D(1) - fee) + pos["floating_profit_loss"], rel=1e-12)
    # the linear account is untouched: inverse contracts settle in the coin account only
    assert sim.deribit_orders.balances() == {"USDC": D(10000)}
    for _ in range(30):
        sim.market.step()
    sell = await deribit(http, sim, "private/sell", instrument_name="BTC-PERPETUAL", amount="500", type="market",
                         label="inv-3")  # fmt: skip
    exit_price = D(repr(sell["result"]["trades"][0]["price"]))
    realized = (D(500) * (1 / price - 1 / exit_price)).quantize(D("1e-8"))  # a long: 1/entry − 1/exit
    exit_fee = (D(500) / exit_price * D("0.0005")).quantize(D("1e-8"))
    assert exit_price != price and sim.deribit_orders.coin_accounts["BTC"] == D(1) - fee - exit_fee + realized
    closed = (await deribit(http, sim, "private/get_position", instrument_name="BTC-PERPETUAL"))["result"]
    assert (closed["size"], closed["size_currency"]) == (0, 0)
    assert D(repr(closed["realized_profit_loss"])) == realized
    off_grid = await deribit(http, sim, "private/sell", instrument_name="BTC-PERPETUAL", amount="5", type="market",
                             label="inv-2")  # fmt: skip
    assert off_grid["error"]["code"] == -32602  # 5 USD is not a multiple of the 10-USD contract
    unknown = await deribit(http, sim, "private/get_position", instrument_name="DOGE-PERPETUAL")
    error = unknown["error"]
    assert (error["code"], error["message"]) == (10020, "invalid_or_unsupported_instrument")
    legacy = {row["code"]: row["message"] for row in recorded("deribit", "errors_rpc_codes_legacy_docs.json")}
    assert legacy[10020] == "invalid_or_unsupported_instrument"


async def test_deribit_auth_errors_are_the_documented_ones(
    sim: ExchangeSim, http: aiohttp.ClientSession
) -> None:
    fmt = recorded("deribit", "docs_error_response_format_example.json")
    bad_sig = await deribit(http, sim, "private/get_positions", secret="wrong", currency="USDC")
    # "param" names the offending request parameter in the docs example; a signature has none
    assert_same_shape(bad_sig, fmt, what="error answer", optional=(*RPC_OPTIONAL, "param"))
    unknown = await deribit(http, sim, "private/get_positions", client_id="nobody", currency="USDC")
    async with http.get(f"{sim.deribit_rest_url}/api/v2/private/get_positions?currency=USDC") as r:
        absent = await r.json()
    codes = [(a["error"]["code"], a["error"]["message"]) for a in (bad_sig, unknown, absent)]
    assert codes == [
        (13009, "unauthorized"),
        (13004, "invalid_credentials"),
        (10000, "authorization_required"),
    ]
    legacy = {row["code"]: row["message"] for row in recorded("deribit", "errors_rpc_codes_legacy_docs.json")}
    assert all(legacy[code] == message for code, message in codes)


async def test_deribit_chart_notifications_of_every_resolution(sim: ExchangeSim) -> None:
    sim.market.pause()
    name = "ETH_USDC-PERPETUAL"
    channels = [f"chart.trades.{name}.{r}" for r in ("1", "5", "1D")]
    async with websockets.connect(sim.deribit_ws_url) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "public/subscribe",
                                  "params": {"channels": [*channels, f"chart.trades.{name}.7"]}}))  # fmt: skip
        answer = json.loads(await ws.recv())
        assert answer["result"] == channels  # resolution 7 is not a Deribit resolution
        for _ in range(6):
            sim.market.step()
        frames: dict[str, list[dict[str, Any]]] = {c: [] for c in channels}
        with contextlib.suppress(TimeoutError):
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.3))
                frames[frame["params"]["channel"]].append(frame)
    real = recorded("deribit", "chart_trades_notification.json")
    for channel in channels:
        assert frames[channel], channel
        for frame in frames[channel]:
            assert_same_shape(frame, real, what=channel)
    # the 5-minute candle is the 1m candles of its period so far, exactly
    five = frames[f"chart.trades.{name}.5"][-1]["params"]["data"]
    ones = [
        f["params"]["data"]
        for f in frames[f"chart.trades.{name}.1"]
        if f["params"]["data"]["tick"] >= five["tick"]
    ]
    last_per_tick = {d["tick"]: d for d in ones}
    period = [last_per_tick[t] for t in sorted(last_per_tick)]
    assert (five["open"], five["close"]) == (period[0]["open"], period[-1]["close"])
    assert (five["high"], five["low"]) == (max(d["high"] for d in period), min(d["low"] for d in period))
    assert five["volume"] == pytest.approx(sum(d["volume"] for d in period))
    day = frames[f"chart.trades.{name}.1D"][-1]["params"]["data"]
    assert day["tick"] % 86_400_000 == 0 and day["tick"] <= five["tick"]


# ------------------------------------------------------------------------------------ stop orders


async def test_binance_stop_loss_limit_answers(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    await binance(http, sim, "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET",
                  quantity="0.01100", newClientOrderId="stop-0")  # fmt: skip
    placed = await binance(http, sim, "POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="STOP_LOSS_LIMIT",
                           quantity="0.01000", price="26900.00", stopPrice="27000.00", timeInForce="GTC",
                           newClientOrderId="stop-1", newOrderRespType="RESULT")  # fmt: skip
    assert_same_shape(placed, recorded("binance", "rest_order_stop_loss_limit_new_docs.json"),
                      what="POST /api/v3/order STOP_LOSS_LIMIT RESULT")  # fmt: skip
    assert (placed["status"], placed["stopPrice"], placed["price"], placed["workingTime"]) == (
        "NEW", "27000.00000000", "26900.00000000", -1)  # fmt: skip
    ack = await binance(http, sim, "POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="STOP_LOSS_LIMIT",
                        quantity="0.00100", price="26900.00", stopPrice="27000.00", timeInForce="GTC",
                        newClientOrderId="stop-2")  # fmt: skip
    assert set(ack) == set(recorded("binance", "rest_order_response_ack_docs.json"))  # ACK: a stop's default
    order = await binance(http, sim, "GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="stop-1")
    assert_same_shape(order, recorded("binance", "rest_query_order_docs.json"), what="GET /api/v3/order stop",
                      optional=BINANCE_CONDITIONAL)  # fmt: skip
    assert (order["type"], order["stopPrice"], order["isWorking"], order["workingTime"]) == (
        "STOP_LOSS_LIMIT", "27000.00000000", False, -1)  # fmt: skip
    cancel = await binance(http, sim, "DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="stop-1")
    assert_same_shape(cancel, recorded("binance", "rest_cancel_order_stop_loss_limit_docs.json"),
                      what="DELETE /api/v3/order stop")  # fmt: skip
    assert (cancel["status"], cancel["stopPrice"]) == ("CANCELED", "27000.00000000")
    # refusals worded as in errors.md: a stop the last price (27322.27) has reached, a type not enabled
    reached = await binance(http, sim, "POST", "/api/v3/order", symbol="BTCUSDT", side="SELL",
                            type="STOP_LOSS_LIMIT", quantity="0.00100", price="27300.00", stopPrice="27322.27",
                            timeInForce="GTC", newClientOrderId="stop-3")  # fmt: skip
    assert reached == {"code": -2010, "msg": "Order would trigger immediately."}
    market = await binance(http, sim, "POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="STOP_LOSS",
                           quantity="0.00100", stopPrice="27000.00", newClientOrderId="stop-4")  # fmt: skip
    assert market == {"code": -2010, "msg": "Stop loss orders are not supported for this symbol."}
    no_tif = await binance(http, sim, "POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="STOP_LOSS_LIMIT",
                           quantity="0.00100", price="26900.00", stopPrice="27000.00", newClientOrderId="stop-5")  # fmt: skip
    assert no_tif["code"] == -1102 and "'timeInForce'" in no_tif["msg"]


async def test_deribit_stop_order_answers(sim: ExchangeSim, http: aiohttp.ClientSession) -> None:
    await deribit(http, sim, "private/buy", instrument_name="ETH_USDC-PERPETUAL", amount="1", type="market",
                  label="stop-0")  # fmt: skip
    docs_cancel = recorded("deribit", "docs_private_cancel_response.json")  # an untriggered stop_market
    market = await deribit(http, sim, "private/sell", instrument_name="ETH_USDC-PERPETUAL", amount="0.5",
                           type="stop_market", trigger_price="1700.0", trigger="mark_price", reduce_only="true",
                           label="stop-1")  # fmt: skip
    assert_same_shape(market["result"]["order"], docs_cancel["result"], what="private/sell stop_market",
                      optional=DERIBIT_ORDER_OPTIONAL)  # fmt: skip
    order = market["result"]["order"]
    assert (order["order_state"], order["price"], order["trigger_price"], order["trigger"], order["triggered"],
            order["reduce_only"]) == ("untriggered", "market_price", 1700, "mark_price", False, True)  # fmt: skip
    # the documented request of a stop_limit (its parameter names), on a linear instrument
    params = recorded("deribit", "docs_private_sell_request.json")["params"]
    limit = await deribit(http, sim, "private/sell", **{**{k: str(v) for k, v in params.items()},
                          "instrument_name": "ETH_USDC-PERPETUAL", "amount": "0.5", "price": "1690.0",
                          "trigger_price": "1695.0", "label": "stop-2"})  # fmt: skip
    assert_same_shape(limit, recorded("deribit", "docs_private_sell_response.json"), what="private/sell stop_limit",
                      optional=(*RPC_OPTIONAL, *DERIBIT_ORDER_OPTIONAL))  # fmt: skip
    assert (limit["result"]["order"]["order_type"], limit["result"]["order"]["price"]) == ("stop_limit", 1690)
    listed = await deribit(
        http, sim, "private/get_open_orders_by_instrument", instrument_name="ETH_USDC-PERPETUAL"
    )
    assert [(o["label"], o["order_state"]) for o in listed["result"]] == [
        ("stop-1", "untriggered"), ("stop-2", "untriggered")]  # fmt: skip
    by_label = await deribit(http, sim, "private/get_order_state_by_label", currency="USDC", label="stop-1")
    assert [o["order_type"] for o in by_label["result"]] == ["stop_market"]
    reached = await deribit(http, sim, "private/sell", instrument_name="ETH_USDC-PERPETUAL", amount="0.1",
                            type="stop_market", trigger_price="1737.4", trigger="last_price", label="stop-3")  # fmt: skip
    assert reached["error"]["code"] == 11036 and reached["error"]["message"] == "invalid_trigger_price"
    tick = await deribit(http, sim, "private/sell", instrument_name="ETH_USDC-PERPETUAL", amount="0.1",
                         type="stop_market", trigger_price="1700.05", trigger="last_price", label="stop-4")  # fmt: skip
    assert tick["error"]["code"] == 10044 and tick["error"]["message"] == "trigger_price_wrong_tick"
    legacy = {row["code"]: row["message"] for row in recorded("deribit", "errors_rpc_codes_legacy_docs.json")}
    assert (legacy[11036], legacy[10044]) == ("invalid_trigger_price", "trigger_price_wrong_tick")
