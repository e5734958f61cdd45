"""Period rules on 1h closes: scale-in to winners, time stop, early exits, management mode, re-entry lock."""

from __future__ import annotations

import re

import pytest
from helpers_mgmt import H, bar, candle, kinds, manager

from tradebot.core.domain import PositionEventType as ET
from tradebot.core.domain import Side
from tradebot.core.management import NO_ACTIONS, PositionManager

IND = {"volume_sma_h": 2, "momentum_h": 2}


def _opened(atr: float = 2.0, **sections) -> PositionManager:
    pm = manager(indicators=IND, **sections)
    pm.on_period(candle(0, 100, 101, 99, 100, v=100), atr)
    pm.on_period(candle(H, 100, 101, 99, 100, v=100), atr)
    pm.on_open(time_ms=2 * H, entry_price=100.0, qty=1.0, atr=atr)
    return pm


# ------------------------------------------------------------------ scale-in
def test_scale_in_to_a_winner_once() -> None:
    pm = _opened(scale_in={})
    [a] = pm.on_period(candle(2 * H, 100, 102, 100, 102, v=150), 2.0)
    assert (a.event_type, a.time_ms, a.price, a.multiplier_before, a.multiplier_after) == (
        ET.SCALE_IN,
        3 * H,
        102,
        1.0,
        1.5,
    )
    assert a.indicators["momentum_roc"] == pytest.approx(0.02, abs=1e-12)  # 102 / 100 - 1
    assert a.indicators["volume_sma"] == 100.0 and a.urgent
    assert pm.on_period(candle(3 * H, 102, 104, 102, 104, v=500), 2.0) is NO_ACTIONS  # at most once


@pytest.mark.parametrize(
    ("close", "volume", "why"),
    [(101.4, 150, "below +0.5R (101.5)"), (102, 100, "volume not above its SMA"), (99, 150, "losing")],
)
def test_scale_in_needs_all_confirmations(close: float, volume: float, why: str) -> None:
    pm = _opened(scale_in={})
    assert pm.on_period(candle(2 * H, 100, close, 98.5, close, v=volume), 2.0) is NO_ACTIONS, why


def test_scale_in_needs_positive_momentum() -> None:
    pm = manager(indicators=IND, scale_in={})
    pm.on_period(candle(0, 103, 103, 103, 103), 2.0)
    pm.on_period(candle(H, 103, 103, 100, 100), 2.0)
    pm.on_open(time_ms=2 * H, entry_price=100.0, qty=1.0, atr=2.0)
    assert pm.on_period(candle(2 * H, 100, 102, 100, 102, v=150), 2.0) is NO_ACTIONS  # 102 / 103 - 1 < 0


def test_scale_in_never_averages_down() -> None:
    pm = _opened(scale_in={})
    pm.on_fill(time_ms=2 * H, side=Side.BUY, qty=1.0, price=105.0, position_qty_after=2.0)  # avg entry 102.5
    assert pm.on_period(candle(2 * H, 100, 102, 100, 102, v=150), 2.0) is NO_ACTIONS


def test_scale_in_is_capped() -> None:
    pm = _opened(scale_in={"max_total_m": 1.2})
    [a] = pm.on_period(candle(2 * H, 100, 102, 100, 102, v=150), 2.0)
    assert a.multiplier_after == 1.2
    capped = _opened(scale_in={}, max_scale=1.0)
    assert capped.on_period(candle(2 * H, 100, 102, 100, 102, v=150), 2.0) is NO_ACTIONS


# ------------------------------------------------------------------ time stop
def test_time_stop_without_half_r() -> None:
    pm = _opened(time_stop={"max_hours": 3})
    assert pm.on_period(candle(3 * H, 100, 101, 99.5, 100.5), 2.0) is NO_ACTIONS  # held 2 h
    [a] = pm.on_period(candle(4 * H, 100.5, 101, 99.5, 100.5), 2.0)  # closes at 5 h: held 3 h
    assert (a.event_type, a.price, a.multiplier_after, a.urgent) == (ET.TIME_EXIT, 100.5, 0.0, True)
    assert a.amount_saved_or_gained_per_unit == 3.5  # 100.5 - stop 97
    assert pm.locked


def test_time_stop_spared_once_half_r_was_reached() -> None:
    pm = _opened(time_stop={"max_hours": 3})
    assert bar(pm, 3 * H, 100, 101.5, 100, 100.5) is NO_ACTIONS  # +0.5R touched
    assert pm.on_period(candle(4 * H, 100.5, 101, 99.5, 100.5), 2.0) is NO_ACTIONS


