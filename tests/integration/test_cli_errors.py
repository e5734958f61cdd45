"""The CLI on bad input: exit code 2 and one message naming the file:line or the field and its value.

Runs ``tradebot.cli.main`` in-process on small candle files written to ``tmp_path`` (48 hourly
candles per symbol, prices rising 1 % per hour). Also: a run that fails after it was recorded as
started is never left ``completed`` in the database.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from tradebot.adapters.store import SqlEventStore
from tradebot.adapters.store.migrate import upgrade
from tradebot.cli import main

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
START = {"BTC": 40_000.0, "ETH": 2_000.0, "SOL": 100.0}
FAST_STREAMS = '[[streams]]\ntimeframe = "1h"\nfast = 2\nslow = 3\natr_period = 2\n'


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Settings read TRADEBOT_* variables and a .env file in the working directory: neither may leak in.
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def write_data(folder: Path, *, prices: dict[str, float] | None = None, rows: int = 48) -> Path:
    """Write ``binance_<SYM>USDT_1h.csv`` for BTC, ETH and SOL into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for asset, p0 in (prices or START).items():
        lines = ["open_time_ms,open,high,low,close,volume"]
        for i in range(rows):
            p = p0 * (1 + 0.01 * i)
            lines.append(f"{T0 + i * HOUR},{p!r},{p * 1.01!r},{p * 0.99!r},{p!r},10")
        (folder / f"binance_{asset}USDT_1h.csv").write_text("\n".join(lines) + "\n", encoding="ascii")
    return folder


def edit_line(path: Path, line: int, text: str) -> None:
    """Replace line ``line`` (1-based, the header is line 1) of ``path``."""
    lines = path.read_text(encoding="ascii").splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def backtest_no_db(data: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["backtest", "--data", str(data), "--no-db", "--out", str(tmp_path / "out"), *extra]


# ---------------------------------------------------------------- bad data


def test_a_malformed_csv_row_names_file_line_field_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_data(tmp_path / "data")
    edit_line(data / "binance_ETHUSDT_1h.csv", 5, f"{T0 + 3 * HOUR},abc,1,1,1,1")

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path))

    assert code == 2
    assert err == "error: binance_ETHUSDT_1h.csv:5: open must be a number, was 'abc'\n"
    assert not (tmp_path / "out").exists()


def test_a_row_with_a_missing_column_names_the_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_data(tmp_path / "data")
    edit_line(data / "binance_BTCUSDT_1h.csv", 3, f"{T0 + HOUR},1,2,0.5,1")

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path))

    assert code == 2
    assert err == f"error: binance_BTCUSDT_1h.csv:3: volume is missing, was row '{T0 + HOUR},1,2,0.5,1'\n"


def test_an_out_of_order_row_names_file_line_and_both_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_data(tmp_path / "data")
    path = data / "binance_SOLUSDT_1h.csv"
    lines = path.read_text(encoding="ascii").splitlines()
    lines[10], lines[11] = lines[11], lines[10]  # file lines 11 and 12: open times 10h and 9h after T0
    path.write_text("\n".join(lines) + "\n", encoding="ascii")

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path))

    assert code == 2
    assert err == (
        f"error: binance_SOLUSDT_1h.csv:12: open_time_ms must be after the previous row's {T0 + 10 * HOUR}, "
        f"was '{T0 + 9 * HOUR}'\n"
    )


def test_an_unknown_symbol_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_data(tmp_path / "data")

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path, "--symbols", "DOGE"))

    assert code == 2
    assert err == f"error: no candle files for symbol 'DOGE/USDT' in {str(data)!r}\n"


def test_a_missing_timeframe_names_the_asset_and_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_data(tmp_path / "data")

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path, "--timeframe", "15m"))

    assert code == 2
    assert err == "error: no 15m candle file for BTC; files present: binance_BTCUSDT_1h.csv\n"


def test_a_window_without_candles_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_data(tmp_path / "data")

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path, "--start", "2030-01-01"))

    assert code == 2
    assert err.startswith("error: no 1h candles for BTC/USDT in the requested window in ")
    assert err.rstrip().endswith("binance_BTCUSDT_1h.csv")


def test_a_bad_date_is_refused_by_the_parser_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_data(tmp_path / "data")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(backtest_no_db(data, tmp_path, "--start", "2024-13-01"))
    assert exc.value.code == 2
    assert "expected a UTC date like 2024-01-31, was '2024-13-01'" in capsys.readouterr().err


def test_a_bad_timeframe_is_named_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_data(tmp_path / "data")

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path, "--timeframe", "2h"))

    assert code == 2
    assert "timeframe" in err
    assert "'2h'" in err


# ---------------------------------------------------------------- bad configuration


