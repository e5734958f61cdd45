"""Features of a position: the market tracker on hand-made candles, one row by hand, the leak guard."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tradebot.core.domain import Candle, Timeframe
from tradebot.core.ml import (
    FeatureConfig,
    MarketState,
    MarketTracker,
    PositionState,
    StreamReading,
    feature_definitions,
    feature_names,
    position_features,
)

H = 3_600_000
SMALL = FeatureConfig(atr_period=2, atr_regime_periods=2, macd_fast=2, macd_slow=3, macd_signal=2,
                      rsi_period=2, volume_periods=2)  # fmt: skip


def candle(i: int, o: float, h: float, lo: float, c: float, v: float) -> Candle:
    return Candle("BTC/USDT", Timeframe.H1, i * H, o, h, lo, c, v)


def test_tracker_by_hand() -> None:
    t = MarketTracker(SMALL)
    s1 = t.update(candle(0, 10, 12, 8, 10, 100))  # TR 4
    assert (s1.atr, s1.volume_ratio, s1.rsi) == (None, None, None)
    assert (s1.close_ms, s1.known_ms) == (H, H)
    s2 = t.update(candle(1, 10, 11, 9, 10, 300))  # TR 2 -> ATR (4 + 2) / 2 = 3
    assert s2.atr == 3.0
    assert s2.atr_fraction == pytest.approx(0.3)
    assert s2.atr_regime is None  # one ATR fraction so far
    s3 = t.update(candle(2, 10, 16, 10, 15, 400), known_ms=3 * H + 60_000)  # TR 6 -> ATR (3 + 6)/2 = 4.5
    assert s3.atr == 4.5
    assert s3.atr_fraction == pytest.approx(0.3)
    assert s3.atr_regime == pytest.approx(1.0)  # 0.3 against the mean of (0.3, 0.3)
    assert s3.volume_ratio == pytest.approx(400 / 200)  # against the two candles before it
    assert s3.rsi == pytest.approx(100.0)  # changes 0, +5: no loss
    assert s3.known_ms == 3 * H + 60_000
    s4 = t.update(candle(3, 15, 15, 12, 12, 100))  # TR max(3, |12 - 15|) = 3 -> ATR 3.75
    assert s4.atr == pytest.approx(3.75)
    assert s4.atr_regime == pytest.approx((3.75 / 12) / ((0.3 + 3.75 / 12) / 2))
    assert s4.macd_hist_fraction is not None


def test_tracker_refuses_an_older_candle() -> None:
    t = MarketTracker(SMALL)
    t.update(candle(5, 1, 1, 1, 1, 1))
    with pytest.raises(
        ValueError, match=r"open_time_ms=18000000 is not after the previous open_time_ms=18000000"
    ):
        t.update(candle(5, 1, 1, 1, 1, 1))


def _market(**overrides: object) -> MarketState:
    values: dict[str, object] = {
        "close_ms": 10 * H,
        "known_ms": 10 * H,
        "close": 105.0,
        "volume": 50.0,
        "atr": 2.0,
        "atr_fraction": 2.0 / 105,
        "atr_regime": 1.2,
        "macd_hist_fraction": 0.001,
        "rsi": 61.0,
        "volume_ratio": 1.5,
    }
    values.update(overrides)
    return MarketState(**values)  # type: ignore[arg-type]


POSITION = PositionState(
    time_ms=10 * H,
    opened_ms=4 * H,
    mark=105.0,
    avg_entry=100.0,
    initial_risk=4.0,
    stop=101.0,
    mae_fraction=-0.01,
    mfe_fraction=0.06,
    trailing=True,
    position_fraction=0.25,
    exposure_fraction=0.75,
    entry_volume=20.0,
)
STREAMS = {"1h": StreamReading(True, 0.8), "4h": StreamReading(False, 0.1)}


def test_one_row_by_hand() -> None:
    row = position_features(POSITION, _market(), STREAMS, ("1h", "4h", "1d"))
    assert list(row) == list(feature_names(("1h", "4h", "1d")))
    assert list(feature_definitions(("1h", "4h", "1d"))) == list(row)
    assert row["r_multiple"] == pytest.approx(5.0 / 4.0)
    assert row["profit_fraction"] == pytest.approx(0.05)
    assert row["held_ms"] == 6 * H
    assert row["stop_distance_atr"] == pytest.approx((105 - 101) / 2.0)
    assert row["trailing"] == 1.0
    assert row["volume_vs_entry"] == pytest.approx(50 / 20)
    assert row["streams_in_fraction"] == pytest.approx(0.5)  # of the streams read (the 1d one is missing)
    assert (row["stream_1h_in"], row["stream_1h_confidence"]) == (1.0, 0.8)
    assert (row["stream_4h_in"], row["stream_4h_confidence"]) == (0.0, 0.1)
    assert (row["stream_1d_in"], row["stream_1d_confidence"]) == (None, None)
    assert (row["mae_fraction"], row["mfe_fraction"]) == (-0.01, 0.06)
    assert (row["position_fraction"], row["exposure_fraction"]) == (0.25, 0.75)


def test_undefined_values_are_none() -> None:
    bare = replace(POSITION, initial_risk=None, stop=None, entry_volume=None)
    row = position_features(bare, None, {}, ("1h",))
    for name in ("r_multiple", "stop_distance_atr", "atr_fraction", "rsi", "volume_vs_entry", "stream_1h_in"):
        assert row[name] is None, name
    assert row["streams_in_fraction"] is None
    assert row["profit_fraction"] == pytest.approx(0.05)


def test_a_market_state_from_after_the_row_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"market state known at 36060000 is later than the row's time 36000000"
    ):
        position_features(POSITION, _market(known_ms=10 * H + 60_000), STREAMS, ("1h",))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rsi_period": 0}, r"rsi_period must be an int >= 1, was 0"),
        ({"macd_fast": 30}, r"macd_fast must be below macd_slow, were macd_fast=30 macd_slow=26"),
    ],
)
def test_feature_config_refuses_bad_periods(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureConfig(**kwargs)


def test_the_package_exports_are_public_and_documented() -> None:
    """Every name of ``tradebot.core.ml.__all__`` exists, and every exported class and function has a
    docstring (the features, labels, folds and scores the dataset and training build on)."""
    import tradebot.core.ml as ml

    assert {"position_features", "position_labels", "purged_walk_forward", "roc_auc"} <= set(ml.__all__)
    assert len(set(ml.__all__)) == len(ml.__all__)
    for name in ml.__all__:
        value = getattr(ml, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"
