"""Performance measures with hand-computed expectations (tradebot.core.metrics)."""

from __future__ import annotations

import math
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.core.domain import PositionEvent, PositionEventType, Symbol, TradeRecord
from tradebot.core.metrics import (
    ANNUALIZE_MIN_MS,
    DAY_MS,
    YEAR_MS,
    StreamStats,
    compute_metrics,
    drawdown_series,
    event_stats,
    group_metrics,
    sortino_ratio,
    trade_stats,
)

D = Decimal
REL = 1e-12

# Daily samples: up 20 %, down 25 % (the max drawdown from 120 to 90), then two recoveries to a new high.
CURVE = [(0, 100.0), (DAY_MS, 120.0), (2 * DAY_MS, 90.0), (3 * DAY_MS, 108.0), (4 * DAY_MS, 126.0)]


def trade(
    net: str,
    *,
    symbol: str = "BTC/USDT",
    r: float | None = None,
    mae: float = 0.0,
    mfe: float = 0.0,
    mfe_quote: str = "0",
    fees: str = "0",
    closed: bool = True,
    n: int = 1,
) -> TradeRecord:
    return TradeRecord(
        position_id=f"run-{symbol}-{n}",
        symbol=Symbol(symbol),
        opened_ms=0,
        closed_ms=DAY_MS if closed else None,
        entry_avg_price=D("100"),
        exit_avg_price=D("101"),
        max_qty=D("1"),
        bought_qty=D("1"),
        sold_qty=D("1") if closed else D("0"),
        realized_pnl=D(net) + D(fees),
        fees=D(fees),
        net_pnl=D(net),
        initial_risk_per_unit=D("10") if r is not None else None,
        r_multiple=r,
        mae_pct=mae,
        mfe_pct=mfe,
        mfe_quote=D(mfe_quote),
    )


def metrics(curve=CURVE, trades=(), **kw):
    args = {"fees_paid": D("0"), "traded_notional": D("0"), "n_orders": 0} | kw
    return compute_metrics(equity_curve=curve, trades=list(trades), **args)


