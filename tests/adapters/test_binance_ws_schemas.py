"""Recorded Binance websocket frames decode to exact candle values; malformed frames are rejected."""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tradebot.adapters.feeds import schemas_binance as sb
from tradebot.adapters.feeds.schemas_common import exact_float
from tradebot.adapters.feeds.ws_base import decode_or_log
from tradebot.core.domain import Timeframe, to_decimal
from tradebot.errors import DataError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
SYMBOLS = {
    "NKNUSDT": "NKN/USDT",
    "SUSHIUSDT": "SUSHI/USDT",
    "CTKUSDT": "CTK/USDT",
    "AKROUSDT": "AKRO/USDT",
    "KEEPUSDT": "KEEP/USDT",
    "BNBBTC": "BNB/BTC",
}


def _text(name: str) -> str:
    return (FIX / name).read_text()


def test_open_kline_combined_frame_decodes_exactly() -> None:
    msg = sb.decode_frame(_text("kline_combined_open.json"), SYMBOLS)
    assert isinstance(msg, sb.KlineUpdate)
    assert msg.closed is False
    assert msg.event_time_ms == 1633998523963
    c = msg.candle
    assert (c.symbol, c.timeframe, c.open_time_ms) == ("NKN/USDT", Timeframe.M1, 1633998480000)
    assert to_decimal(c.open) == Decimal("0.35270000")
    assert to_decimal(c.high) == Decimal("0.35280000")
    assert to_decimal(c.low) == Decimal("0.35220000")
    assert to_decimal(c.close) == Decimal("0.35280000")
    assert to_decimal(c.volume) == Decimal("25877.00000000")


def test_closed_klines_decode_exactly() -> None:
    lines = _text("kline_combined_closed_futures.jsonl").splitlines()
    decoded = [sb.decode_frame(line, SYMBOLS) for line in lines]
    assert all(isinstance(m, sb.KlineUpdate) and m.closed for m in decoded)
    sushi = decoded[0]
    assert isinstance(sushi, sb.KlineUpdate)
    c = sushi.candle
    assert (c.symbol, c.open_time_ms) == ("SUSHI/USDT", 1626992700000)
    values = [to_decimal(v) for v in (c.open, c.high, c.low, c.close, c.volume)]
    assert values == [
        Decimal("7.6080"),
        Decimal("7.6180"),
        Decimal("7.6070"),
        Decimal("7.6170"),
        Decimal("3005"),
    ]
    # every recorded number round-trips exactly through the float candle
    for line, msg in zip(lines, decoded, strict=True):
        k = json.loads(line)["data"]["k"]
        assert isinstance(msg, sb.KlineUpdate)
        got = msg.candle
        for key, value in zip("ohlcv", (got.open, got.high, got.low, got.close, got.volume), strict=True):
            assert to_decimal(value) == Decimal(k[key])


def test_server_shutdown_and_control_frames() -> None:
    for name in ("server_shutdown_combined.json", "server_shutdown_raw.json"):
        assert sb.decode_frame(_text(name), SYMBOLS) == sb.ServerShutdown(event_time_ms=1770123456789)
    assert sb.decode_frame(_text("control_subscribe_response.json"), SYMBOLS) == sb.ControlResponse(
        request_id=1, result=None
    )
    err = sb.decode_frame('{"code": 2, "msg": "Invalid request: too many parameters"}', SYMBOLS)
    assert err == sb.ControlResponse(
        request_id=None, error_code=2, error_msg="Invalid request: too many parameters"
    )


def test_docs_example_kline_is_rejected_because_open_is_below_low() -> None:
    # The official docs example has o=0.0010 < l=0.0015: a real-world inconsistent payload.
    raw = _text("kline_raw_docs.json")
    with pytest.raises(DataError, match=r"open 0\.001 / close 0\.002 outside \[low 0\.0015, high 0\.0025\]"):
        sb.decode_frame(raw, SYMBOLS)


def _mutated(path: tuple[str, ...], value: object) -> str:
    msg = json.loads(_text("kline_combined_open.json"))
    target = msg
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(msg)


_DELETE = object()

