"""The engine: one synchronous state machine for every mode, composed of parts that own their state.

- :mod:`~tradebot.core.engine.engine` — :class:`Engine`, events in, commands and records out;
- :mod:`~tradebot.core.engine.overlay` — the glue to position management and the risk limits;
- :mod:`~tradebot.core.engine.records` — position-event and order rows, the event sequence;
- :mod:`~tradebot.core.engine.quiet` — bulk replay of quiet stretches (backtest);
- :mod:`~tradebot.core.engine.snapshot` — the snapshot format a restarting daemon reloads;
- :mod:`~tradebot.core.engine.stats` and :mod:`~tradebot.core.engine.symbols` — run statistics and
  per-symbol hot-path state.
"""

from tradebot.core.engine.engine import Engine
from tradebot.core.engine.records import Output, Record
from tradebot.core.engine.snapshot import SNAPSHOT_VERSION
from tradebot.core.engine.stats import EngineStats

__all__ = ["SNAPSHOT_VERSION", "Engine", "EngineStats", "Output", "Record"]