class TestEquityCurve:
    def test_total_return_and_equity_ends(self) -> None:
        m = metrics()
        assert m.initial_equity == D("100.0")
        assert m.final_equity == D("126.0")
        assert m.total_return == pytest.approx(0.26, rel=REL)
        assert (m.start_ms, m.end_ms, m.n_samples) == (0, 4 * DAY_MS, 5)

    def test_max_drawdown_and_its_times(self) -> None:
        m = metrics()
        assert m.max_drawdown == pytest.approx(0.25, rel=REL)  # 1 - 90/120
        assert m.max_drawdown_peak_ms == DAY_MS
        assert m.max_drawdown_trough_ms == 2 * DAY_MS

    def test_drawdown_series(self) -> None:
        dd = drawdown_series(CURVE)
        assert [t for t, _ in dd] == [t for t, _ in CURVE]
        assert [v for _, v in dd] == pytest.approx([0.0, 0.0, 0.25, 0.1, 0.0], rel=REL, abs=1e-15)

    def test_annualized_return_is_none_under_90_days(self) -> None:
        # Was: the CAGR of this 4-day curve; STRATEGY.md §7 omits annualized figures under 90 days.
        m = metrics()
        assert m.annualized_return is None
        short = metrics(curve=[(0, 100.0), (ANNUALIZE_MIN_MS - 1, 110.0)])
        assert short.annualized_return is None

    def test_annualized_return_is_cagr_over_365_days_from_90_days(self) -> None:
        m = metrics(curve=[(0, 100.0), (45 * DAY_MS, 90.0), (ANNUALIZE_MIN_MS, 126.0)])
        assert ANNUALIZE_MIN_MS == 90 * DAY_MS
        assert m.annualized_return == pytest.approx(1.26 ** (365 / 90) - 1, rel=1e-9)

    def test_annualized_return_none_below_one_day(self) -> None:
        m = metrics(curve=[(0, 100.0), (DAY_MS - 1, 101.0)])
        assert m.annualized_return is None
        assert m.total_return == pytest.approx(0.01, rel=REL)

    def test_sharpe_sortino_daily_inferred(self) -> None:
        # r = 0.2, -0.25, 0.2, 1/6; periods per year from the 1-day spacing = 365.
        r = [0.2, -0.25, 0.2, 1 / 6]
        mean = (0.2 - 0.25 + 0.2 + 1 / 6) / 4
        sd = math.sqrt(((0.2 - mean) ** 2 * 2 + (-0.25 - mean) ** 2 + (1 / 6 - mean) ** 2) / 3)
        dd = math.sqrt(0.25**2 / 4)
        m = metrics()
        assert m.periods_per_year == 365
        assert len(r) == m.n_samples - 1
        assert m.sharpe == pytest.approx(mean / sd * math.sqrt(365), rel=1e-9)
        assert m.sortino == pytest.approx(mean / dd * math.sqrt(365), rel=1e-9)

    def test_sharpe_sortino_tiny_series_exact(self) -> None:
        # r = +0.1, -0.1, +0.1: mean 1/30, sample sd sqrt(12)/30 → Sharpe per period 1/sqrt(12);
        # downside deviation sqrt(0.01/3) → Sortino per period (1/30)/(0.1/sqrt(3)) = 1/sqrt(3).
        curve = [(0, 100.0), (1, 110.0), (2, 99.0), (3, 108.9)]
        m = metrics(curve=curve, periods_per_year=12)
        assert m.periods_per_year == 12
        assert m.sharpe == pytest.approx(1.0, rel=1e-9)
        assert m.sortino == pytest.approx(1 / math.sqrt(3) * math.sqrt(12), rel=1e-9)
        assert m.sortino == pytest.approx(2.0, rel=1e-9)

    def test_sortino_divides_by_all_periods(self) -> None:
        # One loss in four periods: DD = sqrt(0.04 / 4) = 0.1, mean = 0.1 / 4 = 0.025 → 0.25 per period
        # (dividing by the one losing period instead would give DD = 0.2 and 0.125).
        assert sortino_ratio([0.1, 0.1, 0.1, -0.2], 1) == pytest.approx(0.25, rel=REL)

    def test_flat_curve_has_no_ratios(self) -> None:
        m = metrics(curve=[(i * 3_600_000, 1000.0) for i in range(5)])
        assert m.sharpe is None
        assert m.sortino is None
        assert m.max_drawdown == 0.0
        assert m.max_drawdown_peak_ms is None
        assert m.total_return == 0.0
        assert m.periods_per_year == 8760

    def test_constant_growth_has_no_sharpe(self) -> None:
        m = metrics(curve=[(i, 100.0 * 1.1**i) for i in range(5)], periods_per_year=1)
        assert m.sharpe is None  # sd is only float rounding
        assert m.sortino is None  # no period below the 0 target

    def test_exposure_and_turnover(self) -> None:
        m = metrics(exposure_ms=2 * DAY_MS, traded_notional=D("1088"), fees_paid=D("1.5"), n_orders=7)
        assert m.exposure_fraction == 0.5
        assert m.turnover == pytest.approx(10.0, rel=REL)  # mean equity 544/5 = 108.8
        assert (m.fees_paid, m.traded_notional, m.n_orders) == (D("1.5"), D("1088"), 7)

    def test_decimal_equity_is_kept_exact(self) -> None:
        m = metrics(curve=[(0, D("10000.10")), (DAY_MS, D("10100.20"))])
        assert (m.initial_equity, m.final_equity) == (D("10000.10"), D("10100.20"))
        assert metrics(curve=[(0, 100.1)]).initial_equity == D("100.1")

    def test_empty_inputs(self) -> None:
        m = metrics(curve=[])
        assert m.initial_equity is None and m.final_equity is None
        assert m.total_return is None and m.sharpe is None and m.max_drawdown is None
        assert m.n_samples == 0 and m.trades.n_trades == 0
        assert m.trades.win_rate is None and m.trades.profit_factor is None
        assert m.trades.expectancy_r is None and m.trades.avg_giveback is None
        d = m.to_dict()
        assert d["n_trades"] == 0 and d["win_rate"] is None and d["turnover"] is None

    def test_single_sample(self) -> None:
        m = metrics(curve=[(5, 100.0)], exposure_ms=0)
        assert m.total_return == 0.0 and m.sharpe is None and m.exposure_fraction is None

    @pytest.mark.parametrize(
        ("curve", "match"),
        [
            ([(0, 100.0), (0, 101.0)], r"equity_curve\[1\] time_ms must be strictly increasing, was 0"),
            ([(0, 100.0), (1, -1.0)], r"equity_curve\[1\] equity must be finite and > 0, was -1.0"),
            ([(0, float("nan"))], r"equity_curve\[0\] equity must be finite"),
            ([(0.5, 100.0)], r"time_ms must be an int"),
        ],
    )
    def test_bad_curve(self, curve, match) -> None:
        with pytest.raises(ValueError, match=match):
            metrics(curve=curve)

    def test_bad_totals(self) -> None:
        with pytest.raises(ValueError, match=r"exposure_ms must be in \[0, span=345600000\], was 345600001"):
            metrics(exposure_ms=4 * DAY_MS + 1)
        with pytest.raises(ValueError, match="fees_paid must be a finite Decimal, was -1"):
            metrics(fees_paid=-1)
        with pytest.raises(ValueError, match=r"fees_paid must be a finite Decimal, was Decimal\('NaN'\)"):
            metrics(fees_paid=D("NaN"))
        with pytest.raises(ValueError, match="traded_notional must be a finite Decimal >= 0, was"):
            metrics(traded_notional=D("-1"))
        with pytest.raises(ValueError, match="periods_per_year must be finite and > 0, was 0"):
            metrics(periods_per_year=0)

    def test_net_fees_may_be_a_rebate(self) -> None:
        # maker rebates (Deribit "maker_commission": -0.0002) larger than the fees paid: net fees < 0
        m = metrics(fees_paid=D("-0.02"), traded_notional=D("100"), n_orders=1)
        assert (m.fees_paid, m.to_dict()["fees_paid"]) == (D("-0.02"), D("-0.02"))

    @given(st.lists(st.floats(min_value=1.0, max_value=1e9), min_size=1, max_size=60))
    def test_drawdown_invariants(self, values) -> None:
        curve = [(i * 60_000, v) for i, v in enumerate(values)]
        dd = [v for _, v in drawdown_series(curve)]
        assert all(0.0 <= x < 1.0 for x in dd)
        m = metrics(curve=curve)
        assert m.max_drawdown == max(dd)
        assert m.periods_per_year == YEAR_MS / 60_000 or len(values) == 1


