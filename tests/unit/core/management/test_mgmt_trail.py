"""Trailing stop and the proportional scale-out / scale-in along it (worked example of the brief)."""

from __future__ import annotations

import json
import re

import pytest
from helpers_mgmt import H, bar, kinds, manager

from tradebot.core.domain import PositionEventType as ET
from tradebot.core.management import NO_ACTIONS, PositionManager

TRAIL = {"min_step_atr": 0.0}
PROP = {"min_interval_ms": 0}


def _trailing_manager(**extra) -> PositionManager:
    sections = {"breakeven": {}, "trailing": TRAIL, "proportional": PROP, **extra}
    pm = manager(**sections)
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)  # stop 97, R = 3
    return pm


def test_worked_example_trail_scale_out_in_and_exit() -> None:
    pm = _trailing_manager()
    # +2R = 106: breakeven (at +1R) and the trail starts 1 x ATR below the high.
    a = bar(pm, H, 100, 106, 100, 106)
    assert kinds(a) == ["breakeven", "trailing_stop_update"]
    assert (a[1].price, a[1].stop, a[1].r_multiple) == (106, 104.0, 2.0)
    assert pm.trailing and pm.stop == 104.0 and pm.multiplier == 1.0
    # pull back 60 % of the way to the trail: f = (104.8 - 104) / (106 - 104) = 0.4
    [out] = bar(pm, 2 * H, 106, 106, 104.5, 104.8)
    assert out.event_type is ET.TRAILING_SCALE_OUT and out.urgent
    assert out.multiplier_after == pytest.approx(0.4, abs=1e-12)
    assert out.indicators["f"] == pytest.approx(0.4, abs=1e-12)
    # recover to 105.8: f = 0.9, buys back
    [back] = bar(pm, 3 * H, 104.8, 105.9, 104.6, 105.8)
    assert back.event_type is ET.TRAILING_SCALE_IN
    assert back.multiplier_after == pytest.approx(0.9, abs=1e-12)
    # the trail is hit: full exit at S
    [stop] = bar(pm, 4 * H, 105.8, 105.8, 103.9, 104.0)
    assert (stop.event_type, stop.price, stop.multiplier_after) == (ET.STOP_EXIT, 104.0, 0.0)
    assert stop.trigger_reason == "low 103.9 <= stop 104 (trailing)"
    assert pm.locked


def test_exact_binary_fraction() -> None:
    pm = _trailing_manager()
    bar(pm, H, 100, 106, 100, 106)
    [out] = bar(pm, 2 * H, 106, 106, 104.25, 104.5)
    assert out.multiplier_after == 0.25  # (104.5 - 104) / 2 exactly


def test_new_peak_ratchets_the_stop_and_rescales_f() -> None:
    pm = _trailing_manager()
    bar(pm, H, 100, 106, 100, 106)
    [up] = bar(pm, 2 * H, 106, 108, 106, 108)
    assert (up.event_type, up.stop, up.price) == (ET.TRAILING_STOP_UPDATE, 106.0, 108)
    [out] = bar(pm, 3 * H, 108, 108, 106.5, 107)  # f = (107 - 106) / 2 = 0.5
    assert out.multiplier_after == 0.5


def test_min_step_atr_suppresses_small_stop_updates() -> None:
    pm = _trailing_manager(trailing={"min_step_atr": 0.5})
    bar(pm, H, 100, 106, 100, 106)
    assert bar(pm, 2 * H, 106, 106.9, 106, 106.9) is NO_ACTIONS  # +0.9 < 1.0 (0.5 ATR)
    assert pm.stop == 104.0
    [up] = bar(pm, 3 * H, 106.9, 107, 106.9, 107)
    assert up.stop == 105.0


def test_close_below_a_stop_raised_in_the_same_bar_exits() -> None:
    pm = _trailing_manager()
    actions = bar(pm, H, 100, 110, 100, 107.5)
    assert kinds(actions) == ["breakeven", "trailing_stop_update", "stop_exit"]
    assert actions[-1].trigger_reason == "close 107.5 <= stop 108 raised this bar"


def test_min_interval_between_adjustments() -> None:
    pm = _trailing_manager(proportional={"min_interval_ms": H})
    bar(pm, H, 100, 106, 100, 106)
    assert bar(pm, H + 60_000, 106, 106, 104.25, 104.5) is NO_ACTIONS
    [out] = bar(pm, 2 * H, 104.5, 104.6, 104.25, 104.5)
    assert out.multiplier_after == 0.25


