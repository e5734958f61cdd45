"""Recorded Binance and Deribit order payloads decode to exact domain values (tests/fixtures/*/orders,
copied from /work/shared/data/payloads)."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from tradebot.adapters.venues.ccxt_schemas import (
    binance_balances,
    binance_error,
    binance_instrument,
    binance_order,
    binance_rate_limits,
    binance_trade,
    deribit_amount,
    deribit_instrument,
    deribit_is_inverse,
    deribit_order,
    deribit_qty,
    deribit_rpc_error,
    deribit_trade,
)
from tradebot.core.domain import Asset, Fill, Instrument, OrderStatus, OrderType, Side, Symbol
from tradebot.errors import DataError
from tradebot.exchange_sim.binance_rest import load_exchange_info

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def load(venue: str, name: str) -> Any:
    return json.loads((FIX / venue / "orders" / name).read_text())


def inst(symbol: str, base: str, quote: str) -> Instrument:
    return Instrument(symbol=Symbol(symbol), base=Asset(base), quote=Asset(quote), tick_size=D("0.01"),
                      step_size=D("0.00000001"))  # fmt: skip


BTCUSDT = inst("BTC/USDT", "BTC", "USDT")


# ------------------------------------------------------------------------------------------ Binance


def test_binance_full_answer_decodes_every_fill_exactly() -> None:
    report = binance_order(load("binance", "rest_order_response_full_docs.json"), BTCUSDT)
    assert report.client_order_id == "6gCrw2kRUAF9CvJDGP16IP"
    assert report.exchange_order_id == "28"
    assert report.status is OrderStatus.FILLED
    assert (report.qty, report.filled_qty, report.avg_price) == (D("10"), D("10"), D("1"))
    assert report.ts_ms == 1507725176595
    assert [(f.trade_id, f.qty, f.price, f.fee, f.fee_quote) for f in report.fills] == [
        ("56", D("1"), D("4000"), D("4"), D("4")),
        ("57", D("5"), D("3999"), D("19.995"), D("19.995")),
        ("58", D("2"), D("3998"), D("7.996"), D("7.996")),
        ("59", D("1"), D("3997"), D("3.997"), D("3.997")),
        ("60", D("1"), D("3995"), D("3.995"), D("3.995")),
    ]
    first = report.fills[0]
    assert first == Fill(venue="binance", symbol=Symbol("BTC/USDT"), trade_id="56",  # type: ignore[arg-type]
                         client_order_id="6gCrw2kRUAF9CvJDGP16IP", side=Side.SELL, qty=D("1"),  # type: ignore[arg-type]
                         price=D("4000"), fee_quote=D("4"), ts_ms=1507725176595,
                         exchange_order_id="28", fee=D("4"), fee_currency="USDT")  # type: ignore[arg-type]  # fmt: skip
    assert sum(f.qty for f in report.fills) == report.filled_qty


def test_binance_partial_fill_then_expired_market_order() -> None:
    ltcbnb = inst("LTC/BNB", "LTC", "BNB")
    report = binance_order(load("binance", "rest_order_response_full_partial_fill_expired_docs.json"), ltcbnb)
    assert report.status is OrderStatus.EXPIRED
    assert (report.qty, report.filled_qty, report.avg_price) == (D("6"), D("4"), D("1"))
    assert [(f.trade_id, f.side, f.qty, f.price, f.fee_quote, f.fee_currency) for f in report.fills] == [
        ("7", Side.BUY, D("2"), D("1"), D("0.001"), "BNB"),
        ("8", Side.BUY, D("2"), D("1"), D("0.001"), "BNB"),
    ]


def test_binance_result_and_ack_answers() -> None:
    result = binance_order(load("binance", "rest_order_response_result_docs.json"), BTCUSDT)
    assert (result.status, result.filled_qty, result.fills) == (OrderStatus.FILLED, D("10"), ())
    ack = binance_order(load("binance", "rest_order_response_ack_docs.json"), BTCUSDT)
    assert (ack.status, ack.qty, ack.filled_qty, ack.exchange_order_id, ack.ts_ms) == (
        OrderStatus.ACCEPTED, D(0), D(0), "28", 1507725176595)  # fmt: skip


def test_binance_cancel_answer_names_the_cancelled_order_by_orig_client_order_id() -> None:
    # DELETE /api/v3/order: origClientOrderId is the cancelled order, clientOrderId the cancel's own id
    report = binance_order(load("binance", "rest_cancel_order_partially_filled_docs.json"), BTCUSDT)
    assert report.client_order_id == "4d96324ff9d44481926157"
    assert (report.status, report.exchange_order_id, report.ts_ms) == (
        OrderStatus.CANCELED, "12569099453", 1684804350068)  # fmt: skip
    # partly filled before the cancel: 0.00001 of 0.00847 sold for 0.234161 USDT
    assert (report.qty, report.filled_qty, report.avg_price) == (D("0.00847"), D("0.00001"), D("23416.1"))
    docs = binance_order(load("binance", "rest_cancel_order_docs.json"), inst("LTC/BTC", "LTC", "BTC"))
    assert (docs.client_order_id, docs.status, docs.filled_qty) == ("myOrder1", OrderStatus.CANCELED, D(0))


def test_binance_cancel_answer_without_an_order_id_names_the_field() -> None:
    raw = load("binance", "rest_cancel_order_docs.json") | {"origClientOrderId": ""}
    with pytest.raises(
        DataError, match=r"binance order.origClientOrderId must be a non-empty string, was ''"
    ):
        binance_order(raw, BTCUSDT)


def test_binance_query_order_open_limit() -> None:
    report = binance_order(load("binance", "rest_query_order_docs.json"), inst("LTC/BTC", "LTC", "BTC"))
    assert report.client_order_id == "myOrder1"
    assert (report.status, report.qty, report.filled_qty, report.avg_price) == (
        OrderStatus.ACCEPTED, D("1.0"), D("0.0"), None)  # fmt: skip
    assert report.ts_ms == 1499827319559


def test_binance_stop_orders_decode_type_and_trigger_price() -> None:
    new = binance_order(load("binance", "rest_order_stop_loss_limit_new_docs.json"), BTCUSDT)
    assert (new.client_order_id, new.status, new.side, new.order_type, new.stop_price, new.qty) == (
        "BqtFCj5odMoWtSqGk2X9tU", OrderStatus.ACCEPTED, Side.SELL, OrderType.STOP_LIMIT, D("23405"),
        D("0.0065"))  # fmt: skip
    assert (new.ts_ms, new.filled_qty, new.avg_price) == (1660801713793, D(0), None)
    market = binance_order(
        load("binance", "rest_order_stop_loss_new_docs.json"), inst("LTC/BTC", "LTC", "BTC")
    )
    assert (market.status, market.side, market.order_type, market.stop_price) == (
        OrderStatus.ACCEPTED, Side.BUY, OrderType.STOP_MARKET, D("0.960664"))  # fmt: skip
    cancel = binance_order(load("binance", "rest_cancel_order_stop_loss_limit_docs.json"), BTCUSDT)
    assert (cancel.client_order_id, cancel.status, cancel.order_type, cancel.stop_price) == (
        "bX5wROblo6YeDwa9iTLeyY", OrderStatus.CANCELED, OrderType.STOP_LIMIT, D("23430"))  # fmt: skip
    limit = binance_order(load("binance", "rest_query_order_docs.json"), inst("LTC/BTC", "LTC", "BTC"))
    # its "stopPrice": "0.0" is no stop
    assert (limit.order_type, limit.stop_price) == (OrderType.LIMIT, None)
    with pytest.raises(DataError, match=r"binance order\.stopPrice must be a number, was None"):
        binance_order(
            {**load("binance", "rest_order_stop_loss_limit_new_docs.json"), "stopPrice": None}, BTCUSDT
        )


def test_binance_base_asset_commission_is_valued_at_the_fill_price() -> None:
    row = {"symbol": "BTCUSDT", "id": 9, "orderId": 4, "price": "25000.10", "qty": "0.002",
           "commission": "0.000002", "commissionAsset": "BTC", "time": 1679533200000, "isBuyer": True}  # fmt: skip
    fill = binance_trade(row, BTCUSDT, "run-1-1")  # type: ignore[arg-type]
    assert (fill.trade_id, fill.side, fill.qty, fill.price) == ("9", Side.BUY, D("0.002"), D("25000.10"))
    assert fill.fee_quote == D("0.0500002000")
    assert (fill.exchange_order_id, fill.client_order_id, fill.ts_ms) == ("4", "run-1-1", 1679533200000)


def test_binance_account_balances_are_free_plus_locked() -> None:
    assert binance_balances(load("binance", "rest_account_docs.json")) == {
        "BTC": D("4723846.89208129"),
        "LTC": D("4763368.68006011"),
    }
    assert binance_balances({"balances": [{"asset": "USDT", "free": "1.5", "locked": "2.25"}]}) == {
        "USDT": D("3.75")
    }


def test_binance_error_bodies() -> None:
    cases = {
        (e["body"]["code"], e["body"]["msg"]) for e in load("binance", "rest_error_examples_assembled.json")
    }
    assert (-1013, "Filter failure: NOTIONAL") in cases
    for code, msg in cases:
        assert binance_error(json.dumps({"code": code, "msg": msg})) == (code, msg)
    assert binance_error("<html>502</html>") == (None, "<html>502</html>")


def test_binance_exchange_info_filters_and_rate_limits() -> None:
    info = load("binance", "rest_exchangeInfo_real_2021-10-12_BTCUSDT_ETHUSDT_SOLUSDT.json")
    by = {s["symbol"]: s for s in info["symbols"]}
    eth = binance_instrument(by["ETHUSDT"], Symbol("ETH/USDT"))
    assert (eth.base, eth.quote, eth.tick_size, eth.step_size, eth.min_qty, eth.min_notional) == (
        "ETH", "USDT", D("0.01"), D("0.0001"), D("0.0001"), D("10"))  # fmt: skip
    assert (str(eth.step_size), str(eth.min_notional)) == ("0.0001", "10")  # no trailing zeros, no exponent
    # Market orders obey the smaller of LOT_SIZE.maxQty (9000) and MARKET_LOT_SIZE.maxQty (1600.51202668).
    assert eth.max_qty == D("1600.51202668")
    sol = dict(by["SOLUSDT"])
    sol["filters"] = [f for f in sol["filters"] if f["filterType"] != "MARKET_LOT_SIZE"]
    assert binance_instrument(sol, Symbol("SOL/USDT")).max_qty == D("90000")
    for f in sol["filters"]:
        if f["filterType"] == "LOT_SIZE":
            f["maxQty"] = "0.00000000"  # 0 means no limit
    assert binance_instrument(sol, Symbol("SOL/USDT")).max_qty is None
    assert binance_rate_limits(info) == (20.0, 5.0)


def test_binance_notional_filter_and_current_rate_limits() -> None:
    # today's exchangeInfo shape (the simulator's copy): NOTIONAL instead of MIN_NOTIONAL, 6000 weight/min
    info = load_exchange_info()
    by = {s["symbol"]: s for s in info["symbols"]}
    assert "MIN_NOTIONAL" not in {f["filterType"] for f in by["BTCUSDT"]["filters"]}
    btc = binance_instrument(by["BTCUSDT"], Symbol("BTC/USDT"))
    assert (btc.min_notional, btc.max_notional, btc.max_qty) == (D("5"), D("9000000"), D("128.52621715"))
    assert (str(btc.min_notional), str(btc.max_notional)) == ("5", "9000000")
    assert binance_rate_limits(info) == (100.0, 10.0)  # 6000 weight / 60 s, 100 orders / 10 s


def test_binance_legacy_min_notional_filter_is_still_read() -> None:
    info = load("binance", "rest_exchangeInfo_real_2021-10-12_BTCUSDT_ETHUSDT_SOLUSDT.json")
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert {f["filterType"] for f in btc["filters"]} >= {"MIN_NOTIONAL"}
    inst = binance_instrument(btc, Symbol("BTC/USDT"))
    assert (inst.min_notional, inst.max_notional) == (D("10"), None)  # MIN_NOTIONAL has no maximum
    # a symbol carrying both reads NOTIONAL
    both = btc | {"filters": [*btc["filters"], {"filterType": "NOTIONAL", "minNotional": "5.00000000",
                                                "maxNotional": "9000000.00000000"}]}  # fmt: skip
    assert binance_instrument(both, Symbol("BTC/USDT")).min_notional == D("5")


def test_malformed_binance_payload_names_the_field() -> None:
    raw = load("binance", "rest_order_response_full_docs.json")
    raw["executedQty"] = None
    with pytest.raises(DataError, match=r"binance order.executedQty must be a number, was None"):
        binance_order(raw, BTCUSDT)
    raw = load("binance", "rest_order_response_full_docs.json") | {"status": "WEIRD"}
    with pytest.raises(DataError, match="was 'WEIRD'"):
        binance_order(raw, BTCUSDT)


# ------------------------------------------------------------------------------------------ Deribit


def deribit_inst(file: str, name: str) -> tuple[Instrument, bool]:
    raw = next(i for i in load("deribit", file)["result"] if i["instrument_name"] == name)
    return deribit_instrument(
        raw, Symbol(f"{raw['base_currency']}/USD:{raw['base_currency']}")
    ), deribit_is_inverse(raw)


def test_deribit_inverse_instrument() -> None:
    btc, inverse = deribit_inst("rest_get_instruments_BTC_perpetuals_real.json", "BTC-PERPETUAL")
    assert inverse
    assert (btc.tick_size, btc.step_size, btc.min_notional, btc.contract_size) == (
        D("0.5"), D("1e-8"), D("10.0"), D("10.0"))  # fmt: skip
    assert (btc.taker_fee, btc.maker_fee) == (D("0.0005"), D("0.0"))


def test_deribit_maker_rebate_instrument_is_accepted() -> None:
    # SOL-PERPETUAL (real capture, 2022-05-29): "maker_commission": -0.0002, a rebate to makers
    sol, inverse = deribit_inst("rest_get_instruments_SOL_perpetuals_real.json", "SOL-PERPETUAL")
    assert inverse
    assert (sol.taker_fee, sol.maker_fee) == (D("0.0005"), D("-0.0002"))
    assert (sol.tick_size, sol.min_notional, sol.contract_size) == (D("0.01"), D("10.0"), D("10.0"))


def test_deribit_instrument_out_of_range_is_a_data_error_naming_it() -> None:
    raw = load("deribit", "rest_get_instruments_SOL_perpetuals_real.json")["result"][0] | {
        "taker_commission": -0.1
    }
    with pytest.raises(
        DataError, match=r"deribit instrument 'SOL-PERPETUAL': .*taker_fee must be a Decimal >= 0"
    ):
        deribit_instrument(raw, Symbol("SOL/USD:SOL"))


def test_deribit_maker_trade_with_a_rebate_decodes_to_a_negative_fee() -> None:
    btc, _ = deribit_inst("rest_get_instruments_BTC_perpetuals_real.json", "BTC-PERPETUAL")
    row = load("deribit", "docs_sub_user_trades_notification_data.json")[0]["data"][0]
    maker = row | {"liquidity": "M", "fee": -0.00000067}  # the same trade as a maker, paid a rebate
    fill = deribit_trade(maker, btc, inverse=True, client_order_id="run-3-1")  # type: ignore[arg-type]
    assert (fill.fee, fill.fee_currency, fill.fee_quote) == (D("-6.7E-7"), "BTC", D("-0.00599918"))


def test_deribit_inverse_amount_conversion_is_pinned() -> None:
    # 0.0123 BTC at 40 000 USD = 492 USD → 490 USD (49 contracts of 10 USD, rounded down)
    assert deribit_amount(D("0.0123"), D("40000"), inverse=True, contract_size=D("10")) == D("490")
    assert deribit_qty(D("490"), D("40000"), inverse=True) == D("0.01225000")
    # linear (USDC) perpetuals: the amount is in base units
    assert deribit_amount(D("0.25"), D("2000"), inverse=False, contract_size=D("0.01")) == D("0.25")
    assert deribit_qty(D("0.25"), D("2000"), inverse=False) == D("0.25")


def test_deribit_buy_answer_inverse_market_order() -> None:
    eth, inverse = deribit_inst("rest_get_instruments_ETH_perpetuals_real.json", "ETH-PERPETUAL")
    result = load("deribit", "docs_private_buy_response.json")["result"]
    report = deribit_order(result["order"], eth, inverse=inverse, trades=result["trades"])
    assert report.client_order_id == "market0000234"
    assert (report.status, report.exchange_order_id, report.ts_ms) == (
        OrderStatus.FILLED, "ETH-584849853", 1590483938456)  # fmt: skip
    # 40 USD at 203.3 = 0.19675357 ETH (1e-8, half-even)
    assert (report.qty, report.filled_qty, report.avg_price) == (D("0.19675357"), D("0.19675357"), D("203.3"))
    (fill,) = report.fills
    assert (fill.trade_id, fill.side, fill.qty, fill.price) == (
        "ETH-2696083",
        Side.BUY,
        D("0.19675357"),
        D("203.3"),
    )
    assert (fill.fee, fill.fee_currency, fill.fee_quote) == (D("0.00014757"), "ETH", D("0.030000981"))
    assert fill.client_order_id == "market0000234"


def test_deribit_linear_open_order_and_state_lookup() -> None:
    usdc = Instrument(symbol=Symbol("ETH/USDC:USDC"), base=Asset("ETH"), quote=Asset("USDC"), tick_size=D("0.1"),
                      step_size=D("0.001"))  # fmt: skip
    report = deribit_order(load("deribit", "nautilus_ws_order_buy_response.json")["result"]["order"], usdc,
                           inverse=False)  # fmt: skip
    assert (report.status, report.qty, report.filled_qty, report.avg_price) == (
        OrderStatus.ACCEPTED, D("0.001"), D("0.0"), None)  # fmt: skip
    assert (report.client_order_id, report.exchange_order_id) == (
        "O-19700101-000000-001-001-1",
        "USDC-104819327443",
    )
    eth, _ = deribit_inst("rest_get_instruments_ETH_perpetuals_real.json", "ETH-PERPETUAL")
    state = deribit_order(
        load("deribit", "docs_private_get_order_state_response.json")["result"], eth, inverse=True
    )
    assert (state.status, state.filled_qty, state.avg_price) == (
        OrderStatus.FILLED,
        D("0.31108122"),
        D("118.94"),
    )


def test_deribit_untriggered_stop_orders_are_open() -> None:
    eth, _ = deribit_inst("rest_get_instruments_ETH_perpetuals_real.json", "ETH-PERPETUAL")
    sell = deribit_order(
        load("deribit", "docs_private_sell_response.json")["result"]["order"], eth, inverse=True
    )
    assert (sell.status, sell.qty, sell.filled_qty) == (OrderStatus.ACCEPTED, D("0.84472220"), D(0))
    assert (sell.order_type, sell.stop_price, sell.side) == (OrderType.STOP_LIMIT, D("145"), Side.SELL)
    cancel = deribit_order(load("deribit", "docs_private_cancel_response.json")["result"], eth, inverse=True)
    assert (cancel.status, cancel.qty) == (OrderStatus.ACCEPTED, D("0.03454709"))  # 5 USD at trigger 144.73
    assert (cancel.order_type, cancel.stop_price) == (OrderType.STOP_MARKET, D("144.73"))
    triggered = deribit_order(load("deribit", "docs_private_cancel_response.json")["result"]
                              | {"order_state": "triggered", "triggered": True}, eth, inverse=True)  # fmt: skip
    assert triggered.status is OrderStatus.ACCEPTED


def test_deribit_user_trades_notification() -> None:
    btc, _ = deribit_inst("rest_get_instruments_BTC_perpetuals_real.json", "BTC-PERPETUAL")
    rows = load("deribit", "docs_sub_user_trades_notification_data.json")[0]["data"]
    fills = [deribit_trade(r, btc, inverse=True, client_order_id="run-3-1") for r in rows]  # type: ignore[arg-type]
    assert [(f.trade_id, f.side, f.qty, f.price, f.fee, f.fee_quote) for f in fills] == [
        ("48079254", Side.SELL, D("0.00223364"), D("8954"), D("0.00000168"), D("0.01504272")),
        ("48079255", Side.SELL, D("0.00223364"), D("8954"), D("0.00000168"), D("0.01504272")),
    ]
    assert {f.exchange_order_id for f in fills} == {"4008965646"}


def test_deribit_rpc_error() -> None:
    assert deribit_rpc_error(load("deribit", "docs_error_response_format_example.json")) == (
        13009, "invalid_token: token has expired")  # fmt: skip
    assert deribit_rpc_error({"result": 1}) == (None, "")
