"""Recorded Deribit JSON-RPC frames decode to exact candle values; malformed frames are rejected."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tradebot.adapters.feeds import schemas_deribit as sd
from tradebot.adapters.feeds.ws_base import decode_or_log
from tradebot.core.domain import Timeframe, to_decimal
from tradebot.errors import DataError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "deribit"
SYMBOLS = {"BTC-PERPETUAL": "BTC/USD:BTC", "BTC_USDC-PERPETUAL": "BTC/USDC:USDC"}


def _text(name: str) -> str:
    return (FIX / name).read_text()


def test_chart_notification_decodes_exactly() -> None:
    msg = sd.decode_frame(_text("chart_trades_notification.json"), SYMBOLS)
    assert isinstance(msg, sd.ChartUpdate)
    assert msg.instrument == "BTC-PERPETUAL"
    c = msg.candle
    assert (c.symbol, c.timeframe, c.open_time_ms) == ("BTC/USD:BTC", Timeframe.M1, 1767200040000)
    assert [to_decimal(v) for v in (c.open, c.high, c.low, c.close, c.volume)] == [
        Decimal("87490.0"),
        Decimal("87500.0"),
        Decimal("87465.0"),
        Decimal("87474.0"),
        Decimal("0.95978896"),
    ]


def test_docs_chart_data_wrapped_in_a_notification_decodes_exactly() -> None:
    data = json.loads(_text("chart_trades_docs_data.json"))[0]["data"]
    raw_data = _text("chart_trades_docs_data.json")
    # keep the recorded number tokens: splice the raw "data" object text into a notification
    start = raw_data.index('"data": ') + len('"data": ')
    obj = raw_data[start : raw_data.index("}", start) + 1]
    frame = (
        '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"chart.trades.BTC_USDC-PERPETUAL.1",'
        f'"data":{obj}}}}}'
    )
    msg = sd.decode_frame(frame, SYMBOLS)
    assert isinstance(msg, sd.ChartUpdate)
    c = msg.candle
    assert c.open_time_ms == data["tick"] == 1573645080000
    assert c.symbol == "BTC/USDC:USDC"
    assert to_decimal(c.open) == Decimal("8869.79")
    assert to_decimal(c.high) == Decimal("8870.31")
    assert to_decimal(c.low) == Decimal("8788.25")
    assert to_decimal(c.close) == Decimal("8791.25")
    assert to_decimal(c.volume) == Decimal("0.05219351")


def test_heartbeat_and_rpc_responses() -> None:
    assert sd.decode_frame(_text("heartbeat_test_request.json"), SYMBOLS) == sd.Heartbeat(kind="test_request")
    assert sd.decode_frame(_text("set_heartbeat_response.json"), SYMBOLS) == sd.RpcResponse(
        request_id=9098, result="ok"
    )
    assert sd.decode_frame(_text("subscribe_response.json"), SYMBOLS) == sd.RpcResponse(
        request_id=3600, result=["deribit_price_index.btc_usd"]
    )
    assert sd.decode_frame(_text("error_too_many_requests.json"), SYMBOLS) == sd.RpcResponse(
        request_id=1, error_code=10028, error_message="too_many_requests"
    )


def _mutated(key: str, value: object) -> str:
    msg = json.loads(_text("chart_trades_notification.json"))
    if key == "channel":
        msg["params"]["channel"] = value
    elif value is None:
        del msg["params"]["data"][key]
    else:
        msg["params"]["data"][key] = value
    return json.dumps(msg)


MALFORMED = [
    ("bad_json", '{"jsonrpc":"2.0","method":"subscription","params":', "not valid JSON"),
    ("missing_close", _mutated("close", None), r"data\.close is missing"),
    ("missing_tick", _mutated("tick", None), r"data\.tick is missing"),
    ("negative_price", _mutated("low", -87465.0), "prices must be > 0"),
    ("zero_price", _mutated("open", 0), "prices must be > 0"),
    ("high_below_low", _mutated("high", 87000.0), "is below low"),
    ("price_string", _mutated("close", "87474.0"), r"data\.close is not exactly|decimal string"),
    ("unaligned_tick", _mutated("tick", 1767200040001), "minute-aligned"),
    ("wrong_resolution", _mutated("channel", "chart.trades.BTC-PERPETUAL.60"), "resolution must be '1'"),
    ("unknown_instrument", _mutated("channel", "chart.trades.ETH-PERPETUAL.1"), "unsubscribed instrument"),
    ("other_channel", _mutated("channel", "ticker.BTC-PERPETUAL.raw"), "chart.trades channel"),
    ("unknown_method", '{"jsonrpc":"2.0","method":"nope","params":{}}', "unexpected frame method"),
]


@pytest.mark.parametrize(("case", "raw", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_frames_are_rejected_and_logged(case: str, raw: str, reason: str) -> None:
    if case == "price_string":
        # a JSON string "87474.0" is a valid decimal token: accepted (Deribit sends numbers, but
        # a string carries the same exact value)
        msg = sd.decode_frame(raw, SYMBOLS)
        assert isinstance(msg, sd.ChartUpdate)
        assert to_decimal(msg.candle.close) == Decimal("87474.0")
        return
    with pytest.raises(DataError, match=reason):
        sd.decode_frame(raw, SYMBOLS)
    with capture_logs() as logs:
        assert decode_or_log(sd.decode_frame, raw, SYMBOLS, venue="deribit") is None
    assert [e["event"] for e in logs] == ["feed_frame_rejected"]
    assert logs[0]["venue"] == "deribit"
    assert re.search(reason, logs[0]["reason"])
    assert logs[0]["raw"] == raw[:300] + ("…" if len(raw) > 300 else "")


def test_instrument_symbols() -> None:
    assert sd.unified_symbol("BTC_USDC-PERPETUAL") == "BTC/USDC:USDC"
    assert sd.unified_symbol("SOL_USDC-PERPETUAL") == "SOL/USDC:USDC"
    assert sd.unified_symbol("ETH-PERPETUAL") == "ETH/USD:ETH"
    assert sd.chart_channel("ETH_USDC-PERPETUAL") == "chart.trades.ETH_USDC-PERPETUAL.1"
    with pytest.raises(ValueError, match="was 'BTC-29SEP23'"):
        sd.unified_symbol("BTC-29SEP23")
