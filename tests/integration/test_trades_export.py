"""``tradebot trades`` and ``tradebot plot`` on a managed backtest of the shipped sample, end to end.

The run: ``config/managed.toml`` from 2023-03-17 to 2023-03-23 18:30 UTC (about 6.8 days, 0.3 s of
engine time) into a SQLite file. It has 6 trades: 4 closed by stop exits (3 after a partial take-profit,
one with a trailing scale-in) and 2 still open at the end (ETH-3 partly sold, BTC-2). Every exported
number is compared with what :class:`SqlEventStore` holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tradebot.adapters.store.event_store import SqlEventStore
from tradebot.app.storage import RunRecords, load_run_records
from tradebot.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cli(argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One managed CLI backtest into a SQLite file, and what the store holds of it."""
    root = tmp_path_factory.mktemp("trades_export")
    db_url = f"sqlite+aiosqlite:///{root / 'events.db'}"
    argv = ["backtest", "--data", str(SAMPLE), "--config", str(REPO / "config" / "managed.toml")]
    argv += ["--start", "2023-03-17", "--end", "2023-03-23T18:30", "--db", db_url, "--out", str(root / "out")]
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
            mp.delenv(key)
        mp.chdir(root)
        code, _, err = _cli(argv)
    assert code == 0, err
    records = asyncio.run(load_run_records(db_url, run_id=None, symbols=None))
    return {"db": db_url, "root": root, "rec": records}


def _by_position(rec: RunRecords) -> dict[str, int]:
    # Events per trade as the store files them: the position id, plus the events without one that
    # name one of that trade's orders (the opening order and the closing fill).
    counts: dict[str, int] = {}
    for t in rec.trades:
        own = [e for e in rec.events if e.position_id == t.position_id]
        orders = {o for e in own for o in e.client_order_ids}
        loose = [e for e in rec.events if e.position_id is None and orders & set(e.client_order_ids)]
        counts[t.position_id] = len(own) + len(loose)
    return counts


def test_the_run_has_stop_exits_ladder_fills_and_open_trades(run: dict[str, Any]) -> None:
    rec: RunRecords = run["rec"]
    assert len(rec.trades) == 6
    assert sum(t.closed_ms is None for t in rec.trades) == 2
    types = [str(e.event_type) for e in rec.events]
    assert types.count("stop_exit") == 4
    assert types.count("partial_take_profit") == 3
    assert types.count("trailing_scale_in") == 1


def test_csv_has_one_row_per_trade_with_the_stored_numbers(run: dict[str, Any], tmp_path: Path) -> None:
    rec: RunRecords = run["rec"]
    out = tmp_path / "trades.csv"
    code, stdout, err = _cli(["trades", "--db", run["db"], "--format", "csv", "--out", str(out)])
    assert code == 0, err
    assert str(out) in stdout and "6 trades" in stdout
    rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
    assert [r["trade_id"] for r in rows] == [t.position_id for t in rec.trades]
    assert sum(Decimal(r["realized_pnl_quote"]) for r in rows) == sum(t.realized_pnl for t in rec.trades)
    assert sum(Decimal(r["fees_quote"]) for r in rows) == sum(t.fees for t in rec.trades)
    # every fill belongs to one trade: the trades' fees are the fills' fees
    assert sum(Decimal(r["fees_quote"]) for r in rows) == sum(f.fee_quote for f in rec.fills)
    assert sum(int(r["fills"]) for r in rows) == len(rec.fills)
    counts = _by_position(rec)
    for row, t in zip(rows, rec.trades, strict=True):
        assert int(row["events"]) == counts[t.position_id] == len(row["event_types"].split(";"))
        assert float(row["r_multiple"]) == t.r_multiple
        assert float(row["mae_pct"]) == t.mae_pct <= 0 <= t.mfe_pct == float(row["mfe_pct"])
        assert Decimal(row["entry_avg_price"]) == t.entry_avg_price
        assert int(row["entry_time_ms"]) == t.opened_ms
    closed = [r for r in rows if r["status"] == "closed"]
    assert [r["exit_reason"] for r in closed] == ["stop_exit"] * 4
    assert all(r["event_types"].endswith(";exit") for r in closed)
    first = rows[0]  # BTC-1: opened by one order, laddered, trailed, stopped out
    assert first["event_types"].split(";")[:3] == ["rebalance_buy", "entry", "stop_set"]
    assert "partial_take_profit" in first["event_types"]
    opened = [r for r in rows if r["status"] == "open"]
    assert [r["exit_time"] for r in opened] == ["", ""]
    last_marks = rec.equity[-1].marks
    for r in opened:
        t = next(t for t in rec.trades if t.position_id == r["trade_id"])
        mark = last_marks[t.symbol]
        assert Decimal(r["mark_price"]) == mark
        assert Decimal(r["unrealized_pnl_quote"]) == (mark - t.entry_avg_price) * (t.bought_qty - t.sold_qty)
        assert Decimal(r["open_qty"]) > 0