def test_a_config_value_out_of_range_names_file_field_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_data(tmp_path / "data")
    config = tmp_path / "bad.toml"
    config.write_text("[allocation]\ninvest_fraction = 1.5\n", encoding="utf-8")

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path, "--config", str(config)))

    assert code == 2
    assert err == (
        f"error: invalid configuration in {config}:\n"
        "  allocation.invest_fraction: Input should be less than or equal to 1, was 1.5\n"
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[allocation]\ninvest_fractoin = 0.5\n",
            "  allocation.invest_fractoin: Extra inputs are not permitted, was 0.5",
        ),
        ('simbols = ["BTC/USDT"]\n', "  simbols: Extra inputs are not permitted, was ['BTC/USDT']"),
    ],
)
def test_an_unknown_config_key_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, message: str
) -> None:
    data = write_data(tmp_path / "data")
    config = tmp_path / "typo.toml"
    config.write_text(toml, encoding="utf-8")

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path, "--config", str(config)))

    assert code == 2
    assert err == f"error: invalid configuration in {config}:\n{message}\n"


def test_an_unknown_risk_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_data(tmp_path / "data")
    config = tmp_path / "risk.toml"
    config.write_text("[risk]\nmax_positon_fraction = 0.2\n", encoding="utf-8")

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path, "--config", str(config)))

    assert code == 2
    assert err.startswith("error: risk: unknown key(s) ['max_positon_fraction']; allowed: [")


def test_a_missing_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_data(tmp_path / "data")
    missing = tmp_path / "nope.toml"

    code, err = run_cli(capsys, *backtest_no_db(data, tmp_path, "--config", str(missing)))

    assert code == 2
    assert err == f"error: config file {str(missing)!r} does not exist\n"


def test_an_out_path_that_is_a_file_is_named_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_data(tmp_path / "data")
    config = tmp_path / "fast.toml"
    config.write_text(FAST_STREAMS, encoding="utf-8")
    out = tmp_path / "out.txt"
    out.write_text("not a folder", encoding="utf-8")

    code, err = run_cli(
        capsys, "backtest", "--data", str(data), "--no-db", "--config", str(config), "--out", str(out)
    )

    assert code == 2
    assert str(out) in err


# ---------------------------------------------------------------- failures after the run started


async def _runs(url: str) -> list[tuple[str, str]]:
    async with SqlEventStore(url) as store:
        return [(r.run_id, r.status) for r in await store.list_runs()]


def _sqlite_with_failing_table(path: Path, table: str) -> str:
    """A migrated SQLite database whose ``table`` refuses every insert (a store that fails mid-run)."""
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(upgrade(url))
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'disk full (test trigger)'); END"
        )
    return url


@pytest.mark.parametrize("table", ["fills", "stream_signals", "equity_snapshots"])
def test_a_run_whose_store_fails_mid_run_is_recorded_failed_never_completed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str
) -> None:
    # The run is started (runs row written), the engine trades, then writing `table` fails.
    data = write_data(tmp_path / "data")
    config = tmp_path / "fast.toml"
    config.write_text(FAST_STREAMS, encoding="utf-8")
    url = _sqlite_with_failing_table(tmp_path / "events.db", table)
    out = tmp_path / "out"

    with pytest.raises(Exception, match="disk full \\(test trigger\\)"):
        main(["backtest", "--data", str(data), "--db", url, "--config", str(config), "--out", str(out)])

    runs = asyncio.run(_runs(url))
    assert len(runs) == 1
    assert runs[0][1] == "failed"
    assert not out.exists()  # no summary of a failed run


async def _denials(url: str, run_id: str) -> list[str]:
    async with SqlEventStore(url) as store:
        events = await store.position_events(run_id, symbol="SOL/USDT", event_types=["order_denied"])
        return [e.trigger_reason for e in events]


def test_an_extreme_price_does_not_crash_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # At 1e-25 USDT a SOL target of thousands of USDT is ~1e28 SOL: no order can carry it (LOT_SIZE
    # maxQty 90000 SOL is worth 9e-21 USDT, under the 5 USDT minimum), so the buy is denied and
    # recorded, and the run completes instead of crashing on an unstorable quantity.
    data = write_data(tmp_path / "data", prices={"BTC": 40_000.0, "ETH": 2_000.0, "SOL": 1e-25})
    config = tmp_path / "fast.toml"
    config.write_text(FAST_STREAMS, encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    try:
        code = main(
            [
                "backtest",
                "--data",
                str(data),
                "--db",
                url,
                "--config",
                str(config),
                "--out",
                str(tmp_path / "o"),
            ]
        )
    finally:
        # Whatever happens, a crashed run is not recorded as completed.
        runs = asyncio.run(_runs(url))
        assert [status for _, status in runs] in (["failed"], ["completed"])
    assert code == 0
    assert [status for _, status in runs] == ["completed"]
    denials = asyncio.run(_denials(url, runs[0][0]))
    assert denials
    assert all("max qty 90000" in reason for reason in denials)
