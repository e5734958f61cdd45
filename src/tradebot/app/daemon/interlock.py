"""The safety interlock of ``tradebot run``: which hosts and keys a mode may use.

Refuses to start (``ConfigError`` with what to set) unless:

* ``TRADEBOT_MODE=live`` comes with ``TRADEBOT_LIVE_CONFIRMATION`` set to exactly
  :data:`~tradebot.app.settings.LIVE_CONFIRMATION_PHRASE`, live keys under their own names
  (``TRADEBOT_LIVE_API_KEY`` / ``TRADEBOT_LIVE_API_SECRET``) and no testnet key in the environment;
* ``TRADEBOT_MODE=testnet`` comes with ``TRADEBOT_TESTNET_API_KEY`` / ``_SECRET`` and no live key;
* every resolved REST and websocket host belongs to the mode: live → the venue's production hosts
  only; testnet → the venue's testnet hosts or a loopback simulator; paper → any known host of the
  venue or a loopback simulator (paper sends no order anywhere; its market data is public).

Unset URLs resolve to the mode's defaults (paper and live: production; testnet: testnet), so switching
the mode alone never points a live bot at a testnet or the reverse. :func:`check_interlock` is pure
(no I/O): it runs before any connection is opened, so a refused start sends no request anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from tradebot.app.settings import LIVE_CONFIRMATION_PHRASE, Settings
from tradebot.errors import ConfigError

MAINNET, TESTNET, LOOPBACK, UNKNOWN = "mainnet", "testnet", "loopback", "unknown"

#: Default URLs per (venue, network): market data ``ws``, ``rest`` (both), the private stream ``ws_private``
#: (Binance: the WebSocket API of the user-data subscription; Deribit: its one JSON-RPC endpoint).
DEFAULT_URLS: dict[tuple[str, str], dict[str, str]] = {
    ("binance", MAINNET): {
        "ws": "wss://stream.binance.com:9443",
        "rest": "https://api.binance.com",
        "ws_private": "wss://ws-api.binance.com:443/ws-api/v3",
    },
    ("binance", TESTNET): {
        "ws": "wss://stream.testnet.binance.vision",
        "rest": "https://testnet.binance.vision",
        "ws_private": "wss://ws-api.testnet.binance.vision/ws-api/v3",
    },
    ("deribit", MAINNET): {
        "ws": "wss://www.deribit.com/ws/api/v2",
        "rest": "https://www.deribit.com",
        "ws_private": "wss://www.deribit.com/ws/api/v2",
    },
    ("deribit", TESTNET): {
        "ws": "wss://test.deribit.com/ws/api/v2",
        "rest": "https://test.deribit.com",
        "ws_private": "wss://test.deribit.com/ws/api/v2",
    },
}
#: Hosts per (venue, network).
HOSTS: dict[tuple[str, str], frozenset[str]] = {
    ("binance", MAINNET): frozenset(
        {
            "api.binance.com",
            "api1.binance.com",
            "api2.binance.com",
            "api3.binance.com",
            "api4.binance.com",
            "api-gcp.binance.com",
            "data-api.binance.vision",
            "stream.binance.com",
            "data-stream.binance.vision",
            "ws-api.binance.com",
        }
    ),
    ("binance", TESTNET): frozenset(
        {"testnet.binance.vision", "stream.testnet.binance.vision", "ws-api.testnet.binance.vision"}
    ),
    ("deribit", MAINNET): frozenset({"www.deribit.com", "deribit.com"}),
    ("deribit", TESTNET): frozenset({"test.deribit.com"}),
}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Host classes each mode accepts.
ALLOWED: dict[str, frozenset[str]] = {
    "paper": frozenset({MAINNET, TESTNET, LOOPBACK}),
    "testnet": frozenset({TESTNET, LOOPBACK}),
    "live": frozenset({MAINNET}),
}
_DEFAULT_NETWORK = {"paper": MAINNET, "testnet": TESTNET, "live": MAINNET}


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One resolved URL: the variable that sets it, the URL, its host and the host's class."""

    variable: str
    url: str
    host: str
    network: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedEndpoints:
    """The URLs the daemon will use in its mode (feed websocket and REST, execution REST, and the
    private websocket of the user stream)."""

    mode: str
    venue: str
    feed_ws: Endpoint
    feed_rest: Endpoint
    exchange_rest: Endpoint
    exchange_ws: Endpoint

    def all(self) -> tuple[Endpoint, ...]:
        """Every endpoint, feed first."""
        return (self.feed_ws, self.feed_rest, self.exchange_rest, self.exchange_ws)

    def log_fields(self) -> dict[str, str]:
        """``{"feed_ws_host": "stream.binance.com", "feed_ws_network": "mainnet", …}`` for the start log."""
        out: dict[str, str] = {}
        for name in ("feed_ws", "feed_rest", "exchange_rest", "exchange_ws"):
            ep: Endpoint = getattr(self, name)
            out[f"{name}_url"] = ep.url
            out[f"{name}_network"] = ep.network
        return out


def classify_host(venue: str, host: str) -> str:
    """Return ``mainnet`` / ``testnet`` / ``loopback`` / ``unknown`` for ``host`` of ``venue``."""
    host = host.lower()
    if host in LOOPBACK_HOSTS:
        return LOOPBACK
    for network in (MAINNET, TESTNET):
        if host in HOSTS[(venue, network)]:
            return network
    return UNKNOWN


