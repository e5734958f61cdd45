"""Portfolio: rebalancer (targets per asset), ledger (cash, positions, PnL, per-stream attribution)
and trade tracker (position lifecycles). See STRATEGY.md §2 and §5."""

from tradebot.core.portfolio.attribution import unassigned_stream_id
from tradebot.core.portfolio.ledger import ApplyResult, Ledger, StreamPnl
from tradebot.core.portfolio.rebalancer import Allocation, AllocationConfig, StreamView, compute_targets
from tradebot.core.portfolio.trades import TradeTracker

__all__ = [
    "Allocation",
    "AllocationConfig",
    "ApplyResult",
    "Ledger",
    "StreamPnl",
    "StreamView",
    "TradeTracker",
    "compute_targets",
    "unassigned_stream_id",
]
