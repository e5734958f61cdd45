"""Per-symbol position manager: the overlay multiplier m, stops, ladder, trail (STRATEGY.md §3).

The engine keeps one :class:`PositionManager` per symbol and trades ``managed target = rebalancer
target × multiplier``. Call protocol:

- ``on_period(candle_1h, atr)`` on every 1h close, position or not (indicators, period rules);
- ``on_open(...)`` for the first entry fill of a lifecycle, ``on_fill(...)`` for every later fill,
  ``on_close(...)`` when the position is flat again;
- ``on_bar(...)`` on every base candle while a position is open (hot path, O(1));
- ``on_streams(in_count)`` whenever the number of ``in`` streams of the asset changes.

Every ATR the engine passes is of ``config.atr_timeframe`` (default the rebalance timeframe), and
``on_period`` is called on the rebalance clock (1h by default; "1h" in the names below is that clock).

Intra-bar order (OHLC only, so conservative): the stop as it stood before the bar is checked against
the low first; then the high moves breakeven, the ladder and the trail; a close at or below a stop
raised within the bar is a stop exit; last, the close drives the proportional trail scaling.

Re-entry lock: every exit the manager forces (stop, trailing stop, take-profit exit, time stop, early
exit, management quit) sets ``locked`` (with ``config.reentry_lock``) and keeps m = 0 after the
position is flat, so the rebalancer does not buy straight back. ``on_streams(in_count)`` unlocks when
``in_count`` drops to 0 (the trend that was traded is over) or rises above the previous count (a
stream flipped in: a fresh signal). A drop that is not to 0 keeps the lock. ``config.reentry`` may
release it earlier, on a rebalance-clock close (``on_period``): after ``reentry_periods`` periods, or
on a new high since the exit (``REENTRY_ALLOWED`` action; see ``ManagementConfig.reentry``).
"""

from __future__ import annotations

import math
from typing import Any

from tradebot.core.domain import Candle, PositionEventType
from tradebot.core.management import _bar_rules, _ml_rules, _period_rules, _reentry
from tradebot.core.management._indicators import RateOfChange, RollingMean, RollingMin, SlowEma
from tradebot.core.management.actions import NO_ACTIONS, Action
from tradebot.core.management.config import ManagementConfig

_INF = math.inf
_ET = PositionEventType

#: Position fields saved by ``state()`` (attribute name without the leading underscore).
_POSITION_FIELDS = (
    "open", "exiting", "m", "entry", "avg_entry", "qty", "opened_ms", "stop", "stop_kind",
    "initial_stop", "risk", "be_done", "ladder_idx", "ladder_ref_m", "trailing", "peak",
    "m_trail_start", "adjusts", "last_adjust_ms", "last_adjust_price", "reached_half", "scaled_in",
    "mm_low", "mm_ref", "mm_reloads", "mm_reload_used",
)  # fmt: skip


