"""Re-entry policies after a forced exit (``management.reentry``): stream change, after N periods, new high.

Common path (``_stopped``): entry 100 at t = 0 with ATR 2 → initial stop 100 − 1.5 × 2 = 97; the bar
closing at ``exit_ms`` has low 96 → stop exit at 97, locked. The manager is then driven with 1h
rebalance-clock candles through ``on_period``, as the engine does after the exit.
"""

from __future__ import annotations

import json
import re

import pytest
from helpers_mgmt import H, bar, candle, kinds, manager

from tradebot.core.domain import PositionEventType as ET
from tradebot.core.management import NO_ACTIONS, ManagementConfig, PositionManager
from tradebot.errors import ConfigError


def _stopped(exit_ms: int = H, **top: object) -> PositionManager:
    pm = manager(**top)
    pm.on_streams(1)
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    [stop_exit] = bar(pm, exit_ms, 100, 100, 96, 96)
    assert (stop_exit.event_type, stop_exit.price, pm.locked) == (ET.STOP_EXIT, 97.0, True)
    pm.on_close(time_ms=exit_ms)
    return pm


def _period(pm: PositionManager, open_ms: int, o: float, h: float, lo: float, c: float):
    return pm.on_period(candle(open_ms, o, h, lo, c), 2.0)


# ------------------------------------------------------------------ after_periods


def test_after_two_periods_the_lock_is_released_at_the_second_clock_close_after_the_exit() -> None:
    # Exit decided at 1h (a clock close): that close does not count; 2h is the 1st, 3h the 2nd.
    pm = _stopped(reentry="after_periods", reentry_periods=2)
    assert _period(pm, 0, 100, 100, 96, 96) is NO_ACTIONS  # the clock close of the exit's own bar (1h)
    assert _period(pm, H, 96, 97, 95, 96) is NO_ACTIONS  # closes 2h: 1 period
    assert (pm.locked, pm.multiplier) == (True, 0.0)
    [release] = _period(pm, 2 * H, 96, 97, 95, 96.5)  # closes 3h: 2 periods
    assert (release.event_type, release.time_ms, release.price) == (ET.REENTRY_ALLOWED, 3 * H, 96.5)
    assert (release.multiplier_before, release.multiplier_after, release.urgent) == (0.0, 1.0, True)
    assert release.indicators["periods_since_exit"] == 2.0
    assert (
        "2 rebalance-clock closes since the exit at 3600000 ms (re-entry after 2)" in release.trigger_reason
    )
    assert (pm.locked, pm.multiplier) == (False, 1.0)
    assert _period(pm, 3 * H, 96.5, 97, 96, 96.5) is NO_ACTIONS  # released once


