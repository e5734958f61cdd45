"""Protocols the runtime needs from the outside world. Adapters implement them; the app composes them.

All methods are async: implementations do I/O (or simulate it). Prices and quantities cross these
boundaries as ``Decimal``; times are ms UTC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from tradebot.core.domain import (
    Candle,
    ClientOrderId,
    Fill,
    Instrument,
    OrderStatus,
    OrderType,
    PlaceOrder,
    Side,
    Symbol,
    Timeframe,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReport:
    """A venue's view of one order (from a submit answer, a lookup or an open-orders listing).

    Attributes
    ----------
    client_order_id, symbol
        Which order.
    status
        Mapped status; ``UNKNOWN`` when the venue's answer did not settle it.
    qty, filled_qty
        Ordered and filled quantity, base units.
    avg_price
        Average fill price, quote currency (``None`` before any fill).
    exchange_order_id
        The venue's id.
    reason
        Venue reason for a rejection or expiry.
    fills
        Executions reported with the answer (may be empty; fetch trades for the rest).
    ts_ms
        Venue time of the report, ms UTC.
    side
        Buy or sell, when the answer says (an adopted manual order keeps its true side).
    order_type
        The order's type when the answer says (a stop order is ``STOP_MARKET`` / ``STOP_LIMIT``).
    stop_price
        Trigger price of a stop order, quote currency (``None`` for other types). An untriggered
        stop reports ``ACCEPTED``.
    """

    client_order_id: ClientOrderId
    symbol: Symbol
    status: OrderStatus
    qty: Decimal
    filled_qty: Decimal
    ts_ms: int
    avg_price: Decimal | None = None
    exchange_order_id: str | None = None
    reason: str = ""
    fills: tuple[Fill, ...] = ()
    side: Side | None = None
    order_type: OrderType | None = None
    stop_price: Decimal | None = None


@runtime_checkable
class Venue(Protocol):
    """An execution venue (ccxt exchange, simulated exchange)."""

    name: str

    async def load_instruments(self, symbols: Sequence[str]) -> dict[Symbol, Instrument]:
        """Return precision and filters of ``symbols``. Raises ``ConfigError`` for an unknown symbol."""
        ...

    async def submit(self, order: PlaceOrder) -> OrderReport:
        """Send ``order`` once. Never retried by the caller; an unsettled outcome is status UNKNOWN.

        Raises ``OrderRejected`` / ``InsufficientFunds`` for definitive refusals.
        """
        ...

    async def cancel(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        """Cancel an open order; returns its state after the cancel."""
        ...

    async def fetch_order(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport | None:
        """Look an order up by client order id; ``None`` when the venue does not know it (yet)."""
        ...

    async def fetch_open_orders(self, symbol: Symbol | None = None) -> list[OrderReport]:
        """Return the venue's open orders (all symbols when ``symbol`` is None)."""
        ...

    async def fetch_balances(self) -> dict[str, Decimal]:
        """Return total balance per asset code (base units / quote currency)."""
        ...

    async def fetch_my_trades(self, symbol: Symbol, since_ms: int | None = None) -> list[Fill]:
        """Return our executions on ``symbol`` since ``since_ms`` (ms UTC), oldest first."""
        ...

    async def fetch_reference_price(self, symbol: Symbol) -> Decimal:
        """Return the venue's current price of ``symbol`` (quote currency): the second reference the
        daemon reads before a large decision. Raises ``VenueError`` when it cannot be read."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class MarketFeed(Protocol):
    """A source of closed candles of one base timeframe, in time order."""

    def candles(self) -> AsyncIterator[Candle]:
        """Yield closed candles in non-decreasing open time (across symbols)."""
        ...


@runtime_checkable
class HistoryProvider(Protocol):
    """A source of historical candles (REST backfill or stored files) for warm-up and gap filling."""

    async def fetch_candles(
        self, symbol: Symbol, timeframe: Timeframe, since_ms: int, until_ms: int
    ) -> list[Candle]:
        """Return closed candles with ``since_ms <= open_time_ms < until_ms``, oldest first."""
        ...


@runtime_checkable
class EventStore(Protocol):
    """Persistence of runs and of everything the engine decides (append-only)."""

    async def start_run(
        self, *, run_id: str, mode: str, config: dict[str, Any], version: str, started_ms: int
    ) -> None:
        """Record a new run (status ``running``)."""
        ...

    async def write(self, records: Sequence[object]) -> None:
        """Persist engine records (PositionEvent, OrderRecord, Fill, TradeRecord, EquitySnapshot,
        StreamSignal) idempotently; duplicates by unique key are ignored."""
        ...

    async def commit_step(
        self, records: Sequence[object], *, run_id: str, state: dict[str, Any], updated_ms: int | None = None
    ) -> None:
        """Persist ``records`` and the engine state that covers them (strict JSON) in one transaction:
        a crash keeps both or neither, so position events never outlive the state that numbered them."""
        ...

    async def finish_run(
        self, *, run_id: str, status: str, summary: dict[str, Any], finished_ms: int
    ) -> None:
        """Mark the run ``completed`` or ``failed`` and store its summary."""
        ...

    async def close(self) -> None:
        """Flush and release connections."""
        ...


class Clock(Protocol):
    """Runtime time source (timers and timeouts only; the core never reads a clock)."""

    def now_ms(self) -> int:
        """Return the current time, ms UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock's time."""
        ...
