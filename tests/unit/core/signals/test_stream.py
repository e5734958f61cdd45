"""TrendStream / EmaCrossRule / StreamConfig: flips with and without a band, warm-up, confidence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.core.domain import Candle, StreamState, Timeframe
from tradebot.core.signals import (
    RuleDecision,
    StreamConfig,
    TrendStream,
    confidence_from_strength,
)

H1 = Timeframe.H1
HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
IN, OUT = StreamState.IN, StreamState.OUT


def candles(closes: list[float], symbol: str = "BTC/USDT") -> list[Candle]:
    """1h candles with high = close + 1, low = close - 1, open = close."""
    return [Candle(symbol, H1, T0 + i * HOUR, c, c + 1.0, c - 1.0, c, 1.0) for i, c in enumerate(closes)]


def stream(**kw: object) -> TrendStream:
    return TrendStream("BTC:1h", "BTC/USDT", "BTC", StreamConfig(timeframe=H1, **kw))  # type: ignore[arg-type]


# fast=1 makes ema_fast the close; slow=3 has alpha 0.5 and seed (10+10+10)/3 = 10.
# slow EMA: c4 14 -> 12; c5 12 -> 12; c6 8 -> 10; c7 11 -> 10.5
CLOSES = [10.0, 10.0, 10.0, 14.0, 12.0, 8.0, 11.0]


def test_ema_cross_without_band() -> None:
    s = stream(fast=1, slow=3, atr_period=2)
    sigs = [s.update(c) for c in candles(CLOSES)]
    assert [x.state for x in sigs] == [OUT, OUT, OUT, IN, IN, OUT, IN]
    assert [x.flipped for x in sigs] == [False, False, False, True, False, True, True]
    assert [x.reason for x in sigs] == [
        "warming up: 1/3 candles",
        "warming up: 2/3 candles",
        "ema1 = ema3 (+0.00%)",
        "ema1 > ema3 (+16.67%)",
        "ema1 = ema3 (+0.00%), inside band ±0.00%: stays in",  # a tie keeps the state
        "ema1 < ema3 (-20.00%)",
        "ema1 > ema3 (+4.76%)",
    ]
    assert sigs[3].indicators == {
        "close": 14.0,
        "atr": 3.5,
        "ema_fast": 14.0,
        "ema_slow": 12.0,
        "spread": 2 / 12,
    }
    assert sigs[3].time_ms == T0 + 4 * HOUR  # close time of the 4th candle
    assert sigs[3].stream == "BTC:1h"


def test_ema_cross_with_band_holds_inside_band() -> None:
    s = stream(fast=1, slow=3, atr_period=2, band=0.1)
    sigs = [s.update(c) for c in candles(CLOSES)]
    # c4: 14 > 12*1.1 enter; c5: 12 >= 12*0.9 hold; c6: 8 < 10*0.9 leave; c7: 11 <= 10.5*1.1 stays out
    assert [x.state for x in sigs] == [OUT, OUT, OUT, IN, IN, OUT, OUT]
    assert sigs[6].reason == "ema1 > ema3 (+4.76%), inside band ±10.00%: stays out"
    assert not sigs[6].flipped


def test_confidence_hand_computed() -> None:
    # ATR(2): TRs 2, 2, 2, 5, 3, 5, 4 -> ATR None, 2, 2, 3.5, 3.25, 4.125, 4.0625
    s = stream(fast=1, slow=3, atr_period=2)
    conf = [s.update(c).confidence for c in candles(CLOSES)]
    assert conf[:3] == [0.0, 0.0, 0.0]
    assert conf[3] == pytest.approx((2 / 12) / (3.5 / 14), rel=1e-12)  # 2/3
    assert conf[4] == 0.0  # spread 0
    assert conf[5] == pytest.approx(0.2 / (4.125 / 8), rel=1e-12)
    assert conf[6] == pytest.approx((0.5 / 10.5) / (4.0625 / 11), rel=1e-12)
    assert s.atr == 4.0625


def test_confidence_clamped_to_one() -> None:
    s = stream(fast=1, slow=3, atr_period=2, confidence_atr_mult=0.25)
    sigs = [s.update(c) for c in candles(CLOSES[:4])]
    assert sigs[3].confidence == 1.0  # (2/3) / 0.25 > 1


def test_confidence_from_strength_edges() -> None:
    assert confidence_from_strength(0.01, None, 100.0, 1.0) == 0.0
    assert confidence_from_strength(0.01, 0.0, 100.0, 1.0) == 1.0
    assert confidence_from_strength(0.0, 0.0, 100.0, 1.0) == 0.0
    assert confidence_from_strength(0.01, 2.0, 100.0, 1.0) == 0.5


def test_warming_up_30_of_50_stays_out() -> None:
    s = stream()
    sigs = [s.update(c) for c in candles([100.0 + i for i in range(30)])]
    assert s.state is OUT
    assert not s.ready
    assert s.reason == "warming up: 30/50 candles"
    assert s.confidence == 0.0
    assert all(x.state is OUT and not x.flipped for x in sigs)
    assert "ema_fast" not in sigs[-1].indicators
    assert sigs[-1].indicators["atr"] > 0


def test_warm_up_then_ready_on_rising_series() -> None:
    s = stream()
    cs = candles([100.0 + i for i in range(51)])
    last = s.warm_up(cs[:50])
    assert last is not None
    assert s.ready
    assert last.state is IN and last.flipped
    assert last.reason.startswith("ema20 > ema50 (+")
    nxt = s.update(cs[50])
    assert nxt.state is IN and not nxt.flipped
    assert s.last_candle == cs[50]
    assert s.warm_up([]) is None


def test_atr_period_longer_than_slow_delays_readiness() -> None:
    s = stream(fast=1, slow=3, atr_period=5)
    sigs = [s.update(c) for c in candles(CLOSES)]
    assert [x.state for x in sigs[:4]] == [OUT] * 4
    assert sigs[3].reason == "warming up: 4/5 candles"
    # the rule is fed the stream's state (OUT while warming up), so the tie at c5 stays OUT
    assert sigs[4].state is OUT
    assert sigs[4].reason == "ema1 = ema3 (+0.00%)"
    assert sigs[5].state is OUT and sigs[6].state is IN and sigs[6].flipped


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=1.0, max_value=1000.0), min_size=1, max_size=80), st.floats(0.05, 5.0))
def test_confidence_in_unit_interval(closes: list[float], mult: float) -> None:
    s = stream(fast=2, slow=5, atr_period=3, confidence_atr_mult=mult)
    for c in candles(closes):
        sig = s.update(c)
        assert 0.0 <= sig.confidence <= 1.0
        if not s.ready:
            assert sig.state is OUT and sig.confidence == 0.0


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"fast": 50, "slow": 50}, r"fast must be < slow \(50\), was 50"),
        ({"fast": 0}, r"fast must be an int >= 1, was 0"),
        ({"slow": 2.5}, r"slow must be an int >= 1, was 2.5"),
        ({"atr_period": 0}, r"atr_period must be an int >= 1, was 0"),
        ({"band": 0.5}, r"band must be a fraction in \[0, 0.5\), was 0.5"),
        ({"band": -0.01}, r"band must be a fraction in \[0, 0.5\), was -0.01"),
        ({"confidence_atr_mult": 0.0}, r"confidence_atr_mult must be a finite number > 0, was 0.0"),
        ({"timeframe": "2h"}, r"timeframe must be one of .*, was '2h'"),
    ],
)
def test_config_validation(kw: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"timeframe": H1, **kw}
    with pytest.raises(ValueError, match=match):
        StreamConfig(**args)  # type: ignore[arg-type]


def test_config_parses_timeframe_string() -> None:
    cfg = StreamConfig(timeframe="4h")  # type: ignore[arg-type]
    assert cfg.timeframe is Timeframe.H4
    assert cfg.warmup_candles == 50


def test_wrong_candle_and_order_refused() -> None:
    s = stream(fast=1, slow=3)
    cs = candles([1.0, 2.0])
    s.update(cs[1])
    with pytest.raises(ValueError, match=r"is not after the previous open_time_ms"):
        s.update(cs[0])
    with pytest.raises(ValueError, match=r"stream BTC:1h takes BTC/USDT 1h candles, was ETH/USDT 1h"):
        s.update(candles([1.0], symbol="ETH/USDT")[0])


class AboveThreshold:
    """A different rule (not a double of ours): in while close > threshold, ready after 2 candles."""

    required = 2

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.n = 0

    def update(self, candle: Candle, current: StreamState) -> RuleDecision | None:
        self.n += 1
        if self.n < 2:
            return None
        state = IN if candle.close > self.threshold else OUT
        return RuleDecision(state, 0.0, f"close {candle.close} vs {self.threshold}", {})


def test_pluggable_rule() -> None:
    cfg = StreamConfig(timeframe=H1, fast=1, slow=2, atr_period=1)
    s = TrendStream("BTC:1h", "BTC/USDT", "BTC", cfg, rule_factory=lambda c: AboveThreshold(5.0))
    states = [s.update(c).state for c in candles([6.0, 6.0, 4.0])]
    assert states == [OUT, IN, OUT]
    assert s.reason == "close 4.0 vs 5.0"