MALFORMED = [
    ("bad_json", '{"stream":"nknusdt@kline_1m","data":{', "not valid JSON"),
    ("not_object", "[1, 2]", "must be a JSON object"),
    ("missing_close", _mutated(("data", "k", "c"), _DELETE), r"k\.c is missing"),
    ("missing_k", _mutated(("data", "k"), _DELETE), r"data\.k is missing"),
    ("negative_price", _mutated(("data", "k", "l"), "-0.35220000"), "prices must be > 0"),
    ("zero_price", _mutated(("data", "k", "o"), "0.00000000"), "prices must be > 0"),
    ("high_below_low", _mutated(("data", "k", "h"), "0.35000000"), "is below low"),
    ("absurd_high", _mutated(("data", "k", "h"), "1e300"), r"prices must be within \[1e-10, 1e\+12\]"),
    ("absurd_low", _mutated(("data", "k", "l"), "1E-300"), r"prices must be within \[1e-10, 1e\+12\]"),
    ("absurd_volume", _mutated(("data", "k", "v"), "1e300"), r"volume must be <= 1e\+18"),
    ("nan_close", _mutated(("data", "k", "c"), "NaN"), r"k\.c must be finite"),
    ("infinite_high", _mutated(("data", "k", "h"), "Infinity"), r"k\.h must be finite"),
    ("price_not_number", _mutated(("data", "k", "c"), "abc"), r"k\.c must be a decimal number"),
    ("price_as_float", _mutated(("data", "k", "c"), 0.3528), r"k\.c must be a decimal string"),
    ("too_precise", _mutated(("data", "k", "c"), "0.352800000000000000001"), "not exactly representable"),
    ("unknown_symbol", _mutated(("data", "k", "s"), "XYZUSDT"), "unsubscribed symbol"),
    ("wrong_interval", _mutated(("data", "k", "i"), "5m"), r"k\.i must be '1m'"),
    ("misaligned_close", _mutated(("data", "k", "T"), 1633998540000), "one aligned minute"),
    ("x_not_bool", _mutated(("data", "k", "x"), "true"), r"k\.x must be a boolean"),
    ("unknown_event", _mutated(("data", "e"), "trade"), "unexpected event type"),
]


@pytest.mark.parametrize(("case", "raw", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_frames_are_rejected_and_logged(case: str, raw: str, reason: str) -> None:
    with pytest.raises(DataError, match=reason):
        sb.decode_frame(raw, SYMBOLS)
    with capture_logs() as logs:
        result = decode_or_log(sb.decode_frame, raw, SYMBOLS, venue="binance")
    assert result is None
    assert len(logs) == 1
    entry = logs[0]
    assert entry["event"] == "feed_frame_rejected"
    assert entry["venue"] == "binance"
    assert entry["log_level"] == "warning"

    assert re.search(reason, entry["reason"])
    assert entry["raw"] == raw[:300] + ("…" if len(raw) > 300 else "")


def test_logged_raw_payload_is_truncated() -> None:
    raw = '{"x": "' + "a" * 1000
    with capture_logs() as logs:
        decode_or_log(sb.decode_frame, raw, SYMBOLS, venue="binance")
    assert logs[0]["raw"] == raw[:300] + "…"


def test_exact_float_round_trips_binance_strings() -> None:
    assert exact_float("24899.18000000", field="c") == 24899.18
    assert repr(exact_float("24899.18000000", field="c")) == "24899.18"
    assert to_decimal(exact_float("0.00000638", field="c")) == Decimal("0.00000638")
    assert to_decimal(exact_float(Decimal("87474.0"), field="c")) == Decimal("87474")
    with pytest.raises(DataError, match=r"c must be finite, was 'NaN'"):
        exact_float("NaN", field="c")
    with pytest.raises(DataError, match="c must be a decimal string or number, was True"):
        exact_float(True, field="c")


def test_symbol_helpers() -> None:
    assert sb.unified_symbol("BTCUSDT") == "BTC/USDT"
    assert sb.wire_symbol("SOL/USDT") == "SOLUSDT"
    assert (
        sb.combined_stream_path(["BTCUSDT", "ETHUSDT"]) == "/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m"
    )
    with pytest.raises(ValueError, match="was 'BTC/USDT:USDT'"):
        sb.wire_symbol("BTC/USDT:USDT")
    with pytest.raises(ValueError, match="was 'XYZ'"):
        sb.unified_symbol("XYZ")


def test_decoding_does_not_mutate_input() -> None:
    msg = json.loads(_text("kline_combined_open.json"))
    before = copy.deepcopy(msg)
    sb.decode_kline_event(msg["data"], SYMBOLS)
    assert msg == before
