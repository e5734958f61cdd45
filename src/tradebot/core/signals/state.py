"""Persistence of a :class:`~tradebot.core.signals.book.SignalBook`: its whole indicator state as JSON.

A daemon restart used to rebuild the book by warming it up at the run's start and replaying every
base candle since (what :meth:`Engine.prime` does): exact, but the fetch grows with the run's age.
With :func:`book_state` in the checkpoint, a restart restores the book as it was at the checkpoint
(:func:`restore_book`) and fetches nothing but the candles after it.

The state is exact: floats are written with ``repr`` (JSON numbers round-trip to the same double),
the period being aggregated and every indicator's seed sums and counts included. It covers the
aggregators (level 0 flattened and the higher levels), every stream (its rule's EMAs, its ATR,
seen count, state, confidence, last candle and last signal) and the trackers of the extra
timeframes. A book whose rule has no ``state`` / ``restore`` (a custom ``rule_factory``) has no
state: :func:`book_state` returns ``None`` and the caller falls back to the replay.

This module belongs to the signals package and reads its classes' private attributes on purpose:
the classes keep their hot paths free of persistence code.
"""

from __future__ import annotations

from typing import Any

from tradebot.core.domain import Candle, StreamSignal, StreamState, Timeframe
from tradebot.core.indicators.atr import WilderAtr
from tradebot.core.indicators.ema import Ema
from tradebot.core.signals.aggregator import CandleAggregator, _Level
from tradebot.core.signals.book import SignalBook, _Tracker
from tradebot.core.signals.rules import EmaCrossRule
from tradebot.core.signals.stream import TrendStream

#: Version of the book state; :func:`restore_book` refuses another.
BOOK_STATE_VERSION = 1

_ATR = ("_prev_close", "_seed_sum", "count", "value")
_EMA = ("_seed_sum", "count", "value")
_LEVEL = ("active", "start", "end", "present", "o", "h", "l", "c", "v")
_AGG = (
    "_active", "_start", "_end", "_n", "_last_open", "_fast_limit", "_next_t",
    "_o", "_h", "_l", "_c", "_v", "quiet_before_ms",
)  # fmt: skip


def _attrs(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names}


def _set(obj: object, names: tuple[str, ...], data: dict[str, Any]) -> None:
    for n in names:
        setattr(obj, n, data[n])


def _candle(c: Candle | None) -> list[Any] | None:
    return None if c is None else [c.symbol, str(c.timeframe), *c[2:]]


def _uncandle(d: list[Any] | None) -> Candle | None:
    if d is None:
        return None
    symbol, tf, open_ms, o, h, l, c, v, missing = d  # noqa: E741 - the candle's own field names
    return Candle(symbol, Timeframe.parse(tf), open_ms, o, h, l, c, v, missing)


def _signal(s: StreamSignal | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "stream": s.stream, "symbol": s.symbol, "time_ms": s.time_ms, "state": s.state.value,
        "confidence": s.confidence, "flipped": s.flipped, "reason": s.reason,
        "indicators": dict(s.indicators),
    }  # fmt: skip


def _unsignal(d: dict[str, Any] | None) -> StreamSignal | None:
    if d is None:
        return None
    return StreamSignal(**{**d, "state": StreamState(d["state"])})


def _rule_state(rule: object) -> dict[str, Any] | None:
    if type(rule) is EmaCrossRule:
        return {"fast": _attrs(rule._fast, _EMA), "slow": _attrs(rule._slow, _EMA)}
    return None


def _stream_state(s: TrendStream) -> dict[str, Any] | None:
    rule = _rule_state(s._rule)
    if rule is None:
        return None
    return {
        "rule": rule,
        "atr": _attrs(s._atr, _ATR),
        "seen": s._seen,
        "state": s._state.value,
        "confidence": s._confidence,
        "last_candle": _candle(s._last_candle),
        "last_signal": _signal(s.last_signal),  # builds a pending signal first
    }


