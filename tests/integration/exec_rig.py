"""What the execution fault suites (Binance and Deribit) share: fast timings, the market start, and
the rig that feeds the executor's events to a ledger."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.venues.ccxt_venue import CcxtVenue, VenueConfig
from tradebot.app.daemon.execution import ExecutionConfig, OrderExecutor
from tradebot.core.domain import Fill, OrderUpdate
from tradebot.core.portfolio.ledger import Ledger
from tradebot.exchange_sim import ExchangeSim

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
START_MS = 1679529600000 + 60 * 60_000
FAST_VENUE = VenueConfig(timeout_ms=400, read_initial_s=0.01, read_max_wait_s=0.05, read_jitter_s=0.01)
FAST_EXEC = ExecutionConfig(lookup_initial_s=0.01, lookup_max_s=0.05, not_placed_after_s=0.3, min_lookups=3,
                            resolve_timeout_s=5.0, trade_lookback_ms=60_000)  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    # an earlier in-process CLI test may leave structlog writing to its closed capture stream
    structlog.reset_defaults()


@dataclass
class Rig:
    sim: ExchangeSim
    venue: CcxtVenue
    store: SqlEventStore
    executor: OrderExecutor
    ledger: Ledger
    events: list[Fill | OrderUpdate]

    def apply(self, events: list[Fill | OrderUpdate]) -> None:
        """Feed the executor's events to the ledger, like the engine does (duplicates refused there too)."""
        self.events.extend(events)
        for ev in events:
            if isinstance(ev, Fill):
                assert self.ledger.apply(ev), f"fill {ev.trade_id} returned twice"
