"""Initial stop (regimes, swing low), breakeven, stop exits, ladder, baseline and disabled variants."""

from __future__ import annotations

import re

import pytest
from helpers_mgmt import H, bar, candle, kinds, manager

from tradebot.core.domain import PositionEventType as ET
from tradebot.core.management import NO_ACTIONS, ManagementConfig, PositionManager


def _warm_regime(pm: PositionManager, n: int = 3) -> None:
    # ATR / price = 2 / 100 = 0.02 on every period: the slow average is exactly 0.02.
    for i in range(n):
        pm.on_period(candle(i * H, 100, 101, 99, 100), 2.0)


def test_initial_stop_normal_regime_sets_r() -> None:
    pm = manager()
    actions = pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    assert kinds(actions) == ["stop_set"]
    a = actions[0]
    assert (a.price, a.stop, a.multiplier_before, a.multiplier_after, a.urgent) == (
        100.0,
        97.0,
        1.0,
        1.0,
        False,
    )
    assert a.trigger_reason == "initial stop = entry 100.0 - 1.5 x ATR 2 = 97 (normal volatility)"
    assert (pm.stop, pm.initial_risk, pm.multiplier) == (97.0, 3.0, 1.0)


@pytest.mark.parametrize(
    ("atr", "stop", "regime"),
    [(1.5, 98.5, "low"), (2.0, 97.0, "normal"), (3.0, 94.0, "high")],
)
def test_initial_stop_k_by_volatility_regime(atr: float, stop: float, regime: str) -> None:
    pm = manager(initial_stop={"regime_period_h": 3})
    _warm_regime(pm)
    [a] = pm.on_open(time_ms=3 * H, entry_price=100.0, qty=1.0, atr=atr)
    assert pm.stop == stop
    assert a.trigger_reason.endswith(f"({regime} volatility)")


def test_regime_is_normal_while_its_average_warms_up() -> None:
    pm = manager(initial_stop={"regime_period_h": 3})
    _warm_regime(pm, n=2)
    pm.on_open(time_ms=2 * H, entry_price=100.0, qty=1.0, atr=3.0)
    assert pm.stop == 95.5  # 100 - 1.5 x 3


def test_swing_low_stop_used_when_close_enough() -> None:
    pm = manager(initial_stop={"swing_low_enabled": True, "swing_lookback_h": 3, "swing_buffer_atr": 0.25})
    for i, low in enumerate((98.0, 96.0, 97.0)):
        pm.on_period(candle(i * H, 100, 101, low, 100), 2.0)
    pm.on_open(time_ms=3 * H, entry_price=100.0, qty=1.0, atr=2.0)
    assert (pm.stop, pm.initial_risk) == (95.5, 4.5)  # 96 - 0.25 x 2


def test_swing_low_too_far_falls_back_to_atr_stop() -> None:
    pm = manager(initial_stop={"swing_low_enabled": True, "swing_lookback_h": 3})
    pm.on_period(candle(0, 100, 101, 90.0, 100), 2.0)
    pm.on_open(time_ms=H, entry_price=100.0, qty=1.0, atr=2.0)
    assert pm.stop == 97.0  # 89.8 is more than 3 ATR below the entry


def test_no_atr_means_no_stop_and_no_r() -> None:
    pm = manager(breakeven={}, trailing={})
    assert pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=None) == []
    assert (pm.stop, pm.initial_risk) == (None, None)
    assert bar(pm, H, 100, 200, 1, 150) is NO_ACTIONS


def test_stop_hit_exits_and_locks() -> None:
    pm = manager()
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    assert bar(pm, H, 100, 101, 97.01, 98) is NO_ACTIONS
    [a] = bar(pm, 2 * H, 98, 98, 96.5, 97.5)
    assert (a.event_type, a.price, a.multiplier_after, a.r_multiple, a.urgent) == (
        ET.STOP_EXIT,
        97.0,
        0.0,
        -1.0,
        True,
    )
    assert a.trigger_reason == "low 96.5 <= stop 97 (initial)"
    assert (pm.multiplier, pm.locked) == (0.0, True)
    assert bar(pm, 3 * H, 97, 97, 90, 91) is NO_ACTIONS  # exit pending: nothing more


