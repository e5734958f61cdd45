"""CandleAggregator: exact OHLCV and missing counts, gaps, mid-period starts, pass-through, errors."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.core.domain import Candle, Timeframe
from tradebot.core.signals.aggregator import NO_CANDLES, CandleAggregator

M1, H1, H4, D1 = Timeframe.M1, Timeframe.H1, Timeframe.H4, Timeframe.D1
T0 = 1_704_067_200_000  # 2024-01-01 00:00:00 UTC
MIN = 60_000
HOUR = 3_600_000
SYM = "BTC/USDT"


def m1(minute: int, *, o: float | None = None, h: float | None = None, lo: float | None = None) -> Candle:
    """1m candle at T0 + minute: open 100+m, high 101+m, low 99+m, close 100.5+m, volume 1 (overridable)."""
    base = 100.0 + minute
    return Candle(
        SYM,
        M1,
        T0 + minute * MIN,
        base if o is None else o,
        base + 1.0 if h is None else h,
        base - 1.0 if lo is None else lo,
        base + 0.5,
        1.0,
    )


def feed(agg: CandleAggregator, minutes: list[int]) -> list[tuple[int, list[Candle]]]:
    """Feed 1m candles; return (minute, closed candles) for every candle that closed something."""
    out = []
    for m in minutes:
        closed = agg.update(m1(m))
        if closed:
            out.append((m, list(closed)))
    return out


def test_full_hour_closes_on_its_last_minute() -> None:
    agg = CandleAggregator(SYM, M1, (H1,))
    for m in range(59):
        candle = m1(m, h=500.0) if m == 17 else m1(m, lo=50.0) if m == 42 else m1(m)
        assert agg.update(candle) is NO_CANDLES
    assert list(agg.update(m1(59))) == [Candle(SYM, H1, T0, 100.0, 500.0, 50.0, 159.5, 60.0, 0)]


def test_gap_inside_period_counts_missing() -> None:
    agg = CandleAggregator(SYM, M1, (H1,))
    minutes = [m for m in range(60) if not 10 <= m < 20]
    # high 160 (minute 59), low 99 (minute 0), volume 50, 10 missing
    assert feed(agg, minutes) == [(59, [Candle(SYM, H1, T0, 100.0, 160.0, 99.0, 159.5, 50.0, 10)])]


def test_missing_last_candle_closes_on_next_period() -> None:
    agg = CandleAggregator(SYM, M1, (H1,))
    # minutes 0..58 then 60, 61: the 00:00 hour closes when 01:00 arrives, close = close of 00:58
    assert feed(agg, [*range(59), 60, 61]) == [
        (60, [Candle(SYM, H1, T0, 100.0, 159.0, 99.0, 158.5, 59.0, 1)])
    ]


def test_data_starting_mid_period() -> None:
    agg = CandleAggregator(SYM, M1, (H1, H4))
    got = feed(agg, list(range(30, 240)))
    assert got[0] == (59, [Candle(SYM, H1, T0, 130.0, 160.0, 129.0, 159.5, 30.0, 30)])
    assert got[-1] == (
        239,
        [
            Candle(SYM, H1, T0 + 3 * HOUR, 280.0, 340.0, 279.0, 339.5, 60.0, 0),
            Candle(SYM, H4, T0, 130.0, 340.0, 129.0, 339.5, 210.0, 30),
        ],
    )
    assert len(got) == 4


def test_1m_to_1h_4h_1d_full_day_with_gap() -> None:
    agg = CandleAggregator(SYM, M1, (D1, H1, H4))  # any order in, ascending out
    minutes = [m for m in range(1440) if not 300 <= m < 303]  # 05:00-05:02 missing
    got = dict(feed(agg, minutes))
    assert len(got) == 24
    assert got[359] == [
        Candle(SYM, H1, T0 + 5 * HOUR, 403.0, 460.0, 402.0, 459.5, 57.0, 3),
    ]
    assert got[479] == [
        Candle(SYM, H1, T0 + 7 * HOUR, 520.0, 580.0, 519.0, 579.5, 60.0, 0),
        Candle(SYM, H4, T0 + 4 * HOUR, 340.0, 580.0, 339.0, 579.5, 237.0, 3),
    ]
    assert got[1439] == [
        Candle(SYM, H1, T0 + 23 * HOUR, 1480.0, 1540.0, 1479.0, 1539.5, 60.0, 0),
        Candle(SYM, H4, T0 + 20 * HOUR, 1300.0, 1540.0, 1299.0, 1539.5, 240.0, 0),
        Candle(SYM, D1, T0, 100.0, 1540.0, 99.0, 1539.5, 1437.0, 3),
    ]


def test_gap_across_periods_closes_all_and_orders_by_timeframe() -> None:
    agg = CandleAggregator(SYM, M1, (H1, H4))
    # 00:00..00:30 present, then nothing until 04:59 (the last minute of the 04:00 hour)
    assert feed(agg, [*range(31), 299]) == [
        (
            299,
            [
                Candle(SYM, H1, T0, 100.0, 131.0, 99.0, 130.5, 31.0, 29),
                Candle(SYM, H1, T0 + 4 * HOUR, 399.0, 400.0, 398.0, 399.5, 1.0, 59),
                Candle(SYM, H4, T0, 100.0, 131.0, 99.0, 130.5, 31.0, 209),
            ],
        )
    ]


def test_passthrough_when_base_is_a_target() -> None:
    agg = CandleAggregator(SYM, H1, (H4, H1))
    hours = [Candle(SYM, H1, T0 + i * HOUR, 10.0 + i, 20.0 + i, 5.0 + i, 12.0 + i, 2.0) for i in range(5)]
    results = [list(agg.update(c)) for c in hours]
    assert results[:3] == [[hours[0]], [hours[1]], [hours[2]]]
    assert results[0][0] is hours[0]
    assert results[3] == [hours[3], Candle(SYM, H4, T0, 10.0, 23.0, 5.0, 15.0, 8.0, 0)]
    assert results[4] == [hours[4]]


def test_passthrough_only() -> None:
    agg = CandleAggregator(SYM, H1, (H1,))
    c = Candle(SYM, H1, T0, 1.0, 2.0, 0.5, 1.5, 3.0)
    assert list(agg.update(c)) == [c]


@pytest.mark.parametrize(
    ("base", "targets", "match"),
    [
        (H4, (H1,), "base timeframe 4h does not divide target timeframe 1h"),
        (M1, (Timeframe.M3, Timeframe.M5), "3m does not divide 5m"),
        (M1, (), "targets must name at least one timeframe"),
        (M1, (H1, H1), "must not repeat"),
    ],
)
def test_bad_timeframes(base: Timeframe, targets: tuple[Timeframe, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CandleAggregator(SYM, base, targets)


def test_duplicate_and_backwards_candles_are_refused() -> None:
    agg = CandleAggregator(SYM, M1, (H1,))
    agg.update(m1(0))
    agg.update(m1(1))
    with pytest.raises(ValueError, match=rf"BTC/USDT: 1m candle open_time_ms={T0 + MIN} is duplicate"):
        agg.update(m1(1))
    with pytest.raises(
        ValueError, match=rf"open_time_ms={T0} is backwards in time; previous open_time_ms={T0 + MIN}"
    ):
        agg.update(m1(0))


def test_wrong_timeframe_and_misaligned_time_are_refused() -> None:
    agg = CandleAggregator(SYM, M1, (H1,))
    with pytest.raises(ValueError, match="candle timeframe must be the base 1m"):
        agg.update(Candle(SYM, Timeframe.M5, T0, 1.0, 1.0, 1.0, 1.0, 1.0))
    agg.update(m1(0))
    with pytest.raises(ValueError, match="is not aligned to 1m"):
        agg.update(m1(1)._replace(open_time_ms=T0 + 90_000))


def _reference(
    minutes: list[int], target_minutes: int
) -> list[tuple[int, float, float, float, float, float, int]]:
    """Naive group-by of the closed periods: (start, o, h, l, c, v, missing)."""
    groups: dict[int, list[Candle]] = {}
    for m in minutes:
        groups.setdefault(m - m % target_minutes, []).append(m1(m))
    last = minutes[-1]
    out = []
    for start, cs in sorted(groups.items()):
        closed = last >= start + target_minutes - 1  # its last minute arrived, or a later period began
        if closed:
            v = 0.0
            for c in cs:
                v += c.volume
            out.append(
                (
                    start,
                    cs[0].open,
                    max(c.high for c in cs),
                    min(c.low for c in cs),
                    cs[-1].close,
                    v,
                    target_minutes - len(cs),
                )
            )
    return out


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 3 * 1440 - 1), min_size=1, max_size=600))
def test_matches_naive_groupby(present: set[int]) -> None:
    minutes = sorted(present)
    agg = CandleAggregator(SYM, M1, (H1, H4, D1))
    got: dict[Timeframe, list[tuple[int, float, float, float, float, float, int]]] = {H1: [], H4: [], D1: []}
    for m in minutes:
        for c in agg.update(m1(m)):
            got[c.timeframe].append(
                ((c.open_time_ms - T0) // MIN, c.open, c.high, c.low, c.close, c.volume, c.missing)
            )
    assert got[H1] == _reference(minutes, 60)
    assert got[H4] == _reference(minutes, 240)
    assert got[D1] == _reference(minutes, 1440)


def _varied(minute: int) -> Candle:
    # Prices and volumes whose float sums depend on the order of addition.
    base = 100.0 + (minute * 37 % 101) / 7.0
    return Candle(
        SYM,
        M1,
        T0 + minute * MIN,
        base,
        base + (minute % 13) / 3.0,
        base - (minute % 11) / 9.0,
        base + 0.1,
        0.1 + (minute % 17) / 3.0,
    )


def _feed_with_runs(minutes: list[int], run_lengths: list[int]) -> tuple[CandleAggregator, list[Candle], int]:
    # Feed candles, offering each stretch of up to run_lengths[k] candles to absorb() first.
    agg = CandleAggregator(SYM, M1, (H1, H4, D1))
    closed: list[Candle] = []
    absorbed = i = k = 0
    while i < len(minutes):
        n = max(1, run_lengths[k % len(run_lengths)])
        k += 1
        run = [_varied(m) for m in minutes[i : i + n]]
        if agg.absorb(
            run[0].open_time_ms,
            run[-1].open_time_ms,
            len(run),
            run[0].open,
            max(c.high for c in run),
            min(c.low for c in run),
            run[-1].close,
            [c.volume for c in run],
        ):
            absorbed += len(run)
        else:
            for c in run:
                closed.extend(agg.update(c))
        i += len(run)
    return agg, closed, absorbed


_stretches = st.lists(st.tuples(st.integers(0, 2 * 1440 - 1), st.integers(1, 400)), min_size=1, max_size=8)


@settings(max_examples=80, deadline=None)
@given(_stretches, st.lists(st.integers(1, 90), min_size=1, max_size=20))
def test_absorbing_quiet_runs_equals_candle_by_candle(
    stretches: list[tuple[int, int]], run_lengths: list[int]
) -> None:
    # Contiguous stretches of 1m candles with gaps between them, offered in runs of varied length.
    minutes = sorted({m for start, n in stretches for m in range(start, min(start + n, 2 * 1440))})
    reference = CandleAggregator(SYM, M1, (H1, H4, D1))
    expected = [c for m in minutes for c in reference.update(_varied(m))]
    agg, got, _absorbed = _feed_with_runs(minutes, run_lengths)
    assert got == expected  # exact floats: the volume sum is added in the same order
    assert repr(agg) == repr(reference)


def test_absorb_takes_a_contiguous_run_inside_a_period_and_refuses_the_rest() -> None:
    agg = CandleAggregator(SYM, M1, (H1,))
    assert agg.quiet_before_ms == -1  # nothing seen yet: the first candle must go through update()
    assert agg.absorb(T0, T0 + 9 * MIN, 10, 100.0, 110.0, 90.0, 105.0, [1.0] * 10) is False
    agg.update(m1(0))
    assert agg.quiet_before_ms == T0 + 59 * MIN
    assert agg.absorb(T0 + 2 * MIN, T0 + 10 * MIN, 9, 1.0, 120.0, 50.0, 110.5, [1.0] * 9) is False  # gap at 1
    assert (
        agg.absorb(T0 + MIN, T0 + 10 * MIN, 9, 1.0, 120.0, 50.0, 110.5, [1.0] * 9) is False
    )  # 9 in 10 opens
    assert agg.absorb(T0 + MIN, T0 + 59 * MIN, 59, 1.0, 120.0, 50.0, 110.5, [1.0] * 59) is False  # the close
    assert agg.absorb(T0 + MIN, T0 + 58 * MIN, 58, 1.0, 170.0, 50.0, 158.5, [2.0] * 58) is True
    (hour,) = agg.update(m1(59))
    assert hour == Candle(SYM, H1, T0, 100.0, 170.0, 50.0, 159.5, 118.0, 0)  # volume 1 + 58 × 2 + 1
    # After the close, a run may open the next hour: its open is the run's first open.
    assert agg.quiet_before_ms == T0 + 119 * MIN
    assert agg.absorb(T0 + 60 * MIN, T0 + 118 * MIN, 59, 200.0, 210.0, 190.0, 205.0, [0.5] * 59) is True
    (hour,) = agg.update(m1(119))
    assert hour == Candle(SYM, H1, T0 + HOUR, 200.0, 220.0, 190.0, 219.5, 30.5, 0)  # 59 × 0.5 + 1


DATA = Path("/work/shared/data")


def _load(name: str, tf: Timeframe) -> list[Candle]:
    with gzip.open(DATA / name, "rt") as f:
        reader = csv.reader(f)
        next(reader)
        return [
            Candle(SYM, tf, int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
            for r in reader
        ]


@pytest.mark.skipif(not (DATA / "binance_BTCUSDT_1m.csv.gz").exists(), reason="shared data not present")
def test_real_btc_1m_aggregates_to_native_1h_4h_1d() -> None:
    native = {
        tf: {c.open_time_ms: c for c in _load(f"binance_BTCUSDT_{tf}.csv.gz", tf)} for tf in (H1, H4, D1)
    }
    agg = CandleAggregator(SYM, M1, (H1, H4, D1))
    complete = dict.fromkeys((H1, H4, D1), 0)
    incomplete = []
    for c in _load("binance_BTCUSDT_1m.csv.gz", M1):
        for h in agg.update(c):
            if h.missing:
                incomplete.append((h.timeframe, h.open_time_ms, h.missing))
                continue
            ref = native[h.timeframe][h.open_time_ms]
            complete[h.timeframe] += 1
            assert (h.open, h.high, h.low, h.close) == (ref.open, ref.high, ref.low, ref.close), h
            assert h.volume == pytest.approx(ref.volume, rel=1e-6)
    # 2023-03-16 22:15 -> 2023-05-01 21:01, halt 2023-03-24 12:40-13:59 UTC (80 x 1m missing)
    assert complete[H1] > 1000 and complete[H4] > 250 and complete[D1] > 40
    halt_day = 1_679_616_000_000  # 2023-03-24 00:00 UTC
    assert incomplete == [
        (H1, 1_679_004_000_000, 15),  # 2023-03-16 22:00, data starts 22:15
        (H4, 1_678_996_800_000, 135),  # 2023-03-16 20:00
        (D1, 1_678_924_800_000, 1335),  # 2023-03-16
        (H1, halt_day + 12 * 3_600_000, 20),  # 12:40-12:59; the 13:00 hour is absent entirely
        (H4, halt_day + 12 * 3_600_000, 80),
        (D1, halt_day, 80),
    ]
