"""Safety interlock of ``tradebot run``: live mode without the exact confirmation, with testnet keys, or
with hosts of another mode refuses to start, naming what to set — and sends nothing anywhere.

The end-to-end cases run ``python -m tradebot run`` as a subprocess pointed at the local exchange
simulator through a counting TCP proxy: the proxy must see zero connections.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tradebot.app.daemon.interlock import check_interlock, classify_host, resolve_endpoints
from tradebot.app.settings import LIVE_CONFIRMATION_PHRASE, Settings
from tradebot.errors import ConfigError
from tradebot.exchange_sim import ExchangeSim, SimConfig

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "binance" / "ohlcv"
START_MS = 1679529600000 + 60 * 60_000
LIVE_KEYS = {"live_api_key": "live-key-1234", "live_api_secret": "live-secret-5678"}
TESTNET_KEYS = {"testnet_api_key": "tn-key-1234", "testnet_api_secret": "tn-secret-5678"}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("TRADEBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def refusal(s: Settings) -> str:
    with pytest.raises(ConfigError) as info:
        check_interlock(s)
    return str(info.value)


# -- pure checks ------------------------------------------------------------------------------------


def test_paper_needs_no_keys_and_defaults_to_public_production_market_data() -> None:
    ep = check_interlock(settings(mode="paper"))
    assert ep.feed_ws.url == "wss://stream.binance.com:9443"
    assert ep.feed_rest.url == "https://api.binance.com"
    assert (ep.feed_ws.network, ep.feed_rest.network) == ("mainnet", "mainnet")


def test_modes_default_to_their_own_hosts() -> None:
    tn = check_interlock(settings(mode="testnet", **TESTNET_KEYS))
    assert [e.host for e in tn.all()] == [
        "stream.testnet.binance.vision",
        "testnet.binance.vision",
        "testnet.binance.vision",
        "ws-api.testnet.binance.vision",  # the private stream: the WebSocket API
    ]
    live = check_interlock(settings(mode="live", live_confirmation=LIVE_CONFIRMATION_PHRASE, **LIVE_KEYS))
    assert {e.network for e in live.all()} == {"mainnet"}
    der = resolve_endpoints(settings(mode="testnet", venue="deribit", **TESTNET_KEYS))
    assert der.feed_ws.url == "wss://test.deribit.com/ws/api/v2"


def test_the_private_stream_defaults_to_the_modes_websocket_api_and_never_crosses_modes() -> None:
    live = check_interlock(settings(mode="live", live_confirmation=LIVE_CONFIRMATION_PHRASE, **LIVE_KEYS))
    assert (live.exchange_ws.url, live.exchange_ws.network) == (
        "wss://ws-api.binance.com:443/ws-api/v3",
        "mainnet",
    )
    der = check_interlock(settings(mode="testnet", venue="deribit", **TESTNET_KEYS))
    assert der.exchange_ws.url == "wss://test.deribit.com/ws/api/v2"
    testnet_api = {"exchange": {"binance": {"ws_url": "wss://ws-api.testnet.binance.vision/ws-api/v3"}}}
    msg = refusal(
        settings(mode="live", live_confirmation=LIVE_CONFIRMATION_PHRASE, **LIVE_KEYS, **testnet_api)
    )
    assert (
        "TRADEBOT_EXCHANGE__BINANCE__WS_URL=wss://ws-api.testnet.binance.vision/ws-api/v3 has host "
        "'ws-api.testnet.binance.vision' (testnet), which live mode does not accept" in msg
    )
    assert "unset TRADEBOT_EXCHANGE__BINANCE__WS_URL to use wss://ws-api.binance.com:443/ws-api/v3" in msg
    live_api = {"exchange": {"binance": {"ws_url": "wss://ws-api.binance.com:443/ws-api/v3"}}}
    assert "(mainnet), which testnet mode does not accept" in refusal(settings(mode="testnet", **TESTNET_KEYS,
                                                                               **live_api))  # fmt: skip


def test_live_without_confirmation_refuses_and_says_what_to_set() -> None:
    msg = refusal(settings(mode="live", **LIVE_KEYS))
    assert f"set TRADEBOT_LIVE_CONFIRMATION={LIVE_CONFIRMATION_PHRASE} (exactly), was unset" in msg


def test_live_with_an_almost_right_confirmation_refuses() -> None:
    msg = refusal(settings(mode="live", live_confirmation=LIVE_CONFIRMATION_PHRASE.lower(), **LIVE_KEYS))
    assert "was a different value" in msg


def test_live_with_testnet_keys_refuses() -> None:
    msg = refusal(settings(mode="live", live_confirmation=LIVE_CONFIRMATION_PHRASE, **TESTNET_KEYS))
    assert "live mode needs TRADEBOT_LIVE_API_KEY and TRADEBOT_LIVE_API_SECRET" in msg
    assert "TRADEBOT_TESTNET_API_KEY and TRADEBOT_TESTNET_API_SECRET are set" in msg
    both = refusal(
        settings(mode="live", live_confirmation=LIVE_CONFIRMATION_PHRASE, **LIVE_KEYS, **TESTNET_KEYS)
    )
    assert "testnet keys can never be used live" in both
    assert "tn-key-1234" not in both and "live-key-1234" not in both


def test_testnet_with_live_keys_refuses() -> None:
    msg = refusal(settings(mode="testnet", **TESTNET_KEYS, **LIVE_KEYS))
    assert "live keys never go to a testnet" in msg
    assert "testnet mode needs TRADEBOT_TESTNET_API_KEY" in refusal(settings(mode="testnet"))


@pytest.mark.parametrize(
    ("mode", "variable", "url", "network"),
    [
        ("live", "ws_url", "ws://127.0.0.1:9443", "loopback"),
        ("live", "rest_url", "https://testnet.binance.vision", "testnet"),
        ("testnet", "ws_url", "wss://stream.binance.com:9443", "mainnet"),
        ("testnet", "rest_url", "https://api.binance.com", "mainnet"),
        ("paper", "ws_url", "wss://stream.example.org", "unknown"),
    ],
)
def test_feed_hosts_of_another_mode_refuse(mode: str, variable: str, url: str, network: str) -> None:
    keys = {
        "live": {**LIVE_KEYS, "live_confirmation": LIVE_CONFIRMATION_PHRASE},
        "testnet": TESTNET_KEYS,
        "paper": {},
    }[mode]
    s = settings(mode=mode, feeds={"binance": {variable: url}}, **keys)
    msg = refusal(s)
    name = f"TRADEBOT_FEEDS__BINANCE__{variable.upper()}"
    assert f"{name}={url} has host" in msg
    assert f"({network}), which {mode} mode does not accept" in msg
    assert f"unset {name} to use" in msg


def test_live_execution_endpoint_on_testnet_refuses() -> None:
    s = settings(
        mode="live",
        live_confirmation=LIVE_CONFIRMATION_PHRASE,
        exchange={"binance": {"rest_url": "https://testnet.binance.vision"}},
        **LIVE_KEYS,
    )
    assert "TRADEBOT_EXCHANGE__BINANCE__REST_URL=https://testnet.binance.vision" in refusal(s)


def test_testnet_accepts_the_local_simulator_and_classifies_hosts() -> None:
    s = settings(
        mode="testnet",
        feeds={"binance": {"ws_url": "ws://127.0.0.1:1", "rest_url": "http://localhost:2"}},
        exchange={"binance": {"rest_url": "http://127.0.0.1:2", "ws_url": "ws://127.0.0.1:1"}},
        **TESTNET_KEYS,
    )
    assert {e.network for e in check_interlock(s).all()} == {"loopback"}
    assert classify_host("deribit", "test.deribit.com") == "testnet"
    assert classify_host("binance", "test.deribit.com") == "unknown"


def test_malformed_url_is_refused_with_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"TRADEBOT_FEEDS__BINANCE__WS_URL must be a URL .*, was 'nohost'"):
        check_interlock(settings(mode="paper", feeds={"binance": {"ws_url": "nohost"}}))


# -- end to end: the refused daemon sends nothing ------------------------------------------------------


class CountingProxy:
    """A TCP proxy in front of one simulator port that counts the connections it accepts."""

    def __init__(self, sim: ExchangeSim, *, http: bool = False) -> None:
        self._sim, self._http = sim, http
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        port = self._sim.http_port if self._http else self._sim.ws_port
        up_r, up_w = await asyncio.open_connection("127.0.0.1", port)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
            w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)


@pytest.fixture
async def proxied_sim() -> AsyncIterator[tuple[ExchangeSim, CountingProxy, CountingProxy]]:
    sim = ExchangeSim(SimConfig(data_dir=DATA, start_ms=START_MS, minute_wall_s=0.05))
    async with sim, CountingProxy(sim) as ws, CountingProxy(sim, http=True) as http:
        yield sim, ws, http


async def run_cli(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tradebot",
        "run",
        env={**base, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, (out + err).decode()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("case", "extra", "expected"),
    [
        (
            "no_confirmation",
            {
                "TRADEBOT_LIVE_API_KEY": "canary-live-key-0001",
                "TRADEBOT_LIVE_API_SECRET": "canary-live-secret-0002",
            },
            "set TRADEBOT_LIVE_CONFIRMATION=",
        ),
        (
            "testnet_keys",
            {
                "TRADEBOT_LIVE_CONFIRMATION": LIVE_CONFIRMATION_PHRASE,
                "TRADEBOT_TESTNET_API_KEY": "canary-tn-key-0003",
                "TRADEBOT_TESTNET_API_SECRET": "canary-tn-secret-0004",
            },
            "live mode needs TRADEBOT_LIVE_API_KEY",
        ),
        (
            "simulator_hosts",
            {
                "TRADEBOT_LIVE_CONFIRMATION": LIVE_CONFIRMATION_PHRASE,
                "TRADEBOT_LIVE_API_KEY": "canary-live-key-0001",
                "TRADEBOT_LIVE_API_SECRET": "canary-live-secret-0002",
            },
            "(loopback), which live mode does not accept",
        ),
    ],
)
async def test_refused_live_start_sends_zero_requests_to_the_simulator(
    proxied_sim: tuple[ExchangeSim, CountingProxy, CountingProxy],
    tmp_path: Path,
    case: str,
    extra: dict[str, str],
    expected: str,
) -> None:
    sim, ws, http = proxied_sim
    env = {
        "TRADEBOT_MODE": "live",
        "TRADEBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "TRADEBOT_FEEDS__BINANCE__WS_URL": f"ws://127.0.0.1:{ws.port}",
        "TRADEBOT_FEEDS__BINANCE__REST_URL": f"http://127.0.0.1:{http.port}",
        "TRADEBOT_EXCHANGE__BINANCE__REST_URL": f"http://127.0.0.1:{http.port}",
        "TRADEBOT_EXCHANGE__BINANCE__WS_URL": f"ws://127.0.0.1:{ws.port}",
        **extra,
    }
    code, output = await run_cli(env, tmp_path)
    assert code == 2, output
    assert "refusing to start in live mode" in output
    assert expected in output
    assert (ws.connections, http.connections) == (0, 0)
    assert sim.binance_rest.requests == []
    assert not (tmp_path / "bot.db").exists()  # not even the database was touched
    for value in extra.values():
        if value.startswith("canary"):
            assert value not in output


async def test_the_counting_proxy_counts_what_reaches_the_simulator(
    proxied_sim: tuple[ExchangeSim, CountingProxy, CountingProxy],
) -> None:
    sim, _ws, http = proxied_sim
    reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
    writer.write(b"GET /api/v3/time HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    assert b"serverTime" in answer
    assert http.connections == 1
    assert sim.binance_rest.requests == ["/api/v3/time"]


@pytest.mark.parametrize(
    ("section", "variable", "url"),
    [
        ("feeds", "TRADEBOT_FEEDS__BINANCE__WS_URL", "ws://stream.binance.com:9443"),
        ("feeds", "TRADEBOT_FEEDS__BINANCE__REST_URL", "http://api.binance.com"),
        ("exchange", "TRADEBOT_EXCHANGE__BINANCE__REST_URL", "http://api.binance.com"),
        ("exchange", "TRADEBOT_EXCHANGE__BINANCE__WS_URL", "ws://ws-api.binance.com:443"),
    ],
)
def test_live_refuses_plaintext_endpoints(section: str, variable: str, url: str) -> None:
    # Before: a mainnet host over http:// or ws:// passed the interlock in live mode.
    kind = "ws_url" if variable.endswith("WS_URL") else "rest_url"
    values: dict[str, object] = {section: {"binance": {kind: url}}}
    msg = refusal(settings(mode="live", live_confirmation=LIVE_CONFIRMATION_PHRASE, **LIVE_KEYS, **values))
    secure = "wss" if kind == "ws_url" else "https"
    assert (
        f"{variable}={url} is plaintext {url.split(':')[0]}://, which live mode does not accept: use {secure}://"
        in msg
    )
    # the default endpoints are all TLS: the same settings without the override start
    check_interlock(settings(mode="live", live_confirmation=LIVE_CONFIRMATION_PHRASE, **LIVE_KEYS))
