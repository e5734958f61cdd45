"""Fill builders shared by the portfolio unit tests (imported as a plain module)."""

from __future__ import annotations

from decimal import Decimal

from tradebot.core.domain import ClientOrderId, Fill, Side, Symbol, TradeId

BTC = "BTC/USDT"
ETH = "ETH/USDT"


def make_fill(
    trade_id: str,
    side: str,
    qty: str,
    price: str,
    fee: str = "0",
    *,
    symbol: str = BTC,
    cid: str = "t-1-1",
    ts_ms: int = 0,
    venue: str = "simulated",
) -> Fill:
    """Return a fill with Decimal values parsed from strings."""
    return Fill(
        venue=venue,
        symbol=Symbol(symbol),
        trade_id=TradeId(trade_id),
        client_order_id=ClientOrderId(cid),
        side=Side(side),
        qty=Decimal(qty),
        price=Decimal(price),
        fee_quote=Decimal(fee),
        ts_ms=ts_ms,
    )
