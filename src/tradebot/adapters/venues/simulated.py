"""Simulated spot exchange: filters, market-order fills at the next candle's open, fees, slippage.

:class:`SimulatedExchange` is synchronous and runs inside the backtest hot loop.
:class:`SimulatedVenue` wraps it as an async :class:`tradebot.ports.Venue` for paper mode and
contract tests.

Fill model (documented so that backtest numbers can be checked by hand):

* :meth:`SimulatedExchange.submit` validates like Binance, without rounding anything: a quantity off
  the step, below ``min_qty`` or a notional (at ``order.ref_price``) outside the notional limits is
  ``REJECTED`` with ``"Filter failure: LOT_SIZE"`` / ``"Filter failure: NOTIONAL"``; a client order
  id that is still open is ``REJECTED`` with ``"Duplicate order sent."``; market and stop orders are
  supported, limit orders are not. Otherwise the order is ``ACCEPTED`` and queued.
* :meth:`SimulatedExchange.on_candle` fills the queued orders of the candle's symbol that were
  submitted at or before the candle's open time (never at a price from before the submit) at the
  candle's open, moved by ``slippage_bps`` against us (buy ``open × (1 + bps/10⁴)`` rounded *up* to
  the tick, sell ``open × (1 − bps/10⁴)`` rounded *down*), sells before buys, in submission order.
  ``fee_quote = qty × price × taker_fee`` quantized to 1e-8 (half-even). Trade ids are
  ``"sim-<n>"``, fill time is the candle's open time.
* Balance is checked at fill time, not at submit (a deliberate simplification: the planner already
  sizes buys against cash): a buy whose ``qty × price + fee`` exceeds the quote balance, or a sell
  exceeding the base balance, is ``EXPIRED`` with reason
  ``"-2010 Account has insufficient balance for requested action."`` (Binance's code and text);
  what was filled before stays filled.
* Optional partial fills: with ``max_volume_fraction`` set, the orders of one symbol share at most
  ``volume × max_volume_fraction`` (rounded down to step) per candle; the rest stays queued for the
  next candle.

Stop orders (``STOP_MARKET``, ``STOP_LIMIT``) rest until a candle reaches their ``stop_price``;
:mod:`tradebot.adapters.venues.sim_stops` documents when they arm, lock, trigger and fill (the rule
the exchange simulator applies too). A resting stop keeps :meth:`SimulatedExchange.has_queued_orders`
true, and a candle's market orders fill at its open before its stops are looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from tradebot.adapters.venues.sim_stops import (
    INSUFFICIENT_BALANCE,
    WOULD_TRIGGER_IMMEDIATELY,
    StopBook,
    StopExpiry,
)
from tradebot.core.domain import (
    ZERO,
    Candle,
    ClientOrderId,
    ExchangeOrderId,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PlaceOrder,
    Side,
    Symbol,
    TradeId,
    stop_is_crossed,
    to_decimal,
)
from tradebot.errors import ConfigError, OrderRejected, VenueError
from tradebot.ports import OrderReport

__all__ = [
    "INSUFFICIENT_BALANCE",
    "WOULD_TRIGGER_IMMEDIATELY",
    "SimulatedExchange",
    "SimulatedVenue",
]

DUPLICATE_ORDER = "Duplicate order sent."
UNKNOWN_ORDER = "Unknown order sent."
_FEE_QUANTUM = Decimal("1e-8")
_BPS = Decimal(10_000)
_EMPTY: tuple[Fill | OrderUpdate, ...] = ()


class SimulatedExchange:
    """A deterministic spot exchange filling market orders on candles.

    Parameters
    ----------
    instruments
        The tradable instruments (precision, filters, ``taker_fee``): a mapping symbol → instrument
        or an iterable of instruments.
    balances
        Initial balance per asset code, e.g. ``{"USDT": Decimal("10000")}`` (missing assets are 0).
    slippage_bps
        Adverse price move applied to every fill, basis points (5 = 0.05 %), >= 0.
    max_volume_fraction
        Partial-fill model: the most a symbol's orders may fill per candle, as a fraction of the
        candle's volume, in (0, 1]; ``None`` (default) fills everything at once.
    name
        Venue name written into fills.

    Raises
    ------
    ValueError
        If ``slippage_bps``, ``max_volume_fraction`` or a balance is out of range.
    """

    def __init__(
        self,
        instruments: Mapping[Symbol, Instrument] | Iterable[Instrument],
        balances: Mapping[str, Decimal],
        *,
        slippage_bps: Decimal | int | float | str = 5,
        max_volume_fraction: Decimal | float | str | None = None,
        name: str = "simulated",
        trade_id_prefix: str = "sim",
    ) -> None:
        self.name = name
        self._prefix = trade_id_prefix
        values = instruments.values() if isinstance(instruments, Mapping) else instruments
        self.instruments: dict[Symbol, Instrument] = {i.symbol: i for i in values}
        self.slippage_bps = to_decimal(slippage_bps, field="slippage_bps")
        if self.slippage_bps < 0:
            raise ValueError(f"slippage_bps must be >= 0, was {slippage_bps!r}")
        self.max_volume_fraction = (
            None
            if max_volume_fraction is None
            else to_decimal(max_volume_fraction, field="max_volume_fraction")
        )
        if self.max_volume_fraction is not None and not 0 < self.max_volume_fraction <= 1:
            raise ValueError(f"max_volume_fraction must be in (0, 1], was {max_volume_fraction!r}")
        self._balances: dict[str, Decimal] = {}
        for asset, amount in balances.items():
            if amount < 0:
                raise ValueError(f"initial balance of {asset} must be >= 0, was {amount!r}")
            self._balances[asset] = amount
        self._orders: dict[ClientOrderId, Order] = {}
        self._reasons: dict[ClientOrderId, str] = {}
        self._updated_ms: dict[ClientOrderId, int] = {}
        self._queues: dict[str, list[Order]] = {}  # open orders per symbol, market and stop
        self._stops = StopBook()  # the open stops' trigger state and locks
        self._fills: dict[str, list[Fill]] = {}
        self._trade_seq = 0
        self._order_seq = 0
        self.last_time_ms = 0

    # -- orders -----------------------------------------------------------------------------------

    def submit(self, order: PlaceOrder, now_ms: int) -> OrderReport:
        """Validate ``order`` and queue it for the next candle of its symbol.

        A stop order (``STOP_MARKET``, ``STOP_LIMIT``) rests until the market reaches its
        ``stop_price`` (see the module docstring).

        Returns
        -------
        OrderReport
            ``ACCEPTED`` (with an exchange order id ``"sim-o<n>"``), or ``REJECTED`` with a
            Binance-like reason (see the module docstring). Rejected orders are not stored.
        """
        self.last_time_ms = max(self.last_time_ms, now_ms)
        reason = self._reject_reason(order)
        if reason is not None:
            return OrderReport(
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                status=OrderStatus.REJECTED,
                qty=order.qty,
                filled_qty=ZERO,
                ts_ms=now_ms,
                reason=reason,
                order_type=order.order_type,
                stop_price=order.stop_price,
            )
        self._order_seq += 1
        state = Order(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            order_type=order.order_type,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            reduce_only=order.reduce_only,
            status=OrderStatus.ACCEPTED,
            exchange_order_id=ExchangeOrderId(f"{self._prefix}-o{self._order_seq}"),
            reason=order.reason,
            created_ms=now_ms,
        )
        if order.stop_price is not None:
            self._stops.add(state)
        self._orders[order.client_order_id] = state
        self._reasons.pop(order.client_order_id, None)
        self._updated_ms[order.client_order_id] = now_ms
        self._queues.setdefault(order.symbol, []).append(state)
        return self._report(state)

    def _reject_reason(self, order: PlaceOrder) -> str | None:
        instrument = self.instruments.get(order.symbol)
        if instrument is None:
            return "Invalid symbol."
        existing = self._orders.get(order.client_order_id)
        if existing is not None and existing.status.is_open:
            return DUPLICATE_ORDER
        if order.order_type is OrderType.MARKET:
            price = order.ref_price
        elif order.stop_price is not None:  # a stop order (PlaceOrder checked its fields)
            prices = (order.stop_price, order.limit_price or order.stop_price)
            if not all(instrument.is_price_on_tick(p) for p in prices):
                return "Filter failure: PRICE_FILTER"
            price = order.limit_price or order.stop_price
        else:
            return (
                f"Unsupported order type {order.order_type.value!r}: the simulator fills market and stop "
                "orders only."
            )
        problem = instrument.check_order(order.qty, price)
        if problem is not None:
            return f"Filter failure: {problem.split(':', 1)[0]}"
        if order.stop_price is not None and stop_is_crossed(order.side, order.stop_price, order.ref_price):
            return WOULD_TRIGGER_IMMEDIATELY
        return None

    def cancel(self, client_order_id: ClientOrderId, now_ms: int) -> OrderReport:
        """Cancel an open order (what has filled stays filled).

        Raises
        ------
        OrderRejected
            If the order is unknown or no longer open (Binance ``-2011 Unknown order sent.``).
        """
        state = self._orders.get(client_order_id)
        if state is None or not state.status.is_open:
            raise OrderRejected(f"-2011 {UNKNOWN_ORDER} ({client_order_id})")
        state.transition(OrderStatus.CANCELED)
        self._updated_ms[client_order_id] = now_ms
        self._queues[state.symbol].remove(state)
        self._drop_stop(state)
        return self._report(state)

    def has_queued_orders(self) -> bool:
        """Whether any order waits for a coming candle of its symbol: a market order to fill at its
        open, or a resting stop (any symbol)."""
        return any(self._queues.values())

    def locked(self) -> dict[str, Decimal]:
        """Return the units locked by resting sell stops per asset (assets with a lock only)."""
        return self._stops.locks()

    def fetch_order(self, client_order_id: ClientOrderId) -> OrderReport | None:
        """Return the state of an accepted order, or ``None`` when unknown (or rejected)."""
        state = self._orders.get(client_order_id)
        return None if state is None else self._report(state)

    def open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        """Return the queued orders (of ``symbol``, or all), in submission order per symbol."""
        queues = self._queues.values() if symbol is None else [self._queues.get(symbol, [])]
        return [self._report(state) for queue in queues for state in queue]

    def balances(self) -> dict[str, Decimal]:
        """Return a copy of the balance per asset code."""
        return dict(self._balances)

    def fills_for(self, symbol: str) -> list[Fill]:
        """Return the fills of ``symbol``, oldest first."""
        return list(self._fills.get(symbol, ()))

    def _report(self, state: Order) -> OrderReport:
        cid = state.client_order_id
        return OrderReport(
            client_order_id=cid,
            symbol=state.symbol,
            status=state.status,
            qty=state.qty,
            filled_qty=state.filled_qty,
            ts_ms=self._updated_ms[cid],
            avg_price=state.avg_fill_price if state.filled_qty > 0 else None,
            exchange_order_id=state.exchange_order_id,
            reason=self._reasons.get(cid, ""),
            side=state.side,
            order_type=state.order_type,
            stop_price=state.stop_price,
        )

    # -- fills ------------------------------------------------------------------------------------

    def on_candle(self, candle: Candle) -> Sequence[Fill | OrderUpdate]:
        """Fill the queued orders of ``candle.symbol`` at the candle's open (see the module docstring).

        Cheap when nothing is queued for the symbol: one dict lookup, and a shared empty tuple is
        returned (do not mutate the result).

        Then look at the symbol's stops: arm the ones that reach the venue at this open, fill the
        ones the candle triggers (see the module docstring).

        Returns
        -------
        Sequence[Fill | OrderUpdate]
            The fills, and an ``EXPIRED`` :class:`OrderUpdate` for each order that ran out of
            balance (or a stop the open had already reached). Fill statuses are implied by the
            fills (no separate FILLED update).
        """
        queue = self._queues.get(candle.symbol)
        if not queue:
            return _EMPTY
        t = candle.open_time_ms
        self.last_time_ms = max(self.last_time_ms, t)
        eligible = [s for s in queue if s.created_ms <= t]  # no fill at a price from before the submit
        if not eligible:
            return _EMPTY
        instrument = self.instruments[Symbol(candle.symbol)]
        # stops after the market orders, which fill at the open, before anything could trigger
        stops = [s for s in eligible if s.stop_price is not None] if self._stops else ()
        if stops:
            eligible = [s for s in eligible if s.stop_price is None]
        events = self._fill_market(eligible, candle, instrument) if eligible else []
        for state in stops:
            action = self._stops.step(state, candle, instrument, free=self._free, fill_price=self.fill_price,
                                      max_volume_fraction=self.max_volume_fraction)  # fmt: skip
            if isinstance(action, StopExpiry):
                events.append(self._expire(state, action.reason, t))
            elif action is not None:
                rate = instrument.maker_fee if action.maker else instrument.taker_fee
                events.append(
                    self._fill(state, action.qty, action.price, rate, instrument, candle.close_time_ms)
                )
        if events:  # an order filled or expired (every change of status is an event): keep the open ones
            self._queues[candle.symbol] = [s for s in queue if s.status.is_open]
        return events

    def _fill_market(
        self, eligible: list[Order], candle: Candle, instrument: Instrument
    ) -> list[Fill | OrderUpdate]:
        t = candle.open_time_ms
        open_price = to_decimal(candle.open, field="open")
        budget = None
        if self.max_volume_fraction is not None:
            budget = instrument.round_qty(
                to_decimal(candle.volume, field="volume") * self.max_volume_fraction
            )
        events: list[Fill | OrderUpdate] = []
        for state in sorted(eligible, key=lambda s: s.side is Side.BUY):  # stable: sells first
            if budget is not None and budget <= 0:
                break
            qty = state.qty - state.filled_qty
            if budget is not None:
                qty = min(qty, budget)
            price = self.fill_price(state.side, open_price, instrument)
            event = self._fill(state, qty, price, instrument.taker_fee, instrument, t)
            events.append(event)
            if budget is not None and isinstance(event, Fill):
                budget -= qty
        return events

    # -- execution --------------------------------------------------------------------------------

    def _free(self, asset: str) -> Decimal:
        # the balance not locked by a resting sell stop
        return self._balances.get(asset, ZERO) - self._stops.locked(asset)

    def _drop_stop(self, state: Order) -> None:
        # forget a stop that is no longer open and free what it still locks
        if state.stop_price is not None:
            self._stops.drop(state, self.instruments[state.symbol].base)

    def _expire(self, state: Order, reason: str, ts_ms: int) -> OrderUpdate:
        cid = state.client_order_id
        self._updated_ms[cid] = ts_ms
        state.transition(OrderStatus.EXPIRED)
        self._reasons[cid] = reason
        self._drop_stop(state)
        return OrderUpdate(
            client_order_id=cid,
            symbol=state.symbol,
            status=OrderStatus.EXPIRED,
            ts_ms=ts_ms,
            exchange_order_id=state.exchange_order_id,
            reason=reason,
        )

    def _fill(
        self,
        state: Order,
        qty: Decimal,
        price: Decimal,
        fee_rate: Decimal,
        instrument: Instrument,
        ts_ms: int,
    ) -> Fill | OrderUpdate:
        notional = qty * price
        fee = (notional * fee_rate).quantize(_FEE_QUANTUM, rounding=ROUND_HALF_EVEN)
        base, quote = instrument.base, instrument.quote
        own = min(self._stops.own_lock(state), qty) if state.stop_price is not None else ZERO
        if state.side is Side.BUY:
            enough = self._balances.get(quote, ZERO) >= notional + fee
        else:
            enough = self._free(base) + own >= qty
        cid = state.client_order_id
        self._updated_ms[cid] = ts_ms
        if not enough:
            return self._expire(state, INSUFFICIENT_BALANCE, ts_ms)
        if own:  # a sell stop sells the units it locked
            self._stops.release(state, base, own)
        sign = 1 if state.side is Side.BUY else -1
        self._balances[base] = self._balances.get(base, ZERO) + sign * qty
        self._balances[quote] = self._balances.get(quote, ZERO) - sign * notional - fee
        self._trade_seq += 1
        fill = Fill(
            venue=self.name,
            symbol=state.symbol,
            trade_id=TradeId(f"{self._prefix}-{self._trade_seq}"),
            client_order_id=cid,
            side=state.side,
            qty=qty,
            price=price,
            fee_quote=fee,
            ts_ms=ts_ms,
            exchange_order_id=state.exchange_order_id,
            fee=fee,
            fee_currency=quote,
        )
        state.apply_fill(fill)
        self._fills.setdefault(state.symbol, []).append(fill)
        self.last_time_ms = max(self.last_time_ms, ts_ms)
        if not state.status.is_open:
            self._drop_stop(state)
        return fill

    def fill_price(self, side: Side, open_price: Decimal, instrument: Instrument) -> Decimal:
        """Return the fill price of a market order at ``open_price`` (quote currency).

        Buy: ``open × (1 + slippage_bps / 10⁴)`` rounded up to the tick; sell: ``open × (1 −
        slippage_bps / 10⁴)`` rounded down to the tick (never below one tick).
        """
        if side is Side.BUY:
            return instrument.round_price(open_price * (1 + self.slippage_bps / _BPS), ROUND_CEILING)
        price = instrument.round_price(open_price * (1 - self.slippage_bps / _BPS), ROUND_FLOOR)
        return max(price, instrument.tick_size)


class SimulatedVenue:
    """An async :class:`tradebot.ports.Venue` over a :class:`SimulatedExchange` (paper mode, tests).

    Parameters
    ----------
    exchange
        The simulated exchange; the runtime feeds it candles through :meth:`on_candle`.
    now_ms
        Time source for order reports (ms UTC); defaults to the latest candle or submit time the
        exchange has seen. A submit uses ``max(now_ms(), order.created_ms)``.

    Notes
    -----
    ``submit`` raises :class:`~tradebot.errors.OrderRejected` for a rejection, as the port requires;
    a lack of balance is only detected at fill time and arrives as an ``EXPIRED`` update from
    :meth:`on_candle`.
    """

    def __init__(self, exchange: SimulatedExchange, now_ms: Callable[[], int] | None = None) -> None:
        self.exchange = exchange
        self.name = exchange.name
        self._now_ms = now_ms or (lambda: exchange.last_time_ms)
        self._last_close: dict[Symbol, float] = {}

    async def load_instruments(self, symbols: Sequence[str]) -> dict[Symbol, Instrument]:
        """Return the instruments of ``symbols``; raise ``ConfigError`` naming an unknown symbol."""
        missing = [s for s in symbols if s not in self.exchange.instruments]
        if missing:
            raise ConfigError(
                f"unknown symbol(s) {missing!r} on venue {self.name}; known: {sorted(self.exchange.instruments)}"
            )
        return {Symbol(s): self.exchange.instruments[Symbol(s)] for s in symbols}

    async def submit(self, order: PlaceOrder) -> OrderReport:
        """Submit ``order``; raise ``OrderRejected`` with the venue reason when it is refused."""
        report = self.exchange.submit(order, max(self._now_ms(), order.created_ms))
        if report.status is OrderStatus.REJECTED:
            raise OrderRejected(f"{order.client_order_id}: {report.reason}")
        return report

    async def cancel(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        """Cancel an open order; raise ``OrderRejected`` if it is unknown or closed."""
        return self.exchange.cancel(client_order_id, self._now_ms())

    async def fetch_order(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport | None:
        """Look an order up by client order id."""
        return self.exchange.fetch_order(client_order_id)

    async def fetch_open_orders(self, symbol: Symbol | None = None) -> list[OrderReport]:
        """Return the open orders (of ``symbol``, or all)."""
        return self.exchange.open_orders(symbol)

    async def fetch_balances(self) -> dict[str, Decimal]:
        """Return the balance per asset code."""
        return self.exchange.balances()

    async def fetch_my_trades(self, symbol: Symbol, since_ms: int | None = None) -> list[Fill]:
        """Return the fills of ``symbol`` with ``ts_ms >= since_ms``, oldest first."""
        fills = self.exchange.fills_for(symbol)
        return fills if since_ms is None else [f for f in fills if f.ts_ms >= since_ms]

    async def fetch_reference_price(self, symbol: Symbol) -> Decimal:
        """Return the close of the last candle of ``symbol`` the exchange has seen (quote currency).

        Raises
        ------
        VenueError
            If no candle of ``symbol`` has been seen yet.
        """
        close = self._last_close.get(symbol)
        if close is None:
            raise VenueError(f"{self.name}: no price of {symbol!r} yet")
        return to_decimal(close)

    def on_candle(self, candle: Candle) -> Sequence[Fill | OrderUpdate]:
        """Pass ``candle`` to the exchange and return its fills and updates."""
        self._last_close[Symbol(candle.symbol)] = candle.close  # made exact only when asked for
        return self.exchange.on_candle(candle)

    async def close(self) -> None:
        """Nothing to release."""
