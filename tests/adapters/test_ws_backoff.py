"""Reconnect backoff: exponential growth, cap, jitter bounds and reset."""

from __future__ import annotations

import random

import pytest

from tradebot.adapters.feeds.binance_ws import BinanceFeedConfig
from tradebot.adapters.feeds.deribit_ws import DeribitFeedConfig
from tradebot.adapters.feeds.ws_base import Backoff


class _FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_backoff_grows_caps_and_resets_without_jitter() -> None:
    b = Backoff(initial_s=0.5, max_s=4.0, factor=2.0, jitter=0.5, rng=_FixedRandom(0.0))
    assert [b.next_delay_s() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay_s() == 0.5


def test_backoff_jitter_takes_off_at_most_the_fraction() -> None:
    b = Backoff(initial_s=1.0, max_s=8.0, factor=2.0, jitter=0.5, rng=_FixedRandom(0.5))
    assert [b.next_delay_s() for _ in range(3)] == [0.75, 1.5, 3.0]  # base · (1 − 0.5·0.5)


def test_backoff_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"0 < initial_s <= max_s, was 5\.0/1\.0"):
        Backoff(initial_s=5.0, max_s=1.0, factor=2.0, jitter=0.1, rng=random.Random(1))
    with pytest.raises(ValueError, match=r"factor >= 1 and 0 <= jitter < 1, was 2\.0/1\.0"):
        Backoff(initial_s=1.0, max_s=2.0, factor=2.0, jitter=1.0, rng=random.Random(1))


def test_default_configs_map_symbols() -> None:
    assert BinanceFeedConfig().wire_symbols() == {
        "BTCUSDT": "BTC/USDT",
        "ETHUSDT": "ETH/USDT",
        "SOLUSDT": "SOL/USDT",
    }
    assert DeribitFeedConfig().wire_symbols() == {
        "BTC_USDC-PERPETUAL": "BTC/USDC:USDC",
        "ETH_USDC-PERPETUAL": "ETH/USDC:USDC",
        "SOL_USDC-PERPETUAL": "SOL/USDC:USDC",
    }
    assert BinanceFeedConfig().ws_url == "wss://stream.binance.com:9443"
    assert DeribitFeedConfig().ws_url == "wss://www.deribit.com/ws/api/v2"