# ------------------------------------------------------------------ early exits
def test_early_exit_on_momentum_reversal() -> None:
    pm = _opened(atr=4.0, early_exit={"volume_enabled": False, "time_decay_enabled": False})
    [a] = pm.on_period(candle(2 * H, 100, 100, 96.5, 96.5), 4.0)  # roc 96.5 / 100 - 1 = -3.5 %
    assert (a.event_type, a.price, a.multiplier_after) == (ET.EARLY_EXIT, 96.5, 0.0)
    assert a.amount_saved_or_gained_per_unit == 2.5  # 96.5 - stop 94
    assert a.trigger_reason.startswith("momentum reversal: rate of change -0.035")


def test_early_exit_on_volume_drying_up() -> None:
    pm = _opened(early_exit={"momentum_enabled": False, "time_decay_enabled": False, "volume_dry_periods": 2})
    assert pm.on_period(candle(2 * H, 100, 101, 99, 100, v=10), 2.0) is NO_ACTIONS  # 10 < 0.5 x 100
    [a] = pm.on_period(candle(3 * H, 100, 101, 99, 100, v=10), 2.0)  # 10 < 0.5 x 55
    assert a.event_type is ET.EARLY_EXIT
    assert a.trigger_reason == "volume drying up: 2 periods < 0.5 x volume SMA"


def test_early_exit_on_time_decay_while_losing() -> None:
    pm = _opened(early_exit={"momentum_enabled": False, "volume_enabled": False, "time_decay_hours": 2})
    assert pm.on_period(candle(2 * H, 100, 101, 99, 99.5), 2.0) is NO_ACTIONS  # held 1 h
    [a] = pm.on_period(candle(3 * H, 99.5, 100, 99, 99.5), 2.0)
    assert (a.event_type, a.amount_saved_or_gained_per_unit) == (ET.EARLY_EXIT, 2.5)


def test_no_early_exit_once_the_stop_protects_the_entry() -> None:
    pm = _opened(atr=4.0, breakeven={}, early_exit={})
    bar(pm, 3 * H, 100, 104, 100, 101)  # breakeven: stop 100.2
    assert pm.on_period(candle(2 * H, 100, 104, 96.5, 100.3, v=1), 4.0) is NO_ACTIONS


# ------------------------------------------------------------------ management mode
def test_management_mode_reloads_within_budget_scales_out_into_bounces_and_quits() -> None:
    pm = manager(indicators=IND, management_mode={})
    [s] = pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    assert s.stop == 94.0 and pm.initial_risk == 3.0  # hard quit at 2 R below the entry
    [r1] = pm.on_period(candle(0, 100, 100, 97, 97.5), 2.0)  # 97.5 <= 100 - 1 x ATR; no bounce
    assert (r1.event_type, r1.multiplier_after) == (ET.MANAGEMENT_RELOAD, 1.25)
    [o1] = pm.on_period(candle(H, 97.5, 98.7, 96.5, 98.5), 2.0)  # bounce 98.5 >= 96.5 + 1
    assert (o1.event_type, o1.multiplier_after) == (ET.MANAGEMENT_SCALE_OUT, 1.0)
    [r2] = pm.on_period(candle(2 * H, 98.5, 98.5, 96.4, 96.5), 2.0)  # 96.5 <= 98.5 - 2
    assert (r2.event_type, r2.multiplier_after) == (ET.MANAGEMENT_RELOAD, 1.25)
    assert pm.on_period(candle(3 * H, 96.5, 96.5, 94.4, 94.5), 2.0) is NO_ACTIONS  # budget 0.5 used
    [q] = bar(pm, 4 * H, 94.5, 94.5, 93.9, 94.2)
    assert (q.event_type, q.price, q.multiplier_after, q.r_multiple) == (ET.MANAGEMENT_QUIT, 94.0, 0.0, -2.0)
    assert pm.locked


# ------------------------------------------------------------------ re-entry lock
def _stopped_out() -> PositionManager:
    pm = manager()
    pm.on_streams(2)
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    assert kinds(bar(pm, H, 100, 100, 96, 96)) == ["stop_exit"]
    pm.on_close(time_ms=2 * H)
    return pm


def test_lock_holds_until_a_fresh_signal() -> None:
    pm = _stopped_out()
    assert (pm.multiplier, pm.locked, pm.is_open) == (0.0, True, False)
    assert pm.on_streams(2) == ()
    assert pm.on_streams(1) == () and pm.locked  # fewer streams in, not 0: still locked
    pm.on_streams(2)  # a stream flipped in: fresh signal
    assert (pm.locked, pm.multiplier) == (False, 1.0)


def test_lock_released_when_all_streams_are_out() -> None:
    pm = _stopped_out()
    pm.on_streams(0)
    assert (pm.locked, pm.multiplier) == (False, 1.0)


def test_entry_while_locked_keeps_m_zero() -> None:
    pm = _stopped_out()
    pm.on_open(time_ms=3 * H, entry_price=100.0, qty=1.0, atr=2.0)
    assert pm.multiplier == 0.0


def test_on_streams_validates() -> None:
    with pytest.raises(ValueError, match=re.escape("in_count must be an integer >= 0, was -1")):
        manager().on_streams(-1)
