"""Immutable input events of the engine, and the PositionEvent record (STRATEGY.md §6).

Input events: :class:`~tradebot.core.domain.market.Candle` (a closed base candle),
:class:`~tradebot.core.domain.orders.Fill`, :class:`OrderUpdate`, :class:`FeedStatus` and
:class:`TradingControl` (an operator's or the venue watchdog's pause or resume) and :class:`CashFlow`
(a deposit or withdrawal).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tradebot.core.domain.enums import OrderStatus, PositionEventType, TradingState
from tradebot.core.domain.ids import ClientOrderId, ExchangeOrderId, Symbol

#: Namespace of the deterministic position-event ids (uuid5 of "<run>:<seq>").
POSITION_EVENT_NAMESPACE = uuid.UUID("6d1b7c1e-2f8a-4a57-9f4e-5f3c0c1a9b21")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdate:
    """A venue's report of an order's status (accepted, rejected, canceled, expired, …).

    Attributes
    ----------
    client_order_id, symbol
        Which order.
    status
        New status as mapped by the adapter.
    ts_ms
        Report time, ms UTC.
    exchange_order_id
        The venue's id when known.
    reason
        Venue reason for rejections and expiries (e.g. ``"-2010 Account has insufficient balance"``).
    """

    client_order_id: ClientOrderId
    symbol: Symbol
    status: OrderStatus
    ts_ms: int
    exchange_order_id: ExchangeOrderId | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedStatus:
    """A market-data feed for ``symbol`` became stale (or recovered).

    While stale, the engine plans no entries or increases on ``symbol`` and does not wait for its
    candles before rebalancing.
    """

    symbol: Symbol
    stale: bool
    ts_ms: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingControl:
    """An operator's pause or resume of new entries (e.g. Telegram ``/pause``, ``/resume``).

    ``state=REDUCING`` pauses: no entries or increases, while exits, stops and other reductions go on.
    ``state=ACTIVE`` lifts that pause only; it never lifts a daily-loss halt (which ends at the next
    UTC day). A pause given during a halt applies once the halt ends.

    Attributes
    ----------
    state
        ``TradingState.REDUCING`` (pause) or ``TradingState.ACTIVE`` (resume).
    reason
        Who asked and how, for the record (``"telegram /pause by chat 42"``).
    ts_ms
        When it was asked, ms UTC (the runtime's clock).
    source
        Whose pause it is: ``"operator"`` (default; Telegram, the CLI) or ``"venue"`` (the daemon's
        venue watchdog after failed rounds). Each source's pause is its own flag: a resume lifts only
        the pause of its own source, and new entries stay paused while any source pauses them.

    Raises
    ------
    ValueError
        For ``TradingState.HALTED``: an operator pauses, the daily-loss rule halts.
    """

    state: TradingState
    reason: str
    ts_ms: int
    source: str = "operator"

    def __post_init__(self) -> None:
        if self.state not in (TradingState.ACTIVE, TradingState.REDUCING):
            raise ValueError(f"a trading control pauses (reducing) or resumes (active), was {self.state!r}")
        if self.source not in PAUSE_SOURCES:
            raise ValueError(
                f"a trading control's source must be one of {PAUSE_SOURCES}, was {self.source!r}"
            )


#: Who may pause new entries (:class:`TradingControl`).
PAUSE_SOURCES = ("operator", "venue")


@dataclass(frozen=True, slots=True, kw_only=True)
class CashFlow:
    """A deposit (``amount > 0``) or withdrawal (``< 0``) of one asset, found at the venue.

    It moves cash (quote asset) or a position (base asset) and the equity, never the PnL: returns
    and the daily-loss limit are measured net of it (time-weighted, like a fund's).

    Attributes
    ----------
    flow_id
        Deterministic id (the ledger applies each once), e.g. ``"flow:<run>:<asset>:<ms>"``.
    asset
        Asset code (``"USDT"``, ``"BTC"``).
    symbol
        The traded symbol of a base asset (``"BTC/USDT"``), ``None`` for the quote asset.
    amount
        Signed change, units of ``asset``.
    price
        Quote value of one unit at the time (the mark of a base asset, 1 for the quote asset).
    ts_ms
        When it was found, ms UTC.
    reason
        How it was found, for the record (the reconciliation's comparison line).
    """

    flow_id: str
    asset: str
    symbol: Symbol | None
    amount: Decimal
    price: Decimal
    ts_ms: int
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.amount.is_finite() or self.amount == 0:
            raise ValueError(
                f"cash flow {self.flow_id}: amount must be finite and non-zero, was {self.amount!r}"
            )
        if not self.price.is_finite() or not self.price > 0:
            raise ValueError(f"cash flow {self.flow_id}: price must be finite and > 0, was {self.price!r}")

    @property
    def value(self) -> Decimal:
        """Signed quote-currency value ``amount × price``."""
        return self.amount * self.price


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionEvent:
    """One decision that changed or protected a position: one ``position_events`` row.

    Attributes
    ----------
    event_id
        Deterministic UUID (uuid5 of ``"<run_id>:<seq>"``), so a replay reproduces the same ids.
    seq
        Sequence number of the event within the run (1, 2, …).
    position_id
        The trade (position lifecycle) it belongs to, or ``None`` for a flat symbol.
    event_type
        What happened.
    symbol, stream
        Where (stream is ``None`` for asset-level decisions).
    event_time_ms
        Event time, ms UTC (the closing candle's close time, or the fill time).
    price
        Mark or fill price in quote currency.
    profit_pct
        Unrealized profit of the position at the event, percent of average entry (``2.5`` = +2.5 %).
    r_multiple
        Profit in R (initial risk per unit), or ``None`` when no initial stop is defined.
    size_before, size_after
        Position (or targeted position) in base units before and after the action.
    trigger_reason
        Human-readable cause, e.g. ``"low 24810.5 <= stop 24850.0"``.
    indicators
        The indicator values that caused the decision (JSON-serialisable).
    ml_prediction
        Optional model output (JSON), ``None`` when no model is used.
    action_taken
        What was done, e.g. ``"sell 0.01500 BTC"``.
    amount_saved_or_gained
        Measured benefit in quote currency where it can be measured, else ``None``.
    client_order_ids
        The orders the decision caused.
    """

    event_id: uuid.UUID
    seq: int
    position_id: str | None
    event_type: PositionEventType
    symbol: Symbol
    event_time_ms: int
    price: Decimal
    size_before: Decimal
    size_after: Decimal
    trigger_reason: str
    action_taken: str
    stream: str | None = None
    profit_pct: float | None = None
    r_multiple: float | None = None
    indicators: dict[str, Any] = field(default_factory=dict)
    ml_prediction: dict[str, Any] | None = None
    amount_saved_or_gained: Decimal | None = None
    client_order_ids: tuple[str, ...] = ()


def position_event_id(run_id: str, seq: int) -> uuid.UUID:
    """Return the deterministic UUID of event ``seq`` of run ``run_id`` (uuid5, pure)."""
    return uuid.uuid5(POSITION_EVENT_NAMESPACE, f"{run_id}:{seq}")
