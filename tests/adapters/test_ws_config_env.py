""".env.example documents every feed variable with the default the feeds really use.

The feeds' defaults live in three places that must agree: the adapters' config dataclasses
(``BinanceFeedConfig``, ``DeribitFeedConfig``, ``BackfillConfig``), the daemon's settings models
(``TRADEBOT_FEEDS__*``), and the values written in ``.env.example``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tradebot.adapters.feeds.backfill import BackfillConfig
from tradebot.adapters.feeds.binance_ws import BinanceFeedConfig
from tradebot.adapters.feeds.deribit_ws import DeribitFeedConfig
from tradebot.app.settings import BackfillSettings, BinanceFeedSettings, DeribitFeedSettings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
SECTIONS: list[tuple[str, Any, type[BaseModel]]] = [
    ("BINANCE", BinanceFeedConfig, BinanceFeedSettings),
    ("DERIBIT", DeribitFeedConfig, DeribitFeedSettings),
    ("BACKFILL", BackfillConfig, BackfillSettings),
]
#: Settings whose default is "the selected mode's host" / TRADEBOT_SYMBOLS (``None``): documented
#: as commented examples, not as values.
MODE_DEFAULTS = {"ws_url", "rest_url", "symbols"}


def env_lines() -> dict[str, tuple[str, bool]]:
    """``TRADEBOT_FEEDS__*`` name → (value, commented out) as written in ``.env.example``."""
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"\s*(#\s*)?(TRADEBOT_FEEDS__\w+)=(\S+)", line)
        if m:
            out[m.group(2)] = (m.group(3), m.group(1) is not None)
    return out


def parse(text: str) -> Any:
    value = json.loads(text.strip("'"))
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize(("prefix", "config", "settings"), SECTIONS, ids=[s[0] for s in SECTIONS])
def test_env_example_states_every_feed_default(prefix: str, config: Any, settings: type[BaseModel]) -> None:
    documented = env_lines()
    defaults, model = config(), settings()
    fields = {f.name for f in dataclasses.fields(config)}
    assert set(settings.model_fields) - fields <= {"rest_url"}  # the REST URL is the history's
    for name in sorted(fields | set(settings.model_fields)):
        key = f"TRADEBOT_FEEDS__{prefix}__{name.upper()}"
        assert key in documented, f"{key} is not in .env.example"
        text, commented = documented[key]
        if name in MODE_DEFAULTS:
            assert commented and getattr(model, name) is None, key
            continue
        assert not commented, f"{key}: a default must be stated as a value, was commented out"
        assert parse(text) == getattr(defaults, name) == getattr(model, name), key


def test_env_example_names_only_existing_feed_variables() -> None:
    known = {
        f"TRADEBOT_FEEDS__{prefix}__{name.upper()}"
        for prefix, _, settings in SECTIONS
        for name in settings.model_fields
    }
    assert set(env_lines()) - known == set()
