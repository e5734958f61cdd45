"""RiskLimits / RiskManager: caps, gross, open positions, blackouts, stale feeds, daily-loss halt, state."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from tradebot.core.domain import PositionEventType as ET
from tradebot.core.domain import TradingState
from tradebot.core.management import BlackoutWindow, RiskLimits, RiskManager
from tradebot.errors import ConfigError

D = Decimal
DAY = 86_400_000
BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"


def _apply(rm: RiskManager, targets, holdings=None, equity="10000", t=0, **kw):
    return rm.apply_limits(
        {k: D(v) for k, v in targets.items()},
        {k: D(v) for k, v in (holdings or {}).items()},
        D(equity),
        t,
        **kw,
    )


def test_per_symbol_cap_is_ten_percent_of_equity_by_default() -> None:
    out, events = _apply(RiskManager(RiskLimits()), {BTC: "3000", ETH: "500"})
    assert out == {BTC: D("1000"), ETH: D("500")}
    [e] = events
    assert (e.event_type, e.symbol, e.target_before, e.target_after) == (
        ET.RISK_BLOCK,
        BTC,
        D("3000"),
        D("1000"),
    )
    assert e.indicators == {"rule": "max_position"} and e.trigger_reason == "per-symbol cap 1000.0"


def test_fraction_none_is_off_and_notional_cap_applies() -> None:
    rm = RiskManager(RiskLimits(max_position_fraction=None, max_position_notional=D("2500")))
    out, _ = _apply(rm, {BTC: "3000", ETH: "2000"})
    assert out == {BTC: D("2500"), ETH: D("2000")}


def test_gross_cap_scales_down_proportionally() -> None:
    rm = RiskManager(RiskLimits(max_position_fraction=None, max_gross_exposure_fraction=0.9))
    out, events = _apply(rm, {BTC: "6000", ETH: "3000", SOL: "3000"})
    assert out == {BTC: D("4500.00000000"), ETH: D("2250.00000000"), SOL: D("2250.00000000")}  # x 0.75
    assert sum(out.values()) == D("9000")
    assert {e.indicators["rule"] for e in events} == {"max_gross_exposure"}


def test_leverage_caps_gross_too() -> None:
    rm = RiskManager(
        RiskLimits(max_position_fraction=None, max_gross_exposure_fraction=None, max_leverage=0.5)
    )
    out, _ = _apply(rm, {BTC: "8000", ETH: "2000"})
    assert out == {BTC: D("4000.00000000"), ETH: D("1000.00000000")}


def test_max_open_positions_blocks_new_entries_by_size() -> None:
    rm = RiskManager(RiskLimits(max_position_fraction=None, max_open_positions=2))
    out, events = _apply(rm, {BTC: "3000", ETH: "2000", SOL: "2500"}, {BTC: "2900"})
    assert out == {BTC: D("3000"), ETH: D("0"), SOL: D("2500")}
    [e] = events
    assert e.symbol == ETH and e.trigger_reason == "1 open of max 2: no new position"


def test_min_order_notional_drops_tiny_increases_and_dust_targets() -> None:
    rm = RiskManager(RiskLimits(max_position_fraction=None))
    out, _ = _apply(rm, {BTC: "1003", ETH: "3", SOL: "500"}, {BTC: "1000", ETH: "100", SOL: "400"})
    assert out == {BTC: D("1000"), ETH: D("0"), SOL: D("500")}


def test_daily_blackout_window_wrapping_midnight_blocks_increases_only() -> None:
    w = BlackoutWindow.daily("23:30", "00:30")
    assert [w.contains(m * 60_000) for m in (23 * 60 + 29, 23 * 60 + 30, 10, 30)] == [
        False,
        True,
        True,
        False,
    ]
    rm = RiskManager(RiskLimits(max_position_fraction=None, blackout_windows=(w,)))
    out, events = _apply(rm, {BTC: "3000", ETH: "100"}, {BTC: "1000", ETH: "500"}, t=DAY + 10 * 60_000)
    assert out == {BTC: D("1000"), ETH: D("100")}
    assert [e.indicators["rule"] for e in events] == ["blackout"]
    out, _ = _apply(rm, {BTC: "3000"}, {BTC: "1000"}, t=DAY + 60 * 60_000)
    assert out == {BTC: D("3000")}


def test_absolute_blackout_and_stale_feed() -> None:
    rm = RiskManager(
        RiskLimits(max_position_fraction=None, blackout_windows=(BlackoutWindow.between(100, 200),))
    )
    assert (rm.in_blackout(99), rm.in_blackout(100), rm.in_blackout(199), rm.in_blackout(200)) == (
        False,
        True,
        True,
        False,
    )
    out, events = _apply(rm, {BTC: "3000", ETH: "3000"}, {BTC: "1000"}, t=0, stale=frozenset({ETH}))
    assert out == {BTC: D("3000"), ETH: D("0")}
    assert events[0].indicators["rule"] == "stale_feed"


def test_daily_loss_halts_closes_all_and_resumes_next_utc_day() -> None:
    rm = RiskManager(RiskLimits(max_position_fraction=None))
    assert rm.on_equity(DAY + 1000, 10000.0) == []
    assert rm.start_of_day_equity == D("10000.0")
    assert rm.on_equity(DAY + 2000, 9700.01) == []
    [halt] = rm.on_equity(DAY + 3000, 9700.0)  # 10000 x (1 - 0.03)
    assert halt.event_type is ET.DAILY_LOSS_HALT and rm.trading_state is TradingState.HALTED
    assert halt.trigger_reason == "equity 9700.0 <= start-of-day 10000.0 x (1 - 0.03) = 9700.000"
    out, _ = _apply(rm, {BTC: "3000", ETH: "0"}, {BTC: "5000"}, t=DAY + 4000)
    assert out == {BTC: D("0"), ETH: D("0")}
    assert rm.on_equity(DAY + 5000, 12000.0) == []  # same day: still halted
    assert rm.check_order(D("100"), increases=True, time_ms=DAY + 5000) == "trading state halted: no increase"
    [resumed] = rm.on_equity(2 * DAY, 9000.0)
    assert resumed.event_type is ET.TRADING_RESUMED and rm.trading_state is TradingState.ACTIVE
    assert rm.start_of_day_equity == D("9000.0")


def test_reducing_state_allows_only_decreases() -> None:
    rm = RiskManager(RiskLimits(max_position_fraction=None))
    [ev] = rm.set_state(TradingState.REDUCING, time_ms=5, reason="reconcile mismatch")
    assert ev.action_taken == "trading state active -> reducing"
    out, _ = _apply(rm, {BTC: "3000", ETH: "100"}, {BTC: "1000", ETH: "500"})
    assert out == {BTC: D("1000"), ETH: D("100")}
    assert rm.on_equity(2 * DAY, 10000) == [] and rm.on_equity(3 * DAY, 10000) == []
    assert rm.trading_state is TradingState.REDUCING  # a manual state is not cleared by the day roll
    [back] = rm.set_state(TradingState.ACTIVE, time_ms=3 * DAY, reason="reconciled")
    assert back.event_type is ET.TRADING_RESUMED and rm.trading_state is TradingState.ACTIVE


def test_state_round_trip_keeps_the_halt() -> None:
    rm = RiskManager(RiskLimits())
    rm.on_equity(0, 10000)
    rm.on_equity(1, 9000)
    twin = RiskManager(RiskLimits())
    twin.restore(json.loads(json.dumps(rm.state())))
    assert twin.trading_state is TradingState.HALTED and twin.start_of_day_equity == D("10000")
    assert twin.on_equity(2, 20000) == []
    assert [e.event_type for e in twin.on_equity(DAY, 20000)] == [ET.TRADING_RESUMED]


def test_check_order() -> None:
    rm = RiskManager(RiskLimits(max_order_notional=D("1000")))
    assert rm.check_order(D("500"), increases=True, time_ms=0) is None
    assert (
        rm.check_order(D("1500"), increases=False, time_ms=0)
        == "order notional 1500 above max_order_notional 1000"
    )
    assert rm.check_order(D("4"), increases=False, time_ms=0) == "order notional 4 below min_order_notional 5"


def test_from_dict_and_validation() -> None:
    lim = RiskLimits.from_dict(
        {"max_position_fraction": None, "max_position_notional": "2500.5", "min_order_notional": 10,
         "blackout_windows": [{"start_utc": "22:00", "end_utc": "23:00"}, {"start_ms": 5, "end_ms": 9}]}
    )  # fmt: skip
    assert lim.max_position_notional == D("2500.5") and lim.min_order_notional == D("10")
    assert lim.blackout_windows == (
        BlackoutWindow(start_minute=1320, end_minute=1380),
        BlackoutWindow(start_ms=5, end_ms=9),
    )
    with pytest.raises(ConfigError, match=re.escape("risk: unknown key(s) ['max_positions']")):
        RiskLimits.from_dict({"max_positions": 3})
    with pytest.raises(
        ConfigError, match=re.escape("risk.daily_loss_limit_fraction must be a fraction in (0, 1], was 3")
    ):
        RiskLimits(daily_loss_limit_fraction=3)
    with pytest.raises(
        ConfigError, match=re.escape("blackout_window.start_utc must be 'HH:MM' (UTC), was '25:00'")
    ):
        BlackoutWindow.daily("25:00", "01:00")
    with pytest.raises(ConfigError, match=re.escape("risk.max_order_notional must be > 0, was '0'")):
        RiskLimits.from_dict({"max_order_notional": "0"})


def test_negative_target_is_rejected() -> None:
    with pytest.raises(ValueError, match=re.escape("target of BTC/USDT must be >= 0, was Decimal('-1')")):
        _apply(RiskManager(RiskLimits()), {BTC: "-1"})


# ------------------------------------------------------------------ daily_loss_action


def test_daily_loss_halt_with_block_entries_keeps_positions_and_refuses_increases() -> None:
    rm = RiskManager(RiskLimits(max_position_fraction=None, daily_loss_action="block_entries"))
    rm.on_equity(DAY + 1000, 10000.0)
    [halt] = rm.on_equity(DAY + 3000, 9700.0)
    assert halt.event_type is ET.DAILY_LOSS_HALT and rm.trading_state is TradingState.HALTED
    assert halt.action_taken == (
        "trading state active -> halted: positions kept, no entries or increases until next UTC day"
    )
    assert rm.blocks_only
    # BTC wants 3000 more than its 5000 held: clipped to 5000 (kept, not 0). ETH wants a new 2000
    # position: refused (held 0). SOL reduces 4000 → 1500: a decrease passes.
    out, events = _apply(
        rm, {BTC: "8000", ETH: "2000", SOL: "1500"}, {BTC: "5000", SOL: "4000"}, t=DAY + 4000
    )
    assert out == {BTC: D("5000"), ETH: D("0"), SOL: D("1500")}
    assert [(e.symbol, e.action_taken, e.indicators["rule"]) for e in events] == [
        (BTC, "target 8000 -> 5000", "halted"),
        (ETH, "target 2000 -> 0", "halted"),
    ]
    assert events[0].trigger_reason == "trading halted (daily_loss): no entry or increase"
    assert rm.check_order(D("100"), increases=True, time_ms=DAY + 5000) == "trading state halted: no increase"
    assert rm.check_order(D("100"), increases=False, time_ms=DAY + 5000) is None
    [resumed] = rm.on_equity(2 * DAY, 9000.0)
    assert resumed.event_type is ET.TRADING_RESUMED and not rm.blocks_only


def test_close_all_is_the_default_and_a_manual_halt_always_closes_all() -> None:
    assert RiskLimits().daily_loss_action == "close_all"
    default = RiskManager(RiskLimits())
    default.on_equity(0, 10000)
    [halt] = default.on_equity(1, 9000)
    assert halt.action_taken == "trading state active -> halted: close all, no entries until next UTC day"
    assert not default.blocks_only
    rm = RiskManager(RiskLimits(max_position_fraction=None, daily_loss_action="block_entries"))
    rm.set_state(TradingState.HALTED, time_ms=0, reason="operator")
    assert not rm.blocks_only
    out, _ = _apply(rm, {BTC: "3000"}, {BTC: "5000"})
    assert out == {BTC: D("0")}


def test_daily_loss_action_is_validated_by_name() -> None:
    assert RiskLimits.from_dict({"daily_loss_action": "block_entries"}).daily_loss_action == "block_entries"
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "risk.daily_loss_action must be one of ['close_all', 'block_entries'], was 'sell_half'"
        ),
    ):
        RiskLimits.from_dict({"daily_loss_action": "sell_half"})