TRADES = [
    trade("30", r=1.5, mae=-1.0, mfe=4.0, mfe_quote="40", fees="1", n=1),
    trade("-10", r=-0.5, mae=-3.0, mfe=1.0, mfe_quote="5", fees="1", n=2),
    trade("20", mae=-2.0, mfe=3.0, mfe_quote="20", fees="0.5", n=3, symbol="ETH/USDT"),
    trade("-5", r=-0.25, mae=-2.0, mfe=0.0, mfe_quote="0", n=4, symbol="ETH/USDT"),
    trade("0", r=0.0, mae=-0.5, mfe=1.0, mfe_quote="2", n=5),
    trade("99", closed=False, n=6),  # open: only counted as open
]


class TestTradeStats:
    def test_all_trades(self) -> None:
        s = trade_stats(TRADES)
        assert (s.n_trades, s.n_open_trades, s.n_wins, s.n_losses) == (5, 1, 2, 2)
        assert s.win_rate == 0.4
        assert s.avg_win == D("25")
        assert s.avg_loss == D("-7.5")
        assert (s.gross_win, s.gross_loss) == (D("50"), D("15"))
        assert s.profit_factor == pytest.approx(50 / 15, rel=REL)
        assert s.net_pnl == D("35")
        assert s.trade_fees == D("2.5")
        assert s.expectancy_r == pytest.approx((1.5 - 0.5 - 0.25 + 0.0) / 4, rel=REL)
        assert s.n_trades_with_r == 4
        assert s.avg_mae_pct == pytest.approx(-8.5 / 5, rel=REL)
        assert s.avg_mfe_pct == pytest.approx(9.0 / 5, rel=REL)
        # give-back: 40-30, 5+10, 20-20, 0+5, 2-0 → 10+15+0+5+2 = 32 over 5 trades
        assert s.avg_giveback == D("6.4")

    def test_no_loss_means_no_profit_factor(self) -> None:
        s = trade_stats([trade("10"), trade("5", n=2)])
        assert s.profit_factor is None
        assert s.avg_loss is None
        assert s.expectancy_r is None
        assert s.win_rate == 1.0

    def test_group_by_symbol(self) -> None:
        groups = group_metrics(TRADES)
        assert list(groups) == ["BTC/USDT", "ETH/USDT"]
        assert groups["ETH/USDT"].n_trades == 2
        assert groups["ETH/USDT"].profit_factor == 4.0
        assert groups["BTC/USDT"].n_open_trades == 1
        assert groups["BTC/USDT"].net_pnl == D("20")

    def test_metrics_flatten_trade_stats(self) -> None:
        d = metrics(trades=TRADES).to_dict()
        assert d["n_trades"] == 5 and d["avg_win"] == D("25") and d["max_drawdown"] == pytest.approx(0.25)
        assert "trades" not in d


