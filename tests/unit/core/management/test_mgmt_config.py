"""ManagementConfig: defaults from STRATEGY.md §3, variants, from_dict and validation errors."""

from __future__ import annotations

import re

import pytest

import tradebot.core.management as mgmt
from tradebot.core.management import (
    ManagementConfig,
    TakeProfitConfig,
    TrailingConfig,
)
from tradebot.errors import ConfigError


def test_public_surface_is_pinned() -> None:
    assert sorted(mgmt.__all__) == sorted(
        [
            "NO_ACTIONS", "Action", "BlackoutWindow", "BreakevenConfig", "EarlyExitConfig",
            "IndicatorConfig", "InitialStopConfig", "ManagementConfig", "ManagementModeConfig", "MlConfig",
            "PositionManager", "ProportionalConfig", "RiskEvent", "RiskLimits", "RiskManager",
            "ScaleInConfig", "TakeProfitConfig", "TimeStopConfig", "TrailingConfig",
        ]
    )  # fmt: skip


def test_defaults_follow_the_strategy() -> None:
    c = ManagementConfig()
    assert (c.initial_stop.k_low_vol_atr, c.initial_stop.k_normal_atr, c.initial_stop.k_high_vol_atr) == (
        1.0,
        1.5,
        2.0,
    )
    assert c.breakeven.trigger_r == 1.0
    assert (c.take_profit.levels_r, c.take_profit.fractions) == ((1.5,), (0.5,))
    assert (c.trailing.start_r, c.trailing.distance_atr) == (2.0, 1.0)
    assert (c.scale_in.trigger_r, c.scale_in.add_m, c.scale_in.max_total_m) == (0.5, 0.5, 2.0)
    assert c.management_mode.enabled is False
    assert c.max_scale == 2.0


def test_disabled_switches_every_rule_off() -> None:
    c = ManagementConfig.disabled()
    for name in (
        "initial_stop", "breakeven", "take_profit", "trailing", "proportional",
        "scale_in", "time_stop", "early_exit", "management_mode",
    ):  # fmt: skip
        assert getattr(c, name).enabled is False, name
    assert c.reentry_lock is False


def test_fixed_stop_target_is_the_traditional_baseline() -> None:
    c = ManagementConfig.fixed_stop_target(k_atr=2.0, target_r=3.0)
    assert c.initial_stop.enabled and not c.initial_stop.regime_enabled and c.initial_stop.k_normal_atr == 2.0
    assert c.take_profit.enabled and c.take_profit.levels_r == (3.0,) and c.take_profit.fractions == (1.0,)
    assert not (c.breakeven.enabled or c.trailing.enabled or c.scale_in.enabled or c.time_stop.enabled)
    assert not (c.early_exit.enabled or c.proportional.enabled or c.management_mode.enabled)


def test_from_dict_builds_sections_and_converts_lists() -> None:
    c = ManagementConfig.from_dict(
        {
            "fee_rate": 0.00075,
            "take_profit": {"levels_r": [], "levels_pct": [6, 10, 15], "fractions": [0.3, 0.3, 0.4]},
        }
    )
    assert c.fee_rate == 0.00075
    assert c.take_profit == TakeProfitConfig(levels_r=(), levels_pct=(6, 10, 15), fractions=(0.3, 0.3, 0.4))
    assert c.trailing == TrailingConfig()


def test_from_dict_rejects_unknown_keys_by_name() -> None:
    with pytest.raises(ConfigError, match=r"management: unknown key\(s\) \['trail'\]"):
        ManagementConfig.from_dict({"trail": {}})
    with pytest.raises(ConfigError, match=r"management.trailing: unknown key\(s\) \['distance'\]"):
        ManagementConfig.from_dict({"trailing": {"distance": 1.0}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fee_rate": -0.1}, "fee_rate must be a fraction in [0, 1], was -0.1"),
        ({"max_scale": 0.5}, "max_scale must be >= 1, was 0.5"),
        ({"trailing": {"distance_atr": 0}}, "trailing.distance_atr must be a finite number > 0, was 0"),
        (
            {"take_profit": {"fractions": [0.5, 0.6], "levels_r": [1, 2]}},
            "take_profit.fractions must sum to at most 1",
        ),
        (
            {"take_profit": {"levels_r": [2, 1], "fractions": [0.1, 0.1]}},
            "take_profit.levels_r must be strictly increasing",
        ),
        (
            {"take_profit": {"levels_pct": [5]}},
            "take_profit.levels_r/levels_pct must have exactly one non-empty",
        ),
        ({"time_stop": {"max_hours": "48"}}, "time_stop.max_hours must be a finite number > 0, was '48'"),
        ({"scale_in": {"enabled": "yes"}}, "scale_in.enabled must be true or false, was 'yes'"),
        (
            {"initial_stop": {"low_vol_ratio": 2.0}},
            "initial_stop.low_vol_ratio must be <= high_vol_ratio 1.25, was 2.0",
        ),
        (
            {"proportional": {"max_adjustments": -1}},
            "proportional.max_adjustments must be an integer >= 0, was -1",
        ),
    ],
)
def test_invalid_values_name_field_and_value(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        ManagementConfig.from_dict(data)
    assert message in str(e.value)


def test_trailing_needs_a_start() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("trailing.start_r must be set unless start_after_first_ladder is true")
    ):
        TrailingConfig(start_r=None)
    assert TrailingConfig(start_r=None, start_after_first_ladder=True).start_r is None


def test_from_dict_presets_and_enabled_flag() -> None:
    assert ManagementConfig.from_dict({"enabled": False}) == ManagementConfig.disabled()
    assert ManagementConfig.from_dict({}) == ManagementConfig()
    c = ManagementConfig.from_dict({"preset": "fixed_stop_target", "take_profit": {"levels_r": [3]}})
    assert c.take_profit.levels_r == (3,) and c.take_profit.fractions == (1.0,)  # merged over the preset
    assert c.trailing.enabled is False
    partial = ManagementConfig.from_dict({"trailing": {"distance_atr": 2.5}})
    assert partial.trailing == TrailingConfig(distance_atr=2.5)
    with pytest.raises(ConfigError, match=re.escape("management.preset must be one of")):
        ManagementConfig.from_dict({"preset": "wild"})
    with pytest.raises(ConfigError, match=re.escape("management.enabled must be true or false, was 'no'")):
        ManagementConfig.from_dict({"enabled": "no"})


def test_atr_timeframe_defaults_to_the_rebalance_clock_and_refuses_an_unknown_timeframe() -> None:
    assert ManagementConfig().atr_timeframe is None
    assert ManagementConfig.from_dict({"atr_timeframe": "4h"}).atr_timeframe == "4h"
    with pytest.raises(ConfigError) as e:
        ManagementConfig.from_dict({"atr_timeframe": "2h"})
    assert (
        "management.atr_timeframe must be one of ['1m', '3m', '5m', '15m', '30m', '1h', '4h', '1d'] or unset, was '2h'"
        in str(e.value)
    )


def test_tuning_keys_alone_do_not_switch_management_on() -> None:
    tuned = ManagementConfig.from_dict(
        {"enabled": False, "atr_timeframe": "4h", "reentry": "new_high", "reentry_periods": 3}
    )
    assert tuned != ManagementConfig.disabled()
    assert tuned.is_off and ManagementConfig.disabled().is_off
    assert not ManagementConfig().is_off
    assert not ManagementConfig.from_dict({"enabled": False, "fee_rate": 0.002}).is_off  # as before
