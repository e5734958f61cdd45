"""Hand-computed values for the momentum indicators (MACD, Wilder's RSI)."""

from __future__ import annotations

import math

import pytest

from tradebot.core.indicators import Macd, WilderRsi


class TestMacd:
    def test_small_periods_by_hand(self) -> None:
        # closes 1, 2, 4, 8, 16 with fast 2 (alpha 2/3), slow 3 (alpha 1/2), signal 2:
        # EMA2: 3/2, 19/6, 115/18, 691/54; EMA3: 7/3, 31/6, 127/12
        # MACD: 5/6, 11/9, 239/108; signal: seed (5/6 + 11/9) / 2 = 37/36, then 589/324
        # histogram: 11/9 - 37/36 = 7/36, then 239/108 - 589/324 = 32/81
        m = Macd(2, 3, 2)
        out = [m.update(x) for x in (1.0, 2.0, 4.0, 8.0, 16.0)]
        assert out[:3] == [None, None, None]
        assert out[3] == pytest.approx(7 / 36, rel=1e-12)
        assert out[4] == pytest.approx(32 / 81, rel=1e-12)
        assert m.macd == pytest.approx(239 / 108, rel=1e-12)
        assert m.signal == pytest.approx(589 / 324, rel=1e-12)
        assert m.histogram == out[4]

    def test_steady_trend_has_zero_histogram(self) -> None:
        m = Macd(2, 3, 2)
        for x in range(1, 12):
            m.update(float(x))
        assert m.macd == pytest.approx(0.5)
        assert m.histogram == pytest.approx(0.0, abs=1e-12)

    def test_refuses_fast_not_below_slow(self) -> None:
        with pytest.raises(ValueError, match=r"fast period must be below the slow one, were fast=26 slow=26"):
            Macd(26, 26, 9)

    def test_refuses_non_finite_close(self) -> None:
        with pytest.raises(ValueError, match=r"must be finite, was nan"):
            Macd().update(math.nan)


class TestWilderRsi:
    def test_period_2_by_hand(self) -> None:
        # changes +1, -0.5, +1.5: first averages gain (1 + 0)/2 = 0.5, loss (0 + 0.5)/2 = 0.25 -> RS 2
        # -> RSI 100 - 100/3; then gain (0.5 + 1.5)/2 = 1, loss (0.25 + 0)/2 = 0.125 -> RS 8 -> 100 - 100/9
        rsi = WilderRsi(2)
        out = [rsi.update(x) for x in (10.0, 11.0, 10.5, 12.0)]
        assert out[:2] == [None, None]
        assert out[2] == pytest.approx(100 - 100 / 3, rel=1e-12)
        assert out[3] == pytest.approx(100 - 100 / 9, rel=1e-12)

    def test_rising_is_100_and_flat_is_50(self) -> None:
        up, flat = WilderRsi(3), WilderRsi(3)
        for x in range(10):
            up.update(100.0 + x)
            flat.update(100.0)
        assert up.value == 100.0
        assert flat.value == 50.0

    def test_falling_is_0(self) -> None:
        rsi = WilderRsi(3)
        for x in range(10):
            rsi.update(100.0 - x)
        assert rsi.value == 0.0

    @pytest.mark.parametrize("period", [0, 1.5, True])
    def test_bad_period(self, period: object) -> None:
        with pytest.raises(ValueError, match=r"period must be an int >= 1, was"):
            WilderRsi(period)  # type: ignore[arg-type]
