"""``tradebot download`` against the local exchange simulator (127.0.0.1), real ccxt, real files.

The simulator's clock is held still at 2023-03-24 20:00 UTC, so "now" is fixed and every expected
candle comes from its tape (the fixture files). The download asks ``--since 2023-03-24`` with the
default streams (slow 50 → 150 warm-up bars): 1m from 00:00 to 19:59 (the real 12:40–13:59 halt
is a gap), 1h/4h/1d from 150 bars before.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tradebot import cli
from tradebot.adapters.feeds.candle_files import parse_rows
from tradebot.adapters.feeds.replay import discover, load_candles
from tradebot.app.research.download import DownloadOptions, run_download
from tradebot.app.settings import Settings, load_settings
from tradebot.core.domain import Timeframe
from tradebot.exchange_sim import ExchangeSim, SimConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
NOW_MS = 1679688000000  # 2023-03-24 20:00 UTC
SINCE_MS = 1679616000000  # 2023-03-24 00:00 UTC
SINCE = "2023-03-24"
M1, H1, H4, D1 = Timeframe.M1, Timeframe.H1, Timeframe.H4, Timeframe.D1
WARMUP_BARS = 150
FAST = {
    "page_limit": 100,
    "rate_limit": 200,
    "retry_attempts": 2,
    "retry_initial_s": 0.01,
    "retry_jitter_s": 0.0,
}
TAPE = {"binance": "{}USDT", "deribit": "{}USDT"}

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ExchangeSim]:
    tape = tmp_path / "tape"
    tape.mkdir()
    for src in [*(FIXTURES / "ohlcv").glob("*.csv.gz"), *(FIXTURES / "warmup").glob("*.csv.gz")]:
        (tape / src.name).symlink_to(src)
    async with ExchangeSim(SimConfig(data_dir=tape, start_ms=NOW_MS, minute_wall_s=3600.0)) as s:
        yield s


def settings(**backfill: object) -> Settings:
    return load_settings(feeds={"backfill": {**FAST, **backfill}})


def rows_of(path: Path) -> list[tuple[int, str, str, str, str, str]]:
    return parse_rows(gzip.decompress(path.read_bytes()).decode("ascii"), name=path.name)


def exact(rows: list[tuple[int, str, str, str, str, str]]) -> list[tuple[object, ...]]:
    return [(r[0], *(Decimal(x) for x in r[1:])) for r in rows]


def tape_rows(sim: ExchangeSim, asset: str, tf: Timeframe, lo: int, hi: int) -> list[tuple[object, ...]]:
    bars = sim.market.tape.bars(f"{asset}USDT", tf.value, lo, hi)
    return [(b.open_time_ms, *(Decimal(x) for x in (b.open, b.high, b.low, b.close, b.volume))) for b in bars]


def window(tf: Timeframe) -> tuple[int, int]:
    lo = SINCE_MS - (0 if tf is M1 else WARMUP_BARS * tf.ms)
    return lo, NOW_MS - NOW_MS % tf.ms


async def test_binance_download_is_the_simulators_candles_exactly(sim: ExchangeSim, tmp_path: Path) -> None:
    out = tmp_path / "data"
    opts = DownloadOptions(since_ms=SINCE_MS, data_dir=out, rest_url=sim.binance_rest_url)
    result = await run_download(settings(), opts)
    names = {f.name for f in result.files}
    assert names == {
        f"binance_{a}USDT_{tf}.csv.gz" for a in ("BTC", "ETH", "SOL") for tf in ("1m", "1h", "4h", "1d")
    }
    for asset in ("BTC", "ETH", "SOL"):
        for tf in (M1, H1, H4, D1):
            path = out / f"binance_{asset}USDT_{tf}.csv.gz"
            lo, hi = window(tf)
            got = rows_of(path)
            assert exact(got) == tape_rows(sim, asset, tf, lo, hi), (asset, tf)
            assert got[0][0] == lo and got[-1][0] == hi - tf.ms  # every closed candle, none forming
    btc_1m = next(f for f in result.files if f.name == "binance_BTCUSDT_1m.csv.gz")
    assert (btc_1m.added, btc_1m.rows, btc_1m.gaps.count, btc_1m.gaps.largest) == (
        1120,
        1120,
        1,
        (1679661540000, 80),  # 80 bars missing after 2023-03-24 12:39: the real spot halt
    )
    # the backtester's loader reads what was written
    files = discover(out)
    assert len(load_candles(files[("BTC", H1)], "BTC/USDT", H1).candles) == 150 + 19
    # a rerun fetches nothing new and leaves every file as it was
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = await run_download(settings(), opts)
    assert [f.added for f in again.files] == [0] * 12
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


async def test_deribit_download_aggregates_4h_exactly_from_1h(sim: ExchangeSim, tmp_path: Path) -> None:
    out = tmp_path / "data"
    opts = DownloadOptions(
        venue="deribit", symbols=("BTC",), since_ms=SINCE_MS, data_dir=out, rest_url=sim.deribit_rest_url
    )
    await run_download(settings(), opts)
    assert sorted(p.name for p in out.iterdir()) == [
        f"deribit_BTCUSDC_{tf}.csv.gz" for tf in ("1d", "1h", "1m", "4h")
    ]
    for tf in (M1, H1, D1):
        lo, hi = window(tf)
        assert exact(rows_of(out / f"deribit_BTCUSDC_{tf}.csv.gz")) == tape_rows(sim, "BTC", tf, lo, hi)
    # Deribit has no 4h: built from its 1h (the tape's 1h starts 2023-03-01), Decimal-exact, equal to
    # Binance's native 4h except the halt's period (Binance's 4h open there differs from its 1h open)
    lo, hi = window(H4)
    got = exact(rows_of(out / "deribit_BTCUSDC_4h.csv.gz"))
    halt = 1679659200000
    native = [r for r in tape_rows(sim, "BTC", H4, 1677628800000, hi) if r[0] != halt]
    assert [r[:5] for r in got if r[0] != halt] == [r[:5] for r in native]
    hourly = tape_rows(sim, "BTC", H1, 1677628800000, hi)
    for row in got:
        assert row[5] == sum(
            (h[5] for h in hourly if row[0] <= h[0] < row[0] + H4.ms), Decimal(0)
        )  # exact Decimal volume sums
    assert discover(out, exchange="deribit", quote="USDC").keys() >= {("BTC", M1), ("BTC", H4)}


async def run_cli(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tradebot",
        "download",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def wait_for_rows(path: Path, rows: int, proc: asyncio.subprocess.Process) -> None:
    while lines_in(path) < rows:
        assert proc.returncode is None, "finished before it could be killed"
        await asyncio.sleep(0.01)


async def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_files(
    sim: ExchangeSim, tmp_path: Path
) -> None:
    ref, out = tmp_path / "ref", tmp_path / "out"
    await run_download(
        settings(),
        DownloadOptions(
            symbols=("BTC", "ETH"), since_ms=SINCE_MS, data_dir=ref, rest_url=sim.binance_rest_url
        ),
    )
    env = {
        "TRADEBOT_FEEDS__BINANCE__REST_URL": sim.binance_rest_url,  # the daemon's setting, reused
        "TRADEBOT_FEEDS__BACKFILL__PAGE_LIMIT": "100",
        "TRADEBOT_FEEDS__BACKFILL__RATE_LIMIT": "100",
    }
    args = ("--symbols", "BTC,ETH", "--since", SINCE, "--data", str(out))
    # SIGKILL in the middle of ETH's 1m pages: BTC's four files are complete, ETH's 1m is a log
    proc = await run_cli(*args, env=env)
    await wait_for_rows(out / "binance_ETHUSDT_1m.csv.gz.part", 500, proc)
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    assert (out / "binance_BTCUSDT_1d.csv.gz").exists() and not (out / "binance_ETHUSDT_1m.csv.gz").exists()
    served = len(sim.binance_rest.requests)
    proc = await run_cli(*args, env=env)
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert "binance_ETHUSDT_1m.csv.gz" in stdout.decode() and "candles/s" in stdout.decode()
    # the rerun continued: nothing for BTC again, ETH's 1m from after the last logged candle
    klines = [parse_qs(urlsplit(q).query) for q in sim.binance_rest.requests[served:] if "/klines" in q]
    assert klines and all(k["symbol"] == ["ETHUSDT"] for k in klines)
    eth_1m = [int(k["startTime"][0]) for k in klines if k["interval"] == ["1m"]]
    assert min(eth_1m) >= SINCE_MS + 500 * M1.ms
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())  # no .part, no temp
    for path in ref.iterdir():
        got = rows_of(out / path.name)
        opens = [r[0] for r in got]
        assert opens == sorted(set(opens)), path.name  # no duplicate, ascending
        assert got == rows_of(path), path.name  # no hole: the uninterrupted run's content exactly


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--symbols", "BTC,DOGE"),
            "error: --symbols: binance does not list 'DOGE/USDT'; it offers BTC/USDT, ETH/USDT, SOL/USDT",
        ),
        (("--timeframe", "7m"), "error: --timeframe: binance does not offer '7m'; it offers 1s, 1m, 3m, 5m"),
        (("--timeframe", "2h"), "error: --timeframe: binance offers, but the backtester cannot read, '2h'"),
        (("--exchange", "deribit", "--timeframe", "4h"), "error: --timeframe: deribit does not offer '4h'"),
    ],
)
async def test_a_bad_symbol_or_timeframe_exits_2_naming_it(
    sim: ExchangeSim,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.setenv("TRADEBOT_FEEDS__BINANCE__REST_URL", sim.binance_rest_url)
    monkeypatch.setenv("TRADEBOT_FEEDS__DERIBIT__REST_URL", sim.deribit_rest_url)
    argv = ["download", "--since", SINCE, "--data", str(tmp_path / "out"), *args]
    code = await asyncio.to_thread(cli.main, argv)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


async def test_an_unreachable_venue_exits_2_naming_the_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("TRADEBOT_FEEDS__BACKFILL__RETRY_ATTEMPTS", "1")
    code = await asyncio.to_thread(
        cli.main, ["download", "--since", SINCE, "--rest-url", url, "--data", str(tmp_path)]
    )
    assert code == 2
    assert f"error: cannot reach binance at 127.0.0.1 ({url})" in capsys.readouterr().err
