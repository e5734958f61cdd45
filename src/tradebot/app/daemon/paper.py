"""Paper execution for the daemon: a :class:`SimulatedVenue` fed by the live candles.

Orders are filled by the same fill model as the backtest (next candle's open, slippage, taker fee).
What differs from the backtest's ``Dispatcher`` is only what a restartable daemon needs:

* trade ids are ``"<client order id>-f<n>"`` and exchange order ids ``"paper-<client order id>"``
  (the simulator's counters restart with the process, these do not), so a replay after a crash
  writes the same fills again, which the event store ignores as duplicates;
* :meth:`PaperRouter.state` / :meth:`PaperRouter.from_state` carry the balances over a restart, and
  :meth:`PaperRouter.requeue` puts the engine's in-flight orders back into the fresh simulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from tradebot.adapters.venues.simulated import SimulatedExchange, SimulatedVenue
from tradebot.core.domain import (
    CancelOrder,
    Candle,
    ClientOrderId,
    ExchangeOrderId,
    Fill,
    Instrument,
    Order,
    OrderStatus,
    OrderUpdate,
    PlaceOrder,
    Symbol,
    TradeId,
)
from tradebot.errors import OrderRejected


class PaperRouter:
    """Routes engine orders to a simulated venue and returns its answers as engine events.

    Parameters
    ----------
    instruments
        Filters and fees of the traded symbols.
    balances
        Balance per asset code (quote currency / base units).
    slippage_bps, max_volume_fraction
        Fill model (see :class:`SimulatedExchange`).
    """

    name = "paper"

    def __init__(
        self,
        instruments: Mapping[Symbol, Instrument],
        balances: Mapping[str, Decimal],
        *,
        slippage_bps: float,
        max_volume_fraction: float | None,
    ) -> None:
        self.exchange = SimulatedExchange(
            instruments=instruments,
            balances=dict(balances),
            slippage_bps=str(slippage_bps),
            max_volume_fraction=None if max_volume_fraction is None else str(max_volume_fraction),
            name="paper",
        )
        self.venue = SimulatedVenue(self.exchange)
        self._fill_count: dict[str, int] = {}

    # -- orders -----------------------------------------------------------------------------------
    async def submit(self, cmd: PlaceOrder) -> list[OrderUpdate]:
        """Submit ``cmd``; return the venue's answer (ACCEPTED, or REJECTED with the venue reason)."""
        try:
            report = await self.venue.submit(cmd)
        except OrderRejected as e:
            reason = str(e).removeprefix(f"{cmd.client_order_id}: ")
            return [
                OrderUpdate(
                    client_order_id=cmd.client_order_id,
                    symbol=cmd.symbol,
                    status=OrderStatus.REJECTED,
                    ts_ms=cmd.created_ms,
                    reason=reason,
                )
            ]
        return [
            OrderUpdate(
                client_order_id=cmd.client_order_id,
                symbol=cmd.symbol,
                status=report.status,
                ts_ms=cmd.created_ms,
                exchange_order_id=_xid(cmd.client_order_id),
                reason=report.reason,
            )
        ]

    async def cancel(self, cmd: CancelOrder, now_ms: int) -> list[OrderUpdate]:
        """Cancel an open order; an unknown or closed one yields no event."""
        try:
            report = self.exchange.cancel(cmd.client_order_id, now_ms)
        except OrderRejected:
            return []
        return [
            OrderUpdate(
                client_order_id=cmd.client_order_id,
                symbol=cmd.symbol,
                status=report.status,
                ts_ms=now_ms,
                exchange_order_id=_xid(cmd.client_order_id),
                reason=cmd.reason,
            )
        ]

    def on_candle(self, candle: Candle) -> list[Fill | OrderUpdate]:
        """Fill the queued orders of the candle's symbol; return fills and updates with stable ids."""
        events = self.exchange.on_candle(candle)
        if not events:
            return []
        out: list[Fill | OrderUpdate] = []
        for ev in events:
            cid = ev.client_order_id
            if type(ev) is Fill:
                n = self._fill_count.get(cid, 0) + 1
                self._fill_count[cid] = n
                out.append(
                    dataclasses.replace(ev, trade_id=TradeId(f"{cid}-f{n}"), exchange_order_id=_xid(cid))
                )
            else:
                out.append(dataclasses.replace(ev, exchange_order_id=_xid(cid)))
        return out

    def open_orders(self) -> int:
        """Number of orders queued at the simulated venue."""
        return len(self.exchange.open_orders())

    # -- restart ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Return the balances as JSON data (Decimals as strings) for the daemon's checkpoint."""
        return {"balances": {a: str(v) for a, v in sorted(self.exchange.balances().items())}}

    @staticmethod
    def balances_from_state(state: Mapping[str, Any]) -> dict[str, Decimal]:
        """Return the balances stored by :meth:`state`."""
        return {a: Decimal(v) for a, v in state["balances"].items()}

    def requeue(self, orders: Sequence[Order], ref_prices: Mapping[Symbol, Decimal]) -> list[OrderUpdate]:
        """Put the engine's in-flight orders (restored from a checkpoint) back into the simulator.

        Each order is queued for its unfilled quantity with its original ``created_ms``, so it fills
        on the same candle as in an uninterrupted run. Returns a REJECTED update for any the
        simulator refuses now (the engine then replans).
        """
        out: list[OrderUpdate] = []
        for order in orders:
            cid = order.client_order_id
            self._fill_count[cid] = len(order.fill_ids)
            cmd = PlaceOrder(
                client_order_id=cid,
                symbol=order.symbol,
                side=order.side,
                qty=order.qty - order.filled_qty,
                ref_price=ref_prices[order.symbol],
                reason=order.reason,
                intent_id=cid.rsplit("-", 1)[0],
                created_ms=order.created_ms,
            )
            report = self.exchange.submit(cmd, order.created_ms)
            if report.status is OrderStatus.REJECTED:
                out.append(
                    OrderUpdate(
                        client_order_id=cid,
                        symbol=order.symbol,
                        status=OrderStatus.REJECTED,
                        ts_ms=order.created_ms,
                        reason=f"requeue after restart: {report.reason}",
                    )
                )
        return out


def _xid(cid: ClientOrderId | str) -> ExchangeOrderId:
    return ExchangeOrderId(f"paper-{cid}")
