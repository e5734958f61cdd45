"""When a resting stop order triggers on a candle, and at which price it executes: the one rule that
the backtest's simulated venue and the exchange simulator both apply, so that a daemon against the
simulator fills its stops exactly like the backtest.

A **sell** stop rests below the market (it protects a long): it triggers on a candle whose low
reaches the stop price, and executes at the stop price, or at the candle's open when the candle
opened already at or below it (the market gapped through the stop). A **buy** stop is the mirror:
above the market, triggered by the high, executed at the stop or a higher open. The caller then
moves the price by its slippage against the taker and rounds it to the tick.

A stop whose price the market has already reached when it arrives would trigger at once; venues
refuse it (Binance ``-2010 Order would trigger immediately.``, Deribit ``11036
invalid_trigger_price``).

Example: a sell stop at 99.50; a candle with open 100.20, low 99.10 triggers it at 99.50; a later
candle with open 98.80 (the one before closed at 100.00) triggers it at 98.80.
"""

from __future__ import annotations

from decimal import Decimal

from tradebot.core.domain.enums import Side


def stop_is_crossed(side: Side, stop_price: Decimal, market_price: Decimal) -> bool:
    """True when ``market_price`` has already reached a ``side`` stop at ``stop_price`` (sell: at or
    below it, buy: at or above it): the stop would trigger immediately."""
    return market_price <= stop_price if side is Side.SELL else market_price >= stop_price


def stop_is_triggered(side: Side, stop_price: Decimal, high: Decimal, low: Decimal) -> bool:
    """True when a candle with ``high`` / ``low`` reaches the stop (sell: ``low <= stop``, buy:
    ``high >= stop``)."""
    return low <= stop_price if side is Side.SELL else high >= stop_price


def stop_execution_price(side: Side, stop_price: Decimal, open_price: Decimal) -> Decimal:
    """Return the price (quote currency, before slippage) at which a stop triggered on a candle that
    opened at ``open_price`` executes: the stop price, or the open when the candle gapped through it
    (sell: ``min(stop, open)``, buy: ``max(stop, open)``)."""
    return min(stop_price, open_price) if side is Side.SELL else max(stop_price, open_price)


def limit_is_marketable(side: Side, price: Decimal, limit_price: Decimal) -> bool:
    """True when a limit order at ``limit_price`` executes at once at ``price`` (sell: ``price >=
    limit``, buy: ``price <= limit``): a triggered stop-limit fills as a taker, else it rests."""
    return price >= limit_price if side is Side.SELL else price <= limit_price


__all__ = ["limit_is_marketable", "stop_execution_price", "stop_is_crossed", "stop_is_triggered"]