def _endpoint(venue: str, variable: str, url: str) -> Endpoint:
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise ConfigError(f"{variable} must be a URL like wss://host[:port], was {url!r}")
    return Endpoint(
        variable=variable, url=url, host=parts.hostname, network=classify_host(venue, parts.hostname)
    )


def resolve_endpoints(settings: Settings) -> ResolvedEndpoints:
    """Return the URLs the daemon uses: the explicit settings, else the mode's defaults.

    Raises
    ------
    ConfigError
        If the mode is ``backtest`` (no endpoints) or a URL is malformed.
    """
    mode, venue = settings.mode, settings.venue
    if mode not in _DEFAULT_NETWORK:
        raise ConfigError(f"tradebot run needs TRADEBOT_MODE paper, testnet or live, was {mode!r}")
    defaults = DEFAULT_URLS[(venue, _DEFAULT_NETWORK[mode])]
    feed = settings.feeds.binance if venue == "binance" else settings.feeds.deribit
    exch = settings.exchange.binance if venue == "binance" else settings.exchange.deribit
    v = venue.upper()
    return ResolvedEndpoints(
        mode=mode,
        venue=venue,
        feed_ws=_endpoint(venue, f"TRADEBOT_FEEDS__{v}__WS_URL", feed.ws_url or defaults["ws"]),
        feed_rest=_endpoint(venue, f"TRADEBOT_FEEDS__{v}__REST_URL", feed.rest_url or defaults["rest"]),
        exchange_rest=_endpoint(
            venue, f"TRADEBOT_EXCHANGE__{v}__REST_URL", exch.rest_url or defaults["rest"]
        ),
        exchange_ws=_endpoint(
            venue, f"TRADEBOT_EXCHANGE__{v}__WS_URL", exch.ws_url or defaults["ws_private"]
        ),
    )


def _key_problems(settings: Settings) -> list[str]:
    mode = settings.mode
    testnet_keys = [
        n
        for n, v in (
            ("TRADEBOT_TESTNET_API_KEY", settings.testnet_api_key),
            ("TRADEBOT_TESTNET_API_SECRET", settings.testnet_api_secret),
        )
        if v
    ]
    live_keys = [
        n
        for n, v in (
            ("TRADEBOT_LIVE_API_KEY", settings.live_api_key),
            ("TRADEBOT_LIVE_API_SECRET", settings.live_api_secret),
        )
        if v
    ]
    problems: list[str] = []
    if mode == "live":
        if settings.live_confirmation != LIVE_CONFIRMATION_PHRASE:
            problems.append(
                f"live mode trades real money: set TRADEBOT_LIVE_CONFIRMATION={LIVE_CONFIRMATION_PHRASE} "
                f"(exactly), was {'unset' if settings.live_confirmation is None else 'a different value'}"
            )
        if len(live_keys) < 2:
            problems.append(
                "live mode needs TRADEBOT_LIVE_API_KEY and TRADEBOT_LIVE_API_SECRET "
                "(testnet keys are never used live)"
            )
        if testnet_keys:
            problems.append(
                f"live mode refuses to start while {' and '.join(testnet_keys)} are set: "
                "testnet keys can never be used live; remove them from this environment"
            )
    elif mode == "testnet":
        if len(testnet_keys) < 2:
            problems.append(
                "testnet mode needs TRADEBOT_TESTNET_API_KEY and TRADEBOT_TESTNET_API_SECRET "
                "(live keys are never used on the testnet)"
            )
        if live_keys:
            problems.append(
                f"testnet mode refuses to start while {' and '.join(live_keys)} are set: "
                "live keys never go to a testnet; remove them from this environment"
            )
    return problems


def _host_problems(endpoints: ResolvedEndpoints, *, paper_execution: bool) -> list[str]:
    allowed = ALLOWED[endpoints.mode]
    problems = []
    checked = endpoints.all()[:2] if paper_execution else endpoints.all()
    for ep in checked:
        if ep.network in allowed:
            continue
        default = DEFAULT_URLS[(endpoints.venue, _DEFAULT_NETWORK[endpoints.mode])]
        kind = "ws" if ep.variable.endswith("WS_URL") else "rest"
        if ep is endpoints.exchange_ws:
            kind = "ws_private"
        problems.append(
            f"{ep.variable}={ep.url} has host {ep.host!r} ({ep.network}), which {endpoints.mode} mode "
            f"does not accept (allowed: {', '.join(sorted(allowed))}): unset {ep.variable} to use "
            f"{default[kind]} or choose the TRADEBOT_MODE this host belongs to"
        )
    if endpoints.mode == "live":
        # Real money: API keys, signed requests and balances never travel in plain text.
        for ep in endpoints.all():
            scheme = urlsplit(ep.url).scheme.lower()
            if scheme not in ("https", "wss"):
                secure = "wss" if ep.variable.endswith("WS_URL") else "https"
                problems.append(
                    f"{ep.variable}={ep.url} is plaintext {scheme}://, which live mode does not accept: "
                    f"use {secure}://"
                )
    return problems


def check_interlock(settings: Settings) -> ResolvedEndpoints:
    """Check mode, confirmation, keys and hosts; return the resolved endpoints.

    Paper mode sends no order anywhere, so only its feed hosts are checked.

    Raises
    ------
    ConfigError
        Listing every problem found and what to set, before anything connects.
    """
    endpoints = resolve_endpoints(settings)
    problems = _key_problems(settings)
    problems += _host_problems(endpoints, paper_execution=settings.mode == "paper")
    if problems:
        raise ConfigError(f"refusing to start in {settings.mode} mode:\n  - " + "\n  - ".join(problems))
    return endpoints