def _restore_stream(s: TrendStream, d: dict[str, Any]) -> None:
    rule = s._rule
    if type(rule) is not EmaCrossRule:
        raise ValueError(f"stream {s.stream_id}: its rule {type(rule).__name__} has no restorable state")
    fast: Ema = rule._fast
    slow: Ema = rule._slow
    _set(fast, _EMA, d["rule"]["fast"])
    _set(slow, _EMA, d["rule"]["slow"])
    atr: WilderAtr = s._atr
    _set(atr, _ATR, d["atr"])
    s._seen = int(d["seen"])
    s._state = StreamState(d["state"])
    s._confidence = float(d["confidence"])
    s._last_candle = _uncandle(d["last_candle"])
    s._last_signal = _unsignal(d["last_signal"])
    s._pending = None


def _tracker_key(symbol: str, tf: Timeframe) -> str:
    return f"{symbol}|{tf}"


def book_state(book: SignalBook) -> dict[str, Any] | None:
    """Return the JSON-able state of ``book``, or ``None`` when a stream's rule cannot be saved.

    Returns
    -------
    dict or None
        ``{"version", "base", "aggregators": {symbol: {...}}, "trackers": {"<symbol>|<tf>": {...}}}``.
    """
    aggregators: dict[str, Any] = {}
    for symbol, agg in book._aggregators.items():
        aggregators[symbol] = {
            **_attrs(agg, _AGG),
            "levels": [_attrs(level, _LEVEL) for level in agg._levels],
        }
    trackers: dict[str, Any] = {}
    for (symbol, tf), target in book._trackers.items():
        if type(target) is TrendStream:
            state = _stream_state(target)
            if state is None:
                return None
            trackers[_tracker_key(symbol, tf)] = {"stream": state}
        else:
            assert isinstance(target, _Tracker)
            trackers[_tracker_key(symbol, tf)] = {
                "tracker": {"atr": _attrs(target._atr, _ATR), "last_candle": _candle(target.last_candle)}
            }
    return {
        "version": BOOK_STATE_VERSION,
        "base": str(book.base),
        "aggregators": aggregators,
        "trackers": trackers,
    }


def restore_book(book: SignalBook, data: dict[str, Any]) -> None:
    """Load :func:`book_state` ``data`` into ``book``, freshly built from the same configuration.

    Raises
    ------
    ValueError
        If the version, base timeframe, symbols, timeframes or number of aggregation levels differ
        (the message names the first difference), or a stream's rule cannot be restored.
    """
    if data.get("version") != BOOK_STATE_VERSION:
        raise ValueError(f"book state version must be {BOOK_STATE_VERSION}, was {data.get('version')!r}")
    if data.get("base") != str(book.base):
        raise ValueError(f"book state is for base timeframe {data.get('base')!r}, not {str(book.base)!r}")
    expected = {_tracker_key(s, tf) for s, tf in book._trackers}
    if set(data["aggregators"]) != set(book._aggregators) or set(data["trackers"]) != expected:
        raise ValueError(f"book state covers {sorted(data['trackers'])}, the book has {sorted(expected)}")
    for symbol, d in data["aggregators"].items():
        agg: CandleAggregator = book._aggregators[symbol]
        levels: tuple[_Level, ...] = agg._levels
        if len(d["levels"]) != len(levels):
            raise ValueError(
                f"{symbol}: book state has {len(d['levels'])} aggregation levels, not {len(levels)}"
            )
        _set(agg, _AGG, d)
        for level, ld in zip(levels, d["levels"], strict=True):
            _set(level, _LEVEL, ld)
    for (symbol, tf), target in book._trackers.items():
        d = data["trackers"][_tracker_key(symbol, tf)]
        if type(target) is TrendStream:
            _restore_stream(target, d["stream"])
        else:
            assert isinstance(target, _Tracker)
            _set(target._atr, _ATR, d["tracker"]["atr"])
            target.last_candle = _uncandle(d["tracker"]["last_candle"])
    book._views.clear()
