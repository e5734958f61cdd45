"""Enumerations of the domain (``StrEnum`` so they serialise as their value)."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """Order or fill side."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    """Order type. The engine plans market orders; limit is for venues and reconciliation.

    The stop types rest at the venue until the market reaches their trigger price
    (``PlaceOrder.stop_price``): a sell stop when the price falls to it, a buy stop when the price
    rises to it. Then ``STOP_MARKET`` executes as a market order (Deribit ``stop_market``, Binance
    spot ``STOP_LOSS``) and ``STOP_LIMIT`` becomes a limit order at ``limit_price`` (Deribit
    ``stop_limit``, Binance spot ``STOP_LOSS_LIMIT``).
    """

    MARKET = "market"
    LIMIT = "limit"
    STOP_MARKET = "stop_market"
    STOP_LIMIT = "stop_limit"

    @property
    def is_stop(self) -> bool:
        """True for the order types that rest until a trigger price (``STOP_MARKET``, ``STOP_LIMIT``)."""
        return self is OrderType.STOP_MARKET or self is OrderType.STOP_LIMIT


class OrderStatus(StrEnum):
    """Lifecycle of an order.

    ``PENDING_SUBMIT`` is recorded before the request is sent. ``DENIED`` means refused locally
    (filters or risk) and never sent. ``UNKNOWN`` means the outcome of a submit is not known and
    must be resolved by a lookup by client order id, never by re-sending.
    """

    PENDING_SUBMIT = "pending_submit"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DENIED = "denied"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """True when no further fill can arrive for the order (filled, canceled, expired, rejected, denied)."""
        return self in _TERMINAL

    @property
    def is_open(self) -> bool:
        """True while the order may still fill (accepted, partially filled, pending submit, unknown)."""
        return not self.is_terminal


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED, OrderStatus.DENIED}
)


class Timeframe(StrEnum):
    """Candle timeframe. ``ms`` gives its length in milliseconds."""

    M1 = "1m"
    M3 = "3m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def ms(self) -> int:
        """Length of one candle in milliseconds."""
        return _TF_MS[self.value]

    @classmethod
    def parse(cls, value: str) -> Timeframe:
        """Return the timeframe for ``value`` (e.g. ``"4h"``).

        Raises
        ------
        ValueError
            If ``value`` is not a supported timeframe; the message lists the supported ones.
        """
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"timeframe must be one of {[t.value for t in cls]}, was {value!r}") from None


_TF_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


class StreamState(StrEnum):
    """State of a trend stream."""

    IN = "in"
    OUT = "out"


class TradingState(StrEnum):
    """Risk state of the engine: ACTIVE trades normally, REDUCING only lowers exposure, HALTED closes all
    positions and blocks every entry until it is lifted (the daily-loss halt lifts at the next UTC day)."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class PositionEventType(StrEnum):
    """Kind of a position event (STRATEGY.md §6)."""

    ENTRY = "entry"
    EXIT = "exit"
    SCALE_IN = "scale_in"
    SCALE_OUT = "scale_out"
    PARTIAL_TAKE_PROFIT = "partial_take_profit"
    BREAKEVEN = "breakeven"
    STOP_SET = "stop_set"
    TRAILING_STOP_UPDATE = "trailing_stop_update"
    TRAILING_SCALE_OUT = "trailing_scale_out"
    TRAILING_SCALE_IN = "trailing_scale_in"
    STOP_EXIT = "stop_exit"
    TAKE_PROFIT_EXIT = "take_profit_exit"
    TIME_EXIT = "time_exit"
    EARLY_EXIT = "early_exit"
    MANAGEMENT_SCALE_OUT = "management_scale_out"
    MANAGEMENT_RELOAD = "management_reload"
    MANAGEMENT_QUIT = "management_quit"
    REENTRY_ALLOWED = "reentry_allowed"
    REBALANCE_BUY = "rebalance_buy"
    REBALANCE_SELL = "rebalance_sell"
    RISK_BLOCK = "risk_block"
    DAILY_LOSS_HALT = "daily_loss_halt"
    TRADING_RESUMED = "trading_resumed"
    ORDER_DENIED = "order_denied"
    ORDER_REJECTED = "order_rejected"
    FEED_STALE = "feed_stale"
    FEED_RECOVERED = "feed_recovered"
    RECONCILE_ADJUSTMENT = "reconcile_adjustment"
    RECONCILE_MISMATCH = "reconcile_mismatch"
    #: A live candle far from the last accepted price, checked against the venue's REST history
    #: before the engine saw it (accepted, replaced by the REST candle, or discarded).
    MARKET_DATA_SUSPECT = "market_data_suspect"
    #: A fill whose price is far from the reference price its order was sized on.
    FILL_FAR_FROM_REFERENCE = "fill_far_from_reference"
    #: A large decision not sent: the venue's own price of a symbol it rests on was too far from
    #: the engine's mark (or could not be read for a decision that increases a position).
    REFERENCE_MISMATCH = "reference_mismatch"
    #: A deposit or withdrawal found by reconciliation: moves equity, never counted as PnL.
    CASH_FLOW = "cash_flow"
    #: A fill of an order the bot did not place (a manual trade at the venue), adopted into the
    #: ledger with its true side; the asset is then left alone or rebalanced (``manual_trades``).
    MANUAL_TRADE = "manual_trade"
