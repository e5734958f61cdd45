"""Labels of a position on small hand-made candle series with known answers.

Base candles of 1 minute, a horizon of 5 candles. Every series has a candle before the row's time
and one right after the horizon with absurd extremes: a label that read either would be wrong.
"""

from __future__ import annotations

import numpy as np
import pytest

from tradebot.core.ml import CandleArrays, LabelConfig, Labels, position_labels

T = 1_700_000_000_000 - 1_700_000_000_000 % 60_000  # a row time on the minute grid
M = 60_000
CFG = LabelConfig(horizon_ms=5 * M, fee_fraction=0.001, slippage_fraction=0.0005)
F, S = 0.001, 0.0005
BEFORE = (90.0, 500.0, 0.5, 95.0)  # opens at T - 1m: before the row
AFTER = (101.0, 500.0, 0.5, 300.0)  # opens at T + 5m: after the horizon


def arrays(window: list[tuple[float, float, float, float]], *, end_ms: int | None = None) -> CandleArrays:
    """Candles BEFORE, then ``window`` from T on (open, high, low, close), then AFTER."""
    rows = [BEFORE, *window, AFTER]
    times = np.array([T - M + i * M for i in range(len(rows))], dtype=np.int64)
    cols = np.array(rows, dtype=np.float64).T
    return CandleArrays(
        open_ms=times,
        open=cols[0].copy(),
        high=cols[1].copy(),
        low=cols[2].copy(),
        close=cols[3].copy(),
        base_ms=M,
        end_ms=int(times[-1]) + M if end_ms is None else end_ms,
    )


def labels(window: list[tuple[float, float, float, float]], *, mark: float = 99.0, entry: float = 100.0,
           stop: float | None = 97.0, end_ms: int | None = None) -> Labels:  # fmt: skip
    return position_labels(
        arrays(window, end_ms=end_ms), time_ms=T, mark=mark, avg_entry=entry, stop=stop, config=CFG
    )


# entry 100, fees 0.1 %: the recovery level is 100 x 1.002 = 100.2; stop 97; mark 99.
RECOVERS_THEN_STOPPED = [
    (99.0, 99.5, 98.0, 99.2),
    (99.2, 100.1, 98.5, 100.0),  # 100.1 < 100.2: not yet
    (100.0, 100.3, 99.8, 100.25),  # reaches 100.2 (index 2)
    (100.25, 101.0, 96.0, 96.5),  # low 96 <= stop 97 (index 3)
    (96.5, 102.0, 96.4, 101.0),  # the best high, 102 (index 4), closing at T + 5m
]


def test_recovered_before_the_stop_and_the_other_labels() -> None:
    lab = labels(RECOVERS_THEN_STOPPED)
    assert lab.horizon_complete
    assert lab.recovered is True
    assert lab.additional_return == pytest.approx(102.0 / 99.0 - 1, rel=1e-12)
    assert lab.time_to_best_ms == 5 * M  # the 5th candle of the window closes at T + 5m
    assert lab.return_at_horizon == pytest.approx(101.0 / 99.0 - 1, rel=1e-12)
    # the add is stopped at index 3: sold at min(open 100.25, stop 97) = 97
    expected = 97.0 * (1 - S) * (1 - F) / (99.0 * (1 + S) * (1 + F)) - 1
    assert lab.scale_in_return == pytest.approx(expected, rel=1e-12)
    assert lab.scale_in_success is False


def test_stop_first_is_not_recovered() -> None:
    window = [
        (99.0, 99.5, 96.5, 97.5),  # stop 97 hit first
        (97.5, 101.0, 97.4, 100.5),  # recovery level reached after it
        *RECOVERS_THEN_STOPPED[2:],
    ]
    assert labels(window).recovered is False


def test_a_candle_reaching_both_counts_as_stopped() -> None:
    window = [(99.0, 100.5, 96.9, 100.0), *RECOVERS_THEN_STOPPED[1:]]
    assert labels(window).recovered is False


def test_neither_within_the_horizon_is_not_recovered() -> None:
    window = [(99.0, 99.5, 98.0, 99.2)] * 5
    lab = labels(window)
    assert lab.recovered is False
    assert lab.additional_return == pytest.approx(99.5 / 99.0 - 1, rel=1e-12)
    assert lab.time_to_best_ms == M  # the first of equal highs


def test_a_row_that_is_not_losing_has_no_recovered_label() -> None:
    # mark 100.2 = entry x (1 + 2 fee): not losing
    lab = labels(RECOVERS_THEN_STOPPED, mark=100.2)
    assert lab.recovered is None
    assert lab.additional_return == pytest.approx(102.0 / 100.2 - 1, rel=1e-12)


def test_no_stop_holds_the_add_to_the_horizon() -> None:
    lab = labels(RECOVERS_THEN_STOPPED, stop=None)
    assert lab.recovered is True
    expected = 101.0 * (1 - S) * (1 - F) / (99.0 * (1 + S) * (1 + F)) - 1
    assert lab.scale_in_return == pytest.approx(expected, rel=1e-12)
    assert lab.scale_in_success is True


def test_a_gap_through_the_stop_sells_at_the_open() -> None:
    window = [(99.0, 99.5, 98.0, 99.2), (95.0, 95.5, 94.0, 95.2), *RECOVERS_THEN_STOPPED[2:]]
    expected = 95.0 * (1 - S) * (1 - F) / (99.0 * (1 + S) * (1 + F)) - 1
    assert labels(window).scale_in_return == pytest.approx(expected, rel=1e-12)


def test_a_horizon_past_the_data_has_no_labels() -> None:
    lab = labels(RECOVERS_THEN_STOPPED, end_ms=T + 5 * M - 1)
    assert lab == Labels(horizon_complete=False)
    assert labels(RECOVERS_THEN_STOPPED, end_ms=T + 5 * M).horizon_complete


def test_no_candle_in_the_window_has_no_labels() -> None:
    empty = CandleArrays(
        open_ms=np.array([T - M, T + 5 * M], dtype=np.int64),
        open=np.array([1.0, 1.0]),
        high=np.array([1.0, 1.0]),
        low=np.array([1.0, 1.0]),
        close=np.array([1.0, 1.0]),
        base_ms=M,
        end_ms=T + 6 * M,
    )
    lab = position_labels(empty, time_ms=T, mark=1.0, avg_entry=1.0, stop=None, config=CFG)
    assert lab.horizon_complete is False and lab.additional_return is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon_ms": 0}, r"horizon_ms must be an int > 0, was 0"),
        ({"horizon_ms": M, "fee_fraction": 0.2}, r"fee_fraction must be in \[0, 0.1\), was 0.2"),
        ({"horizon_ms": M, "slippage_fraction": -1.0}, r"slippage_fraction must be in \[0, 0.1\), was -1.0"),
    ],
)
def test_config_refuses_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LabelConfig(**kwargs)  # type: ignore[arg-type]
