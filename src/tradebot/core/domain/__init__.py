"""Value types shared by the whole core: ids, enums, instruments, candles, orders, events, commands."""

from tradebot.core.domain.commands import (
    CancelOrder,
    EquitySnapshot,
    OrderRecord,
    PlaceOrder,
    StreamSignal,
    TradeRecord,
)
from tradebot.core.domain.decimals import ONE, ZERO, to_decimal, to_wire
from tradebot.core.domain.enums import (
    OrderStatus,
    OrderType,
    PositionEventType,
    Side,
    StreamState,
    Timeframe,
    TradingState,
)
from tradebot.core.domain.events import (
    FeedStatus,
    OrderUpdate,
    PositionEvent,
    TradingControl,
    position_event_id,
)
from tradebot.core.domain.ids import (
    Asset,
    ClientOrderId,
    ExchangeOrderId,
    PositionId,
    RunId,
    StreamId,
    Symbol,
    TradeId,
    stream_id,
)
from tradebot.core.domain.instrument import Instrument, spot_instrument
from tradebot.core.domain.market import (
    Candle,
    datetime_to_ms,
    floor_time,
    ms_to_datetime,
    validate_candle,
)
from tradebot.core.domain.orders import Fill, Order, OrderIntent

__all__ = [
    "ONE",
    "ZERO",
    "Asset",
    "CancelOrder",
    "Candle",
    "ClientOrderId",
    "EquitySnapshot",
    "ExchangeOrderId",
    "FeedStatus",
    "Fill",
    "Instrument",
    "Order",
    "OrderIntent",
    "OrderRecord",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "PlaceOrder",
    "PositionEvent",
    "PositionEventType",
    "PositionId",
    "RunId",
    "Side",
    "StreamId",
    "StreamSignal",
    "StreamState",
    "Symbol",
    "Timeframe",
    "TradeId",
    "TradeRecord",
    "TradingControl",
    "TradingState",
    "datetime_to_ms",
    "floor_time",
    "ms_to_datetime",
    "position_event_id",
    "spot_instrument",
    "stream_id",
    "to_decimal",
    "to_wire",
    "validate_candle",
]
