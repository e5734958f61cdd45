"""Recorded private-stream payloads decode to exact domain values: Binance WebSocket API user-data
events (the docs' market-order sequence, nautilus' hand-written reports) and Deribit ``user.*``
notifications (docs examples), from tests/fixtures/*/user_stream (see their README files)."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from tradebot.adapters.venues.binance_user_stream import signed_params, ws_api_url
from tradebot.adapters.venues.ccxt_schemas import deribit_instrument
from tradebot.adapters.venues.deribit_user_stream import auth_params, channels
from tradebot.adapters.venues.user_stream_schemas import (
    AccountPosition,
    RpcAnswer,
    StreamEnd,
    decode_binance_ws_api,
    decode_deribit_user,
)
from tradebot.core.domain import Asset, ClientOrderId, Fill, Instrument, OrderStatus, Side, Symbol
from tradebot.errors import DataError
from tradebot.ports import OrderReport

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def load(venue: str, name: str, folder: str = "user_stream") -> Any:
    return json.loads((FIX / venue / folder / name).read_text())


def inst(symbol: str, base: str, quote: str) -> Instrument:
    return Instrument(symbol=Symbol(symbol), base=Asset(base), quote=Asset(quote), tick_size=D("0.00000001"),
                      step_size=D("0.00000001"))  # fmt: skip


LTCBNB, ETHUSDT, BTCUSDT = (
    inst("LTC/BNB", "LTC", "BNB"),
    inst("ETH/USDT", "ETH", "USDT"),
    inst("BTC/USDT", "BTC", "USDT"),
)
MARKETS = {"LTCBNB": LTCBNB, "ETHUSDT": ETHUSDT, "BTCUSDT": BTCUSDT}


def wrapped(event: dict[str, Any], sid: int = 0) -> str:
    return json.dumps({"subscriptionId": sid, "event": event})


def binance(event: dict[str, Any], **kw: Any) -> Any:
    return decode_binance_ws_api(wrapped(event), MARKETS, **kw)


def nautilus(name: str) -> dict[str, Any]:
    data: dict[str, Any] = load("binance", f"ws_user_execution_report_{name}_fixture.json")["data"]
    return data


# ------------------------------------------------------------------------------------------ Binance


def test_the_docs_market_order_sequence_decodes_to_two_fills_and_its_expiry() -> None:
    new, first, second, expired, account = load(
        "binance", "ws_user_execution_report_partial_fill_sequence_docs.json"
    )
    cid = ClientOrderId("8LGC97RRgNPVQk979VIhjt")
    common = {"client_order_id": cid, "symbol": Symbol("LTC/BNB"), "qty": D("6"), "ts_ms": 1719467634105,
              "exchange_order_id": "32", "side": Side.BUY}  # fmt: skip
    assert binance(new) == OrderReport(status=OrderStatus.ACCEPTED, filled_qty=D(0), **common)

    def fill(trade_id: str) -> Fill:
        return Fill(venue="binance", symbol=Symbol("LTC/BNB"), trade_id=trade_id, client_order_id=cid,
                    side=Side.BUY, qty=D(2), price=D(1), fee_quote=D("0.001"), ts_ms=1719467634105,
                    exchange_order_id="32", fee=D("0.001"), fee_currency="BNB")  # fmt: skip

    assert binance(first) == OrderReport(status=OrderStatus.PARTIALLY_FILLED, filled_qty=D(2), avg_price=D(1),
                                         fills=(fill("7"),), **common)  # fmt: skip
    assert binance(second) == OrderReport(status=OrderStatus.PARTIALLY_FILLED, filled_qty=D(4), avg_price=D(1),
                                          fills=(fill("8"),), **common)  # fmt: skip
    assert binance(expired) == OrderReport(
        status=OrderStatus.EXPIRED, filled_qty=D(4), avg_price=D(1), **common
    )
    assert binance(account) == AccountPosition(
        venue="binance",
        balances={"LTC": (D("3011.11745670"), D(0)), "BNB": (D("996.11865670"), D(0))},
        ts_ms=1719467634105,
    )


def test_the_docs_event_wrapper_and_answers_decode() -> None:
    event = load("binance", "ws_api_event_outbound_account_position_docs.json")  # {"event": …}, no id
    got = decode_binance_ws_api(json.dumps(event), MARKETS)
    assert got == AccountPosition(venue="binance", balances={"ABC": (D("11818"), D("182")), "DEF": (D("10580"), D("70"))},
                                  ts_ms=1728972148778)  # fmt: skip
    answer = load("binance", "ws_api_subscribe_signature_response_docs.json")
    assert decode_binance_ws_api(json.dumps(answer), MARKETS) == RpcAnswer(
        "d3df8a22-98ea-4fe0-9f4e-0fcea5d418b7", {"subscriptionId": 0}
    )
    error = load("binance", "ws_api_error_response_docs.json")
    assert decode_binance_ws_api(json.dumps(error), MARKETS) == RpcAnswer(
        "e2a85d9f-07a5-4f94-8d5f-789dc3deb097",
        None,
        -2010,
        "Account has insufficient balance for requested action.",
    )


def test_statuses_reasons_and_a_trade_without_quantity() -> None:
    trade = binance(nautilus("trade"))
    assert (trade.status, trade.filled_qty, trade.avg_price) == (
        OrderStatus.PARTIALLY_FILLED,
        D("0.5"),
        D("2499.5"),
    )
    (f,) = trade.fills
    # the fee is charged in ETH, the base: valued at the fill price in quote
    assert (f.trade_id, f.qty, f.price, f.fee, f.fee_currency, f.fee_quote) == (
        "98765432", D("0.5"), D("2499.5"), D("0.0005"), "ETH", D("0.0005") * D("2499.5"))  # fmt: skip
    rejected = binance(nautilus("rejected"))
    assert (rejected.status, rejected.reason, rejected.fills) == (
        OrderStatus.REJECTED,
        "GTX_ORDER_REJECT",
        (),
    )
    assert binance(nautilus("expired")).status is OrderStatus.EXPIRED
    assert binance(nautilus("new")).status is OrderStatus.ACCEPTED
    # x=TRADE with l=0 (nautilus' edge case): no fill, the cumulative quantity still says 0.5 filled
    zero = binance(nautilus("trade_l_zero_partial"))
    assert (zero.fills, zero.filled_qty, zero.avg_price) == ((), D("0.5"), None)


def test_a_cancel_is_the_order_named_in_C_and_wire_ids_map_back() -> None:
    canceled = nautilus("canceled")  # C empty: c is the order
    report = binance(canceled)
    assert (report.client_order_id, report.status, report.filled_qty) == (
        "O-12345-test-cancel", OrderStatus.CANCELED, D("0.1"))  # fmt: skip
    # as Binance sends a cancel (user-data-stream.md: "C: Original client order ID; This is the ID of the
    # order being canceled"): c is the cancel request's id
    by_binance = {**canceled, "c": "pXLV6Hz6mprAcVYpVMTGgx", "C": "tb-0123456789abcdef"}
    ours = {"tb-0123456789abcdef": ClientOrderId("run-2024-01-01T00:00-BTC/USDT-rebalance-1")}
    mapped = binance(by_binance, client_order_id=lambda w: ours.get(w, ClientOrderId(w)))
    assert mapped.client_order_id == "run-2024-01-01T00:00-BTC/USDT-rebalance-1"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"i": None}, "executionReport.i must be an integer"),
        ({"X": "WORKING"}, "executionReport.X must be one of"),
        ({"l": "abc"}, "executionReport.l must be a decimal number, was .abc."),
        ({"c": ""}, "executionReport.c must be a non-empty string"),
        ({"S": "HOLD"}, "side must be buy or sell"),
    ],
)
def test_a_malformed_execution_report_names_the_field(change: dict[str, Any], match: str) -> None:
    with pytest.raises(DataError, match=match):
        binance({**nautilus("trade"), **change})


def test_frames_not_used_here() -> None:
    with pytest.raises(DataError, match="not JSON"):
        decode_binance_ws_api('{"subscriptionId": 0, "event": {"e": "executi', MARKETS)
    with pytest.raises(DataError, match="neither an answer nor an event"):
        decode_binance_ws_api('{"subscriptionId": 0}', MARKETS)
    assert binance({**nautilus("trade"), "s": "DOGEUSDT"}) is None  # a symbol not traded here
    balance = {"e": "balanceUpdate", "E": 1573200697110, "a": "BTC", "d": "100.00000000", "T": 1573200697068}
    assert binance(balance) is None
    assert binance({"e": "eventStreamTerminated", "E": 1728973001334}) == StreamEnd("eventStreamTerminated")


def test_the_subscription_is_signed_over_the_sorted_parameters() -> None:
    params = signed_params("key", "secret", timestamp_ms=1747385641636, recv_window_ms=5000)
    text = b"apiKey=key&recvWindow=5000&timestamp=1747385641636"
    assert params == {"apiKey": "key", "recvWindow": 5000, "timestamp": 1747385641636,
                      "signature": hmac.new(b"secret", text, hashlib.sha256).hexdigest()}  # fmt: skip
    docs = load("binance", "ws_api_subscribe_signature_request_docs.json")
    assert set(docs["params"]) <= set(params)  # the docs' parameters, recvWindow being optional
    assert (
        ws_api_url("wss://ws-api.testnet.binance.vision") == "wss://ws-api.testnet.binance.vision/ws-api/v3"
    )
    assert ws_api_url("wss://ws-api.binance.com:443/ws-api/v3") == "wss://ws-api.binance.com:443/ws-api/v3"


# ------------------------------------------------------------------------------------------ Deribit


def btc_perpetual() -> Instrument:
    rows = load("deribit", "rest_get_instruments_BTC_perpetuals_real.json", "orders")["result"]
    raw = next(r for r in rows if r["instrument_name"] == "BTC-PERPETUAL")
    return deribit_instrument(raw, Symbol("BTC/USD:BTC"))


def notification(channel: str, data: Any) -> str:
    return json.dumps(
        {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}}
    )


def test_the_docs_user_trades_notification_decodes_to_exact_inverse_fills() -> None:
    (example,) = load("deribit", "docs_sub_user_trades_notification_data.json")
    markets = {"BTC-PERPETUAL": (btc_perpetual(), True)}
    (report,) = decode_deribit_user(notification("user.trades.BTC-PERPETUAL.raw", example["data"]), markets)
    assert (report.status, report.exchange_order_id, report.side, report.ts_ms) == (
        OrderStatus.UNKNOWN, "4008965646", Side.SELL, 1590484156350)  # fmt: skip
    # 20 USD at 8954 = 0.00223364 BTC (1e-8, half-even); the fee in BTC valued at the fill price
    assert [(f.trade_id, f.qty, f.price, f.fee, f.fee_currency, f.fee_quote) for f in report.fills] == [
        (tid, D("0.00223364"), D(8954), D("0.00000168"), "BTC", D("0.00000168") * 8954)
        for tid in ("48079254", "48079255")
    ]


def test_the_docs_user_orders_notification_and_answers_decode() -> None:
    (example,) = load("deribit", "docs_sub_user_orders_notification_data.json")
    markets = {"BTC-PERPETUAL": (btc_perpetual(), True)}
    order = decode_deribit_user(notification("user.orders.BTC-PERPETUAL.raw", example["data"][0]), markets)
    assert isinstance(order, OrderReport)
    # 200 USD at the limit 10460.43, nothing filled yet
    assert (order.status, order.qty, order.filled_qty, order.exchange_order_id, order.side) == (
        OrderStatus.ACCEPTED, (D(200) / D("10460.43")).quantize(D("1e-8")), D(0), "4", Side.BUY)  # fmt: skip
    answer = load("deribit", "docs_public_auth_response.json")
    decoded = decode_deribit_user(json.dumps(answer), markets)
    assert isinstance(decoded, RpcAnswer) and decoded.request_id == 9929 and decoded.error_code is None
    assert decode_deribit_user(notification("chart.trades.BTC-PERPETUAL.1", {}), markets) is None
    with pytest.raises(DataError, match=r"deribit trade\.price must be a number"):
        decode_deribit_user(notification("user.trades.BTC-PERPETUAL.raw", [{**example["data"][0], "price": None}]),
                            markets)  # fmt: skip


def test_deribit_auth_is_a_client_signature_and_the_channels_are_raw() -> None:
    params = auth_params("id", "secret", timestamp_ms=1590484156350, nonce="abc")
    text = b"1590484156350\nabc\n"
    assert params == {"grant_type": "client_signature", "client_id": "id", "timestamp": 1590484156350,
                      "nonce": "abc", "data": "", "signature": hmac.new(b"secret", text, hashlib.sha256).hexdigest()}  # fmt: skip
    docs = load("deribit", "docs_public_auth_request.json")
    assert docs["params"]["grant_type"] == "client_credentials"  # the other grant: sends the secret itself
    assert channels({"BTC-PERPETUAL": None}) == [
        "user.orders.BTC-PERPETUAL.raw",
        "user.trades.BTC-PERPETUAL.raw",
    ]
