"""Default instrument filters for backtests and paper trading (Binance spot-like).

Live and testnet modes load the real filters from the venue (``load_markets``); these defaults mirror
Binance spot's filters for BTCUSDT / ETHUSDT / SOLUSDT (tick 0.01 USDT; step 0.00001 BTC, 0.0001 ETH,
0.001 SOL; ``LOT_SIZE.maxQty`` 9000 BTC, 9000 ETH, 90000 SOL; ``NOTIONAL.minNotional`` 5 USDT) so
backtests reject what the exchange would reject.

At ``app`` level because the backtest driver and the daemon's paper mode (``daemon/bootstrap``) both use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from tradebot.core.domain import Asset, Instrument, Symbol

_STEP = {"BTC": "0.00001", "ETH": "0.0001", "SOL": "0.001"}
_TICK = {"BTC": "0.01", "ETH": "0.01", "SOL": "0.01"}
#: ``LOT_SIZE.maxQty`` (base units) as Binance spot's exchangeInfo gives it for these pairs.
_MAX_QTY = {"BTC": "9000", "ETH": "9000", "SOL": "90000"}


def default_instruments(
    symbols: Iterable[str], *, taker_fee: Decimal = Decimal("0.001"), min_notional: Decimal = Decimal("5")
) -> dict[Symbol, Instrument]:
    """Return Binance-spot-like instruments for ``symbols`` (``"BTC/USDT"`` …).

    Unknown bases get step 0.001 and tick 0.0001 (conservative for mid-priced assets).
    """
    out: dict[Symbol, Instrument] = {}
    for sym in symbols:
        base, quote = sym.split("/")
        out[Symbol(sym)] = Instrument(
            symbol=Symbol(sym),
            base=Asset(base),
            quote=Asset(quote),
            tick_size=Decimal(_TICK.get(base, "0.0001")),
            step_size=Decimal(_STEP.get(base, "0.001")),
            min_qty=Decimal(_STEP.get(base, "0.001")),
            max_qty=Decimal(_MAX_QTY[base]) if base in _MAX_QTY else None,
            min_notional=min_notional,
            taker_fee=taker_fee,
            maker_fee=taker_fee,
        )
    return out