def test_max_adjustments() -> None:
    pm = _trailing_manager(proportional={"min_interval_ms": 0, "max_adjustments": 1})
    bar(pm, H, 100, 106, 100, 106)
    assert kinds(bar(pm, 2 * H, 106, 106, 104.25, 104.5)) == ["trailing_scale_out"]
    assert bar(pm, 3 * H, 104.5, 105.9, 104.5, 105.9) is NO_ACTIONS
    assert kinds(bar(pm, 4 * H, 105.9, 105.9, 103, 103)) == ["stop_exit"]  # the exit at S still happens


def test_min_order_notional_guard_uses_notional_per_m() -> None:
    pm = _trailing_manager()
    bar(pm, H, 100, 106, 100, 106)
    # |dm| = 0.75: 0.75 x 10 = 7.5 quote < 10 minimum
    assert bar(pm, 2 * H, 106, 106, 104.25, 104.5, notional_per_m=10.0) is NO_ACTIONS
    pm.notional_per_m = 1000.0
    assert kinds(bar(pm, 3 * H, 104.5, 104.6, 104.25, 104.5)) == ["trailing_scale_out"]


def test_fee_rule_requires_a_move_worth_the_round_trip_fees() -> None:
    # fee 0.5 %: consecutive adjustments need a move >= 2 x 2 x 0.5 % = 2 % of the close
    sections = {"breakeven": {}, "trailing": {"min_step_atr": 0.0, "distance_atr": 4.0}, "proportional": PROP}
    pm = manager(**sections, fee_rate=0.005)
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    bar(pm, H, 100, 106, 100, 106)  # trail 106 - 8 = 98 is below breakeven 101: the stop stays 101
    assert pm.stop == 101.0
    assert bar(pm, 2 * H, 106, 106, 104.5, 104.5) is NO_ACTIONS  # moved 1.5 < 2 % of 104.5 (f would be 0.7)
    [out] = bar(pm, 3 * H, 104.5, 104.5, 103.5, 103.5)  # moved 2.5 >= 2.07: f = 2.5 / 5
    assert out.multiplier_after == 0.5


def test_no_buy_back_below_the_entry() -> None:
    # wide trail (4 ATR), no breakeven: the trail stop (98) sits below the entry
    pm = manager(trailing={"min_step_atr": 0.0, "distance_atr": 4.0}, proportional=PROP)
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    bar(pm, H, 100, 106, 100, 106)
    assert pm.stop == 98.0
    [out] = bar(pm, 2 * H, 106, 106, 99, 99)  # f = 1 / 8
    assert out.multiplier_after == 0.125
    assert bar(pm, 3 * H, 99, 99.9, 99, 99.9) is NO_ACTIONS  # would buy back below the entry
    [back] = bar(pm, 4 * H, 99.9, 101, 99.9, 101)  # f = 3 / 8
    assert (back.event_type, back.multiplier_after) == (ET.TRAILING_SCALE_IN, 0.375)


def test_trail_after_first_ladder_level() -> None:
    pm = manager(
        take_profit={}, trailing={"start_r": None, "start_after_first_ladder": True, "min_step_atr": 0}
    )
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    actions = bar(pm, H, 100, 104.5, 100, 104.5)
    assert kinds(actions) == ["partial_take_profit", "trailing_stop_update"]
    assert pm.stop == 102.5 and pm.multiplier == 0.5


def test_state_round_trip_resumes_the_trail() -> None:
    pm = _trailing_manager()
    bar(pm, H, 100, 106, 100, 106)
    bar(pm, 2 * H, 106, 106, 104.25, 104.5)
    saved = json.loads(json.dumps(pm.state()))
    twin = PositionManager("BTC/USDT", pm.config)
    twin.restore(saved)
    assert (twin.multiplier, twin.stop, twin.trailing, twin.initial_risk) == (0.25, 104.0, True, 3.0)
    path = [(104.5, 107, 104.5, 107), (107, 107, 105.5, 106), (106, 106, 104.9, 105)]
    for i, (o, h, lo, c) in enumerate(path, start=3):
        assert bar(twin, i * H, o, h, lo, c) == bar(pm, i * H, o, h, lo, c)
    assert twin.state() == pm.state()
    with pytest.raises(ValueError, match=re.escape("state is for symbol 'BTC/USDT', not 'ETH/USDT'")):
        PositionManager("ETH/USDT", pm.config).restore(saved)
