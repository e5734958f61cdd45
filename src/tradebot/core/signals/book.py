"""SignalBook: every symbol's aggregator and every (symbol, timeframe) trend stream, behind one hot path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast

from tradebot.core.domain import Candle, StreamSignal, StreamState, Timeframe, stream_id
from tradebot.core.indicators import WilderAtr, atr_fraction
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


class _Tracker:
    """ATR and last candle of an extra (stream-less) timeframe, e.g. the rebalance clock's 1h."""

    __slots__ = ("_atr", "last_candle")

    def __init__(self, atr_period: int) -> None:
        self._atr = WilderAtr(atr_period)
        self.last_candle: Candle | None = None

    @property
    def atr(self) -> float | None:
        return self._atr.value

    def update(self, candle: Candle) -> None:
        last = self.last_candle
        if last is not None and candle.open_time_ms <= last.open_time_ms:
            raise ValueError(
                f"{candle.symbol} {candle.timeframe}: candle open_time_ms={candle.open_time_ms} is not after "
                f"the previous open_time_ms={last.open_time_ms}"
            )
        self._atr.update(candle.high, candle.low, candle.close)
        self.last_candle = candle


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
    extra_timeframes
        Timeframes to aggregate without a stream (e.g. the rebalance clock): the book keeps their
        last closed candle and a Wilder ATR (``extra_atr_period``) for :meth:`last_closed`,
        :meth:`atr` and :meth:`volatility`. Timeframes that already have a stream are ignored here.
    extra_atr_period
        ATR period of the extra timeframes, int >= 1 (default 14).

    Raises
    ------
    ValueError
        If ``symbols`` or ``configs`` is empty, two configs share a timeframe, two symbols share an
        asset, or ``base`` does not divide a stream timeframe (see :class:`CandleAggregator`).
    """

    __slots__ = (
        "_aggregators",
        "_by_symbol",
        "_streams",
        "_trackers",
        "_views",
        "base",
        "configs",
        "extra_timeframes",
    )

    def __init__(
        self,
        symbols: Mapping[str, str],
        base: Timeframe,
        configs: Sequence[StreamConfig],
        *,
        extra_timeframes: Sequence[Timeframe] = (),
        extra_atr_period: int = 14,
    ) -> None:
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
        extra = {Timeframe.parse(str(tf)) for tf in extra_timeframes} - set(timeframes)
        self.extra_timeframes: tuple[Timeframe, ...] = tuple(sorted(extra, key=lambda t: t.ms))
        self._aggregators: dict[str, CandleAggregator] = {}
        self._streams: dict[tuple[str, Timeframe], TrendStream] = {}
        self._views: dict[str, StreamView] = {}  # last view per stream id, reused while it still holds
        self._trackers: dict[tuple[str, Timeframe], TrendStream | _Tracker] = {}
        self._by_symbol: dict[str, dict[Timeframe, TrendStream | _Tracker]] = {}
        for symbol, asset in symbols.items():
            self._aggregators[symbol] = CandleAggregator(
                symbol, self.base, (*timeframes, *self.extra_timeframes)
            )
            per_tf: dict[Timeframe, TrendStream | _Tracker] = {}
            for config in self.configs:
                stream = TrendStream(stream_id(asset, config.timeframe), symbol, asset, config)
                per_tf[config.timeframe] = stream
                self._streams[(symbol, config.timeframe)] = stream
            for tf in self.extra_timeframes:
                per_tf[tf] = _Tracker(extra_atr_period)
            self._by_symbol[symbol] = per_tf
            self._trackers.update({(symbol, tf): t for tf, t in per_tf.items()})

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
        return self.on_closed(candle.symbol, closed)

    def aggregator(self, symbol: str) -> CandleAggregator:
        """Return the aggregator of ``symbol`` (the engine drives it directly on its hot path and hands
        what it closes to :meth:`on_closed`).

        Raises
        ------
        KeyError
            If the symbol is unknown.
        """
        return self._aggregators[symbol]

    def on_closed(
        self, symbol: str, closed: Sequence[Candle], *, flips_only: bool = False
    ) -> Sequence[StreamSignal]:
        """Route aggregated candles of ``symbol`` (from its aggregator) to their streams; see :meth:`on_candle`.

        With ``flips_only`` only the signals of streams whose state flipped are returned (and only
        those are built: the engine's hot path); the others stay available as ``stream.last_signal``.
        """
        targets = self._by_symbol[symbol]
        signals: list[StreamSignal] = []
        for c in closed:
            target = targets[c.timeframe]
            if c.symbol != symbol:
                raise ValueError(
                    f"on_closed({symbol!r}) got a {c.symbol} {c.timeframe} candle "
                    f"(open_time_ms={c.open_time_ms})"
                )
            last = target.last_candle
            if last is not None and c.open_time_ms <= last.open_time_ms:
                continue
            if type(target) is TrendStream:
                if not flips_only:
                    signals.append(target.update(c))
                elif target._advance(c):  # checked here: its symbol and timeframe, and later than the last
                    # last_signal is built from the candle just advanced, never None here.
                    signals.append(cast(StreamSignal, target.last_signal))
            else:
                target.update(c)
        return signals or NO_SIGNALS

    def warm_up(self, candles: Iterable[Candle] | Mapping[object, Iterable[Candle]]) -> list[StreamSignal]:
        """Feed history to the streams, routed by each candle's (symbol, timeframe).

        Parameters
        ----------
        candles
            Native candles of the streams' timeframes, ascending per stream: either one iterable, or
            a mapping (e.g. by stream id) whose values are iterables (keys are not used for routing).

        Candles of an extra timeframe warm its ATR and produce no signal.

        Returns
        -------
        list[StreamSignal]
            The last signal of every stream that received at least one candle, in stream order.

        Raises
        ------
        ValueError
            If a candle's (symbol, timeframe) has no stream or extra timeframe, or its order is wrong.
        """
        groups = candles.values() if isinstance(candles, Mapping) else (candles,)
        touched: dict[tuple[str, Timeframe], StreamSignal] = {}
        for group in groups:
            for candle in group:
                key = (candle.symbol, candle.timeframe)
                target = self._trackers.get(key)
                if target is None:
                    raise ValueError(
                        f"no stream for symbol {candle.symbol!r} timeframe {candle.timeframe!r} "
                        f"(open_time_ms={candle.open_time_ms})"
                    )
                if type(target) is TrendStream:
                    touched[key] = target.update(candle)
                else:
                    target.update(candle)
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
        """Snapshot of every stream's state and confidence (same order as :attr:`streams`).

        A stream's view is rebuilt only when its state or confidence changed since the last call
        (views are immutable, so unchanged ones are shared between snapshots).
        """
        views = self._views
        out = []
        for s in self._streams.values():
            state, confidence = s.state, s.confidence
            view = views.get(s.stream_id)
            if view is None or view.state is not state or view.confidence != confidence:
                view = views[s.stream_id] = StreamView(
                    stream_id=s.stream_id,
                    symbol=s.symbol,
                    asset=s.asset,
                    timeframe=s.timeframe,
                    state=state,
                    confidence=confidence,
                )
            out.append(view)
        return out

    def _tracker(self, symbol: str, timeframe: Timeframe | str) -> TrendStream | _Tracker:
        key = (symbol, Timeframe.parse(str(timeframe)))
        try:
            return self._trackers[key]
        except KeyError:
            raise KeyError(
                f"no stream or extra timeframe for symbol {symbol!r} timeframe {timeframe!r}"
            ) from None

    def atr(self, symbol: str, timeframe: Timeframe | str) -> float | None:
        """Wilder ATR (quote currency) of ``symbol`` on a stream or extra ``timeframe``; ``None`` while warming up.

        Raises
        ------
        KeyError
            If ``timeframe`` is neither a stream nor an extra timeframe of ``symbol``.
        """
        return self._tracker(symbol, timeframe).atr

    def last_closed(self, symbol: str, timeframe: Timeframe | str) -> Candle | None:
        """The last closed candle of ``symbol`` on a stream or extra ``timeframe`` (warm-up or live), or ``None``.

        Raises
        ------
        KeyError
            If ``timeframe`` is neither a stream nor an extra timeframe of ``symbol``.
        """
        return self._tracker(symbol, timeframe).last_candle

    def volatility(self, timeframe: Timeframe | str) -> dict[str, float]:
        """Per symbol, ATR / last close on ``timeframe`` (a fraction, e.g. 0.02), for the ``inverse_vol`` policy.

        Symbols whose ATR is not ready yet are absent from the result.

        Raises
        ------
        KeyError
            If ``timeframe`` is neither a stream nor an extra timeframe.
        """
        out: dict[str, float] = {}
        for symbol in self._aggregators:
            tracker = self._tracker(symbol, timeframe)
            atr, last = tracker.atr, tracker.last_candle
            if atr is not None and last is not None:
                out[symbol] = atr_fraction(atr, last.close)
        return out
