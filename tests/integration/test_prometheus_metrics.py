"""Prometheus metrics: ``/metrics`` scraped while the demo trades (equity, feed lag, a latency histogram
that counted the orders), the Grafana dashboard asks only for series the daemon exports, and the
listener binds any free port for 0 and refuses a port in use."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tradebot.app.daemon.metrics import MetricsObserver
from tradebot.app.demo.demo import DemoOptions, run_demo
from tradebot.app.settings import load_settings
from tradebot.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "tradebot.json"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _ready(text: str) -> bool:
    # a scrape worth asserting on: equity (every symbol marked), feed lag, at least one order timed
    s = _samples(text)
    return (
        s.get(("tradebot_equity_quote", ()), 0) > 0
        and all(
            ("tradebot_feed_lag_seconds", (("symbol", sym), ("venue", "binance"))) in s for sym in SYMBOLS
        )
        and s.get(("tradebot_order_latency_seconds_count", ()), 0) > 0
    )


@dataclass
class DemoScrape:
    port: int
    scrape: str  # the first /metrics body with equity, feed lag and a timed order
    scrapes: int
    observer: MetricsObserver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo_scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoScrape]:
    """Half a simulated day of the demo with metrics on; /metrics scraped every 0.2 s meanwhile."""
    tmp = tmp_path_factory.mktemp("metrics")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
            mp.delenv(key)
        mp.setenv("XDG_DATA_HOME", str(tmp / "xdg"))
        mp.chdir(tmp)
        port = _free_port()  # run_demo builds the daemon and its observers: the port must be known
        mp.setenv("TRADEBOT_METRICS__PORT", str(port))
        settings = load_settings()
        found: list[str] = []
        count = [0]

        async def scrape_until_ready() -> None:
            async with aiohttp.ClientSession() as http:
                while not found:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                            assert resp.status == 200
                            assert resp.headers["Content-Type"].startswith("text/plain")
                            text = await resp.text()
                            count[0] += 1
                            if _ready(text):
                                found.append(text)
                    except aiohttp.ClientConnectionError:
                        pass  # not serving yet
                    await asyncio.sleep(0.2)

        async def main() -> MetricsObserver:
            scraper = asyncio.create_task(scrape_until_ready())
            try:
                options = DemoOptions(
                    data_dir=SAMPLE,
                    days=0.5,
                    db_url=f"sqlite+aiosqlite:///{tmp / 'demo.db'}",
                    minute_wall_s=1e-4,
                )
                result = await run_demo(settings, options)
            finally:
                scraper.cancel()
            [observer] = [o for o in result.daemon.observers if isinstance(o, MetricsObserver)]
            return observer

        observer = asyncio.run(main())
    assert found, f"no scrape of {count[0]} had equity, feed lag and a timed order"
    yield DemoScrape(port=port, scrape=found[0], scrapes=count[0], observer=observer)


@pytest.mark.timeout(120)
def test_metrics_scraped_during_a_demo_show_equity_feed_lag_and_order_latency(
    demo_scrape: DemoScrape,
) -> None:
    s = _samples(demo_scrape.scrape)
    assert demo_scrape.observer.port == demo_scrape.port
    equity = _value(s, "tradebot_equity_quote")
    cash = _value(s, "tradebot_cash_quote")
    exposure = {a: _value(s, "tradebot_exposure_quote", asset=a) for a in ("BTC", "ETH", "SOL")}
    # equity is cash plus the exposures (each rounded to cents in the status fields)
    assert equity == pytest.approx(cash + sum(exposure.values()), abs=0.05)
    assert 5_000 < equity < 20_000  # the demo starts with 10,000 USDT
    lags = [_value(s, "tradebot_feed_lag_seconds", venue="binance", symbol=sym) for sym in SYMBOLS]
    assert all(0 <= lag < 600 for lag in lags)  # in the simulator's time: the last candle a minute ago or so
    assert _value(s, "tradebot_order_latency_seconds_count") > 0
    assert _value(s, "tradebot_order_latency_seconds_bucket", le="+Inf") == _value(
        s, "tradebot_order_latency_seconds_count"
    )
    sent = sum(v for (name, _), v in s.items() if name == "tradebot_orders_sent_total")
    assert sent == _value(s, "tradebot_order_latency_seconds_count")  # every order after the first candle
    assert _value(s, "tradebot_orders_total", status="accepted") >= 1
    assert _value(s, "tradebot_reconciliation_mismatches_total") == 0
    assert _value(s, "tradebot_feed_reconnects_total", venue="binance") == 0
    assert _value(s, "tradebot_position_events_total", type="feed_recovered") >= 1
    assert _value(s, "tradebot_trading_state", state="active") == 1
    assert _value(s, "tradebot_event_loop_lag_seconds") >= 0
    assert _value(s, "tradebot_candles_total") > 0
    held = [a for a, v in exposure.items() if v > 0]
    assert held and all(_value(s, "tradebot_position_base", asset=a) > 0 for a in held)
    # the server stopped with the daemon
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", demo_scrape.port), timeout=1):
        pass


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _exported_names(observer: MetricsObserver) -> set[str]:
    # every series name the registry can produce: its samples now, plus each family's name with the
    # suffixes of its type (a labelled counter that never counted has a family but no sample yet)
    names: set[str] = set()
    for family in observer.registry.collect():
        names |= {s.name for s in family.samples}
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
    return names


def _dashboard_expressions(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query") and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_expressions(item)


def test_the_grafana_dashboard_uses_only_exported_metrics(demo_scrape: DemoScrape) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(_dashboard_expressions(dashboard))
    used = {m for e in exprs for m in re.findall(r"\btradebot_[a-z0-9_]+", e)}
    exported = _exported_names(demo_scrape.observer)
    assert len(exprs) >= 15 and len(used) >= 15
    assert sorted(used - exported) == []
    # and the headline series of the issue are on it
    for name in (
        "tradebot_equity_quote",
        "tradebot_feed_lag_seconds",
        "tradebot_order_latency_seconds_bucket",
        "tradebot_orders_total",
        "tradebot_fills_total",
        "tradebot_position_events_total",
        "tradebot_feed_reconnects_total",
        "tradebot_reconciliation_mismatches_total",
        "tradebot_event_loop_lag_seconds",
    ):
        assert name in used
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {"prometheus"}
    provisioned = (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "uid: prometheus" in provisioned


async def test_port_zero_binds_a_free_port_and_a_port_in_use_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(metrics={"port": 0})
    observer = MetricsObserver(settings)
    assert observer.port > 0
    serving = asyncio.create_task(observer.serve())
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                try:
                    async with http.get(f"http://127.0.0.1:{observer.port}/metrics") as resp:
                        text = await resp.text()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        # before the daemon starts: the counters, no state series
        assert "tradebot_reconciliation_mismatches_total 0.0" in text
        assert "tradebot_equity_quote" not in text
        with pytest.raises(ConfigError, match=rf"TRADEBOT_METRICS__PORT.*127\.0\.0\.1:{observer.port}"):
            MetricsObserver(load_settings(metrics={"port": observer.port}))
    finally:
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving


@pytest.mark.parametrize("command", ["run", "demo"])
def test_the_metrics_port_flag_reaches_run_and_demo(tmp_path: Path, command: str) -> None:
    # a port held here: the flag is honoured when the start is refused, before anything trades
    tradebot = str(Path(sys.executable).parent / "tradebot")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg"), "TRADEBOT_METRICS__PORT": "1"}  # the flag wins
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        extra = ["--days", "0.1", "--out", str(tmp_path / "out")] if command == "demo" else []
        done = subprocess.run(
            [tradebot, command, "--metrics-port", str(port), *extra],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert f"--metrics-port: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
