"""The resting stop orders of a :class:`~tradebot.adapters.venues.simulated.SimulatedExchange`: their
trigger state and the base units they lock, and what each candle does to them. The trigger and
execution rule is :mod:`tradebot.core.domain.stops`, which the exchange simulator's order engine
applies too, so that the daemon against the simulator fills its stops like the backtest. The
exchange executes the fills and keeps the balances.

Stop model (``STOP_MARKET``, ``STOP_LIMIT``):

* ``submit`` checks the stop price (and a stop-limit's limit) on the tick (``"Filter failure:
  PRICE_FILTER"``), the notional at the limit price, else at the stop price, and refuses a stop the
  order's ``ref_price`` has already reached (sell: ``ref_price <= stop``) with ``"-2010 Order would
  trigger immediately."``, Binance's answer.
* Like a market order, a stop reaches the venue at the open of the first candle at or after its
  submit time. If that open has already reached the stop, the stop is ``EXPIRED`` with the same
  reason (the exchange simulator refuses it at the same market price, the forming candle's open).
  Else a sell stop locks the base units it sells: it is ``EXPIRED`` with ``INSUFFICIENT_BALANCE``
  when they are not free, and while it rests a market sell (or another sell stop) of the same units
  runs out of balance, as on Binance. Buy stops lock nothing; their balance is checked at fill time
  like a market buy's.
* From that candle on, a sell stop triggers on a candle whose low reaches the stop price (buy: high),
  at the stop price, or at the candle's open when the candle opened through it (only possible on a
  later candle), moved by ``slippage_bps`` against us and rounded to the tick like a market order
  (``SimulatedExchange.fill_price``); taker fee; fill time is the candle's close. A stop is never
  limited by ``max_volume_fraction``.
* A ``STOP_LIMIT`` whose triggered price is at or better than its limit (sell: ``>= limit``) fills
  there as a taker; otherwise it rests as a limit order from the next candle on and fills at its
  limit price on a candle that trades through it (sell: ``high >= limit``), at the maker fee, at
  most ``volume × (max_volume_fraction or 1)`` per candle.
* ``cancel`` works as for a market order and frees the lock.
* ``reduce_only`` is carried on the order; on this spot account a sell can only reduce a holding.

Example: a sell ``STOP_MARKET`` of 0.5 BTC at 19 900 submitted at ``T``; the candle opening at ``T``
(open 20 000) arms it and locks 0.5 BTC; a later candle with low 19 850 triggers it, and the
exchange fills 0.5 BTC at ``19 900 × (1 − slippage)``, rounded down to the tick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from tradebot.core.domain import (
    ZERO,
    Candle,
    ClientOrderId,
    Instrument,
    Order,
    Side,
    limit_is_marketable,
    stop_execution_price,
    stop_is_crossed,
    stop_is_triggered,
    to_decimal,
)

#: Reason of an order expired at fill time for lack of balance (Binance error -2010).
INSUFFICIENT_BALANCE = "-2010 Account has insufficient balance for requested action."
#: Reason of a stop refused because the market has already reached its stop price (Binance -2010).
WOULD_TRIGGER_IMMEDIATELY = "-2010 Order would trigger immediately."


@dataclass(slots=True)
class _Stop:
    # A resting stop's venue state: its trigger (exact, and as a float for a cheap first look at
    # each candle), whether it has reached the venue (armed: lock taken), the base units it locks,
    # and the open time of the candle from which a triggered, not marketable stop-limit rests.
    stop: Decimal
    stop_f: float
    limit: Decimal | None
    armed: bool = False
    locked: Decimal = ZERO
    resting_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StopFill:
    """Fill ``qty`` base units at ``price`` (quote currency); ``maker`` for a resting limit's fill."""

    qty: Decimal
    price: Decimal
    maker: bool = False


@dataclass(frozen=True, slots=True)
class StopExpiry:
    """Expire the stop with ``reason`` (:data:`WOULD_TRIGGER_IMMEDIATELY`, :data:`INSUFFICIENT_BALANCE`)."""

    reason: str