def test_after_periods_counts_the_close_of_the_period_the_exit_happened_in() -> None:
    # Exit at 1h30 (a 30 min bar inside the 1h-2h period): 2h is the 1st close after it, 3h the 2nd.
    pm = _stopped(exit_ms=H + H // 2, reentry="after_periods", reentry_periods=2)
    assert _period(pm, H, 100, 100, 96, 96) is NO_ACTIONS  # closes 2h: 1
    assert kinds(_period(pm, 2 * H, 96, 97, 95, 96)) == ["reentry_allowed"]  # closes 3h: 2


def test_after_one_period_following_a_time_exit_at_a_clock_close() -> None:
    pm = manager(time_stop={"max_hours": 2}, reentry="after_periods", reentry_periods=1)
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    assert _period(pm, 0, 100, 100.5, 99.5, 100) is NO_ACTIONS  # held 1 h
    # Closes 2h: held 2 h without +0.5 R (101.5) → time exit at 2h; that same close does not count.
    assert kinds(_period(pm, H, 100, 100.5, 99.5, 100)) == ["time_exit"]
    pm.on_close(time_ms=2 * H)
    [release] = _period(pm, 2 * H, 100, 100.5, 99.5, 100)  # closes 3h: 1 period
    assert (release.event_type, release.time_ms) == (ET.REENTRY_ALLOWED, 3 * H)


# ------------------------------------------------------------------ new_high


def test_new_high_releases_on_the_first_close_above_the_highest_price_since_the_exit() -> None:
    pm = _stopped(reentry="new_high")
    # The exit's own period (0-1h, high 101): never judged; H = max(exit 97, 101) = 101.
    assert _period(pm, 0, 100, 101, 96, 96) is NO_ACTIONS
    assert _period(pm, H, 96, 100, 95, 99.5) is NO_ACTIONS  # 99.5 <= 101; H stays 101
    assert _period(pm, 2 * H, 99.5, 102, 99, 101) is NO_ACTIONS  # 101 is not above 101; H = 102
    assert pm.locked
    [release] = _period(pm, 3 * H, 101, 102.5, 100.5, 102.4)  # 102.4 > 102
    assert (release.event_type, release.time_ms, release.price) == (ET.REENTRY_ALLOWED, 4 * H, 102.4)
    assert release.indicators["high_since_exit"] == 102.0
    assert "close 102.4 > highest price 102 since the exit at 3600000 ms" in release.trigger_reason
    assert (pm.locked, pm.multiplier) == (False, 1.0)


def test_new_high_does_not_judge_the_period_of_a_bar_exit() -> None:
    # Exit at 1h30: the 1h-2h period holds the exit; its close 101 (> exit 97) is not a new high.
    pm = _stopped(exit_ms=H + H // 2, reentry="new_high")
    assert _period(pm, H, 100, 101.5, 96, 101) is NO_ACTIONS  # H = 101.5
    assert _period(pm, 2 * H, 101, 101.5, 100, 101.5) is NO_ACTIONS  # 101.5 is not above 101.5
    assert kinds(_period(pm, 3 * H, 101.5, 102, 101, 101.6)) == ["reentry_allowed"]


# ------------------------------------------------------------------ stream change, default, off


def test_default_policy_never_releases_on_periods_only_on_a_stream_change() -> None:
    pm = _stopped()
    assert ManagementConfig().reentry == "stream_change"
    for i in range(48):
        assert _period(pm, i * H, 100, 200, 99, 150 + i) is NO_ACTIONS
    assert pm.locked
    pm.on_streams(2)
    assert (pm.locked, pm.multiplier) == (False, 1.0)


@pytest.mark.parametrize("policy", ["after_periods", "new_high"])
def test_a_stream_change_still_releases_before_the_policy(policy: str) -> None:
    pm = _stopped(reentry=policy, reentry_periods=5)
    pm.on_streams(0)
    assert (pm.locked, pm.multiplier) == (False, 1.0)
    assert _period(pm, 5 * H, 100, 200, 99, 150) is NO_ACTIONS  # nothing left to release


def test_without_the_lock_the_policy_has_nothing_to_do() -> None:
    pm = manager(reentry_lock=False, reentry="after_periods")
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    assert kinds(bar(pm, H, 100, 100, 96, 96)) == ["stop_exit"]
    pm.on_close(time_ms=H)
    assert (pm.locked, pm.multiplier) == (False, 1.0)
    assert _period(pm, H, 96, 97, 95, 96) is NO_ACTIONS


# ------------------------------------------------------------------ persistence


def test_state_round_trip_keeps_the_exit_and_the_high_since() -> None:
    pm = _stopped(reentry="new_high")
    _period(pm, 0, 100, 101, 96, 96)
    _period(pm, H, 96, 102, 95, 99.5)  # H = 102
    state = json.loads(json.dumps(pm.state()))
    assert state["reentry"] == {"exit_ms": H, "high": 102.0}
    twin = manager(reentry="new_high")
    twin.restore(state)
    assert twin.locked
    assert _period(twin, 2 * H, 99.5, 101, 99, 101.9) is NO_ACTIONS  # 101.9 <= 102
    assert kinds(_period(twin, 3 * H, 101.9, 102.5, 101, 102.1)) == ["reentry_allowed"]


def test_an_older_snapshot_without_the_exit_restores_and_waits_for_a_stream_change() -> None:
    state = _stopped(reentry="after_periods").state()
    del state["reentry"]
    twin = manager(reentry="after_periods")
    twin.restore(state)
    assert twin.locked
    for i in range(5):
        assert _period(twin, (i + 1) * H, 96, 97, 95, 96) is NO_ACTIONS
    twin.on_streams(2)
    assert not twin.locked


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"reentry": "never"},
            "management.reentry must be one of ['stream_change', 'after_periods', 'new_high'], was 'never'",
        ),
        ({"reentry_periods": 0}, "management.reentry_periods must be an integer >= 1, was 0"),
        ({"reentry_periods": 1.5}, "management.reentry_periods must be an integer >= 1, was 1.5"),
    ],
)
def test_bad_reentry_values_are_refused_naming_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ManagementConfig.from_dict(data)
