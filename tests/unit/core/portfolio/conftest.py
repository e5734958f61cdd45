"""Fixtures of the portfolio unit tests."""

from __future__ import annotations

from decimal import Decimal

import pytest
from portfolio_helpers import BTC, ETH

from tradebot.core.portfolio.ledger import Ledger


@pytest.fixture
def ledger() -> Ledger:
    """A ledger with 10000 USDT, BTC streams 1h and 4h, ETH stream 1h, run id "t"."""
    return Ledger(
        "USDT", Decimal("10000"), [BTC, ETH], {BTC: ["BTC:1h", "BTC:4h"], ETH: ["ETH:1h"]}, run_id="t"
    )
