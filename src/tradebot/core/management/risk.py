"""Hard risk limits (STRATEGY.md §4): never overridden by any rule.

:class:`~tradebot.core.management.risk_limits.RiskLimits` is the frozen configuration
(re-exported here); :class:`RiskManager` holds the trading state
(ACTIVE / REDUCING / HALTED) and clips the managed targets. Money is ``Decimal`` in quote currency;
fractions are of equity (0.10 = 10 %).

Call order per engine clock tick: ``on_equity(t, equity)`` first (daily-loss rule, UTC day roll),
then ``apply_limits(...)``.

HALTED (daily loss or set by the engine) means: every target is 0 (close all) and no entry until the
state changes. (The ``TradingState`` docstring says "HALTED sends nothing"; here the daily-loss rule
of §4 needs "close all", so the engine should still send the reducing orders the zero targets imply.)
A daily-loss halt with ``RiskLimits.daily_loss_action = "block_entries"`` instead only blocks
entries and increases: targets are clipped to the holdings, as in REDUCING.
REDUCING: targets may only go down (no increase above the current holding).

A pause (:meth:`RiskManager.set_paused`: the operator's Telegram ``/pause``, or the daemon's venue
watchdog) is REDUCING: no entries or increases, while exits, stops and reductions go on. Each source
(``"operator"``, ``"venue"``) holds its own flag: a resume lifts only its own source's pause, the
state returns to ACTIVE when no source pauses, and never from a daily-loss halt; a pause given
during a halt takes over when the halt ends at the next UTC day.

Deposits and withdrawals (:meth:`RiskManager.on_cash_flow`) move the start-of-day equity by their
value, so the daily-loss rule measures the day's result net of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from tradebot.core.domain import ZERO, PositionEventType, TradingState, to_decimal
from tradebot.core.management.risk_limits import BlackoutWindow, RiskLimits

__all__ = ["BlackoutWindow", "RiskEvent", "RiskLimits", "RiskManager"]

_DAY_MS = 86_400_000
_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskEvent:
    """A risk decision (``RISK_BLOCK``, ``DAILY_LOSS_HALT``, ``TRADING_RESUMED``) for the record.

    ``symbol`` is ``None`` for portfolio-wide events; targets are quote currency (``None`` when not
    about a target).
    """

    event_type: PositionEventType
    time_ms: int
    symbol: str | None
    trigger_reason: str
    action_taken: str
    indicators: dict[str, Any] = field(default_factory=dict)
    target_before: Decimal | None = None
    target_after: Decimal | None = None


class RiskManager:
    """Trading state and target clipping under :class:`RiskLimits` (pure; time from the caller)."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self._state = TradingState.ACTIVE
        self._halt_reason = ""
        self._day: int | None = None
        self._start_equity: Decimal | None = None
        self._pauses: set[str] = set()

    @property
    def paused(self) -> bool:
        """True while a pause (:meth:`set_paused`, any source) is in force."""
        return bool(self._pauses)

    @property
    def pauses(self) -> tuple[str, ...]:
        """The sources whose pause is in force (sorted; empty when none)."""
        return tuple(sorted(self._pauses))

    @property
    def trading_state(self) -> TradingState:
        """ACTIVE, REDUCING or HALTED."""
        return self._state

    @property
    def start_of_day_equity(self) -> Decimal | None:
        """Equity at the first observation of the current UTC day (quote currency)."""
        return self._start_equity

    @property
    def blocks_only(self) -> bool:
        """True while a daily-loss halt keeps the positions (``daily_loss_action = "block_entries"``):
        the halt then blocks entries and increases but closes nothing."""
        return (
            self._state is TradingState.HALTED
            and self._halt_reason == "daily_loss"
            and self.limits.daily_loss_action == "block_entries"
        )

    def _halt_action(self) -> str:
        # The action text of a daily-loss halt row (the default's text predates the option).
        if self.limits.daily_loss_action == "block_entries":
            return "positions kept, no entries or increases until next UTC day"
        return "close all, no entries until next UTC day"

    def in_blackout(self, time_ms: int) -> bool:
        """True when ``time_ms`` falls in a configured blackout window."""
        windows = self.limits.blackout_windows
        return bool(windows) and any(w.contains(time_ms) for w in windows)  # asked on every clock tick

    def set_state(self, state: TradingState, *, time_ms: int, reason: str) -> list[RiskEvent]:
        """Set the state by the engine's decision (e.g. REDUCING on a reconcile mismatch).

        A manual state is kept until set again; only a daily-loss halt ends at the next UTC day.
        """
        before, self._state = self._state, TradingState(state)
        self._halt_reason = "manual" if state is not TradingState.ACTIVE else ""
        if before is self._state:
            return []
        kind = (
            PositionEventType.TRADING_RESUMED
            if state is TradingState.ACTIVE
            else PositionEventType.RISK_BLOCK
        )
        return [
            RiskEvent(
                event_type=kind,
                time_ms=time_ms,
                symbol=None,
                trigger_reason=reason,
                action_taken=f"trading state {before.value} -> {self._state.value}",
            )
        ]

    def set_paused(
        self, paused: bool, *, time_ms: int, reason: str, source: str = "operator"
    ) -> list[RiskEvent]:
        """Pause new entries and increases (``paused=True``) or lift ``source``'s pause (``False``).

        A pause turns ACTIVE into REDUCING; a state already more restrictive (a daily-loss or manual
        halt, another REDUCING) is kept, and the pause then applies when that state ends. A resume
        lifts only ``source``'s own pause and returns to ACTIVE only from the pauses' own REDUCING
        once no other source pauses: it never lifts a halt, nor the operator's pause on the venue's
        behalf. Returns one ``RISK_BLOCK`` (pause, or a resume that leaves a halt or another pause
        in force) or ``TRADING_RESUMED`` event, or nothing when ``source``'s pause already was as asked.
        """
        if paused == (source in self._pauses):
            return []
        if paused:
            self._pauses.add(source)
        else:
            self._pauses.discard(source)
        before = self._state
        if paused and before is TradingState.ACTIVE:
            self._state, self._halt_reason = TradingState.REDUCING, "paused"
        elif not self.paused and before is TradingState.REDUCING and self._halt_reason == "paused":
            self._state, self._halt_reason = TradingState.ACTIVE, ""
        change = f"trading state {before.value} -> {self._state.value}"
        who = "" if source == "operator" else f" ({source})"
        if paused:
            kind, action = PositionEventType.RISK_BLOCK, f"paused{who}: {change}: no entries or increases"
        elif self._state is TradingState.ACTIVE:
            kind, action = PositionEventType.TRADING_RESUMED, f"pause lifted{who}: {change}"
        else:
            kind = PositionEventType.RISK_BLOCK
            kept = (
                f"paused by {', '.join(self.pauses)}"
                if self.paused and self._halt_reason == "paused"
                else self._halt_reason or self._state.value
            )
            action = f"pause lifted{who}: {change} kept ({kept})"
        return [
            RiskEvent(
                event_type=kind,
                time_ms=time_ms,
                symbol=None,
                trigger_reason=reason,
                action_taken=action,
                indicators={"rule": "pause" if paused else "resume", "source": source},
            )
        ]

    def on_cash_flow(self, value: Decimal) -> None:
        """Move the start-of-day equity by a deposit's (``value > 0``) or withdrawal's quote value, so
        the daily-loss rule compares the day's equity net of it."""
        if self._start_equity is not None:
            self._start_equity += value

    def on_equity(self, time_ms: int, equity: float | Decimal) -> list[RiskEvent]:
        """Apply the daily-loss rule to an equity observation (quote currency, ms UTC).

        The first observation of each UTC day sets the start-of-day equity and ends a daily-loss
        halt (``TRADING_RESUMED``; to REDUCING if an operator's pause is in force). Equity ≤ start × (1 − ``daily_loss_limit_fraction``) halts
        (``DAILY_LOSS_HALT``): entries are blocked until the next UTC day, and targets go to 0
        (``daily_loss_action = "close_all"``) or are clipped to the holdings (``"block_entries"``).
        """
        eq = to_decimal(equity, field="equity")
        day = time_ms // _DAY_MS
        events: list[RiskEvent] = []
        if self._day is None or day > self._day:
            self._day, self._start_equity = day, eq
            if self._state is TradingState.HALTED and self._halt_reason == "daily_loss":
                if self.paused:
                    self._state, self._halt_reason = TradingState.REDUCING, "paused"
                else:
                    self._state, self._halt_reason = TradingState.ACTIVE, ""
                events.append(
                    RiskEvent(
                        event_type=PositionEventType.TRADING_RESUMED,
                        time_ms=time_ms,
                        symbol=None,
                        trigger_reason=f"new UTC day {day}: start-of-day equity {eq}",
                        action_taken=f"trading state halted -> {self._state.value}"
                        + (" (paused)" if self.paused else ""),
                    )
                )
        limit = self.limits.daily_loss_limit_fraction
        start = self._start_equity
        if limit is not None and start is not None and self._state is not TradingState.HALTED:
            floor = start * (1 - to_decimal(limit))
            if eq <= floor:
                before, self._state, self._halt_reason = self._state, TradingState.HALTED, "daily_loss"
                events.append(
                    RiskEvent(
                        event_type=PositionEventType.DAILY_LOSS_HALT,
                        time_ms=time_ms,
                        symbol=None,
                        trigger_reason=f"equity {eq} <= start-of-day {start} x (1 - {limit}) = {floor}",
                        action_taken=f"trading state {before.value} -> halted: {self._halt_action()}",
                        indicators={
                            "equity": str(eq),
                            "start_of_day_equity": str(start),
                            "limit_fraction": limit,
                        },
                    )
                )
        return events

    def check_order(self, notional: Decimal, *, increases: bool, time_ms: int) -> str | None:
        """Return why an order of ``notional`` (quote currency) may not be sent, or ``None``.

        ``increases`` is True for an order that raises exposure (entry or scale-in).
        """
        lim = self.limits
        if increases:
            if self._state is not TradingState.ACTIVE:
                return f"trading state {self._state.value}: no increase"
            if self.in_blackout(time_ms):
                return "blackout window: no increase"
        if lim.max_order_notional is not None and notional > lim.max_order_notional:
            return f"order notional {notional} above max_order_notional {lim.max_order_notional}"
        if notional < lim.min_order_notional:
            return f"order notional {notional} below min_order_notional {lim.min_order_notional}"
        return None

    def apply_limits(
        self,
        targets: dict[str, Decimal],
        holdings_notional: dict[str, Decimal],
        equity: Decimal,
        time_ms: int,
        *,
        stale: frozenset[str] = frozenset(),
    ) -> tuple[dict[str, Decimal], list[RiskEvent]]:
        """Clip managed targets (quote currency, ≥ 0) to the limits; never raise any target.

        Steps: HALTED → all 0 (a daily-loss halt with ``daily_loss_action = "block_entries"``: no
        increase above the holding); REDUCING, blackout and stale feeds → no increase above the holding;
        per-symbol cap; max open positions (new entries by largest target, then symbol); gross cap
        (proportional scaling, rounded down to 1e-8); min order notional (too-small increases
        dropped, targets below it → 0). One ``RISK_BLOCK`` event per symbol and rule that lowered a
        target.

        Raises
        ------
        ValueError
            If a target is negative or equity is not finite.
        """
        if not equity.is_finite():
            raise ValueError(f"equity must be finite, was {equity!r}")
        for sym, t in targets.items():
            if t < 0:
                raise ValueError(f"target of {sym} must be >= 0, was {t!r}")
        clip = _Clipper(dict(targets), time_ms)
        held = {s: max(holdings_notional.get(s, ZERO), ZERO) for s in targets}
        lim = self.limits
        if self._state is TradingState.HALTED and not self.blocks_only:
            for s in targets:
                clip(s, ZERO, "halted", f"trading halted ({self._halt_reason}): close all")
        elif self._state is TradingState.HALTED:
            for s in targets:
                clip(s, held[s], "halted", f"trading halted ({self._halt_reason}): no entry or increase")
        elif self._state is TradingState.REDUCING:
            for s in targets:
                clip(s, held[s], "reducing", "trading state reducing: no increase")
        if self.in_blackout(time_ms):
            for s in targets:
                clip(s, held[s], "blackout", "blackout window: no entry or increase")
        for s in stale & targets.keys():
            clip(s, held[s], "stale_feed", "market data stale: no entry or increase")
        cap = lim.position_cap(equity)
        if cap is not None:
            for s in targets:
                if cap < clip.targets[s]:  # the reason text only for a target it lowers
                    clip(s, cap, "max_position", f"per-symbol cap {cap}")
        self._limit_open_positions(clip, held)
        self._limit_gross(clip, equity)
        for s in targets:
            t, h = clip.targets[s], held[s]
            if ZERO < t < lim.min_order_notional:
                clip(
                    s, ZERO, "min_order_notional", f"target below min order notional {lim.min_order_notional}"
                )
            elif h < t < h + lim.min_order_notional:
                clip(
                    s, h, "min_order_notional", f"increase below min order notional {lim.min_order_notional}"
                )
        return clip.targets, clip.events

    def _limit_open_positions(self, clip: _Clipper, held: dict[str, Decimal]) -> None:
        max_open = self.limits.max_open_positions
        if max_open is None:
            return
        open_now = [s for s, h in held.items() if h >= self.limits.min_order_notional]
        new = sorted(
            (s for s, t in clip.targets.items() if t > 0 and s not in open_now),
            key=lambda s: (-clip.targets[s], s),
        )
        slots = max(max_open - len(open_now), 0)
        for s in new[slots:]:
            clip(s, ZERO, "max_open_positions", f"{len(open_now)} open of max {max_open}: no new position")

    def _limit_gross(self, clip: _Clipper, equity: Decimal) -> None:
        cap = self.limits.gross_cap(equity)
        total = sum(clip.targets.values(), ZERO)
        if total <= cap:
            return
        scale = cap / total
        for s, t in list(clip.targets.items()):
            new = (t * scale).quantize(_QUANTUM, rounding=ROUND_DOWN)
            clip(s, new, "max_gross_exposure", f"gross {total} above cap {cap}: scaled by {scale:.6f}")

    def state(self) -> dict[str, Any]:
        """JSON-able snapshot (state, halt reason, UTC day, start-of-day equity as a string, pause)."""
        return {
            "state": self._state.value,
            "halt_reason": self._halt_reason,
            "day": self._day,
            "start_equity": None if self._start_equity is None else str(self._start_equity),
            "paused": self.paused,
            "pauses": sorted(self._pauses),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Restore a snapshot from :meth:`state` (a halt and a pause survive a restart; a snapshot
        from before pauses existed has none).

        Raises
        ------
        ValueError
            If a field is missing or invalid (named).
        """
        try:
            self._state = TradingState(data["state"])
            self._halt_reason = str(data["halt_reason"])
            self._day = None if data["day"] is None else int(data["day"])
            se = data["start_equity"]
            self._start_equity = None if se is None else to_decimal(se, field="start_equity")
            pauses = data.get("pauses")
            if pauses is None:  # a snapshot from before pause sources: the operator's pause
                pauses = ["operator"] if data.get("paused", False) else []
            self._pauses = {str(p) for p in pauses}
        except KeyError as e:
            raise ValueError(f"risk state misses field {e.args[0]!r}") from None


class _Clipper:
    # Lowers targets and records one RISK_BLOCK event per lowering.
    __slots__ = ("events", "targets", "time_ms")

    def __init__(self, targets: dict[str, Decimal], time_ms: int) -> None:
        self.targets = targets
        self.events: list[RiskEvent] = []
        self.time_ms = time_ms

    def __call__(self, sym: str, new: Decimal, rule: str, reason: str) -> None:
        old = self.targets[sym]
        if new < old:
            self.targets[sym] = new
            self.events.append(
                RiskEvent(
                    event_type=PositionEventType.RISK_BLOCK,
                    time_ms=self.time_ms,
                    symbol=sym,
                    trigger_reason=reason,
                    action_taken=f"target {old} -> {new}",
                    indicators={"rule": rule},
                    target_before=old,
                    target_after=new,
                )
            )
