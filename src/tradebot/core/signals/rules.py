"""Trend rules: the pluggable decision of a stream (``in`` / ``out``) from its closed candles."""

from __future__ import annotations

from typing import NamedTuple, Protocol, cast

from tradebot.core.domain import Candle, StreamState
from tradebot.core.indicators import Ema, check_period

__all__ = ["EmaCrossRule", "RuleDecision", "TrendRule"]


class RuleDecision(NamedTuple):
    """What a rule decided at one candle close.

    Attributes
    ----------
    state
        ``in`` or ``out``.
    strength
        Rule strength as a fraction of price, >= 0 (for the EMA cross ``|ema_fast - ema_slow| / ema_slow``).
        The stream turns it into a confidence by dividing by ``atr / close``.
    reason
        Human-readable explanation, e.g. ``"ema20 > ema50 (+1.23%)"``.
    indicators
        Indicator values (JSON-serialisable floats).
    """

    state: StreamState
    strength: float
    reason: str
    indicators: dict[str, float]


class TrendRule(Protocol):
    """A stream's decision rule, fed the stream's closed candles in time order.

    ``required`` is the number of candles the rule needs before ``update`` returns a decision;
    before that ``update`` returns ``None`` and the stream stays ``out``.
    """

    @property
    def required(self) -> int:
        """Candles needed before the rule decides."""
        ...

    def update(self, candle: Candle, current: StreamState) -> RuleDecision | None:
        """Add one closed candle; return the decision given the ``current`` state, or ``None`` while warming up."""
        ...


class EmaCrossRule:
    """EMA(fast) vs EMA(slow) of closes with a hysteresis band (the default trend rule).

    From ``out`` the rule enters when ``ema_fast > ema_slow * (1 + band)``; from ``in`` it leaves
    when ``ema_fast < ema_slow * (1 - band)``; otherwise the state holds (so with ``band == 0`` an
    exact tie keeps the current state). EMAs are SMA-seeded (:class:`~tradebot.core.indicators.Ema`),
    so the rule decides from the ``slow``-th candle on.

    Parameters
    ----------
    fast, slow
        EMA periods in candles, ints with ``1 <= fast < slow``.
    band
        Hysteresis band, a fraction in ``[0, 0.5)`` (0.005 = 0.5 %).

    Raises
    ------
    ValueError
        On a bad period or band, naming the field and value.
    """

    __slots__ = ("_fast", "_slow", "band", "fast", "slow")

    def __init__(self, fast: int = 20, slow: int = 50, band: float = 0.0) -> None:
        check_period("fast", fast)
        check_period("slow", slow)
        if fast >= slow:
            raise ValueError(f"fast must be < slow ({slow!r}), was {fast!r}")
        if not 0.0 <= band < 0.5:
            raise ValueError(f"band must be a fraction in [0, 0.5), was {band!r}")
        self.fast, self.slow, self.band = fast, slow, band
        self._fast = Ema(fast)
        self._slow = Ema(slow)

    @property
    def required(self) -> int:
        """``slow`` candles (the slow EMA's seed)."""
        return self.slow

    def update(self, candle: Candle, current: StreamState) -> RuleDecision | None:
        """Add the candle's close to both EMAs and decide (``None`` until the slow EMA is seeded)."""
        decided = self.decide(candle, current)
        if decided is None:
            return None
        # A decision means both EMAs are seeded.
        return self.describe(decided[0], cast(float, self._fast.value), cast(float, self._slow.value))

    @property
    def emas(self) -> tuple[float | None, float | None]:
        """Current (fast, slow) EMA values, ``None`` while seeding."""
        return self._fast.value, self._slow.value

    def decide(self, candle: Candle, current: StreamState) -> tuple[StreamState, float] | None:
        """Like :meth:`update` but return only ``(state, strength)``: the allocation-free hot path.

        :meth:`describe` gives the reason and indicators of the same decision afterwards.
        """
        close = candle.close
        fast = self._fast.update(close)
        slow = self._slow.update(close)
        if slow is None or fast is None:
            return None
        band = self.band
        if current is StreamState.IN:
            state = StreamState.OUT if fast < slow * (1.0 - band) else StreamState.IN
        else:
            state = StreamState.IN if fast > slow * (1.0 + band) else StreamState.OUT
        return state, abs(fast - slow) / slow

    def describe(self, state: StreamState, fast: float, slow: float) -> RuleDecision:
        """Return the full decision (reason, indicators) for ``state`` at EMA values ``fast``/``slow``."""
        band = self.band
        spread = (fast - slow) / slow
        op = ">" if fast > slow else "<" if fast < slow else "="
        reason = f"ema{self.fast} {op} ema{self.slow} ({spread * 100:+.2f}%)"
        if (state is StreamState.IN) != (fast > slow):
            reason += f", inside band ±{band * 100:.2f}%: stays {state}"
        indicators = {"ema_fast": fast, "ema_slow": slow, "spread": spread}
        return RuleDecision(state, abs(spread), reason, indicators)