class TestStreamAndEvents:
    def test_stream_stats_checks_total(self) -> None:
        ok = StreamStats(
            stream="BTC:4h",
            realized=D("10"),
            fees=D("1"),
            unrealized=D("2.5"),
            total=D("11.5"),
            time_in_fraction=0.4,
            flips=3,
        )
        assert ok.to_dict()["total"] == D("11.5")
        with pytest.raises(ValueError, match=r"total must equal realized - fees \+ unrealized = 11.5"):
            StreamStats(
                stream="BTC:4h",
                realized=D("10"),
                fees=D("1"),
                unrealized=D("2.5"),
                total=D("12"),
                time_in_fraction=0.4,
                flips=3,
            )
        with pytest.raises(ValueError, match=r"time_in_fraction must be in \[0, 1\], was 1.5"):
            StreamStats(
                stream="x",
                realized=D(0),
                fees=D(0),
                unrealized=D(0),
                total=D(0),
                time_in_fraction=1.5,
                flips=0,
            )

    def test_event_stats(self) -> None:
        def ev(seq: int, kind: PositionEventType, saved: str | None) -> PositionEvent:
            return PositionEvent(
                event_id=uuid.uuid4(),
                seq=seq,
                position_id="p",
                event_type=kind,
                symbol=Symbol("BTC/USDT"),
                event_time_ms=seq,
                price=D("100"),
                size_before=D("1"),
                size_after=D("0"),
                trigger_reason="t",
                action_taken="a",
                amount_saved_or_gained=D(saved) if saved is not None else None,
            )

        counts, savings = event_stats(
            [
                ev(1, PositionEventType.ENTRY, None),
                ev(2, PositionEventType.EARLY_EXIT, "12.5"),
                ev(3, PositionEventType.EARLY_EXIT, "-2.5"),
                ev(4, PositionEventType.EARLY_EXIT, None),
            ]
        )
        assert counts == {"early_exit": 3, "entry": 1}
        assert savings == {"early_exit": D("10.0")}
