"""Value types shared by the whole core: ids, enums, instruments, candles, orders, events, commands,
ML prediction records."""

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
    PAUSE_SOURCES,
    CashFlow,
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
from tradebot.core.domain.ml import MlPositionPrediction, MlPredictionOutcome
from tradebot.core.domain.orders import Fill, Order, OrderIntent
from tradebot.core.domain.stops import (
    limit_is_marketable,
    stop_execution_price,
    stop_is_crossed,
    stop_is_triggered,
)

__all__ = [
    "ONE",
    "PAUSE_SOURCES",
    "ZERO",
    "Asset",
    "CancelOrder",
    "Candle",
    "CashFlow",
    "ClientOrderId",
    "EquitySnapshot",
    "ExchangeOrderId",
    "FeedStatus",
    "Fill",
    "Instrument",
    "MlPositionPrediction",
    "MlPredictionOutcome",
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
    "limit_is_marketable",
    "ms_to_datetime",
    "position_event_id",
    "spot_instrument",
    "stop_execution_price",
    "stop_is_crossed",
    "stop_is_triggered",
    "stream_id",
    "to_decimal",
    "to_wire",
    "validate_candle",
]
