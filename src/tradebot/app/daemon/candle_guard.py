"""Market-data sanity for live candles: hold a candle that jumps far from the last accepted price.

One wrong tick (a 1m close at half the price, a ×1.3 spike) at an hour close would otherwise move
the marks, the start-of-day equity and the daily-loss rule, and the engine would sell or buy the book
on it. The daemon screens every live 1m candle before the engine sees it (:meth:`CandleGuard.check`,
a few comparisons, nothing else on the hot path); a suspect candle is looked up in the venue's REST
history and :meth:`CandleGuard.resolve` decides:

* REST has the same candle (close, high and low within ``confirm_tolerance_fraction``): accepted — a
  real crash is real;
* REST has a different candle: the REST candle replaces the live one;
* REST has none, or cannot be reached: the candle is discarded (the engine sees a gap).

Pure logic (no I/O, no clock, no logging): the daemon does the REST look-up, the log lines and the
position event. Backtests replay stored candles and are not screened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tradebot.core.domain import Candle
from tradebot.core.indicators.atr import WilderAtr


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardConfig:
    """When a live 1m candle is suspect (settings ``TRADEBOT_DAEMON__SANITY__*``).

    Attributes
    ----------
    max_move_fraction
        A candle whose close, high or low lies more than this fraction from the symbol's last
        accepted close is suspect (default 0.2: 20 % in one minute; BTC, ETH and SOL rarely move
        5 % in a minute outside exchange incidents).
    max_move_atr
        Also suspect: a move of more than this many ATRs of the accepted 1m candles (``None``, the
        default: off). Only after ``atr_period`` accepted candles.
    atr_period
        Wilder ATR period of the ATR rule, 1m candles (default 60).
    confirm_tolerance_fraction
        The REST candle confirms the live one when its close, high and low differ by at most this
        fraction of the REST value (default 0.002).
    """

    max_move_fraction: float = 0.2
    max_move_atr: float | None = None
    atr_period: int = 60
    confirm_tolerance_fraction: float = 0.002

    def __post_init__(self) -> None:
        if not self.max_move_fraction > 0.0:
            raise ValueError(f"max_move_fraction must be > 0, was {self.max_move_fraction!r}")
        if self.max_move_atr is not None and not self.max_move_atr > 0.0:
            raise ValueError(f"max_move_atr must be > 0 or None, was {self.max_move_atr!r}")
        if not 0.0 <= self.confirm_tolerance_fraction < 1.0:
            raise ValueError(
                f"confirm_tolerance_fraction must be in [0, 1), was {self.confirm_tolerance_fraction!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspect:
    """A held candle: how far it moved from the reference and why it is suspect."""

    candle: Candle
    reference_close: float  # the symbol's last accepted close, quote currency
    move_fraction: float  # largest |price / reference - 1| of close, high and low
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    """What becomes of a suspect candle.

    Attributes
    ----------
    candle
        The candle the engine gets: the live one (confirmed), the REST one (replaced), or ``None``
        (discarded).
    outcome
        ``"confirmed"``, ``"replaced"`` or ``"discarded"``.
    action
        Human-readable text for the position event's ``action_taken``.
    rest
        The REST candle looked up, if any.
    """

    candle: Candle | None
    outcome: str
    action: str
    rest: Candle | None = None


@dataclass(slots=True)
class _SymbolState:
    close: float
    atr: WilderAtr | None = field(default=None)


class CandleGuard:
    """Screens live candles per symbol against the last accepted close (see the module docstring).

    Parameters
    ----------
    config
        The thresholds.
    references
        Last known close per symbol (e.g. the engine's marks after warm-up or restore); a symbol
        without one accepts its first candle as the reference.
    """

    def __init__(self, config: GuardConfig, references: Mapping[str, float] | None = None) -> None:
        self.config = config
        self._state: dict[str, _SymbolState] = {}
        for symbol, close in (references or {}).items():
            if close > 0:
                self._state[symbol] = self._new_state(close)

    def _new_state(self, close: float) -> _SymbolState:
        cfg = self.config
        return _SymbolState(close, WilderAtr(cfg.atr_period) if cfg.max_move_atr is not None else None)

    def reference(self, symbol: str) -> float | None:
        """Return the last accepted close of ``symbol`` (quote currency), ``None`` before the first."""
        st = self._state.get(symbol)
        return None if st is None else st.close

    def check(self, candle: Candle) -> Suspect | None:
        """Return a :class:`Suspect` when ``candle`` must be held, else accept it and return ``None``."""
        st = self._state.get(candle.symbol)
        if st is None:
            self._accept(candle)
            return None
        ref = st.close
        move = max(abs(candle.close - ref), abs(candle.high - ref), abs(candle.low - ref))
        fraction = move / ref
        cfg = self.config
        reason = ""
        if fraction > cfg.max_move_fraction:
            reason = f"moved {fraction:.1%} from the last accepted close {ref!r} (band {cfg.max_move_fraction:.1%})"
        elif cfg.max_move_atr is not None and st.atr is not None and st.atr.value is not None:
            atr = st.atr.value
            if atr > 0 and move > cfg.max_move_atr * atr:
                reason = (
                    f"moved {move / atr:.1f} ATR ({fraction:.1%}) from the last accepted close {ref!r} "
                    f"(band {cfg.max_move_atr:g} ATR)"
                )
        if not reason:
            self._accept(candle)
            return None
        return Suspect(candle=candle, reference_close=ref, move_fraction=fraction, reason=reason)

    def resolve(self, suspect: Suspect, rest: Candle | None, *, rest_error: str | None = None) -> Resolution:
        """Decide on ``suspect`` given the REST candle of the same minute (``None``: REST has none, or
        ``rest_error`` says why it could not be fetched); the candle kept becomes the reference."""
        live = suspect.candle
        if rest is None:
            why = f"REST unavailable ({rest_error})" if rest_error else "REST has no candle for the minute"
            return Resolution(candle=None, outcome="discarded", action=f"discarded: {why}")
        if self._agrees(live, rest):
            self._accept(live)
            return Resolution(
                candle=live, outcome="confirmed", action="accepted: the REST candle agrees", rest=rest
            )
        self._accept(rest)
        return Resolution(
            candle=rest,
            outcome="replaced",
            action=f"replaced by the REST candle (close {rest.close!r} for {live.close!r})",
            rest=rest,
        )

    def _agrees(self, live: Candle, rest: Candle) -> bool:
        tol = self.config.confirm_tolerance_fraction
        return all(
            abs(a - b) <= tol * b
            for a, b in ((live.close, rest.close), (live.high, rest.high), (live.low, rest.low))
        )

    def _accept(self, candle: Candle) -> None:
        st = self._state.get(candle.symbol)
        if st is None:
            st = self._state[candle.symbol] = self._new_state(candle.close)
        st.close = candle.close
        if st.atr is not None:
            st.atr.update(candle.high, candle.low, candle.close)


__all__ = ["CandleGuard", "GuardConfig", "Resolution", "Suspect"]
