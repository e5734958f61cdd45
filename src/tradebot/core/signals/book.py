"""SignalBook: every symbol's aggregator and every (symbol, timeframe) trend stream, behind one hot path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from tradebot.core.domain import Candle, StreamSignal, StreamState, Timeframe, stream_id
from tradebot.core.signals.aggregator import CandleAggregator
from tradebot.core.signals.stream import StreamConfig, TrendStream

__all__ = ["NO_SIGNALS", "SignalBook", "StreamView"]

#: Returned by :meth:`SignalBook.on_candle` when no stream candle closed. Shared: never mutate.
NO_SIGNALS: Final[tuple[StreamSignal, ...]] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamView:
    """A read-only snapshot of one stream (for the rebalancer and reports).

    Attributes
    ----------
    stream_id
        ``"<asset>:<timeframe>"``.
    symbol, asset, timeframe
        What the stream trades and on which candles.
    state
        ``in`` or ``out``.
    confidence
        In [0, 1], 0 while warming up.
    """

    stream_id: str
    symbol: str
    asset: str
    timeframe: Timeframe
    state: StreamState
    confidence: float


class SignalBook:
    """One :class:`CandleAggregator` per symbol and one :class:`TrendStream` per (symbol, timeframe).

    Parameters
    ----------
    symbols
        Symbol → base asset, e.g. ``{"BTC/USDT": "BTC"}``. Stream ids are ``stream_id(asset, timeframe)``.
    base
        Timeframe of the candles given to :meth:`on_candle` (e.g. 1m live, 5m for long backtests).
    configs
        One :class:`StreamConfig` per stream timeframe (applied to every symbol).

    Raises
    ------
    ValueError
        If ``symbols`` or ``configs`` is empty, two configs share a timeframe, two symbols share an
        asset, or ``base`` does not divide a stream timeframe (see :class:`CandleAggregator`).
    """

    __slots__ = ("_aggregators", "_by_symbol", "_streams", "base", "configs")

    def __init__(self, symbols: Mapping[str, str], base: Timeframe, configs: Sequence[StreamConfig]) -> None:
        if not symbols:
            raise ValueError(f"symbols must map at least one symbol to its asset, was {symbols!r}")
        if not configs:
            raise ValueError(f"configs must hold at least one StreamConfig, was {configs!r}")
        timeframes = [c.timeframe for c in configs]
        if len(set(timeframes)) != len(timeframes):
            raise ValueError(f"configs must have distinct timeframes, were {[str(t) for t in timeframes]}")
        assets = list(symbols.values())
        if len(set(assets)) != len(assets):
            raise ValueError(f"symbols must map to distinct assets, were {dict(symbols)!r}")
        self.base = Timeframe.parse(str(base))
        self.configs = tuple(sorted(configs, key=lambda c: c.timeframe.ms))
        self._aggregators: dict[str, CandleAggregator] = {}
        self._streams: dict[tuple[str, Timeframe], TrendStream] = {}
        self._by_symbol: dict[str, dict[Timeframe, TrendStream]] = {}
        for symbol, asset in symbols.items():
            self._aggregators[symbol] = CandleAggregator(symbol, self.base, tuple(timeframes))
            per_tf: dict[Timeframe, TrendStream] = {}
            for config in self.configs:
                stream = TrendStream(stream_id(asset, config.timeframe), symbol, asset, config)
                per_tf[config.timeframe] = stream
                self._streams[(symbol, config.timeframe)] = stream
            self._by_symbol[symbol] = per_tf

    def on_candle(self, candle: Candle) -> Sequence[StreamSignal]:
        """Process one closed base candle; return the signals of the streams whose candle it closed.

        Returns
        -------
        Sequence[StreamSignal]
            In ascending timeframe order, or the shared empty tuple :data:`NO_SIGNALS` (the common
            case). An aggregated candle that is not after its stream's last candle (the period was
            already covered by warm-up history) is skipped.

        Raises
        ------
        ValueError
            If the symbol is unknown, or the candle is not a valid next base candle (see
            :meth:`CandleAggregator.update`).
        """
        aggregator = self._aggregators.get(candle[0])
        if aggregator is None:
            raise ValueError(f"unknown symbol {candle.symbol!r}; the book has {sorted(self._aggregators)}")
        closed = aggregator.update(candle)
        if not closed:
            return NO_SIGNALS
        streams = self._by_symbol[candle.symbol]
        signals = []
        for c in closed:
            stream = streams[c.timeframe]
            last = stream.last_candle
            if last is not None and c.open_time_ms <= last.open_time_ms:
                continue
            signals.append(stream.update(c))
        return signals or NO_SIGNALS

    def warm_up(self, candles: Iterable[Candle] | Mapping[object, Iterable[Candle]]) -> list[StreamSignal]:
        """Feed history to the streams, routed by each candle's (symbol, timeframe).

        Parameters
        ----------
        candles
            Native candles of the streams' timeframes, ascending per stream: either one iterable, or
            a mapping (e.g. by stream id) whose values are iterables (keys are not used for routing).

        Returns
        -------
        list[StreamSignal]
            The last signal of every stream that received at least one candle, in stream order.

        Raises
        ------
        ValueError
            If a candle's (symbol, timeframe) has no stream, or its order is wrong for its stream.
        """
        groups = candles.values() if isinstance(candles, Mapping) else (candles,)
        touched: dict[tuple[str, Timeframe], StreamSignal] = {}
        for group in groups:
            for candle in group:
                key = (candle.symbol, candle.timeframe)
                stream = self._streams.get(key)
                if stream is None:
                    raise ValueError(
                        f"no stream for symbol {candle.symbol!r} timeframe {candle.timeframe!r} "
                        f"(open_time_ms={candle.open_time_ms})"
                    )
                touched[key] = stream.update(candle)
        return [touched[key] for key in self._streams if key in touched]

    def stream(self, symbol: str, timeframe: Timeframe | str) -> TrendStream:
        """Return the stream of ``symbol`` on ``timeframe``.

        Raises
        ------
        KeyError
            If there is no such stream.
        """
        key = (symbol, Timeframe.parse(str(timeframe)))
        try:
            return self._streams[key]
        except KeyError:
            raise KeyError(f"no stream for symbol {symbol!r} timeframe {timeframe!r}") from None

    @property
    def streams(self) -> tuple[TrendStream, ...]:
        """All streams, by symbol (insertion order) then ascending timeframe."""
        return tuple(self._streams.values())

    def states(self) -> list[StreamView]:
        """Snapshot of every stream's state and confidence (same order as :attr:`streams`)."""
        return [
            StreamView(
                stream_id=s.stream_id,
                symbol=s.symbol,
                asset=s.asset,
                timeframe=s.timeframe,
                state=s.state,
                confidence=s.confidence,
            )
            for s in self._streams.values()
        ]

    def atr(self, symbol: str, timeframe: Timeframe | str) -> float | None:
        """Wilder ATR (quote currency) of the stream of ``symbol`` on ``timeframe``; ``None`` while warming up.

        Raises
        ------
        KeyError
            If there is no such stream.
        """
        return self.stream(symbol, timeframe).atr

    def last_closed(self, symbol: str, timeframe: Timeframe | str) -> Candle | None:
        """The last candle the stream of ``symbol`` on ``timeframe`` processed (warm-up or live), or ``None``.

        Raises
        ------
        KeyError
            If there is no such stream.
        """
        return self.stream(symbol, timeframe).last_candle