class PositionManager:
    """Overlay state machine of one symbol.

    Parameters
    ----------
    symbol
        ccxt unified symbol (for the record only).
    config
        The overlay configuration.

    Attributes
    ----------
    notional_per_m
        Quote-currency notional that one unit of m represents (the rebalancer target), used by the
        minimum-order guard of the proportional trail; ``None`` skips that guard. The engine may set
        it here or pass ``notional_per_m`` to :meth:`on_bar`.
    """

    __slots__ = (
        "_atr", "_be_level", "_dry", "_exit_ms", "_half_level", "_in_count", "_ladder_prices",
        "_locked", "_next_up", "_reentry_high", "_regime", "_roc", "_swing", "_trail_level",
        "_vol_sma", "config", "_scale_in_signal", "_vol_avg", "_ml_took",
        "defer_scale_in", "notional_per_m", "symbol", *(f"_{n}" for n in _POSITION_FIELDS),
    )  # fmt: skip

    # Declared types of the slots (annotations only: no class attributes, so no clash with
    # ``__slots__``). The position fields are set by ``_reset_position`` and ``restore``.
    symbol: str
    config: ManagementConfig
    notional_per_m: float | None
    defer_scale_in: bool
    _scale_in_signal: str | None
    _vol_avg: float | None
    _ml_took: bool
    _vol_sma: RollingMean
    _roc: RateOfChange
    _regime: SlowEma
    _swing: RollingMin
    _dry: int
    _atr: float | None
    _locked: bool
    _in_count: int | None
    # the forced exit behind the lock (re-entry policy): time ms UTC, highest price since (quote)
    _exit_ms: int | None
    _reentry_high: float | None
    # position fields (_POSITION_FIELDS)
    _open: bool
    _exiting: bool
    _m: float
    _entry: float
    _avg_entry: float
    _qty: float
    _opened_ms: int
    _stop: float | None
    _stop_kind: str
    _initial_stop: float | None
    _risk: float | None
    _be_done: bool
    _ladder_idx: int
    _ladder_ref_m: float
    _trailing: bool
    _peak: float
    _m_trail_start: float
    _adjusts: int
    _last_adjust_ms: int
    _last_adjust_price: float
    _reached_half: bool
    _scaled_in: bool
    _mm_low: float | None
    _mm_ref: float
    _mm_reloads: int
    _mm_reload_used: float
    # derived trigger prices (_refresh_levels; not persisted)
    _half_level: float
    _be_level: float
    _ladder_prices: tuple[float, ...]
    _trail_level: float
    _next_up: float

    def __init__(self, symbol: str, config: ManagementConfig) -> None:
        self.symbol = symbol
        self.config = config
        self.notional_per_m = None
        self.defer_scale_in = False
        self._scale_in_signal = None
        self._vol_avg = None
        self._vol_sma = RollingMean(config.indicators.volume_sma_h)
        self._roc = RateOfChange(config.indicators.momentum_h)
        self._regime = SlowEma(config.initial_stop.regime_period_h)
        self._swing = RollingMin(config.initial_stop.swing_lookback_h)
        self._dry = 0
        self._atr = None
        self._locked = False
        self._in_count = None
        self._exit_ms = None
        self._reentry_high = None
        self._reset_position()
        self._m = 1.0

    # ------------------------------------------------------------------ properties
    @property
    def multiplier(self) -> float:
        """The overlay multiplier m ∈ [0, max_scale] (0 while locked or exiting)."""
        return self._m

    @property
    def stop(self) -> float | None:
        """The current stop (quote currency), or ``None``."""
        return self._stop

    @property
    def protective_stop(self) -> float | None:
        """The stop an order at the venue should hold (quote currency): the current stop while a
        position is open and no exit is under way, else ``None``."""
        return self._stop if self._open and not self._exiting else None

    @property
    def locked(self) -> bool:
        """True after a forced exit until the streams change or ``config.reentry`` allows (m stays 0)."""
        return self._locked

    @property
    def initial_risk(self) -> float | None:
        """R: first entry − initial stop, quote currency per base unit; ``None`` without a stop."""
        return self._risk

    @property
    def is_open(self) -> bool:
        """True between :meth:`on_open` and :meth:`on_close`."""
        return self._open

    @property
    def trailing(self) -> bool:
        """True once the trailing stop has started in the current lifecycle."""
        return self._trailing

    # ------------------------------------------------------------------ lifecycle
    def on_open(self, *, time_ms: int, entry_price: float, qty: float, atr: float | None) -> list[Action]:
        """Start a lifecycle at the first entry fill; set the initial stop and R.

        Parameters
        ----------
        time_ms
            Fill time, ms UTC.
        entry_price
            Fill price, quote currency (> 0).
        qty
            Filled quantity, base units (> 0).
        atr
            ATR (quote currency) of the 1h period clock, or ``None`` to use the last one seen by
            :meth:`on_period`. Without any ATR there is no stop and the R-based rules stay off.

        Returns
        -------
        list[Action]
            ``[STOP_SET]`` when a stop was set, else ``[]``.

        Raises
        ------
        ValueError
            If ``entry_price`` or ``qty`` is not > 0.
        """
        if not entry_price > 0:
            raise ValueError(f"entry_price must be > 0, was {entry_price!r}")
        if not qty > 0:
            raise ValueError(f"qty must be > 0, was {qty!r}")
        self._reset_position()
        self._open, self._opened_ms = True, time_ms
        self._entry = self._avg_entry = self._mm_ref = float(entry_price)
        self._qty = float(qty)
        self._m = 0.0 if self._locked else 1.0
        if atr is not None and atr > 0:
            self._atr = float(atr)
        out: list[Action] = []
        cfg = self.config.initial_stop
        if cfg.enabled and self._atr is not None:
            stop, reason = _bar_rules.initial_stop_level(self, self._entry, self._atr)
            if stop > 0:
                self._initial_stop, self._risk = stop, self._entry - stop
                self._stop, self._stop_kind = stop, "initial"
                mm = self.config.management_mode
                if mm.enabled:
                    self._stop, self._stop_kind = self._entry - mm.quit_r * self._risk, "quit"
                    reason += f"; management mode: hard quit at {self._stop:.8g} ({mm.quit_r} R)"
                out.append(self._action(_ET.STOP_SET, time_ms, self._entry, reason, urgent=False))
        self._refresh_levels()
        return out

    def on_fill(
        self, *, time_ms: int, side: str, qty: float, price: float, position_qty_after: float
    ) -> None:
        """Update the average entry and size after a later fill of the open lifecycle.

        ``side`` is ``Side.BUY`` / ``"buy"`` or ``Side.SELL`` / ``"sell"``; ``qty`` in base units
        (> 0), ``price`` in quote currency, ``position_qty_after`` in base units. Sells leave the
        average entry unchanged. Ignored while no lifecycle is open.
        """
        if not self._open:
            return
        if side == "buy":
            before = position_qty_after - qty
            if before > 0:
                self._avg_entry = (self._avg_entry * before + price * qty) / position_qty_after
            else:
                self._avg_entry = float(price)
        self._qty = float(position_qty_after)

    def on_close(self, *, time_ms: int) -> None:
        """End the lifecycle (the position is flat); m becomes 0 if locked, else 1."""
        self._reset_position()
        self._m = 0.0 if self._locked else 1.0

    def on_streams(self, in_count: int) -> tuple[Action, ...]:
        """Tell the number of ``in`` streams of the asset (call when it changes); may unlock.

        Unlocks when ``in_count`` is 0 or greater than the previous count. Returns no actions.

        Raises
        ------
        ValueError
            If ``in_count`` is not an integer >= 0.
        """
        if isinstance(in_count, bool) or not isinstance(in_count, int) or in_count < 0:
            raise ValueError(f"in_count must be an integer >= 0, was {in_count!r}")
        prev, self._in_count = self._in_count, in_count
        if self._locked and (in_count == 0 or (prev is not None and in_count > prev)):
            self._unlock()
        return NO_ACTIONS

    # ------------------------------------------------------------------ hot path
    def on_bar(
        self,
        *,
        time_ms: int,
        open: float,
        high: float,
        low: float,
        close: float,
        notional_per_m: float | None = None,
    ) -> tuple[Action, ...] | list[Action]:
        """Apply one base candle of an open position: stops, breakeven, ladder, trail, proportional.

        O(1); returns the shared empty tuple when nothing happens. ``notional_per_m`` (quote
        currency per unit of m) overrides the attribute of the same name for this call.
        """
        if not self._open or self._exiting:
            return NO_ACTIONS
        stop = self._stop
        if stop is not None and low <= stop:
            return [self._stop_exit(time_ms, stop, f"low {low!r} <= stop {stop:.8g} ({self._stop_kind})")]
        out: list[Action] | None = None
        if high >= self._next_up:
            out = self._on_high(time_ms, high)
            if self._exiting:
                return out
            stop = self._stop
            if stop is not None and close <= stop:
                out.append(
                    self._stop_exit(time_ms, stop, f"close {close!r} <= stop {stop:.8g} raised this bar")
                )
                return out
        if self._trailing and self.config.proportional.enabled:
            npm = self.notional_per_m if notional_per_m is None else notional_per_m
            action = _bar_rules.proportional(self, time_ms, close, npm)
            if action is not None:
                if out is None:
                    return [action]
                out.append(action)
        return out or NO_ACTIONS

    def _on_high(self, time_ms: int, high: float) -> list[Action]:
        out: list[Action] = []
        cfg = self.config
        if high >= self._half_level:
            self._reached_half = True
        if high >= self._be_level:
            self._be_done = True
            be = self._avg_entry * (1 + 2 * cfg.fee_rate) if cfg.breakeven.include_fees else self._avg_entry
            if self._stop is None or be > self._stop:
                self._stop, self._stop_kind = be, "breakeven"
                reason = f"high {high!r} >= +{cfg.breakeven.trigger_r} R level {self._be_level:.8g}"
                out.append(
                    self._action(_ET.BREAKEVEN, time_ms, self._be_level, reason + f"; stop -> {be:.8g}")
                )
        prices = self._ladder_prices
        while self._ladder_idx < len(prices) and high >= prices[self._ladder_idx]:
            out.append(_bar_rules.take_level(self, time_ms, high))
            if self._exiting:
                return out
        if not self._trailing:
            if high >= self._trail_level:
                _bar_rules.start_trail(self, time_ms, high, out)
        elif high > self._peak:
            self._peak = high
            _bar_rules.ratchet(self, time_ms, f"new peak {high!r}", out)
        self._refresh_levels()
        return out

    def on_period(self, candle_1h: Candle, atr: float | None) -> tuple[Action, ...] | list[Action]:
        """Update the slow indicators on a 1h close and run the period rules of an open position.

        Rules (in order, the first exit ends the list): trailing-stop update for a new ATR, time
        stop, early exits, management mode, scale-in to winners. Event time is the candle's close.
        Then, while locked, the re-entry policy (``config.reentry``): a release is an urgent
        ``REENTRY_ALLOWED`` action (m 0 → 1 when flat), so the engine plans the re-entry at this close.

        Parameters
        ----------
        candle_1h
            The rebalance-clock candle that just closed.
        atr
            ATR (quote currency) of ``config.atr_timeframe``, or ``None`` while it warms up.
        """
        vol_avg = self._vol_sma.value  # average of the previous periods, before this candle
        self._roc.update(candle_1h.close)
        self._swing.update(candle_1h.low)
        self._vol_sma.update(candle_1h.volume)
        ratio = self.config.early_exit.volume_dry_ratio
        dry = vol_avg is not None and candle_1h.volume < ratio * vol_avg
        self._dry = self._dry + 1 if dry else 0
        if atr is not None and atr > 0:
            self._atr = float(atr)
            self._regime.update(atr / candle_1h.close)
        out: list[Action] | None = None
        if self._open and not self._exiting:
            out = _period_rules.run(self, candle_1h, vol_avg)
            self._refresh_levels()
        if self._locked and self.config.reentry != "stream_change":
            action = _reentry.on_period(self, candle_1h)
            if action is not None:
                out = [*(out or ()), action]
        return out or NO_ACTIONS

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Return a JSON-able snapshot (position, lock and its exit, indicators) for :meth:`restore`."""
        return {
            "symbol": self.symbol,
            "position": {n: getattr(self, f"_{n}") for n in _POSITION_FIELDS},
            "ml_took": self._ml_took,
            "locked": self._locked,
            "in_count": self._in_count,
            "reentry": {"exit_ms": self._exit_ms, "high": self._reentry_high},
            "atr": self._atr,
            "dry": self._dry,
            "volume_sma": self._vol_sma.state(),
            "roc": self._roc.state(),
            "regime": self._regime.state(),
            "swing": self._swing.state(),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Restore a snapshot from :meth:`state` (same config assumed).

        A snapshot without ``reentry`` (written before the re-entry policies) restores with no exit
        time: its lock is then released by a stream change only.

        Raises
        ------
        ValueError
            If the snapshot is for another symbol or misses a field (named).
        """
        if data.get("symbol") != self.symbol:
            raise ValueError(f"state is for symbol {data.get('symbol')!r}, not {self.symbol!r}")
        try:
            for n in _POSITION_FIELDS:
                setattr(self, f"_{n}", data["position"][n])
            self._locked, self._in_count = bool(data["locked"]), data["in_count"]
            self._ml_took = bool(data.get("ml_took", False))  # absent before the models
            reentry = data.get("reentry") or {}
            self._exit_ms, self._reentry_high = reentry.get("exit_ms"), reentry.get("high")
            self._atr, self._dry = data["atr"], int(data["dry"])
            self._vol_sma.restore(data["volume_sma"])
            self._roc.restore(data["roc"])
            self._regime.restore(data["regime"])
            self._swing.restore(data["swing"])
        except KeyError as e:
            raise ValueError(f"state misses field {e.args[0]!r}") from None
        self._refresh_levels()

    # ------------------------------------------------------------------ helpers
    def _refresh_levels(self) -> None:
        # Derived trigger prices (not persisted); _next_up is the lowest high that triggers anything.
        cfg, r, e = self.config, self._risk, self._entry
        on = self._open and not self._exiting
        self._half_level = e + cfg.time_stop.target_r * r if on and r and not self._reached_half else _INF
        self._be_level = (
            e + cfg.breakeven.trigger_r * r
            if on and r and cfg.breakeven.enabled and not self._be_done
            else _INF
        )
        tp = cfg.take_profit
        if not (on and tp.enabled):
            self._ladder_prices = ()
        elif tp.levels_r:
            self._ladder_prices = tuple(e + x * r for x in tp.levels_r) if r else ()
        else:
            self._ladder_prices = tuple(e * (1 + x / 100) for x in tp.levels_pct)
        tr = cfg.trailing
        if not (on and tr.enabled) or self._trailing or self._atr is None:
            self._trail_level = _INF
        elif tr.start_after_first_ladder and self._ladder_idx > 0:
            self._trail_level = -_INF
        else:
            self._trail_level = e + tr.start_r * r if r and tr.start_r is not None else _INF
        nxt = self._ladder_prices[self._ladder_idx] if self._ladder_idx < len(self._ladder_prices) else _INF
        peak = self._peak if on and self._trailing else _INF
        self._next_up = min(self._half_level, self._be_level, nxt, self._trail_level, peak)

    def _reset_position(self) -> None:
        self._open = self._exiting = False
        self._entry = self._avg_entry = self._qty = 0.0
        self._opened_ms = 0
        self._stop = self._initial_stop = self._risk = None
        self._stop_kind = ""
        self._be_done = self._trailing = self._reached_half = self._scaled_in = False
        self._ladder_idx, self._ladder_ref_m = 0, 1.0
        self._peak = self._m_trail_start = self._last_adjust_price = 0.0
        self._adjusts = self._last_adjust_ms = 0
        self._mm_low = None
        self._mm_ref = 0.0
        self._mm_reloads, self._mm_reload_used = 0, 0.0
        self._ml_took = False
        self._refresh_levels()

    def _unlock(self) -> None:
        # Release the re-entry lock; a flat manager may trade again (m 1), an open one keeps its m.
        self._locked = False
        self._exit_ms = self._reentry_high = None
        if not self._open:
            self._m = 1.0

    def ml_apply(
        self, action: str, candle: Candle, *, reason: str, take_fraction: float, prediction: dict[str, Any]
    ) -> list[Action]:
        """Apply a model recommendation (``tradebot.core.ml.predictor.ML_ACTIONS``) at the close of the
        rebalance-clock ``candle``, after :meth:`on_period`; see
        :func:`tradebot.core.management._ml_rules.apply`. Returns the actions, each carrying
        ``prediction`` as ``ml_prediction`` (a deferred rule scale-in carries none)."""
        return _ml_rules.apply(
            self, action, candle, reason=reason, take_fraction=take_fraction, prediction=prediction
        )

    def ml_options(self, close: float) -> tuple[bool, bool, bool]:
        """What a model may still do to the open position at ``close``: (scale in, trail, take profit)."""
        return (
            _period_rules.scale_in_allowed(self, close),
            _ml_rules.can_trail(self),
            _ml_rules.can_take_profit(self),
        )

    def venue_stop_filled(self, *, time_ms: int, stop: float, fill_price: float) -> Action | None:
        """The stop order resting at the venue for this position (at ``stop``, quote currency) filled
        at ``fill_price``: the same stop exit as :meth:`on_bar` decides (m = 0, re-entry lock, a
        ``STOP_EXIT`` / ``MANAGEMENT_QUIT`` action). ``None`` when the position is not open or an exit
        is already under way (the venue stop filled beside it)."""
        if not self._open or self._exiting:
            return None
        kind = self._stop_kind
        return self._stop_exit(time_ms, stop, f"venue stop {stop:.8g} ({kind}) filled at {fill_price!r}")

    def _stop_exit(self, time_ms: int, stop: float, reason: str) -> Action:
        kind = _ET.MANAGEMENT_QUIT if self._stop_kind == "quit" else _ET.STOP_EXIT
        return self._exit(kind, time_ms, stop, reason)

    def _exit(
        self, kind: PositionEventType, time_ms: int, price: float, reason: str, saved: float | None = None
    ) -> Action:
        before = self._m
        self._m, self._exiting = 0.0, True
        if self.config.reentry_lock:
            self._locked = True
            self._exit_ms, self._reentry_high = time_ms, price
        self._next_up = _INF
        return self._action(kind, time_ms, price, reason, before=before, urgent=True, saved=saved)

    def _action(
        self,
        kind: PositionEventType,
        time_ms: int,
        price: float,
        reason: str,
        *,
        before: float | None = None,
        urgent: bool = False,
        saved: float | None = None,
        extra: dict[str, float] | None = None,
    ) -> Action:
        r = self._risk
        ind: dict[str, Any] = {
            "atr": self._atr,
            "momentum_roc": self._roc.value,
            "volume_sma": self._vol_sma.value,
        }
        if extra:
            ind.update(extra)
        return Action(
            event_type=kind,
            time_ms=time_ms,
            price=price,
            multiplier_before=self._m if before is None else before,
            multiplier_after=self._m,
            trigger_reason=reason,
            indicators=ind,
            r_multiple=(price - self._entry) / r if r else None,
            profit_pct=(price / self._avg_entry - 1) * 100 if self._avg_entry else None,
            urgent=urgent,
            amount_saved_or_gained_per_unit=saved,
            stop=self._stop,
        )