def test_json_keeps_decimals_as_strings_times_in_utc_and_the_events(
    run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    rec: RunRecords = run["rec"]
    assert main(["trades", "--db", run["db"], "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["run_id"] == rec.run.run_id and doc["n_trades"] == len(doc["trades"]) == 6
    counts = _by_position(rec)
    for row, t in zip(doc["trades"], rec.trades, strict=True):
        assert isinstance(row["realized_pnl_quote"], str)
        assert Decimal(row["realized_pnl_quote"]) == t.realized_pnl
        assert Decimal(row["net_pnl_quote"]) == t.net_pnl == t.realized_pnl - t.fees
        assert row["entry_time"].endswith("Z")
        assert datetime.fromisoformat(row["entry_time"]).timestamp() * 1000 == t.opened_ms
        assert row["r_multiple"] == t.r_multiple and row["mfe_quote"] == f"{t.mfe_quote:f}"
        assert len(row["events"]) == counts[t.position_id]
        for e in row["events"]:
            assert set(e) == {"seq", "time", "time_ms", "type", "price", "size_before", "size_after",
                              "trigger", "action"}  # fmt: skip
            assert isinstance(e["price"], str) and Decimal(e["price"]) > 0
        seqs = [e["seq"] for e in row["events"]]
        assert seqs == sorted(seqs)
    btc1 = doc["trades"][0]
    stop_exit = next(e for e in btc1["events"] if e["type"] == "stop_exit")
    assert stop_exit["size_after"] == "0" and "stop" in stop_exit["trigger"]


def test_table_is_the_default_and_symbol_filters(run: dict[str, Any]) -> None:
    code, stdout, err = _cli(["trades", "--db", run["db"]])
    assert code == 0, err
    assert f"trades of run {run['rec'].run.run_id} (6, 2 open)" in stdout
    assert "BTCUSDT-1" in stdout and "stop_exit" in stdout
    code, stdout, _ = _cli(["trades", "--db", run["db"], "--symbol", "ETH", "--format", "json"])
    ids = [t["trade_id"] for t in json.loads(stdout)["trades"]]
    assert ids == [t.position_id for t in run["rec"].trades if t.symbol == "ETH/USDT"] and len(ids) == 3


def test_plot_writes_a_price_png_per_asset_and_the_equity_png(run: dict[str, Any], tmp_path: Path) -> None:
    code, stdout, err = _cli(["plot", "--db", run["db"], "--data", str(SAMPLE), "--out", str(tmp_path)])
    assert code == 0, err
    folder = tmp_path / run["rec"].run.run_id
    names = ["price_BTCUSDT.png", "price_ETHUSDT.png", "price_SOLUSDT.png", "equity_drawdown.png"]
    assert stdout.split() == [str(folder / n) for n in names]
    for name in names:
        data = (folder / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 20_000, name
    assert "note:" not in stdout


def test_plot_without_candles_draws_fills_and_events_and_says_so(run: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "no-candles"
    empty.mkdir()
    code, stdout, err = _cli(["plot", "--db", run["db"], "--data", str(empty), "--out", str(tmp_path)])
    assert code == 0, err
    assert stdout.count("note: no ") == 3 and "fills and events only" in stdout
    png = tmp_path / run["rec"].run.run_id / "price_ETHUSDT.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 10_000


def test_buy_and_hold_of_the_stored_run_ends_at_the_summary_benchmark(run: dict[str, Any]) -> None:
    from tradebot.app.reports.plots import buy_and_hold_of_run

    rec: RunRecords = run["rec"]
    summary = rec.run.summary or {}
    curve = buy_and_hold_of_run(summary, rec.run.config, rec.equity)
    assert curve is not None
    assert curve[0] == (summary["buy_and_hold"]["entry_ms"], Decimal("10000"))
    assert len(curve) == len(rec.equity) + 1
    final = Decimal(summary["buy_and_hold"]["final_equity"])
    assert abs(curve[-1][1] - final) < Decimal("1e-18")


def test_stop_levels_are_read_from_the_stop_events(run: dict[str, Any]) -> None:
    from tradebot.app.reports.export import events_by_trade
    from tradebot.app.reports.plots import stop_levels

    rec: RunRecords = run["rec"]
    by_trade = events_by_trade(rec.trades, rec.events)
    for t in rec.trades:
        evs = by_trade[t.position_id]
        levels = stop_levels(evs)
        n_stop_events = sum(
            str(e.event_type) in ("stop_set", "breakeven", "trailing_stop_update") for e in evs
        )
        assert len(levels) == n_stop_events >= 1
        assert 0 < levels[0][1] < float(t.entry_avg_price)  # the initial stop is below the entry
    btc1 = stop_levels(by_trade[rec.trades[0].position_id])
    assert [p for _, p in btc1] == sorted(p for _, p in btc1)  # breakeven and trail only raise it


def test_unknown_run_is_exit_2_listing_the_latest(run: dict[str, Any]) -> None:
    for command in ("trades", "plot"):
        code, _, err = _cli([command, "--db", run["db"], "--run", "bt-nope"])
        assert code == 2
        assert "no run 'bt-nope'" in err and run["rec"].run.run_id in err


def test_missing_database_is_exit_2_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"
    for command in ("trades", "plot"):
        code, _, err = _cli([command, "--db", f"sqlite+aiosqlite:///{missing}"])
        assert code == 2 and str(missing) in err
    assert not missing.exists()


def test_unknown_format_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["trades", "--format", "xml"])
    assert exc.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_the_records_are_the_whole_stored_run(run: dict[str, Any]) -> None:
    async def stored() -> tuple[int, int, int]:
        async with SqlEventStore(run["db"]) as store:
            rid = run["rec"].run.run_id
            return (
                len(await store.trades(rid)),
                len(await store.position_events(rid)),
                len(await store.fills(rid)),
            )

    rec: RunRecords = run["rec"]
    assert asyncio.run(stored()) == (len(rec.trades), len(rec.events), len(rec.fills))
