"""The daemon's periodic status line: equity, cash, exposure per asset, streams, orders, feed lag, state.

:func:`status_fields` is a pure read of the engine; the daemon logs it as event ``status`` every
``TRADEBOT_DAEMON__STATUS_INTERVAL_S`` seconds and writes the health file from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradebot.core.engine import Engine
from tradebot.core.portfolio.ledger import Ledger


def status_fields(
    engine: Engine, *, feed_lag_ms: int | None, candles_processed: int, open_orders: int
) -> dict[str, Any]:
    """Return the fields of one status line.

    Returns
    -------
    dict
        ``equity_quote`` / ``cash_quote`` (decimal strings, quote currency; equity is ``None`` until
        every symbol has a mark), ``exposure_quote`` (asset → position × mark, quote currency),
        ``exposure_fraction`` (asset → fraction of equity), ``streams`` (stream id → ``in``/``out``),
        ``open_orders`` (count), ``feed_lag_ms`` (now − last candle close, ms; ``None`` before the
        first candle), ``trading_state``, ``paused_by`` (sources of a pause in force), ``candles_processed``
        and ``net_cash_flows_quote`` (deposits minus withdrawals so far: equity moved by them, not PnL).
    """
    marks = engine.marks_decimal()
    ledger = engine.ledger
    exposure = {s.split("/")[0]: ledger.position(s) * marks[s] for s in engine.symbols if s in marks}
    complete = len(marks) == len(engine.symbols)
    equity = ledger.equity(marks) if complete else None
    fractions = {a: round(float(v / equity), 4) for a, v in exposure.items()} if equity else {}
    return {
        "equity_quote": None if equity is None else f"{equity:.2f}",
        "cash_quote": f"{ledger.cash:.2f}",
        "exposure_quote": {a: f"{v:.2f}" for a, v in exposure.items()},
        "exposure_fraction": fractions,
        "streams": {v.stream_id: str(v.state) for v in engine.book.states()},
        "open_orders": open_orders,
        "feed_lag_ms": feed_lag_ms,
        "trading_state": str(engine.trading_state),
        "paused_by": list(engine.pauses),
        "candles_processed": candles_processed,
        "net_cash_flows_quote": f"{ledger.net_flows:.2f}",
    }


def pnl_totals(ledger: Ledger, marks: Mapping[str, Decimal]) -> tuple[Decimal, Decimal, Decimal, bool]:
    """Return the account's PnL over the ledger's symbols, quote currency.

    Returns
    -------
    tuple
        ``(realized, fees, unrealized, complete)``: realized PnL before fees, fees paid, unrealized
        PnL of the held symbols that have a mark, and whether every held symbol had one.
    """
    symbols = ledger.symbols
    held = [s for s in symbols if ledger.position(s) != 0]
    realized = sum((ledger.realized(s) for s in symbols), Decimal(0))
    fees = sum((ledger.fees(s) for s in symbols), Decimal(0))
    unrealized = sum((ledger.unrealized(s, marks[s]) for s in held if s in marks), Decimal(0))
    return realized, fees, unrealized, all(s in marks for s in held)
