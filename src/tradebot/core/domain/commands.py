"""Immutable outputs of the engine: orders to send, and records to persist.

``Engine.handle(event)`` returns a list of these. Drivers send :class:`PlaceOrder` /
:class:`CancelOrder` to the venue and hand every record (``PositionEvent``, :class:`StreamSignal`,
:class:`EquitySnapshot`, :class:`TradeRecord`, :class:`OrderRecord`) to the event store.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradebot.core.domain.enums import OrderStatus, OrderType, Side, StreamState
from tradebot.core.domain.ids import ClientOrderId, Symbol


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrder:
    """Send one (child) order.

    Attributes
    ----------
    client_order_id
        Deterministic id ``"<run>-<intent seq>-<child n>"``, generated before any I/O.
    symbol, side, order_type
        What to trade.
    qty
        Quantity in base units, on the instrument's step.
    ref_price
        Mark price (quote currency) at planning time, for filters and slippage reports.
    limit_price
        Limit price (quote currency) for ``LIMIT`` and ``STOP_LIMIT`` orders, else ``None``.
    stop_price
        Trigger price (quote currency) of a stop order (``STOP_MARKET``, ``STOP_LIMIT``), > 0; ``None``
        for every other type. A sell stop rests below the market and triggers when the price falls
        to it (protects a long), a buy stop rests above and triggers when the price rises to it.
    reduce_only
        The order may only reduce a position, never open or add to one (Deribit ``reduce_only``;
        a spot venue has nothing to check). Default ``False``.
    reason
        Why (``"rebalance"``, ``"stop_exit"``, …).
    intent_id
        The parent intent.
    created_ms
        Event time of the decision, ms UTC.

    Raises
    ------
    ValueError
        If a stop order has no ``stop_price`` > 0, a ``STOP_LIMIT`` has no ``limit_price`` > 0, or an
        order of another type sets ``stop_price``; the message names the order, the field and the
        value.
    """

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    qty: Decimal
    ref_price: Decimal
    reason: str
    intent_id: str
    created_ms: int
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    reduce_only: bool = False

    def __post_init__(self) -> None:
        problem = _stop_fields_problem(self.order_type, self.stop_price, self.limit_price)
        if problem is not None:
            raise ValueError(f"PlaceOrder {self.client_order_id}: {problem}")

    @property
    def notional(self) -> Decimal:
        """``qty × ref_price`` in quote currency."""
        return self.qty * self.ref_price


def _stop_fields_problem(
    order_type: OrderType, stop_price: Decimal | None, limit_price: Decimal | None
) -> str | None:
    # What is wrong with an order's stop fields, or None: a stop order needs stop_price > 0, a
    # stop_limit also limit_price > 0; no other type may set stop_price.
    if order_type.is_stop:
        if stop_price is None or not stop_price > 0:
            return f"a {order_type.value} order needs stop_price > 0, was {stop_price!r}"
        if order_type is OrderType.STOP_LIMIT and (limit_price is None or not limit_price > 0):
            return f"a stop_limit order needs limit_price > 0, was {limit_price!r}"
    elif stop_price is not None:
        return f"stop_price is only for stop orders, was {stop_price!r} on a {order_type.value} order"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder:
    """Cancel an open order by client order id."""

    client_order_id: ClientOrderId
    symbol: Symbol
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRecord:
    """Snapshot of an order's state to persist (insert on create, then status updates)."""

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    order_type: OrderType
    qty: Decimal
    status: OrderStatus
    filled_qty: Decimal
    avg_fill_price: Decimal
    fees_quote: Decimal
    reason: str
    intent_id: str
    created_ms: int
    updated_ms: int
    ref_price: Decimal
    exchange_order_id: str | None = None
    status_reason: str = ""
    #: Trigger price of a stop order (quote currency), ``None`` for other order types.
    stop_price: Decimal | None = None
    #: Limit price of a limit or stop-limit order (quote currency), else ``None``.
    limit_price: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSignal:
    """A trend stream's state at one of its candle closes (persisted when it flips or warms up).

    Attributes
    ----------
    stream
        Stream id ``"<asset>:<timeframe>"``.
    symbol
        The stream's symbol.
    time_ms
        Close time of the stream candle, ms UTC.
    state
        ``in`` or ``out``.
    confidence
        Rule strength in [0, 1].
    flipped
        True when the state changed at this candle.
    reason
        Why (``"ema20 > ema50"``, ``"warming up: 12/50 candles"``).
    indicators
        Indicator values (JSON-serialisable).
    """

    stream: str
    symbol: Symbol
    time_ms: int
    state: StreamState
    confidence: float
    flipped: bool
    reason: str
    indicators: dict[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class EquitySnapshot:
    """Portfolio value at an event time (sampled at the engine's rebalance clock, e.g. each 1h close).

    Attributes
    ----------
    time_ms
        ms UTC.
    equity
        Cash plus Σ qty × mark, quote currency.
    cash
        Quote-currency balance.
    positions
        Base-unit quantity per symbol.
    marks
        Mark price per symbol, quote currency.
    """

    time_ms: int
    equity: Decimal
    cash: Decimal
    positions: dict[str, Decimal]
    marks: dict[str, Decimal]


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeRecord:
    """One position lifecycle of one asset (flat → open → flat), persisted when it changes.

    Attributes
    ----------
    position_id
        Deterministic id ``"<run>-<symbol>-<n>"``.
    symbol
        ccxt unified symbol.
    opened_ms, closed_ms
        ms UTC; ``closed_ms`` is ``None`` while open.
    entry_avg_price, exit_avg_price
        Fill-weighted average buy / sell prices in quote currency (exit 0 until the first reduction).
    max_qty
        Largest position held, base units.
    bought_qty, sold_qty
        Total bought / sold in base units over the lifecycle.
    realized_pnl
        Σ (fill price − average entry) × qty on reductions, quote currency, before fees.
    fees
        Fees paid in quote currency.
    net_pnl
        ``realized_pnl − fees``.
    initial_risk_per_unit
        R in quote currency per base unit (entry − initial stop), or ``None``.
    r_multiple
        ``net_pnl / (initial_risk_per_unit × first entry qty)``, or ``None``.
    mae_pct, mfe_pct
        Maximum adverse / favourable excursion from the first entry price, percent (MAE ≤ 0 ≤ MFE).
    mfe_quote
        MFE in quote currency on the maximum size held (for profit give-back).
    """

    position_id: str
    symbol: Symbol
    opened_ms: int
    closed_ms: int | None
    entry_avg_price: Decimal
    exit_avg_price: Decimal
    max_qty: Decimal
    bought_qty: Decimal
    sold_qty: Decimal
    realized_pnl: Decimal
    fees: Decimal
    net_pnl: Decimal
    initial_risk_per_unit: Decimal | None
    r_multiple: float | None
    mae_pct: float
    mfe_pct: float
    mfe_quote: Decimal
