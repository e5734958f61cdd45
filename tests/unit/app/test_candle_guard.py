"""CandleGuard: which live candles are held, and what a REST look-up makes of them."""

from __future__ import annotations

import pytest

from tradebot.app.daemon.candle_guard import CandleGuard, GuardConfig
from tradebot.app.daemon.daemon import guard_config, reference_config
from tradebot.app.daemon.reference_check import ReferenceConfig
from tradebot.app.settings import load_settings
from tradebot.core.domain import Candle, Timeframe

T0 = 1679014740000


def bar(close: float, *, t: int = T0, high: float | None = None, low: float | None = None,
        symbol: str = "BTC/USDT") -> Candle:  # fmt: skip
    hi = close if high is None else high
    lo = close if low is None else low
    return Candle(symbol, Timeframe.M1, t, close, hi, lo, close, 1.0)


def test_a_first_candle_without_reference_is_accepted_and_becomes_the_reference() -> None:
    guard = CandleGuard(GuardConfig())
    assert guard.reference("BTC/USDT") is None
    assert guard.check(bar(27_600.0)) is None
    assert guard.reference("BTC/USDT") == 27_600.0


def test_moves_inside_the_band_pass_and_move_the_reference() -> None:
    guard = CandleGuard(GuardConfig(max_move_fraction=0.2), {"BTC/USDT": 27_600.0})
    assert guard.check(bar(27_600.0 * 1.19)) is None  # 19 %: a big but plausible minute
    assert guard.reference("BTC/USDT") == pytest.approx(32_844.0)
    assert guard.check(bar(27_600.0, symbol="ETH/USDT")) is None  # other symbols are independent


@pytest.mark.parametrize(
    ("candle", "move"),
    [
        (bar(13_800.0), 0.5),  # half price
        (bar(35_880.0), 0.3),  # x1.3 spike
        (bar(27_600.0, low=13_800.0), 0.5),  # a wick to half price, close normal
        (bar(27_600.0, high=35_880.0), 0.3),
    ],
    ids=["half_close", "spike_close", "low_wick", "high_wick"],
)
def test_a_candle_past_the_band_is_held_and_keeps_the_reference(candle: Candle, move: float) -> None:
    guard = CandleGuard(GuardConfig(), {"BTC/USDT": 27_600.0})
    suspect = guard.check(candle)
    assert suspect is not None
    assert suspect.candle == candle and suspect.reference_close == 27_600.0
    assert suspect.move_fraction == pytest.approx(move)
    assert f"moved {move:.1%} from the last accepted close 27600.0 (band 20.0%)" == suspect.reason
    assert guard.reference("BTC/USDT") == 27_600.0  # held, not accepted


def test_rest_agreeing_confirms_a_real_crash() -> None:
    guard = CandleGuard(GuardConfig(), {"BTC/USDT": 27_600.0})
    live = bar(20_000.0)
    suspect = guard.check(live)
    assert suspect is not None
    res = guard.resolve(suspect, bar(20_010.0))  # within 0.2 %
    assert (res.candle, res.outcome, res.action) == (live, "confirmed", "accepted: the REST candle agrees")
    assert guard.reference("BTC/USDT") == 20_000.0
    assert guard.check(bar(20_100.0)) is None  # the new level is the reference now


def test_rest_disagreeing_replaces_the_live_candle() -> None:
    guard = CandleGuard(GuardConfig(), {"BTC/USDT": 27_600.0})
    suspect = guard.check(bar(13_800.0))
    assert suspect is not None
    rest = bar(27_610.0, high=27_650.0, low=27_590.0)
    res = guard.resolve(suspect, rest)
    assert (res.candle, res.outcome, res.rest) == (rest, "replaced", rest)
    assert res.action == "replaced by the REST candle (close 27610.0 for 13800.0)"
    assert guard.reference("BTC/USDT") == 27_610.0


