"""Protective stops resting at the venue (``EngineConfig.stops_at_venue``, issue 13).

Without this the overlay's stop lives in the engine: a candle whose low reaches it makes a market
exit at the next candle's open, and nothing protects the position while the daemon is down. With it,
whenever the overlay holds a stop level for an open position, one ``STOP_MARKET`` sell order for the
position's quantity rests at the venue, and the venue fills it when the market reaches it:

* **One stop per position.** After every change of the position (a fill) or of the stop level (an
  overlay action: stop set, breakeven, trail) the wanted stop — the position's quantity rounded down
  to the step, the stop level rounded down to the tick — is compared with the resting one. A
  different one is replaced: the resting stop is cancelled first (the venue locks the units it sells)
  and the new one sent once the venue confirms the cancel, so two stops never cover the same units
  and the gap is one request. Nothing is placed while the symbol has planned orders in flight (the
  stop follows the position once they are done).
* **Sells free the units first.** A planned sell (rebalance, ladder, exit) of a symbol with a resting
  stop is preceded by the stop's cancel in the engine's output.
* **A filled stop is the overlay's stop exit** (:meth:`PositionManager.venue_stop_filled`): one
  ``STOP_EXIT`` event, then the position's exit and its trade, like a market stop exit.
* **A candle that reaches the resting stop** does not run the overlay's bar rules for the symbol (the
  venue fills the stop; the daemon looks the fill up before the candle, the backtest's venue fills
  it before the engine sees the candle). If no fill has come by the symbol's next candle, the stop
  is cancelled (the venue's answer carries any fill) and the overlay decides again.
* **A refused stop** (the market already beyond it: "would trigger immediately"; a filter) is not
  sent again at the same level: the overlay's own stop exit takes over.

Client order ids are ``"<run_id>-s<n>"`` (deterministic, with the run's prefix). Pure, like the rest
of the core: the engine calls :meth:`VenueStops.sync` and routes the stop orders' reports here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Any

from tradebot.core.domain import (
    CancelOrder,
    ClientOrderId,
    Instrument,
    Order,
    OrderStatus,
    OrderType,
    PlaceOrder,
    Side,
    Symbol,
    to_decimal,
)
from tradebot.core.engine.records import Output, RecordBuilder
from tradebot.core.engine.snapshot import order_from_state, order_state

#: ``PlaceOrder.reason`` of a protective stop order.
STOP_REASON = "protective_stop"


class VenueStops:
    """The protective stop orders of one engine (see the module docstring).

    Parameters
    ----------
    run_id
        The run; stop client order ids are ``"<run_id>-s<n>"``.
    instruments
        Tick and step per symbol (the stop's price and quantity are rounded down to them).
    orders
        Returns the engine's order registry (``Planning.orders``: a restore replaces it), where the
        stop orders are registered too, outside the orders in flight of a plan.
    records
        Builds the stop orders' rows.

    Attributes
    ----------
    live
        Symbol → client order id of its resting stop (sent, or on its way; not yet terminal).
    cancelling
        Client order ids of stops whose cancel was sent and not yet answered.
    triggered
        Symbols whose resting stop a candle reached; its fill is awaited.
    refused
        Symbol → stop price the venue refused (not sent again at that price).
    dirty
        Symbols whose wanted stop must be compared with the resting one.
    """

    def __init__(
        self,
        run_id: str,
        instruments: Mapping[str, Instrument],
        orders: Callable[[], dict[ClientOrderId, Order]],
        records: RecordBuilder,
    ) -> None:
        self.run_id = run_id
        self._prefix = f"{run_id}-s"
        self.instruments = instruments
        self._orders = orders
        self.records = records
        self.live: dict[str, ClientOrderId] = {}
        self.cancelling: set[ClientOrderId] = set()
        self.triggered: set[str] = set()
        self.refused: dict[str, Decimal] = {}
        self.dirty: set[str] = set()
        #: When each pending cancel was decided (ms UTC): the stop that replaces it dates from then, so
        #: its time does not depend on when the venue's answer is handled.
        self.cancel_ms: dict[ClientOrderId, int] = {}
        #: Symbol → decision time of its next stop (the replaced stop's cancel time).
        self.due_ms: dict[str, int] = {}
        self.seq = 0

    # ------------------------------------------------------------------ queries
    def is_stop(self, client_order_id: str) -> bool:
        """True when ``client_order_id`` is one of this run's protective stop orders."""
        return client_order_id.startswith(self._prefix) and client_order_id[len(self._prefix) :].isdigit()

    def resting_price(self, sym: str) -> Decimal | None:
        """Stop price of the symbol's resting stop (quote currency), or ``None``."""
        cid = self.live.get(sym)
        if cid is None:
            return None
        return self._orders()[cid].stop_price

    def wanted(
        self, sym: str, position: Decimal, stop: float | None, mark: float
    ) -> tuple[Decimal, Decimal] | None:
        """The stop the position should have: ``(qty, stop_price)`` (base units, quote currency), or
        ``None`` — no long position, no stop level, a stop the mark has already reached (the
        overlay's own exit decides), one the venue refused at that price, or below the filters."""
        if position <= 0 or stop is None or not stop > 0 or not stop < mark:
            return None
        inst = self.instruments[sym]
        price = inst.round_price(to_decimal(stop), ROUND_FLOOR)
        qty = inst.round_qty(position, ROUND_DOWN)
        if not price > 0 or qty < inst.min_qty or qty <= 0 or qty * price < inst.min_notional:
            return None
        if self.refused.get(sym) == price:
            return None
        return qty, price

    # ------------------------------------------------------------------ actions
    def sync(self, sym: str, t: int, wanted: tuple[Decimal, Decimal] | None, mark: float) -> list[Output]:
        """Make the resting stop of ``sym`` the ``wanted`` one at ``t`` (ms UTC): nothing, a cancel of
        the resting one (the new one follows its confirmation), or a new stop order."""
        self.dirty.discard(sym)
        orders = self._orders()
        cid = self.live.get(sym)
        if cid is not None:
            if cid in self.cancelling:
                return []  # the cancel's answer comes first
            order = orders[cid]
            if wanted is not None and (order.qty - order.filled_qty, order.stop_price) == wanted:
                return []
            return self.cancel(sym, t, "protective stop replaced" if wanted else "protective stop removed")
        if wanted is None:
            return []
        qty, price = wanted
        self.seq += 1
        new = ClientOrderId(f"{self._prefix}{self.seq}")
        cmd = PlaceOrder(
            client_order_id=new,
            symbol=Symbol(sym),
            side=Side.SELL,
            qty=qty,
            ref_price=to_decimal(mark),
            reason=STOP_REASON,
            intent_id=new,
            created_ms=t,
            order_type=OrderType.STOP_MARKET,
            stop_price=price,
            reduce_only=True,
        )
        order = Order(
            client_order_id=new,
            symbol=cmd.symbol,
            side=Side.SELL,
            qty=qty,
            order_type=OrderType.STOP_MARKET,
            stop_price=price,
            reduce_only=True,
            reason=STOP_REASON,
            created_ms=t,
        )
        orders[new] = order
        self.live[sym] = new
        return [self.records.order_record(order, t, ref_price=cmd.ref_price, intent_id=new), cmd]

    def cancel(self, sym: str, t: int, reason: str) -> list[Output]:
        """Cancel the resting stop of ``sym`` (nothing when there is none or its cancel is on its way)."""
        cid = self.live.get(sym)
        if cid is None or cid in self.cancelling:
            return []
        self.cancelling.add(cid)
        self.cancel_ms[cid] = t
        return [CancelOrder(client_order_id=cid, symbol=Symbol(sym), reason=reason)]

    def on_terminal(self, order: Order) -> None:
        """A stop order reached a terminal state (filled, cancelled, expired, rejected)."""
        cid, sym = order.client_order_id, order.symbol
        self.cancelling.discard(cid)
        decided = self.cancel_ms.pop(cid, None)
        if decided is not None:
            self.due_ms[sym] = decided
        if self.live.get(sym) == cid:
            del self.live[sym]
        self.triggered.discard(sym)
        refused = order.status in (OrderStatus.EXPIRED, OrderStatus.REJECTED) and order.filled_qty == 0
        if refused and order.stop_price is not None:
            self.refused[sym] = order.stop_price
        self.dirty.add(sym)

    # ------------------------------------------------------------------ snapshot
    def state(self) -> dict[str, Any]:
        """Return the stops' state as JSON-able data (the resting orders in full)."""
        orders = self._orders()
        return {
            "seq": self.seq,
            "live": dict(sorted(self.live.items())),
            "cancelling": sorted(self.cancelling),
            "triggered": sorted(self.triggered),
            "refused": {s: str(p) for s, p in sorted(self.refused.items())},
            "dirty": sorted(self.dirty),
            "cancel_ms": dict(sorted(self.cancel_ms.items())),
            "due_ms": dict(sorted(self.due_ms.items())),
            "orders": {cid: order_state(orders[cid]) for cid in sorted(self.live.values())},
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load :meth:`state` data; the resting orders go back into the engine's order registry."""
        orders = self._orders()
        for cid, o in data["orders"].items():
            orders[ClientOrderId(cid)] = order_from_state(o)
        self.seq = data["seq"]
        self.live = {s: ClientOrderId(c) for s, c in data["live"].items()}
        self.cancelling = {ClientOrderId(c) for c in data["cancelling"]}
        self.triggered = set(data["triggered"])
        self.refused = {s: Decimal(p) for s, p in data["refused"].items()}
        self.dirty = set(data["dirty"])
        self.cancel_ms = {ClientOrderId(c): int(t) for c, t in data.get("cancel_ms", {}).items()}
        self.due_ms = {s: int(t) for s, t in data.get("due_ms", {}).items()}


__all__ = ["STOP_REASON", "VenueStops"]
