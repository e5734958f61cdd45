"""Position event ids: deterministic RFC 4122 version-5 UUIDs of ``"<run_id>:<seq>"``."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from tradebot.core.domain import position_event_id
from tradebot.core.domain.events import POSITION_EVENT_NAMESPACE


def test_known_id() -> None:
    # The id stored for event 1 of run "bt-demo" must never change (rows are upserted by it).
    event_id = position_event_id("bt-demo", 1)
    assert event_id == uuid.uuid5(POSITION_EVENT_NAMESPACE, "bt-demo:1")
    assert event_id.version == 5 and event_id.variant == uuid.RFC_4122


@given(run_id=st.text(min_size=1, max_size=40), seq=st.integers(min_value=0, max_value=10**12))
def test_equals_uuid5(run_id: str, seq: int) -> None:
    assert position_event_id(run_id, seq) == uuid.uuid5(POSITION_EVENT_NAMESPACE, f"{run_id}:{seq}")
