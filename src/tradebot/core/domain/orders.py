"""Order intents, orders (a small state machine) and fills."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tradebot.core.domain.decimals import ZERO
from tradebot.core.domain.enums import OrderStatus, OrderType, Side
from tradebot.core.domain.ids import ClientOrderId, ExchangeOrderId, Symbol, TradeId


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderIntent:
    """What the planner wants to trade for one symbol before slicing into child orders.

    Attributes
    ----------
    intent_id
        Deterministic id ``"<run>-<seq>"``; children are ``"<intent_id>-<n>"``.
    symbol
        ccxt unified symbol.
    side
        Buy or sell.
    qty
        Total quantity in base units (> 0, on the instrument's step).
    ref_price
        Mark price in quote currency used for filters and cash checks.
    reason
        Why (``"rebalance"``, ``"stop_exit"``, …); becomes the orders' reason.
    """

    intent_id: str
    symbol: Symbol
    side: Side
    qty: Decimal
    ref_price: Decimal
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One execution reported by a venue. Immutable; applied to the ledger exactly once.

    Attributes
    ----------
    venue
        Venue name (``"binance"``, ``"deribit"``, ``"simulated"``).
    symbol
        ccxt unified symbol.
    trade_id
        The venue's execution id, unique per (venue, symbol).
    client_order_id
        Our id of the order that filled.
    side
        Buy or sell.
    qty
        Filled quantity in base units, > 0.
    price
        Fill price in quote currency, > 0.
    fee_quote
        Fee in quote currency (converted at fill time when charged in another asset); negative for
        a maker rebate (Deribit pays makers on some perpetuals), never below ``-qty × price``.
    ts_ms
        Fill time, ms UTC.
    exchange_order_id
        The venue's order id, if known.
    fee, fee_currency
        The fee as charged by the venue (amount and currency), for the record.
    """

    venue: str
    symbol: Symbol
    trade_id: TradeId
    client_order_id: ClientOrderId
    side: Side
    qty: Decimal
    price: Decimal
    fee_quote: Decimal
    ts_ms: int
    exchange_order_id: ExchangeOrderId | None = None
    fee: Decimal = ZERO
    fee_currency: str = ""

    def __post_init__(self) -> None:
        if self.qty <= 0:
            raise ValueError(f"Fill {self.trade_id}: qty must be > 0, was {self.qty!r}")
        if self.price <= 0:
            raise ValueError(f"Fill {self.trade_id}: price must be > 0, was {self.price!r}")
        fee = self.fee_quote
        if not isinstance(fee, Decimal) or not fee.is_finite() or fee < -self.qty * self.price:
            raise ValueError(
                f"Fill {self.trade_id}: fee_quote must be a finite Decimal >= -qty × price "
                f"(negative: a rebate), was {fee!r}"
            )

    @property
    def notional(self) -> Decimal:
        """``qty × price`` in quote currency."""
        return self.qty * self.price


_ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING_SUBMIT: frozenset(
        {
            OrderStatus.ACCEPTED,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.REJECTED,
            OrderStatus.DENIED,
            OrderStatus.UNKNOWN,
            OrderStatus.CANCELED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.UNKNOWN: frozenset(
        {
            OrderStatus.ACCEPTED,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.REJECTED,
            OrderStatus.CANCELED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.ACCEPTED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED}
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED}
    ),
}


@dataclass(slots=True, kw_only=True)
class Order:
    """An order and its lifecycle. Only :meth:`transition` and :meth:`apply_fill` change it.

    Attributes
    ----------
    client_order_id
        Our deterministic id (``"<run>-<intent seq>-<child n>"``).
    symbol, side, order_type
        What is traded.
    qty
        Ordered quantity in base units.
    limit_price
        Limit price in quote currency for limit and stop-limit orders, else ``None``.
    stop_price
        Trigger price in quote currency of a stop order, else ``None`` (see ``PlaceOrder``).
    reduce_only
        The order may only reduce a position (see ``PlaceOrder``).
    status
        Current :class:`OrderStatus`.
    filled_qty
        Sum of applied fills, base units.
    avg_fill_price
        Fill-weighted average price in quote currency (0 until the first fill).
    fees_quote
        Sum of fill fees in quote currency.
    exchange_order_id
        The venue's id once known.
    reason
        Why the order exists (from the intent).
    created_ms
        Event time (ms UTC) at which the order was planned.
    """

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    qty: Decimal
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    reduce_only: bool = False
    status: OrderStatus = OrderStatus.PENDING_SUBMIT
    filled_qty: Decimal = ZERO
    avg_fill_price: Decimal = ZERO
    fees_quote: Decimal = ZERO
    exchange_order_id: ExchangeOrderId | None = None
    reason: str = ""
    created_ms: int = 0
    fill_ids: set[str] = field(default_factory=set)

    @property
    def leaves_qty(self) -> Decimal:
        """Quantity still open, base units (0 once terminal)."""
        if self.status.is_terminal:
            return ZERO
        return self.qty - self.filled_qty

    def transition(self, status: OrderStatus) -> bool:
        """Move to ``status`` if the lifecycle allows it.

        Returns
        -------
        bool
            True when the status changed; False when ``status`` equals the current one or is a
            stale report (e.g. ACCEPTED after FILLED), which is ignored.
        """
        if status == self.status and status is not OrderStatus.PARTIALLY_FILLED:
            return False
        allowed = _ALLOWED.get(self.status, frozenset())
        if status not in allowed:
            return False
        self.status = status
        return True

    def apply_fill(self, fill: Fill) -> bool:
        """Add ``fill`` to the order once (deduplicated by trade id).

        A fill that arrives after a cancel or expiry is still applied (the venue executed it).

        Returns
        -------
        bool
            False when the fill's trade id was already applied.

        Raises
        ------
        ValueError
            If the fill belongs to another order or side, or would overfill the order.
        """
        if fill.client_order_id != self.client_order_id or fill.side is not self.side:
            raise ValueError(
                f"fill {fill.trade_id} ({fill.client_order_id}, {fill.side}) does not belong to order "
                f"{self.client_order_id} ({self.side})"
            )
        if fill.trade_id in self.fill_ids:
            return False
        new_qty = self.filled_qty + fill.qty
        if new_qty > self.qty:
            raise ValueError(
                f"fill {fill.trade_id} overfills order {self.client_order_id}: {new_qty} > {self.qty}"
            )
        self.avg_fill_price = (self.avg_fill_price * self.filled_qty + fill.price * fill.qty) / new_qty
        self.filled_qty = new_qty
        self.fees_quote += fill.fee_quote
        self.fill_ids.add(fill.trade_id)
        if not self.status.is_terminal:
            self.status = OrderStatus.FILLED if new_qty == self.qty else OrderStatus.PARTIALLY_FILLED
        return True
