"""Hand-computed values for the incremental indicators (Ema, WilderAtr, volatility)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.core.indicators import Ema, EwmaVolatility, WilderAtr, atr_fraction, true_range


class TestEma:
    def test_period_3_seeded_with_sma(self) -> None:
        # alpha = 2/(3+1) = 0.5; seed = (2+4+6)/3 = 4; then 4+0.5*(8-4) = 6; 6+0.5*(12-6) = 9
        ema = Ema(3)
        assert [ema.update(x) for x in (2.0, 4.0, 6.0, 8.0, 12.0)] == [None, None, 4.0, 6.0, 9.0]
        assert ema.ready
        assert ema.value == 9.0
        assert ema.count == 5

    def test_not_ready_before_period(self) -> None:
        ema = Ema(3)
        ema.update(1.0)
        ema.update(2.0)
        assert not ema.ready
        assert ema.value is None

    def test_period_5_alpha_one_third(self) -> None:
        # seed = (1+2+3+4+5)/5 = 3; alpha = 1/3: 3 + (9-3)/3 = 5; 5 + (2-5)/3 = 4
        ema = Ema(5)
        out = [ema.update(x) for x in (1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 2.0)]
        assert out[:4] == [None] * 4
        assert out[4] == 3.0
        assert out[5] == pytest.approx(5.0, rel=1e-15)
        assert out[6] == pytest.approx(4.0, rel=1e-15)

    def test_period_1_is_identity(self) -> None:
        ema = Ema(1)
        assert [ema.update(x) for x in (5.0, 7.0, 3.0)] == [5.0, 7.0, 3.0]

    def test_no_cancellation_after_large_jump(self) -> None:
        # regression (found by hypothesis): ema + alpha*(x - ema) gave 1.099999999976717 here
        ema = Ema(1)
        for x in (2.0, 2.0, 262146.0, 1.1):
            ema.update(x)
        assert ema.value == 1.1

    @pytest.mark.parametrize("period", [0, -3, 2.0, True, "20"])
    def test_bad_period(self, period: object) -> None:
        with pytest.raises(ValueError, match=r"period must be an int >= 1, was"):
            Ema(period)  # type: ignore[arg-type]

    def test_non_finite_value(self) -> None:
        with pytest.raises(ValueError, match=r"EMA\(3\) value must be finite, was nan"):
            Ema(3).update(math.nan)

    @given(st.lists(st.floats(min_value=1.0, max_value=1e6), min_size=4, max_size=60), st.integers(1, 4))
    def test_stays_within_input_range(self, values: list[float], period: int) -> None:
        ema = Ema(period)
        for v in values:
            ema.update(v)
        assert ema.value is not None
        assert min(values) * (1 - 1e-12) <= ema.value <= max(values) * (1 + 1e-12)


class TestTrueRange:
    def test_first_candle_is_high_minus_low(self) -> None:
        assert true_range(10.0, 8.0, None) == 2.0

    def test_gap_up_and_gap_down(self) -> None:
        assert true_range(15.0, 13.0, 10.0) == 5.0  # |high - prev_close|
        assert true_range(12.0, 11.0, 14.0) == 3.0  # |low - prev_close|
        assert true_range(13.0, 9.0, 11.0) == 4.0  # high - low


class TestWilderAtr:
    # (high, low, close): TRs are 2 (h-l), 2, 5 (|15-10|), 3 (|11-14|), 6 (h-l)
    CANDLES = (
        (10.0, 8.0, 9.0),
        (11.0, 9.0, 10.0),
        (15.0, 13.0, 14.0),
        (12.0, 11.0, 11.5),
        (17.5, 11.5, 12.0),
    )

    def test_period_3_hand_computed(self) -> None:
        atr = WilderAtr(3)
        out = [atr.update(*c) for c in self.CANDLES]
        # first ATR = (2+2+5)/3 = 3; then (3*2+3)/3 = 3; then (3*2+6)/3 = 4
        assert out == [None, None, 3.0, 3.0, 4.0]
        assert atr.ready
        assert atr.value == 4.0
        assert atr.count == 5

    def test_default_period(self) -> None:
        assert WilderAtr().period == 14

    def test_high_below_low(self) -> None:
        with pytest.raises(ValueError, match=r"ATR high 8.0 is below low 9.0"):
            WilderAtr(3).update(8.0, 9.0, 8.5)

    def test_non_finite(self) -> None:
        with pytest.raises(ValueError, match=r"ATR prices must be finite"):
            WilderAtr(3).update(math.inf, 9.0, 9.5)


class TestVolatility:
    def test_atr_fraction(self) -> None:
        assert atr_fraction(250.0, 25_000.0) == 0.01

    @pytest.mark.parametrize(("atr", "close", "match"), [(1.0, 0.0, "close"), (-1.0, 10.0, "atr")])
    def test_atr_fraction_bad_input(self, atr: float, close: float, match: str) -> None:
        with pytest.raises(ValueError, match=match):
            atr_fraction(atr, close)

    def test_ewma_volatility_period_2(self) -> None:
        # log returns 0.1, -0.2, 0.3; seed var = (0.01 + 0.04)/2 = 0.025; alpha = 2/3:
        # var = 0.025 + 2/3*(0.09 - 0.025) = 0.0683333...; vol = sqrt(var)
        vol = EwmaVolatility(2)
        closes = [100.0, 100.0 * math.exp(0.1), 100.0 * math.exp(-0.1), 100.0 * math.exp(0.2)]
        out = [vol.update(c) for c in closes]
        assert out[:2] == [None, None]
        assert out[2] == pytest.approx(math.sqrt(0.025), rel=1e-9)
        assert out[3] == pytest.approx(math.sqrt(0.025 + 2 / 3 * (0.09 - 0.025)), rel=1e-9)
        assert vol.variance == pytest.approx(0.0683333333333, rel=1e-9)

    def test_ewma_volatility_bad_close(self) -> None:
        with pytest.raises(ValueError, match=r"close must be a finite price > 0, was 0.0"):
            EwmaVolatility(2).update(0.0)
