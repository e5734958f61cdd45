"""Trend streams: one (asset, timeframe) pair holding an ``in`` / ``out`` state (STRATEGY.md §1)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, cast

from tradebot.core.domain import Candle, StreamSignal, StreamState, Symbol, Timeframe, stream_id
from tradebot.core.indicators import WilderAtr, check_period
from tradebot.core.signals.rules import EmaCrossRule, RuleDecision, TrendRule

__all__ = ["StreamConfig", "TrendStream", "confidence_from_strength"]

#: (state, strength) of a rule's allocation-free ``decide``.
_Decided = tuple[StreamState, float]
#: (fast, slow) EMA values of a split rule, ``None`` while seeding.
_Emas = tuple[float | None, float | None]
#: What ``_advance`` keeps for the lazy ``_build``: candle, ATR, previous state, the rule's result
#: (a ``RuleDecision`` from ``update``, or ``decide``'s pair with the EMAs it was decided at).
_Pending = tuple[Candle, float | None, StreamState, RuleDecision | _Decided | None, _Emas | None]


class _SplitRule(TrendRule, Protocol):
    # A rule with the split hot path (EmaCrossRule): decide() now, describe() the same decision later.
    @property
    def emas(self) -> _Emas: ...

    def decide(self, candle: Candle, current: StreamState) -> _Decided | None: ...

    def describe(self, state: StreamState, fast: float, slow: float) -> RuleDecision: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamConfig:
    """Parameters of one trend stream (per timeframe; shared by every asset on it).

    Attributes
    ----------
    timeframe
        Candle timeframe of the stream (a ``Timeframe`` or its value, e.g. ``"4h"``).
    fast, slow
        EMA periods in candles, ``1 <= fast < slow`` (defaults 20 / 50).
    band
        Hysteresis band, fraction in ``[0, 0.5)``: enter when ``ema_fast > ema_slow * (1 + band)``,
        leave when ``ema_fast < ema_slow * (1 - band)``.
    atr_period
        Wilder ATR period in candles (>= 1), used for the confidence and exposed to sizing.
    confidence_atr_mult
        Confidence = ``clamp(spread / (confidence_atr_mult * atr / close), 0, 1)``; > 0. With 1.0, an
        EMA spread of one ATR (relative to price) or more is full confidence.

    Raises
    ------
    ValueError
        On any invalid field, naming it and its value.
    """

    timeframe: Timeframe
    fast: int = 20
    slow: int = 50
    band: float = 0.0
    atr_period: int = 14
    confidence_atr_mult: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeframe", Timeframe.parse(str(self.timeframe)))
        check_period("fast", self.fast)
        check_period("slow", self.slow)
        check_period("atr_period", self.atr_period)
        if self.fast >= self.slow:
            raise ValueError(f"fast must be < slow ({self.slow!r}), was {self.fast!r}")
        if (
            isinstance(self.band, bool)
            or not isinstance(self.band, int | float)
            or not 0.0 <= self.band < 0.5
        ):
            raise ValueError(f"band must be a fraction in [0, 0.5), was {self.band!r}")
        mult = self.confidence_atr_mult
        if (
            isinstance(mult, bool)
            or not isinstance(mult, int | float)
            or not (mult > 0 and math.isfinite(mult))
        ):
            raise ValueError(f"confidence_atr_mult must be a finite number > 0, was {mult!r}")

    @property
    def warmup_candles(self) -> int:
        """Candles of history a stream needs before it may be ``in``: ``max(slow, atr_period)``."""
        return max(self.slow, self.atr_period)


def confidence_from_strength(strength: float, atr: float | None, close: float, mult: float) -> float:
    """Return ``clamp(strength / (mult * atr / close), 0, 1)``; 0 without an ATR.

    ``strength`` is a fraction of price (e.g. ``|ema_fast - ema_slow| / ema_slow``); dividing by
    ``atr / close`` expresses it in ATRs. A zero ATR (flat market) gives 1 for a positive strength
    and 0 for zero strength.
    """
    if atr is None or not strength > 0:
        return 0.0
    scale = mult * atr / close
    if scale <= 0:
        return 1.0
    ratio = strength / scale
    return 1.0 if ratio >= 1.0 else ratio


class TrendStream:
    """One trend stream: ``in`` / ``out`` state of an asset on one timeframe, from its own closed candles.

    Feed it warm-up history with :meth:`warm_up`, then every closed candle of its timeframe with
    :meth:`update`. Until it has seen ``config.warmup_candles`` candles it stays ``out`` with reason
    ``"warming up: <seen>/<needed> candles"`` and confidence 0.

    Parameters
    ----------
    stream_id
        ``"<asset>:<timeframe>"`` (see :func:`tradebot.core.domain.stream_id`).
    symbol
        Symbol of the candles it accepts, e.g. ``"BTC/USDT"``.
    asset
        Base asset, e.g. ``"BTC"``.
    config
        Stream parameters.
    rule_factory
        Builds the trend rule from the config; default :class:`EmaCrossRule` (fast, slow, band).
    """

    __slots__ = (
        "_atr",
        "_confidence",
        "_decide",
        "_last_candle",
        "_last_signal",
        "_pending",
        "_rule",
        "_seen",
        "_state",
        "_tf_ms",
        "asset",
        "config",
        "required",
        "stream_id",
        "symbol",
        "timeframe",
    )

    def __init__(
        self,
        stream_id: str,
        symbol: str,
        asset: str,
        config: StreamConfig,
        rule_factory: Callable[[StreamConfig], TrendRule] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.symbol = Symbol(symbol)
        self.asset = asset
        self.config = config
        self.timeframe = config.timeframe
        self._tf_ms = config.timeframe.ms
        self._rule: TrendRule = (rule_factory or _ema_cross)(config)
        # The rule's allocation-free hot path, if it has one (EmaCrossRule.decide).
        self._decide: Callable[[Candle, StreamState], _Decided | None] | None = getattr(
            self._rule, "decide", None
        )
        self._atr = WilderAtr(config.atr_period)
        self.required = max(self._rule.required, config.atr_period)
        self._seen = 0
        self._state = StreamState.OUT
        self._last_candle: Candle | None = None
        self._last_signal: StreamSignal | None = None
        self._pending: _Pending | None = None
        self._confidence = 0.0

    @classmethod
    def for_asset(cls, symbol: str, asset: str, config: StreamConfig) -> TrendStream:
        """Build the stream with id ``stream_id(asset, config.timeframe)``."""
        return cls(stream_id(asset, config.timeframe), symbol, asset, config)

    @property
    def state(self) -> StreamState:
        """Current state (``out`` until ready)."""
        return self._state

    @property
    def ready(self) -> bool:
        """True once ``required`` candles were seen."""
        return self._seen >= self.required

    @property
    def confidence(self) -> float:
        """Confidence of the last signal in [0, 1] (0 before any candle)."""
        return self._confidence

    @property
    def reason(self) -> str:
        """Reason of the last signal."""
        signal = self.last_signal
        if signal is None:
            return f"warming up: 0/{self.required} candles"
        return signal.reason

    @property
    def atr(self) -> float | None:
        """Current Wilder ATR in quote currency, ``None`` while warming up."""
        return self._atr.value

    @property
    def last_candle(self) -> Candle | None:
        """The last candle processed (warm-up or live)."""
        return self._last_candle

    @property
    def last_signal(self) -> StreamSignal | None:
        """The signal of the last candle processed (built on first access after :meth:`step`)."""
        if self._pending is not None:
            self._last_signal = self._build(*self._pending)
            self._pending = None
        return self._last_signal

    def warm_up(self, candles: Iterable[Candle]) -> StreamSignal | None:
        """Feed history (candles of this stream's symbol and timeframe, ascending); return the last signal.

        Same processing as :meth:`update`; returns ``None`` when ``candles`` is empty.

        Raises
        ------
        ValueError
            As :meth:`update`.
        """
        signal = None
        for candle in candles:
            signal = self.update(candle)
        return signal

    def update(self, candle: Candle) -> StreamSignal:
        """Process one closed candle of this stream; return the stream's signal at its close.

        Raises
        ------
        ValueError
            If the candle's symbol or timeframe is not the stream's, or its open time is not after
            the previous candle's; the message names the stream and times.
        """
        self.step(candle)
        signal = self.last_signal
        assert signal is not None
        return signal

    def step(self, candle: Candle) -> bool:
        """Process one closed candle like :meth:`update`, but build the signal lazily; return whether the
        state flipped. This is the engine's hot path (one call per stream candle close).

        Raises
        ------
        ValueError
            As :meth:`update`.
        """
        self._check(candle)
        return self._advance(candle)

    def _advance(self, candle: Candle) -> bool:
        # step() without the checks, for a candle known to be this stream's and later than the last
        # one (SignalBook.on_closed routes by symbol and timeframe and skips older candles).
        self._last_candle = candle
        self._seen += 1
        atr = self._atr.update(candle.high, candle.low, candle.close)
        previous = self._state
        rule = self._rule
        decide = self._decide
        if decide is None:
            decision = rule.update(candle, previous)
            self._pending = (candle, atr, previous, decision, None)
            state = previous if decision is None else decision.state
            strength = 0.0 if decision is None else decision.strength
        else:
            decided = decide(candle, previous)
            state, strength = (previous, 0.0) if decided is None else decided
            self._pending = (candle, atr, previous, decided, cast(_SplitRule, rule).emas)
        if self._pending[3] is None or self._seen < self.required:
            state, self._confidence = StreamState.OUT, 0.0
        else:
            self._confidence = confidence_from_strength(
                strength, atr, candle.close, self.config.confidence_atr_mult
            )
        self._state = state
        self._last_signal = None
        return state is not previous

    def _build(
        self,
        candle: Candle,
        atr: float | None,
        previous: StreamState,
        decided: RuleDecision | _Decided | None,
        emas: _Emas | None,
    ) -> StreamSignal:
        # Build the full StreamSignal of a processed candle (reason text and indicator dict).
        # With emas, ``decided`` came from decide() and describe() gives the full decision (the EMAs
        # are seeded once the rule decided); without, it is update()'s RuleDecision or None.
        decision: RuleDecision | None
        if emas is not None and decided is not None:
            decision = cast(_SplitRule, self._rule).describe(decided[0], *cast("tuple[float, float]", emas))
        else:
            decision = cast("RuleDecision | None", decided)
        indicators: dict[str, float] = {"close": candle.close}
        if atr is not None:
            indicators["atr"] = atr
        if decision is None or self._seen < self.required:
            state, confidence = StreamState.OUT, 0.0
            reason = f"warming up: {self._seen}/{self.required} candles"
            if decision is not None:
                indicators.update(decision.indicators)
        else:
            state = decision.state
            confidence = confidence_from_strength(
                decision.strength, atr, candle.close, self.config.confidence_atr_mult
            )
            reason = decision.reason
            indicators.update(decision.indicators)
        return StreamSignal(
            stream=self.stream_id,
            symbol=self.symbol,
            time_ms=candle.open_time_ms + self._tf_ms,
            state=state,
            confidence=confidence,
            flipped=state is not previous,
            reason=reason,
            indicators=indicators,
        )

    def _check(self, candle: Candle) -> None:
        if candle.symbol != self.symbol or candle.timeframe != self.timeframe:
            raise ValueError(
                f"stream {self.stream_id} takes {self.symbol} {self.timeframe} candles, "
                f"was {candle.symbol} {candle.timeframe} at open_time_ms={candle.open_time_ms}"
            )
        last = self._last_candle
        if last is not None and candle.open_time_ms <= last.open_time_ms:
            raise ValueError(
                f"stream {self.stream_id}: candle open_time_ms={candle.open_time_ms} is not after the "
                f"previous open_time_ms={last.open_time_ms}"
            )

    def __repr__(self) -> str:
        return f"TrendStream({self.stream_id!r}, state={self._state}, seen={self._seen}/{self.required})"


def _ema_cross(config: StreamConfig) -> TrendRule:
    return EmaCrossRule(config.fast, config.slow, config.band)