def test_rest_disagreeing_on_the_wick_only_replaces_too() -> None:
    guard = CandleGuard(GuardConfig(), {"BTC/USDT": 27_600.0})
    suspect = guard.check(bar(27_600.0, low=13_800.0))
    assert suspect is not None
    assert guard.resolve(suspect, bar(27_600.0, low=27_500.0)).outcome == "replaced"


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (None, "discarded: REST has no candle for the minute"),
        ("VenueUnavailable: 503", "discarded: REST unavailable (VenueUnavailable: 503)"),
    ],
)
def test_without_a_rest_candle_the_live_one_is_discarded(error: str | None, action: str) -> None:
    guard = CandleGuard(GuardConfig(), {"BTC/USDT": 27_600.0})
    suspect = guard.check(bar(13_800.0))
    assert suspect is not None
    res = guard.resolve(suspect, None, rest_error=error)
    assert (res.candle, res.outcome, res.action) == (None, "discarded", action)
    assert guard.reference("BTC/USDT") == 27_600.0
    assert guard.check(bar(13_800.0, t=T0 + 60_000)) is not None  # the next one is held again


def _warm_atr_guard() -> CandleGuard:
    guard = CandleGuard(GuardConfig(max_move_atr=10.0, atr_period=3), {"BTC/USDT": 100.0})
    for i in range(3):  # true range 1.0 each: ATR 1.0
        assert guard.check(bar(100.0, high=100.5, low=99.5, t=T0 + i * 60_000)) is None
    return guard


def test_the_atr_band_holds_a_move_large_for_the_recent_range() -> None:
    assert _warm_atr_guard().check(bar(109.0, t=T0 + 180_000)) is None  # 9 ATR, 9 %
    suspect = _warm_atr_guard().check(bar(112.0, t=T0 + 180_000))  # 12 ATR, 12 % (< the 20 % band)
    assert suspect is not None and suspect.move_fraction == pytest.approx(0.12)
    assert suspect.reason == "moved 12.0 ATR (12.0%) from the last accepted close 100.0 (band 10 ATR)"


def test_no_atr_rule_before_the_atr_is_warm() -> None:
    guard = CandleGuard(GuardConfig(max_move_atr=1.0, atr_period=50), {"BTC/USDT": 100.0})
    assert guard.check(bar(110.0)) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_move_fraction": 0.0}, "max_move_fraction must be > 0, was 0.0"),
        ({"max_move_atr": -1.0}, "max_move_atr must be > 0 or None, was -1.0"),
        ({"confirm_tolerance_fraction": 1.0}, r"confirm_tolerance_fraction must be in \[0, 1\), was 1.0"),
    ],
)
def test_invalid_config_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GuardConfig(**kwargs)


def test_settings_defaults_are_the_guard_defaults_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    sanity = load_settings().daemon.sanity
    assert sanity.enabled is True
    assert guard_config(sanity) == GuardConfig()
    assert reference_config(sanity) == ReferenceConfig()
    assert sanity.max_fill_deviation_fraction == 0.05
    monkeypatch.setenv("TRADEBOT_DAEMON__SANITY__MAX_MOVE_FRACTION", "0.1")
    monkeypatch.setenv("TRADEBOT_DAEMON__SANITY__MAX_MOVE_ATR", "30")
    sanity = load_settings().daemon.sanity
    assert (sanity.max_move_fraction, sanity.max_move_atr) == (0.1, 30.0)
    assert guard_config(sanity) == GuardConfig(max_move_fraction=0.1, max_move_atr=30.0)
    monkeypatch.setenv("TRADEBOT_DAEMON__SANITY__MAX_REFERENCE_DEVIATION_FRACTION", "0.02")
    assert reference_config(load_settings().daemon.sanity) == ReferenceConfig(max_deviation_fraction=0.02)
    monkeypatch.setenv("TRADEBOT_DAEMON__SANITY__SECOND_REFERENCE", "false")
    assert reference_config(load_settings().daemon.sanity) is None
