"""Reports of a run: rich tables, JSON summary, equity chart (tradebot.app.reports)."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import numpy as np
import pytest
from rich.console import Console

from tradebot.app.reports.chart import _downsample_indices, write_equity_chart
from tradebot.app.reports.report import build_summary, read_summary_json, write_summary_json
from tradebot.app.reports.tables import format_value, render_comparison, render_summary
from tradebot.core.domain import Symbol, TradeRecord
from tradebot.core.metrics import DAY_MS, StreamStats, compute_metrics, group_metrics

D = Decimal
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CURVE = [
    (0, D("10000")),
    (DAY_MS, D("12000")),
    (2 * DAY_MS, D("9000")),
    (3 * DAY_MS, D("10800")),
    (4 * DAY_MS, D("12600")),
]


def trade(n: int, net: str, symbol: str = "BTC/USDT", r: float | None = None) -> TradeRecord:
    return TradeRecord(
        position_id=f"run-{symbol}-{n}",
        symbol=Symbol(symbol),
        opened_ms=0,
        closed_ms=DAY_MS,
        entry_avg_price=D("100"),
        exit_avg_price=D("110"),
        max_qty=D("1"),
        bought_qty=D("1"),
        sold_qty=D("1"),
        realized_pnl=D(net),
        fees=D("0"),
        net_pnl=D(net),
        initial_risk_per_unit=D("10"),
        r_multiple=r,
        mae_pct=-1.5,
        mfe_pct=4.25,
        mfe_quote=D("1500"),
    )


TRADES = [
    trade(1, "1234.5", r=2.0),
    trade(2, "-250", r=-1.0),
    trade(3, "400", symbol="ETH/USDT", r=0.5),
]


def summary(*, savings: str | None = "37.5", early_exits: int = 3, extras: dict | None = None) -> dict:
    m = compute_metrics(
        equity_curve=CURVE,
        trades=TRADES,
        fees_paid=D("12.34"),
        traded_notional=D("108800"),
        n_orders=17,
        exposure_ms=DAY_MS,
    )
    stream = StreamStats(
        stream="BTC:4h",
        realized=D("123.45"),
        fees=D("1.20"),
        unrealized=D("10"),
        total=D("132.25"),
        time_in_fraction=0.375,
        flips=4,
    )
    more = {"event_savings": {"early_exit": D(savings)}} if savings is not None else {}
    return build_summary(
        run_info={"run_id": "bt-1", "mode": "backtest", "quote": "USDT"},
        metrics=m,
        per_asset=group_metrics(TRADES),
        per_stream=[stream],
        event_counts={"entry": 3, "early_exit": early_exits},
        extras=more | (extras or {}),
    )


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("│").split("│")]


def console() -> Console:
    return Console(record=True, width=160, color_system=None)


def line_with(text: str, label: str) -> str:
    lines = [ln for ln in text.splitlines() if label in ln]
    assert lines, f"no line with {label!r} in:\n{text}"
    return lines[0]


class TestFormat:
    @pytest.mark.parametrize(
        ("value", "kind", "expected"),
        [
            (D("12345.678"), "money", "12,345.68"),
            ("-7.5", "money", "-7.50"),
            (0.2612, "frac", "26.12"),
            (-1.5, "pct", "-1.50"),
            (3.3333, "ratio", "3.33"),
            (12345, "int", "12,345"),
            (DAY_MS, "time", "1970-01-02 00:00"),
            (None, "ratio", "n/a"),
            (float("nan"), "ratio", "n/a"),
            (float("inf"), "frac", "n/a"),
        ],
    )
    def test_format_value(self, value, kind, expected) -> None:
        assert format_value(value, kind) == expected

    def test_unknown_kind(self) -> None:
        with pytest.raises(ValueError, match=r"kind must be one of .*, was 'euro'"):
            format_value(1, "euro")


class TestRenderSummary:
    def test_key_numbers_appear(self) -> None:
        c = console()
        render_summary(summary(), c)
        text = c.export_text()
        assert "10,000.00" in line_with(text, "Initial equity (USDT)")
        assert "12,600.00" in line_with(text, "Final equity (USDT)")
        assert "26.00" in line_with(text, "Total return (%)")
        assert "25.00" in line_with(text, "Max drawdown (%)")
        assert "1970-01-02 00:00" in line_with(text, "Max drawdown peak (UTC)")
        assert "66.67" in line_with(text, "Win rate (%)")
        assert "817.25" in line_with(text, "Average win (USDT)")  # (1234.5 + 400) / 2
        assert "-250.00" in line_with(text, "Average loss (USDT)")
        assert "6.54" in line_with(text, "Profit factor")  # 1634.5 / 250 = 6.538
        assert "0.50" in line_with(text, "Expectancy (R)")  # (2 - 1 + 0.5) / 3
        assert "25.00" in line_with(text, "Exposure time (%)")  # 1 day of 4
        assert "10.00" in line_with(text, "Turnover")  # 108800 / 10880
        assert "12.34" in line_with(text, "Fees paid (USDT)")
        assert "17" in line_with(text, "Orders")

    def test_per_asset_stream_and_event_tables(self) -> None:
        c = console()
        render_summary(summary(), c)
        text = c.export_text()
        assert "Avg win" in text and "Time in" in text and "(USDT)" in text
        btc = line_with(text, "BTC/USDT")
        for cell in ("1,234.50", "-250.00", "4.94", "984.50"):  # avg win, avg loss, PF, net PnL
            assert cell in btc
        assert cells(line_with(text, "BTC:4h")) == [
            "BTC:4h",
            "123.45",
            "1.20",
            "10.00",
            "132.25",
            "37.50",
            "4",
        ]
        assert cells(line_with(text, "│ early_exit")) == ["early_exit", "3", "37.50"]
        assert cells(line_with(text, "│ entry")) == ["entry", "3", "n/a"]

    def test_optional_asset_columns(self) -> None:
        s = summary()
        s["per_asset"]["BTC/USDT"] |= {"fees_paid": D("3.21"), "traded_notional": D("45678.9")}
        c = console()
        render_summary(s, c)
        text = c.export_text()
        assert "Traded" in text
        assert cells(line_with(text, "ETH/USDT"))[-2:] == ["n/a", "n/a"]
        assert cells(line_with(text, "BTC/USDT"))[-2:] == ["3.21", "45,678.90"]
        c = console()
        render_summary(summary(), c)
        assert "Traded" not in c.export_text()

    def test_renders_a_summary_read_back_from_json(self, tmp_path) -> None:
        write_summary_json(summary(), tmp_path / "s.json")
        c = console()
        render_summary(read_summary_json(tmp_path / "s.json"), c)
        assert "12,600.00" in line_with(c.export_text(), "Final equity (USDT)")

    def test_empty_run_renders_na(self) -> None:
        m = compute_metrics(equity_curve=[], trades=[], fees_paid=D(0), traded_notional=D(0), n_orders=0)
        s = build_summary(run_info={}, metrics=m, per_asset={}, per_stream={}, event_counts={})
        c = console()
        render_summary(s, c)
        text = c.export_text()
        assert "n/a" in line_with(text, "Sharpe")
        assert "n/a" in line_with(text, "Initial equity (quote)")


class TestRenderComparison:
    def test_configs_as_columns(self) -> None:
        plain = summary(savings=None, early_exits=0)
        plain["event_counts"] = {"entry": 5, "stop_exit": 2}
        managed = summary(extras={"scale_in_success_rate": 0.6})
        c = console()
        render_comparison([("fixed stop", plain), ("managed", managed)], c)
        text = c.export_text()
        header = line_with(text, "Measure")
        assert header.index("fixed stop") < header.index("managed")
        assert line_with(text, "Total return (%)").count("26.00") == 2
        assert "-250.00" in line_with(text, "Average loss (USDT)")
        # give-back: ((1500 − 1234.5) + (1500 + 250) + (1500 − 400)) / 3 = 1038.5
        assert "1,038.50" in line_with(text, "Average profit give-back (USDT)")
        savings = line_with(text, "Early-exit savings (USDT)")
        assert cells(savings)[1:] == ["n/a", "37.50"]
        assert cells(line_with(text, "Scale-in success rate (%)"))[1:] == ["n/a", "60.00"]
        assert cells(line_with(text, "Events: stop_exit"))[1:] == ["2", "0"]
        assert cells(line_with(text, "Events: entry"))[1:] == ["5", "3"]

    def test_needs_a_summary(self) -> None:
        with pytest.raises(ValueError, match="summaries must hold at least one"):
            render_comparison([], console())


class TestJson:
    def test_equity_strings_and_no_nan(self, tmp_path) -> None:
        path = tmp_path / "out" / "summary.json"
        write_summary_json(summary(extras={"bad": float("nan"), "worse": [float("-inf"), D("NaN")]}), path)
        text = path.read_text(encoding="utf-8")
        assert "NaN" not in text and "Infinity" not in text
        data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-finite constant {c}"))
        assert data["initial_equity"] == "10000"
        assert data["final_equity"] == "12600"
        assert data["bad"] is None and data["worse"] == [None, None]
        assert data["overall"]["fees_paid"] == "12.34"
        assert data["overall"]["max_drawdown"] == pytest.approx(0.25)
        assert data["per_stream"]["BTC:4h"]["total"] == "132.25"
        assert data["event_savings"] == {"early_exit": "37.5"}
        assert data["run"]["quote"] == "USDT"
        assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temp file left

    def test_missing_equity_is_refused(self, tmp_path) -> None:
        with pytest.raises(ValueError, match="summary must contain 'initial_equity'"):
            write_summary_json({"overall": {}}, tmp_path / "x.json")

    def test_unserialisable_value_names_its_path(self, tmp_path) -> None:
        with pytest.raises(TypeError, match=r"summary\.run\.obj is not JSON-serialisable"):
            write_summary_json(summary() | {"run": {"obj": object()}}, tmp_path / "x.json")

    def test_reserved_extras_are_refused(self) -> None:
        with pytest.raises(ValueError, match=r"reserved summary keys, was \['overall'\]"):
            summary(extras={"overall": 1})


class TestChart:
    def test_long_curve_writes_png(self, tmp_path) -> None:
        n = 40_000
        rng = np.random.default_rng(7)
        equity = 10_000 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
        curve = [(1_600_000_000_000 + i * 3_600_000, float(e)) for i, e in enumerate(equity)]
        path = tmp_path / "equity.png"
        write_equity_chart(curve, path, title="bt-1", quote="USDT")
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 20_000
        assert int.from_bytes(data[16:20], "big") == 1100  # IHDR width: 11 in × 100 dpi
        assert int.from_bytes(data[20:24], "big") == 650

    def test_empty_curve_writes_png(self, tmp_path) -> None:
        path = tmp_path / "empty.png"
        write_equity_chart([], path)
        assert path.read_bytes()[:8] == PNG_SIGNATURE

    def test_downsampling_keeps_extremes(self) -> None:
        values = np.full(10_000, 100.0)
        values[1234] = 150.0
        values[7777] = 30.0
        dd = 1 - values / np.maximum.accumulate(values)
        idx = _downsample_indices(values, dd, 400)
        assert len(idx) <= 400
        assert {0, 1234, 7777, 9999} <= set(idx.tolist())
        assert math.isclose(dd[idx].max(), 0.8)