def test_breakeven_at_plus_one_r_includes_round_trip_fees() -> None:
    pm = manager(breakeven={})
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    assert bar(pm, H, 100, 102.99, 99, 102) is NO_ACTIONS
    [a] = bar(pm, 2 * H, 102, 103, 101, 102.5)
    assert (a.event_type, a.price, a.stop, a.r_multiple, a.multiplier_after) == (
        ET.BREAKEVEN,
        103.0,
        100.2,
        1.0,
        1.0,
    )
    assert pm.stop == 100.2  # 100 x (1 + 2 x 0.001)
    assert bar(pm, 3 * H, 102, 104, 101, 103) is NO_ACTIONS  # only once


def test_default_ladder_takes_half_at_one_and_a_half_r() -> None:
    pm = manager(breakeven={}, take_profit={})
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    actions = bar(pm, H, 100, 104.5, 100, 104)
    assert kinds(actions) == ["breakeven", "partial_take_profit"]
    tp = actions[1]
    assert (tp.price, tp.multiplier_before, tp.multiplier_after, tp.r_multiple, tp.urgent) == (
        104.5,
        1.0,
        0.5,
        1.5,
        True,
    )
    assert pm.multiplier == 0.5


def test_percent_ladder_ends_in_a_full_take_profit_exit() -> None:
    pm = manager(take_profit={"levels_r": [], "levels_pct": [6, 10, 15], "fractions": [0.3, 0.3, 0.4]})
    pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0)
    [a1] = bar(pm, H, 100, 107, 100, 106)
    assert a1.price == pytest.approx(106.0, abs=1e-9) and a1.multiplier_after == pytest.approx(0.7, abs=1e-12)
    a2, a3 = bar(pm, 2 * H, 106, 116, 105, 114)  # two levels in one bar
    assert (a2.event_type, a3.event_type) == (ET.PARTIAL_TAKE_PROFIT, ET.TAKE_PROFIT_EXIT)
    assert a2.multiplier_after == pytest.approx(0.4, abs=1e-12)
    assert (a3.multiplier_after, pm.locked) == (0.0, True)
    assert a3.profit_pct == pytest.approx(15.0, abs=1e-9)


def test_fixed_stop_target_baseline_only_stops_or_takes_profit() -> None:
    pm = PositionManager("BTC/USDT", ManagementConfig.fixed_stop_target())
    for i in range(120):  # a warmed-up regime must not change k
        pm.on_period(candle(i * H, 100, 101, 99, 100, v=100.0 + i), 1.0)
    pm.on_open(time_ms=120 * H, entry_price=100.0, qty=1.0, atr=2.0)
    assert pm.stop == 97.0
    assert bar(pm, 121 * H, 100, 105.99, 99, 105) is NO_ACTIONS  # no breakeven, no ladder, no trail
    assert pm.on_period(candle(121 * H, 100, 105, 99, 105, v=1e6), 2.0) is NO_ACTIONS  # no scale-in
    [a] = bar(pm, 122 * H, 105, 106, 104, 105)
    assert (a.event_type, a.price, a.multiplier_after, a.r_multiple) == (ET.TAKE_PROFIT_EXIT, 106.0, 0.0, 2.0)


def test_disabled_config_never_acts() -> None:
    pm = PositionManager("BTC/USDT", ManagementConfig.disabled())
    assert pm.on_open(time_ms=0, entry_price=100.0, qty=1.0, atr=2.0) == []
    assert pm.stop is None and pm.multiplier == 1.0
    for i, (h, lo) in enumerate([(150, 100), (150, 50), (60, 10)]):
        assert bar(pm, i * H, 100, h, lo, lo) is NO_ACTIONS
        assert pm.on_period(candle(i * H, 100, h, lo, lo), 2.0) is NO_ACTIONS
    pm.on_close(time_ms=5 * H)
    assert (pm.multiplier, pm.locked) == (1.0, False)


def test_on_open_rejects_bad_input() -> None:
    pm = manager()
    with pytest.raises(ValueError, match=re.escape("entry_price must be > 0, was 0.0")):
        pm.on_open(time_ms=0, entry_price=0.0, qty=1.0, atr=2.0)
    with pytest.raises(ValueError, match=re.escape("qty must be > 0, was -1.0")):
        pm.on_open(time_ms=0, entry_price=1.0, qty=-1.0, atr=2.0)