class StopBook:
    """Open stop orders of one simulated account, keyed by client order id, and the locks they hold."""

    def __init__(self) -> None:
        self._stops: dict[ClientOrderId, _Stop] = {}
        self._locked: dict[str, Decimal] = {}

    def __bool__(self) -> bool:
        return bool(self._stops)

    def add(self, order: Order) -> None:
        """Register an accepted stop order (its ``stop_price`` must be set)."""
        assert order.stop_price is not None
        self._stops[order.client_order_id] = _Stop(
            order.stop_price, float(order.stop_price), order.limit_price
        )

    def locked(self, asset: str) -> Decimal:
        """Units of ``asset`` locked by resting sell stops."""
        return self._locked.get(asset, ZERO)

    def locks(self) -> dict[str, Decimal]:
        """Locked units per asset (assets with a lock only)."""
        return {asset: amount for asset, amount in self._locked.items() if amount}

    def own_lock(self, order: Order) -> Decimal:
        """Units ``order`` locks itself (0 for a market order or an unarmed buy stop)."""
        stop = self._stops.get(order.client_order_id)
        return stop.locked if stop is not None else ZERO

    def release(self, order: Order, asset: str, qty: Decimal) -> None:
        """Free ``qty`` of the units ``order`` locks (it is filling them)."""
        stop = self._stops[order.client_order_id]
        stop.locked -= qty
        self._locked[asset] -= qty

    def drop(self, order: Order, asset: str) -> None:
        """Forget ``order`` (cancelled, expired or filled) and free what it still locks."""
        stop = self._stops.pop(order.client_order_id, None)
        if stop is not None and stop.locked:
            self._locked[asset] -= stop.locked

    def step(
        self,
        order: Order,
        candle: Candle,
        instrument: Instrument,
        *,
        free: Callable[[str], Decimal],
        fill_price: Callable[[Side, Decimal, Instrument], Decimal],
        max_volume_fraction: Decimal | None,
    ) -> StopFill | StopExpiry | None:
        """Apply one candle of ``order``'s symbol to the stop (module docstring).

        The first candle arms it: an open that has reached the stop expires it, a sell takes the lock
        of its units (``free(asset)`` is the balance not locked) or expires for lack of them. Then
        the candle may trigger it (a fill at the slipped execution price), or, for a stop-limit that
        was not marketable, fill the limit it rests as. Cheap for an armed stop the candle does not
        reach: two float comparisons.
        """
        stop, side = self._stops[order.client_order_id], order.side
        # an armed stop: the float look rules out most candles exactly (low > float(stop) implies
        # low > stop, since the candle's floats are the shortest repr of its decimals)
        beyond = (candle.low > stop.stop_f) if side is Side.SELL else (candle.high < stop.stop_f)
        if beyond and stop.armed and stop.resting_after_ms is None:
            return None
        leaves = order.qty - order.filled_qty
        open_price = to_decimal(candle.open, field="open")
        if not stop.armed:
            if stop_is_crossed(side, stop.stop, open_price):
                return StopExpiry(WOULD_TRIGGER_IMMEDIATELY)
            if side is Side.SELL:
                if free(instrument.base) < leaves:
                    return StopExpiry(INSUFFICIENT_BALANCE)
                stop.locked += leaves
                self._locked[instrument.base] = self.locked(instrument.base) + leaves
            stop.armed = True
        if stop.resting_after_ms is not None:
            return self._limit_step(stop, side, candle, instrument, leaves, max_volume_fraction)
        high, low = to_decimal(candle.high, field="high"), to_decimal(candle.low, field="low")
        if not stop_is_triggered(side, stop.stop, high, low):
            return None
        price = fill_price(side, stop_execution_price(side, stop.stop, open_price), instrument)
        if stop.limit is not None and not limit_is_marketable(side, price, stop.limit):
            stop.resting_after_ms = candle.open_time_ms  # rests at its limit from the next candle on
            return None
        return StopFill(leaves, price)

    @staticmethod
    def _limit_step(
        stop: _Stop,
        side: Side,
        candle: Candle,
        instrument: Instrument,
        leaves: Decimal,
        max_volume_fraction: Decimal | None,
    ) -> StopFill | None:
        # A triggered stop-limit resting at its limit: fills there on a later candle trading through
        # it (sell: high >= limit), at most volume × (max_volume_fraction or 1) per candle.
        assert stop.limit is not None and stop.resting_after_ms is not None
        if candle.open_time_ms <= stop.resting_after_ms:
            return None
        if side is Side.SELL:
            reached = to_decimal(candle.high, field="high") >= stop.limit
        else:
            reached = to_decimal(candle.low, field="low") <= stop.limit
        if not reached:
            return None
        cap = instrument.round_qty(to_decimal(candle.volume, field="volume") * (max_volume_fraction or 1))
        qty = min(leaves, cap)
        return StopFill(qty, stop.limit, maker=True) if qty > 0 else None


__all__ = ["INSUFFICIENT_BALANCE", "WOULD_TRIGGER_IMMEDIATELY", "StopBook", "StopExpiry", "StopFill"]
