"""``tradebot backtest`` on the shipped sample, end to end in-process, then ``events`` and ``runs``.

The numbers are the golden ones of ``tests/golden/test_backtest_golden.py`` (same data, default
settings): final equity 10391.17359401 USDT, 152 orders, 21 closed trades, 21 entries.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest

from tradebot.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
GOLDEN_FINAL_EQUITY = "10391.17359401"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def backtest_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One CLI backtest of the sample into a SQLite file: exit code, stdout/stderr, db URL, out dir.

    Module-scoped (the run takes a few seconds), so output is captured with redirect_* (capsys is per test).
    """
    root = tmp_path_factory.mktemp("cli_backtest")
    db_url = f"sqlite+aiosqlite:///{root / 'events.db'}"
    out = root / "out"
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
            mp.delenv(key)
        mp.chdir(root)  # no .env from the caller's working directory
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["backtest", "--data", str(SAMPLE), "--db", db_url, "--out", str(out)])
    return {
        "code": code,
        "stdout": stdout.getvalue(),
        "stderr": stderr.getvalue(),
        "db_url": db_url,
        "out": out,
    }


def _run_id(out: Path) -> str:
    [folder] = [p for p in out.iterdir() if p.is_dir()]
    return folder.name


def test_backtest_exits_0_and_prints_the_summary_table(backtest_run: dict[str, object]) -> None:
    assert backtest_run["code"] == 0, backtest_run["stderr"]
    stdout = str(backtest_run["stdout"])
    assert re.search(r"Initial equity \(USDT\)\s+│\s+10,000\.00\s+│", stdout), stdout
    assert re.search(r"Final equity \(USDT\)\s+│\s+10,391\.17\s+│", stdout), stdout
    assert re.search(r"Orders\s+│\s+152\s+│", stdout), stdout
    assert re.search(r"Trades \(closed\)\s+│\s+21\s+│", stdout), stdout
    assert re.search(r"│ entry\s+│\s+21 │", stdout), stdout
    assert "198,261 candles in" in stdout


def test_backtest_writes_summary_json_and_the_equity_chart(backtest_run: dict[str, object]) -> None:
    out = Path(str(backtest_run["out"]))
    run_id = _run_id(out)
    assert re.fullmatch(r"bt-[0-9a-f]{12}", run_id)
    summary = json.loads((out / run_id / "summary.json").read_text(encoding="utf-8"))
    assert summary["run"]["run_id"] == run_id
    assert Decimal(summary["initial_equity"]) == Decimal("10000")
    assert summary["final_equity"] == GOLDEN_FINAL_EQUITY
    assert summary["overall"]["n_orders"] == 152
    assert summary["overall"]["n_trades"] == 21
    assert (out / run_id / "equity.png").read_bytes()[:8] == PNG_SIGNATURE
    assert str(out / run_id / "summary.json") in str(backtest_run["stdout"]).replace("\n", "")


def test_summary_json_reports_the_initial_cash_exactly(backtest_run: dict[str, object]) -> None:
    out = Path(str(backtest_run["out"]))
    summary = json.loads((out / _run_id(out) / "summary.json").read_text(encoding="utf-8"))
    assert summary["initial_equity"] == "10000"


