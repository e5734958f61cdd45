"""Hypothesis: under generated price paths and configs the overlay keeps m in [0, max_scale], never
adds while losing (outside the budgeted management-mode reloads), only raises its stop, and stays
flat-locked after a forced exit."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tradebot.core.domain import Candle, Timeframe
from tradebot.core.domain import PositionEventType as ET
from tradebot.core.management import ManagementConfig, PositionManager

M = 60_000
H = 3_600_000
BARS_PER_PERIOD = 6  # base bars of 10 min


@st.composite
def configs(draw) -> ManagementConfig:
    on = st.booleans()
    data = {
        "max_scale": draw(st.floats(1.0, 3.0)),
        "fee_rate": draw(st.sampled_from([0.0, 0.001, 0.005])),
        "breakeven": {"enabled": draw(on), "trigger_r": draw(st.floats(0.5, 2.0))},
        "take_profit": {"enabled": draw(on), "levels_r": [1.0, 2.5], "fractions": [draw(st.floats(0.1, 0.5)), 0.3]},
        "trailing": {"enabled": draw(on), "start_r": draw(st.floats(0.5, 3.0)), "distance_atr": draw(st.floats(0.5, 4.0)),
                     "min_step_atr": draw(st.sampled_from([0.0, 0.25]))},
        "proportional": {"enabled": draw(on), "min_interval_ms": draw(st.sampled_from([0, 10 * M, H])),
                         "min_step_m": draw(st.floats(0.01, 0.3)), "max_adjustments": draw(st.integers(0, 30))},
        "scale_in": {"enabled": draw(on), "add_m": draw(st.floats(0.1, 1.5)), "max_total_m": draw(st.floats(1.0, 3.0)),
                     "volume_factor": draw(st.floats(0.0, 1.5)), "min_momentum_fraction": draw(st.floats(-0.05, 0.05))},
        "time_stop": {"enabled": draw(on), "max_hours": draw(st.floats(1.0, 10.0))},
        "early_exit": {"enabled": draw(on), "volume_dry_periods": draw(st.integers(1, 5))},
        "management_mode": {"enabled": draw(on), "reload_budget_m": draw(st.floats(0.0, 1.0))},
        "initial_stop": {"enabled": draw(st.booleans() | st.just(True)), "regime_period_h": 3},
        "indicators": {"volume_sma_h": 3, "momentum_h": 2},
    }  # fmt: skip
    return ManagementConfig.from_dict(data)


steps = st.lists(
    st.tuples(st.floats(-0.008, 0.01), st.floats(0.0, 0.004), st.floats(0.0, 0.004), st.floats(1.0, 500.0)),
    min_size=60,
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(cfg=configs(), path=steps, streams=st.lists(st.integers(0, 3), min_size=1, max_size=10))
def test_overlay_invariants(cfg: ManagementConfig, path, streams) -> None:
    pm = PositionManager("BTC/USDT", cfg)
    price, entry, last_stop, exited = 100.0, None, None, False
    period: list[tuple[float, float, float, float, float]] = []
    for i, (ret, up, down, volume) in enumerate(path):
        t = (i + 1) * 10 * M
        o, c = price, max(price * (1 + ret), 1.0)
        h, lo = max(o, c) * (1 + up), min(o, c) * (1 - down)
        price = c
        if entry is None and pm.multiplier > 0:  # the engine enters at this bar's open
            entry = o
            pm.on_open(time_ms=t, entry_price=o, qty=1.0, atr=o * 0.02)
            last_stop, exited = pm.stop, False
        actions = list(pm.on_bar(time_ms=t, open=o, high=h, low=lo, close=c)) if entry is not None else []
        period.append((o, h, lo, c, volume))
        if len(period) == BARS_PER_PERIOD:
            ph, pl = max(b[1] for b in period), min(b[2] for b in period)
            candle = Candle(
                "BTC/USDT", Timeframe.H1, t - H + 10 * M, period[0][0], ph, pl, c, sum(b[4] for b in period)
            )
            actions += list(pm.on_period(candle, (ph - pl) or c * 0.01))
            period.clear()
            pm.on_streams(streams[(i // BARS_PER_PERIOD) % len(streams)])
        for a in actions:
            event(a.event_type.value)
            assert 0.0 <= a.multiplier_after <= cfg.max_scale + 1e-9
            if a.multiplier_after > a.multiplier_before and a.event_type is not ET.MANAGEMENT_RELOAD:
                assert a.price > entry, a  # never add while losing
            if a.is_exit:
                exited = True
        assert 0.0 <= pm.multiplier <= cfg.max_scale + 1e-9
        if entry is not None:
            if last_stop is not None:
                assert pm.stop is not None and pm.stop >= last_stop  # stops only rise
            last_stop = pm.stop
            if exited:
                assert pm.multiplier == 0.0
                pm.on_close(time_ms=t)  # the exit filled at the next open
                entry, last_stop = None, None
                assert pm.multiplier == (0.0 if pm.locked else 1.0)
