"""The buy-and-hold column of the summary and comparison tables, the chart's second line, and the
90-day rule for annualized returns in the tables (tradebot.app.reports)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from rich.console import Console

from tradebot.app.reports.chart import equity_figure, write_equity_chart
from tradebot.app.reports.report import build_summary, read_summary_json, write_summary_json
from tradebot.app.reports.tables import render_comparison, render_summary
from tradebot.core.metrics import DAY_MS, buy_and_hold_curve, compute_metrics

D = Decimal
ENTRY = {"BTC/USDT": D("100"), "ETH/USDT": D("20")}
MARKS = [
    (DAY_MS, {"BTC/USDT": D("110"), "ETH/USDT": D("21")}),
    (2 * DAY_MS, {"BTC/USDT": D("90"), "ETH/USDT": D("21")}),
    (3 * DAY_MS, {"BTC/USDT": D("120"), "ETH/USDT": D("18")}),
]
BENCH = buy_and_hold_curve(entry_prices=ENTRY, marks=MARKS, initial_cash=D("2002"), taker_fee=D("0.001"))
STRATEGY = [(DAY_MS, D("2002")), (2 * DAY_MS, D("2102.1")), (3 * DAY_MS, D("2202.2"))]


def summary(curve=STRATEGY, bench=BENCH, with_bench: bool = True) -> dict:
    def measures(c):
        return compute_metrics(
            equity_curve=c, trades=[], fees_paid=D("0"), traded_notional=D("0"), n_orders=0
        )

    extras = {}
    if with_bench:
        extras["buy_and_hold"] = {**measures(bench).to_dict(), "entry": "first open", "entry_prices": ENTRY}
    return build_summary(
        run_info={"run_id": "bt-1", "quote": "USDT"},
        metrics=measures(curve),
        per_asset={},
        per_stream={},
        event_counts={},
        extras=extras,
    )


def text(render, *args) -> str:
    c = Console(record=True, width=160)
    render(*args, c)
    return c.export_text()


def row(out: str, label: str) -> list[str]:
    line = next(line for line in out.splitlines() if label in line)
    return [cell.strip() for cell in line.split("│")[1:-1]]


def test_summary_table_has_a_buy_and_hold_column_beside_the_strategy() -> None:
    out = text(render_summary, summary())
    assert "Strategy" in out and "Buy & hold" in out
    assert row(out, "Final equity (USDT)") == ["Final equity (USDT)", "2,202.20", "2,100.00"]
    assert row(out, "Total return (%)") == ["Total return (%)", "10.00", f"{(2100 / 2150 - 1) * 100:.2f}"]
    assert row(out, "Max drawdown (%)") == ["Max drawdown (%)", "0.00", f"{(1 - 1950 / 2150) * 100:.2f}"]
    assert row(out, "Trades (closed)") == ["Trades (closed)", "0", ""]  # not a benchmark row
    # 2 days < 90 days: no annualized return on either side.
    assert row(out, "Annualized return (%)") == ["Annualized return (%)", "—", "—"]


def test_summary_json_round_trip_keeps_the_column() -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        write_summary_json(summary(), Path(tmp) / "s.json")
        loaded = read_summary_json(Path(tmp) / "s.json")
    assert loaded["buy_and_hold"]["final_equity"] == "2100"
    out = text(render_summary, loaded)
    assert row(out, "Final equity (USDT)") == ["Final equity (USDT)", "2,202.20", "2,100.00"]


def test_summary_without_benchmark_keeps_the_old_single_column() -> None:
    out = text(render_summary, summary(with_bench=False))
    assert "Buy & hold" not in out
    assert row(out, "Final equity (USDT)") == ["Final equity (USDT)", "2,202.20"]


def test_annualized_return_is_shown_from_90_days() -> None:
    long = [(0, D("100")), (90 * DAY_MS, D("126"))]
    out = text(render_summary, summary(curve=long, with_bench=False))
    assert row(out, "Annualized return (%)") == [
        "Annualized return (%)",
        f"{(1.26 ** (365 / 90) - 1) * 100:,.2f}",
    ]


def test_comparison_adds_one_buy_and_hold_column() -> None:
    plain, managed = summary(), summary(curve=[(DAY_MS, D("2002")), (3 * DAY_MS, D("1901.9"))])
    out = text(render_comparison, [("fixed stop", plain), ("managed", managed)])
    assert out.count("Buy & hold") == 1
    assert row(out, "Final equity (USDT)") == ["Final equity (USDT)", "2,202.20", "1,901.90", "2,100.00"]
    assert row(out, "Annualized return (%)") == ["Annualized return (%)", "—", "—", "—"]
    assert row(out, "Early-exit savings (USDT)")[-1] == ""


def test_chart_draws_the_strategy_and_buy_and_hold_lines_with_a_legend(tmp_path) -> None:
    fig = equity_figure(STRATEGY, benchmark_curve=BENCH, quote="USDT")
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["strategy", "buy & hold"]
    assert list(lines[0].get_ydata()) == [2002.0, 2102.1, 2202.2]
    assert list(lines[1].get_ydata()) == [2150.0, 1950.0, 2100.0]
    assert list(lines[1].get_xdata()) == list(np.array([t for t, _ in BENCH]).astype("datetime64[ms]"))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["strategy", "buy & hold"]
    assert len(equity_figure(STRATEGY).axes[0].get_lines()) == 1
    path = tmp_path / "equity.png"
    write_equity_chart(STRATEGY, path, benchmark_curve=BENCH)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
