"""The engine package's public surface is pinned: its parts are reached through their modules."""

from __future__ import annotations

import tradebot.core.engine as engine_pkg
from tradebot.core.engine import Engine
from tradebot.core.engine.engine import Engine as EngineClass


def test_engine_package_exports() -> None:
    assert engine_pkg.__all__ == ["SNAPSHOT_VERSION", "Engine", "EngineStats", "Output", "Record"]
    assert Engine is EngineClass
    assert engine_pkg.SNAPSHOT_VERSION == 1
