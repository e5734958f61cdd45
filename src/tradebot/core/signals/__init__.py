"""The signal layer (STRATEGY.md §1): base candles → UTC-aligned higher timeframes → trend streams.

- :class:`CandleAggregator` — 1m/5m/… → 1h/4h/1d, gap-aware (``Candle.missing``).
- :class:`TrendStream` / :class:`StreamConfig` — one (asset, timeframe) ``in``/``out`` state + confidence.
- :class:`TrendRule` / :class:`EmaCrossRule` — the pluggable decision rule and its default.
- :class:`SignalBook` — all aggregators and streams behind ``on_candle``.
"""

from tradebot.core.signals.aggregator import NO_CANDLES, CandleAggregator
from tradebot.core.signals.book import NO_SIGNALS, SignalBook, StreamView
from tradebot.core.signals.rules import EmaCrossRule, RuleDecision, TrendRule
from tradebot.core.signals.stream import StreamConfig, TrendStream, confidence_from_strength

__all__ = [
    "NO_CANDLES",
    "NO_SIGNALS",
    "CandleAggregator",
    "EmaCrossRule",
    "RuleDecision",
    "SignalBook",
    "StreamConfig",
    "StreamView",
    "TrendRule",
    "TrendStream",
    "confidence_from_strength",
]
