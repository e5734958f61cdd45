"""Local exchange simulator: replays real candles as Binance spot and Deribit market data.

Serves on 127.0.0.1 the Binance combined-stream websocket and REST market endpoints, and the
Deribit JSON-RPC websocket and REST ``public/*`` endpoints, with fault injection. See
:class:`tradebot.exchange_sim.server.ExchangeSim`.
"""

from tradebot.exchange_sim.faults import Faults, RandomFaults, VenueFaults
from tradebot.exchange_sim.market import Bar, Market, Tape
from tradebot.exchange_sim.server import ExchangeSim, SimConfig, main

__all__ = [
    "Bar",
    "ExchangeSim",
    "Faults",
    "Market",
    "RandomFaults",
    "SimConfig",
    "Tape",
    "VenueFaults",
    "main",
]