def test_events_lists_the_entries_of_the_latest_run(
    backtest_run: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _run_id(Path(str(backtest_run["out"])))
    capsys.readouterr()
    assert main(["events", "--db", str(backtest_run["db_url"]), "--type", "entry"]) == 0
    stdout = capsys.readouterr().out
    assert f"position events of run {run_id} (21 shown)" in stdout
    rows = [line for line in stdout.splitlines() if re.match(r"│ 20\d\d-\d\d-\d\d \d\d:\d\d", line)]
    assert len(rows) == 21
    assert all(" entry " in row for row in rows)
    # The first entries: one per asset at the first rebalance (2023-03-16 23:00 UTC).
    assert rows[0].startswith("│ 2023-03-16 23:00 │ BTC/USDT │ entry ")


def test_events_filters_by_symbol_and_limit(
    backtest_run: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code = main(
        [
            "events",
            "--db",
            str(backtest_run["db_url"]),
            "--type",
            "entry,exit",
            "--symbol",
            "SOL",
            "--limit",
            "5",
        ]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    rows = [line for line in stdout.splitlines() if re.match(r"│ 20\d\d-\d\d-\d\d \d\d:\d\d", line)]
    assert len(rows) == 5
    assert all("│ SOL/USDT │" in row for row in rows)
    assert [("entry" if " entry " in r else "exit") for r in rows] == [
        "entry",
        "exit",
        "entry",
        "exit",
        "entry",
    ]


def test_runs_lists_the_run_as_completed_with_its_final_equity(
    backtest_run: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _run_id(Path(str(backtest_run["out"])))
    capsys.readouterr()
    assert main(["runs", "--db", str(backtest_run["db_url"])]) == 0
    stdout = capsys.readouterr().out
    [row] = [line for line in stdout.splitlines() if run_id in line]
    # created (wall clock), the candle window, the final equity to the cent and the total return
    equity = f"{float(GOLDEN_FINAL_EQUITY):,.2f}"
    ret = f"{(float(GOLDEN_FINAL_EQUITY) / 10_000 - 1) * 100:+.2f} %"
    assert re.search(
        rf"│ {run_id} │ backtest │ completed │ 20\d\d-\d\d-\d\d \d\d:\d\d │ 2023-03-16 22:15 → "
        rf"2023-05-01 \d\d:\d\d │ {re.escape(equity)} +│ {re.escape(ret)} +│",
        row,
    ), row


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--type", "entry,bogus"), "--type: unknown event type(s) ['bogus']; known: breakeven,"),
        (("--run", "nope"), "--run: no run 'nope' in the database; latest runs: bt-"),
    ],
)
def test_events_refuses_an_unknown_type_or_run_with_exit_2(
    backtest_run: dict[str, object], capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], named: str
) -> None:
    capsys.readouterr()
    assert main(["events", "--db", str(backtest_run["db_url"]), *flags]) == 2
    captured = capsys.readouterr()
    assert named in captured.err
    assert "Traceback" not in captured.err and "position events" not in captured.out


def test_exit_rows_carry_the_trades_profit_and_texts_are_not_cut(
    backtest_run: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: exit rows had no profit % (the position was flat when the row was built) and the
    # trigger/action texts were cut at 60/50 characters, mid-word.
    import asyncio

    from tradebot.adapters.store import SqlEventStore

    db_url, run_id = str(backtest_run["db_url"]), _run_id(Path(str(backtest_run["out"])))

    async def load() -> tuple[list, list]:
        async with SqlEventStore(db_url) as store:
            return await store.position_events(run_id, event_types=("exit",)), await store.trades(run_id)

    exits, trades = asyncio.run(load())
    assert len(exits) == 21
    by_close = {(t.symbol, t.closed_ms): t for t in trades if t.closed_ms is not None}
    for e in exits:
        trade = by_close[(e.symbol, e.event_time_ms)]
        assert e.profit_pct == pytest.approx(float((e.price / trade.entry_avg_price - 1) * 100))
        assert e.r_multiple == trade.r_multiple
    capsys.readouterr()
    assert main(["events", "--db", db_url, "--type", "exit", "--limit", "500"]) == 0
    out = capsys.readouterr().out
    for e in exits:
        assert f"{e.profit_pct:+.2f}" in out
    # the longest trigger text of the run, whole in the table (rich wraps it at word boundaries)
    longest = asyncio.run(_longest_trigger(db_url, run_id))
    assert len(longest.trigger_reason) > 60, longest.trigger_reason
    assert main(["events", "--db", db_url, "--type", str(longest.event_type), "--limit", "500"]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    for word in longest.trigger_reason.split():
        assert word in out, (word, longest.trigger_reason)


async def _longest_trigger(db_url: str, run_id: str):
    from tradebot.adapters.store import SqlEventStore

    async with SqlEventStore(db_url) as store:
        events = await store.position_events(run_id)
    return max(events, key=lambda e: len(e.trigger_reason))
