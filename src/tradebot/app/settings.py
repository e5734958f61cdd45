"""Settings of tradebot: pydantic-settings at the edge, frozen core configs inward.

Sources, highest priority first: explicit overrides (CLI flags) → environment variables
(``TRADEBOT_`` prefix, nested with ``__``, e.g. ``TRADEBOT_ALLOCATION__POLICY=slots``) → ``.env`` →
the TOML file given with ``--config`` / ``TRADEBOT_CONFIG_FILE`` → the defaults below. ``config/default.toml``
documents every key with its default.

:func:`load_settings` validates everything and raises :class:`~tradebot.errors.ConfigError` naming the
field and value; :func:`build_engine_config` turns settings into the frozen
:class:`~tradebot.core.config.EngineConfig`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tradebot.core.config import EngineConfig
from tradebot.core.domain import Timeframe, to_decimal
from tradebot.core.execution.planner import PlannerConfig
from tradebot.core.management import ManagementConfig, RiskLimits
from tradebot.core.portfolio.rebalancer import AllocationConfig
from tradebot.core.signals.stream import StreamConfig
from tradebot.errors import ConfigError

DEFAULT_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


def data_home(environ: Mapping[str, str] | None = None) -> Path:
    """Return tradebot's data and state directory: ``$XDG_DATA_HOME/tradebot``, else
    ``~/.local/share/tradebot`` (the XDG base-directory default). Not created here: writers create it.

    The default database (:func:`default_database_url`), the daemon's health file and the demo's
    state live there, so ``tradebot demo`` run from any folder is found by ``tradebot runs``.
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "tradebot"


def default_database_url(environ: Mapping[str, str] | None = None) -> str:
    """Return the default ``TRADEBOT_DATABASE_URL``: the SQLite file ``tradebot.db`` in :func:`data_home`."""
    return f"sqlite+aiosqlite:///{data_home(environ) / 'tradebot.db'}"


#: Shipped risk defaults. STRATEGY.md §4 suggests 10 % per symbol; with three assets that would cap the
#: whole portfolio at 30 % invested and defeat the pooled allocation, so the shipped per-symbol cap is
#: 50 % of equity (no asset above half the book). Everything else keeps the RiskLimits defaults.
DEFAULT_RISK: dict[str, Any] = {"max_position_fraction": 0.5}


#: Upper bounds of numeric settings that have no tighter one of their own (``le=`` in the field):
#: beyond them a value is a typo, and some would stall the engine (a 1e100 order cap) or never fire.
_UPPER_BOUNDS: dict[str, float] = {
    "fast": 10_000, "slow": 10_000, "atr_period": 10_000, "confidence_atr_mult": 1_000,
    "min_confidence_weight": 100, "max_confidence_weight": 100,
    "max_order_notional": 1e12, "min_order_notional": 1e9, "initial_cash": 1e15,
    "max_session_s": 86_400, "backoff_factor": 10, "page_limit": 5_000, "rate_limit": 10_000,
    "retry_attempts": 100,
    "max_lag_ms": 1e14,  # a replay of old candles (tests, the demo) treats years-old candles as fresh
}  # fmt: skip
_MAX_SECONDS = 7 * 86_400  # any other ``*_s`` setting: at most a week
_MAX_MS = _MAX_SECONDS * 1000  # any other ``*_ms`` setting


def _upper_bound(name: str) -> float | None:
    if name in _UPPER_BOUNDS:
        return _UPPER_BOUNDS[name]
    if name.endswith("_s"):
        return _MAX_SECONDS
    if name.endswith("_ms"):
        return _MAX_MS
    return None


class _Section(BaseModel):
    # NaN and ±inf are refused everywhere (pydantic accepts them for floats by default).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded(cls, value: Any, info: ValidationInfo) -> Any:
        # Every number has a finite range: the field's own ``le``, else _UPPER_BOUNDS / the unit rule.
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            if isinstance(value, Decimal) and not value.is_finite():
                raise ValueError("must be a finite number")
            bound = _upper_bound(info.field_name or "")
            if bound is not None and value > bound:
                raise ValueError(f"must be at most {bound:g}")
        return value


class StreamSettings(_Section):
    """One trend stream timeframe (every symbol gets one stream per entry)."""

    timeframe: Literal["1h", "4h", "1d"]
    fast: int = Field(20, ge=1, description="fast EMA period, candles")
    slow: int = Field(50, ge=2, description="slow EMA period, candles")
    band: float = Field(0.0, ge=0.0, lt=0.5, description="hysteresis band, fraction of the slow EMA")
    atr_period: int = Field(14, ge=1, description="ATR period for confidence, candles")
    confidence_atr_mult: float = Field(
        1.0, gt=0.0, description="EMA spread (in ATR/close) that gives confidence 1"
    )


class AllocationSettings(_Section):
    """Rebalancer policy (STRATEGY.md §2)."""

    policy: Literal["slots", "pooled", "inverse_vol"] = "pooled"
    invest_fraction: float = Field(1.0, gt=0.0, le=1.0)
    confidence_weighting: bool = False
    min_confidence_weight: float = Field(0.5, ge=0.0)
    max_confidence_weight: float = Field(1.5, ge=0.0)
    max_asset_fraction: float | None = Field(None, gt=0.0, le=1.0)


class PlannerSettings(_Section):
    """Order planning: rebalance band, order size limits."""

    band_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="no trade under this fraction of equity")
    max_order_notional: Decimal | None = Field(
        Decimal("50000"), gt=0, description="quote currency; slices above"
    )
    min_order_notional: Decimal = Field(Decimal("10"), ge=0, description="quote currency")
    cash_buffer_fraction: float = Field(0.002, ge=0.0, lt=0.5)


class BacktestSettings(_Section):
    """Simulated venue and replay options."""

    initial_cash: Decimal = Field(Decimal("10000"), gt=0, description="quote currency")
    slippage_bps: float = Field(5.0, ge=0.0, le=1000.0)
    taker_fee: Decimal = Field(Decimal("0.001"), ge=0, lt=Decimal("0.1"), description="fraction")
    max_volume_fraction: float | None = Field(None, gt=0.0, le=1.0)


class _FeedConnection(_Section):
    """Connection settings shared by the websocket feeds (defaults of ``adapters/feeds/*.py``)."""

    ws_url: str | None = Field(None, description="websocket URL; None = the selected mode's default host")
    rest_url: str | None = Field(None, description="REST URL of the history backfill; None = mode default")
    stale_after_s: float = Field(30.0, gt=0, description="reconnect after this long without data, seconds")
    max_session_s: float = Field(23.5 * 3600, gt=0, description="reconnect proactively after, seconds")
    open_timeout_s: float = Field(10.0, gt=0, description="websocket handshake timeout, seconds")
    ping_interval_s: float | None = Field(20.0, gt=0, description="client ping period, seconds; None = off")
    ping_timeout_s: float | None = Field(20.0, gt=0, description="pong timeout, seconds; None = off")
    backoff_initial_s: float = Field(0.5, gt=0, description="first reconnect delay, seconds")
    backoff_max_s: float = Field(30.0, gt=0, description="longest reconnect delay, seconds")
    backoff_factor: float = Field(2.0, ge=1.0, description="delay growth per attempt")
    backoff_jitter: float = Field(0.5, ge=0.0, lt=1.0, description="random reduction of a delay, fraction")
    banned_backoff_s: float = Field(120.0, gt=0, description="wait after an HTTP 418 ban, seconds")
    idle_check_s: float = Field(1.0, gt=0, description="read-loop wake-up without frames, seconds")
    max_lag_ms: int = Field(15_000, gt=0, description="a closed candle is fresh within this long, ms")
    rest_poll_interval_s: float | None = Field(
        10.0, gt=0, description="while the websocket is down, poll REST for closed candles every, seconds"
    )


class BinanceFeedSettings(_FeedConnection):
    """Binance spot 1m kline feed (``TRADEBOT_FEEDS__BINANCE__*``)."""

    symbols: tuple[str, ...] | None = Field(None, description="ccxt symbols; None = TRADEBOT_SYMBOLS")


class DeribitFeedSettings(_FeedConnection):
    """Deribit 1m chart feed (``TRADEBOT_FEEDS__DERIBIT__*``)."""

    instruments: tuple[str, ...] = ("BTC_USDC-PERPETUAL", "ETH_USDC-PERPETUAL", "SOL_USDC-PERPETUAL")
    heartbeat_interval_s: float = Field(10.0, ge=10.0, description="public/set_heartbeat interval, seconds")
    final_grace_s: float = Field(15.0, gt=0, description="REST-confirm a forming candle after, seconds")


class BackfillSettings(_Section):
    """REST history (warm-up and gap backfill) through ccxt (``TRADEBOT_FEEDS__BACKFILL__*``)."""

    page_limit: int = Field(1000, ge=1, description="candles per request")
    rate_limit: int = Field(5, ge=1, description="requests per rate_period_s")
    rate_period_s: float = Field(1.0, gt=0)
    retry_attempts: int = Field(6, ge=1)
    retry_max_delay_s: float = Field(60.0, gt=0)
    retry_initial_s: float = Field(0.5, ge=0)
    retry_max_wait_s: float = Field(10.0, ge=0)
    retry_jitter_s: float = Field(1.0, ge=0)
    timeout_ms: int = Field(10_000, gt=0, description="ccxt HTTP timeout, ms")


class FeedsSettings(_Section):
    """Market-data feeds of the daemon (``TRADEBOT_FEEDS__*``)."""

    binance: BinanceFeedSettings = BinanceFeedSettings()
    deribit: DeribitFeedSettings = DeribitFeedSettings()
    backfill: BackfillSettings = BackfillSettings()


class ExchangeEndpoint(_Section):
    """Execution endpoints of one venue (orders, balances; ``None`` = the selected mode's default)
    and the request limits the daemon keeps towards it."""

    rest_url: str | None = None
    ws_url: str | None = Field(
        None,
        description="private websocket of the user stream (Binance WebSocket API, wss://ws-api.binance.com:443"
        "/ws-api/v3; a URL without a path gets /ws-api/v3; Deribit JSON-RPC); None = the mode's default",
    )
    backoff_initial_s: float = Field(
        1.0, gt=0, le=600, description="pause after a 429 (the venue's Retry-After if longer), seconds"
    )
    backoff_max_s: float = Field(
        60.0, gt=0, le=3600, description="the 429 pause doubles per consecutive 429 up to this, seconds"
    )
    request_budget: int = Field(
        1200, ge=1, le=100_000, description="at most this many requests per budget_window_s"
    )
    budget_window_s: float = Field(60.0, gt=0, le=3600, description="window of request_budget, seconds")
    recv_window_ms: int = Field(
        5000, ge=1, le=60_000, description="Binance recvWindow of signed requests, ms (at most 60 000)"
    )


class ExchangeSettings(_Section):
    """Execution endpoints per venue (``TRADEBOT_EXCHANGE__BINANCE__REST_URL`` …)."""

    binance: ExchangeEndpoint = ExchangeEndpoint()
    deribit: ExchangeEndpoint = ExchangeEndpoint()


class SanitySettings(_Section):
    """Market-data sanity of the daemon's live candles (``TRADEBOT_DAEMON__SANITY__*``).

    A live 1m candle that moves more than the band from the symbol's last accepted close is held and
    checked against the venue's REST history before the engine sees it: kept if REST agrees, replaced
    by the REST candle if not, discarded if REST has none (a ``market_data_suspect`` position event
    records each). See :mod:`tradebot.app.daemon.candle_guard`. Backtests are not screened. A fill
    further than ``max_fill_deviation_fraction`` from the reference price its order was sized on is
    reported (warning and a ``fill_far_from_reference`` position event). A large decision (orders of
    at least ``large_decision_fraction`` of equity in one step) is sent only when the venue's own
    price of every symbol it rests on is within ``max_reference_deviation_fraction`` of the engine's
    mark (``reference_mismatch`` position event otherwise; see
    :mod:`tradebot.app.daemon.reference_check`).
    """

    enabled: bool = Field(True, description="screen live candles (off: every candle goes to the engine)")
    max_move_fraction: float = Field(
        0.2,
        gt=0.0,
        le=10.0,
        description="suspect past this move of close/high/low from the last close, fraction",
    )
    max_move_atr: float | None = Field(
        None, gt=0.0, le=1_000.0, description="also suspect past this many 1m ATRs; None = off"
    )
    atr_period: int = Field(60, ge=1, description="ATR period of max_move_atr, 1m candles")
    confirm_tolerance_fraction: float = Field(
        0.002, ge=0.0, lt=1.0, description="REST confirms when close/high/low agree within this fraction"
    )
    max_fill_deviation_fraction: float = Field(
        0.05, gt=0.0, le=10.0, description="report a fill this far from its order's reference price, fraction"
    )
    second_reference: bool = Field(
        True,
        description="read the venue's price before a large decision (testnet / live; off: send as decided)",
    )
    large_decision_fraction: float = Field(
        0.1, gt=0.0, le=10.0, description="a step whose orders' notional is this fraction of equity is large"
    )
    max_reference_deviation_fraction: float = Field(
        0.05,
        gt=0.0,
        lt=1.0,
        description="refuse a large decision when a mark is this far from the venue's price",
    )


class DaemonSettings(_Section):
    """Runtime of ``tradebot run`` (``TRADEBOT_DAEMON__*``)."""

    run_id: str | None = Field(None, description="run to create or resume; None = '<mode>-<venue>'")
    status_interval_s: float = Field(60.0, gt=0, description="period of the status log line, seconds")
    checkpoint_interval_s: float = Field(5.0, gt=0, description="longest time between state saves, seconds")
    health_file: str = Field(
        default_factory=lambda: str(data_home() / "health.json"),
        description="written for `tradebot healthcheck` and `tradebot status`; default <data home>/health.json",
    )
    health_max_age_s: float = Field(180.0, gt=0, description="healthcheck: health file older than this fails")
    health_max_feed_lag_s: float = Field(300.0, gt=0, description="healthcheck: feed lag above this fails")
    health_max_reconcile_age_s: float | None = Field(
        None,
        gt=0,
        le=7 * 86_400,
        description="healthcheck (testnet/live): last reconciliation older than this fails, seconds; "
        "None = 2 x reconcile_interval_s + 60",
    )
    sequencer_timeout_s: float = Field(5.0, gt=0, description="hold a candle for slower symbols at most")
    shutdown_timeout_s: float = Field(20.0, gt=0, description="graceful shutdown budget, seconds")
    poll_interval_s: float = Field(2.0, gt=0, description="testnet/live: look up open orders every, seconds")
    user_stream: bool = Field(
        True,
        description="testnet/live: receive order updates and fills as the venue pushes them (Binance "
        "WebSocket API user-data subscription at TRADEBOT_EXCHANGE__<VENUE>__WS_URL, Deribit user.* "
        "channels); polling stays the fallback. Off: fills arrive by polling only",
    )
    reconcile_interval_s: float = Field(
        300.0, gt=0, description="testnet/live: reconcile with the venue every, seconds"
    )
    balance_changes: Literal["cash_flow", "refuse"] = Field(
        "cash_flow",
        description="testnet/live: a balance change no fill explains is a deposit/withdrawal (cash_flow: "
        "moves equity, not PnL) or a mismatch that refuses new entries (refuse)",
    )
    venue_pause_after: int = Field(
        3,
        ge=1,
        le=1000,
        description="testnet/live: pause new entries after this many failed venue rounds in a row",
    )
    venue_retry_initial_s: float = Field(
        1.0, gt=0, le=600, description="a failed poll/reconciliation round is retried after this, doubling"
    )
    venue_retry_max_s: float = Field(
        120.0, gt=0, le=3600, description="longest wait between failed poll/reconciliation rounds, seconds"
    )
    ban_file: str = Field(
        default_factory=lambda: str(data_home() / "venue_bans.json"),
        description="testnet/live: end of a venue's HTTP 418 ban, kept across restarts; "
        "default <data home>/venue_bans.json",
    )
    store_outage_grace_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="database unreachable or full: pause trading and retry (0.5 s doubling to 10 s) "
        "this long, seconds, then exit 1",
    )
    store_statement_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="PostgreSQL: a connect or statement hanging this long fails and is retried, seconds",
    )
    sanity: SanitySettings = SanitySettings()


class MetricsSettings(_Section):
    """Prometheus exposition of ``run`` and ``demo`` (``TRADEBOT_METRICS__*``); off unless a port is set."""

    port: int | None = Field(
        None, ge=0, le=65535, description="serve /metrics on this TCP port (0 = any free port); None = off"
    )
    host: str = Field("127.0.0.1", description="listen address of /metrics (0.0.0.0 in a container)")


class TelegramSettings(_Section):
    """Optional Telegram alerts and commands (``TRADEBOT_TELEGRAM__*``); off by default."""

    enabled: bool = Field(False, description="send alerts and answer commands")
    token: SecretStr | None = Field(
        None, validate_default=True, description="bot token from @BotFather; a secret, redacted in logs"
    )
    chat_ids: tuple[int, ...] = Field(
        (), validate_default=True, description="chats allowed to receive alerts and give commands"
    )
    api_base_url: str = Field("https://api.telegram.org", description="Bot API server (a local one in tests)")
    feed_stale_alert_s: float = Field(
        600.0, gt=0, le=86_400, description="alert when a feed has been stale this long, seconds"
    )

    # Field validators (not a model validator): an error then shows only the field's own input, never
    # the section with its token.
    @field_validator("token")
    @classmethod
    def _token_when_enabled(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if info.data.get("enabled") and (value is None or not value.get_secret_value().strip()):
            raise ValueError("telegram is enabled without a bot token: set TRADEBOT_TELEGRAM__TOKEN")
        return value

    @field_validator("chat_ids")
    @classmethod
    def _chats_when_enabled(cls, value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        if info.data.get("enabled") and not value:
            raise ValueError(
                "telegram is enabled without chat ids: set TRADEBOT_TELEGRAM__CHAT_IDS, e.g. '[123456789]'"
            )
        return value


#: Exact value ``TRADEBOT_LIVE_CONFIRMATION`` must have for ``TRADEBOT_MODE=live``.
LIVE_CONFIRMATION_PHRASE = "I-ACCEPT-REAL-MONEY-RISK"


class Settings(BaseSettings):
    """All of tradebot's settings. See ``config/default.toml`` and ``.env.example``."""

    model_config = SettingsConfigDict(
        env_prefix="TRADEBOT_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
        frozen=True,
    )

    mode: Literal["backtest", "paper", "testnet", "live"] = "paper"
    venue: Literal["binance", "deribit"] = "binance"
    #: Default: ``tradebot.db`` in the data directory (:func:`default_database_url`), shared by every command.
    database_url: SecretStr = Field(default_factory=lambda: SecretStr(default_database_url()))
    quote: str = "USDT"
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    rebalance_timeframe: Literal["1h", "4h", "1d"] = "1h"
    #: A manual trade at the venue (or a base-asset deposit/withdrawal): keep the new holding until the
    #: asset's streams change (respect) or plan it back to target at the next rebalance (rebalance).
    manual_trades: Literal["respect", "rebalance"] = "respect"
    #: Keep the management overlay's stop as a STOP_MARKET order resting at the venue (filled there,
    #: also while the daemon is down) instead of a market exit after a candle reached it. ``None``
    #: (default): on in testnet and live, off in backtest and paper (:attr:`venue_stops`).
    stops_at_venue: bool | None = None
    streams: tuple[StreamSettings, ...] = (
        StreamSettings(timeframe="1h"),
        StreamSettings(timeframe="4h"),
        StreamSettings(timeframe="1d"),
    )
    allocation: AllocationSettings = AllocationSettings()
    planner: PlannerSettings = PlannerSettings()
    backtest: BacktestSettings = BacktestSettings()
    management: dict[str, Any] = Field(default_factory=lambda: {"enabled": False})
    risk: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_RISK))
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    feeds: FeedsSettings = FeedsSettings()
    exchange: ExchangeSettings = ExchangeSettings()
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)  # health file under the data dir at load
    metrics: MetricsSettings = MetricsSettings()
    telegram: TelegramSettings = TelegramSettings()
    # API keys: testnet and live under separate names; a mode only ever reads its own
    # (app/daemon/interlock.py).
    testnet_api_key: SecretStr | None = None
    testnet_api_secret: SecretStr | None = None
    live_api_key: SecretStr | None = None
    live_api_secret: SecretStr | None = None
    # The pydantic plugin flags every non-literal alias (here AliasChoices), required or not; this one has a default.
    postgres_password: SecretStr | None = Field(  # type: ignore[pydantic-alias]
        None,
        validation_alias=AliasChoices("POSTGRES_PASSWORD", "postgres_password"),
        description="password of the docker-compose PostgreSQL (POSTGRES_PASSWORD in .env); a secret",
    )
    live_confirmation: str | None = Field(
        None, description=f"must be exactly {LIVE_CONFIRMATION_PHRASE!r} for TRADEBOT_MODE=live"
    )

    @property
    def venue_stops(self) -> bool:
        """Whether the overlay's stops rest at the venue: ``stops_at_venue``, or by default on in
        testnet and live mode and off in backtest and paper mode."""
        if self.stops_at_venue is not None:
            return self.stops_at_venue
        return self.mode in ("testnet", "live")

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for sym in value:
            if sym.count("/") != 1 or not all(sym.split("/")):
                raise ValueError(f"symbol must look like 'BTC/USDT', was {sym!r}")
        if len(set(value)) != len(value):
            raise ValueError(f"symbols must be unique, were {list(value)!r}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        toml_file = settings_cls.model_config.get("toml_file")
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        sources.append(file_secret_settings)
        return tuple(sources)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings.

    Parameters
    ----------
    config_file
        A TOML file (see ``config/default.toml``); ``None`` uses ``TRADEBOT_CONFIG_FILE`` if set.
    overrides
        Highest-priority values (from CLI flags), by field name.

    Raises
    ------
    ConfigError
        When the file is missing or not valid TOML, or any value is invalid; the message names each
        field (dotted path) and the value given.
    """
    path = config_file or os.environ.get("TRADEBOT_CONFIG_FILE")
    toml_path: Path | None = None
    if path:
        toml_path = Path(path)
        if not toml_path.is_file():
            raise ConfigError(f"config file {str(toml_path)!r} does not exist")
        try:
            tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(toml_path)!r} is not valid TOML: {exc}") from None
    check_environment(os.environ)
    cls = type(
        "FileSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": toml_path}}
    )
    try:
        settings: Settings = cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, toml_path)) from None
    settings = with_database_password(settings)
    build_engine_config(settings, run_id="validate", base_timeframe=Timeframe.H1)
    return settings


#: The placeholder ``.env.example`` ships for ``POSTGRES_PASSWORD``; never accepted as a password.
PASSWORD_PLACEHOLDER = "CHANGE_ME"


def with_database_password(settings: Settings) -> Settings:
    """Return ``settings`` with ``POSTGRES_PASSWORD`` put URL-encoded into a PostgreSQL
    ``TRADEBOT_DATABASE_URL`` that has no password (docker-compose passes them apart: compose cannot
    URL-encode, and ``p@ss:w/rd#1`` pasted into a URL breaks it).

    Raises
    ------
    ConfigError
        If the password that would be used is empty or the ``CHANGE_ME`` placeholder, naming the
        variable it came from.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    raw = settings.database_url.get_secret_value()
    try:
        url = make_url(raw)
    except ArgumentError:
        return settings  # not a URL: refused with its own message where it is opened
    if url.password is not None:
        if str(url.password) == PASSWORD_PLACEHOLDER:
            raise ConfigError(
                f"TRADEBOT_DATABASE_URL: the password is the placeholder {PASSWORD_PLACEHOLDER!r}; set a real one"
            )
        return settings
    if not url.drivername.startswith("postgresql") or settings.postgres_password is None:
        return settings
    password = settings.postgres_password.get_secret_value()
    if password.strip() in ("", PASSWORD_PLACEHOLDER):
        shown = "empty" if not password.strip() else f"the placeholder {PASSWORD_PLACEHOLDER!r}"
        raise ConfigError(
            f"POSTGRES_PASSWORD is {shown}: set a real password in .env (it becomes the password of "
            "TRADEBOT_DATABASE_URL)"
        )
    full = url.set(password=password).render_as_string(hide_password=False)
    return settings.model_copy(update={"database_url": SecretStr(full)})


#: ``TRADEBOT_*`` variables read outside the settings model (the config file, the migrations folder);
#: ``TRADEBOT_TEST_*`` are the test suite's own.
OTHER_ENVIRONMENT = frozenset({"TRADEBOT_CONFIG_FILE", "TRADEBOT_ALEMBIC_DIR"})


def _model_of(annotation: Any) -> type[BaseModel] | None:
    # The pydantic model a field holds (also inside ``X | None``), else None.
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse a ``TRADEBOT_*`` environment variable that names no setting (a typo such as
    ``TRADEBOT_PLANER__BAND_FRACTION`` would otherwise be ignored while the same typo in TOML is not).

    Each ``__``-separated part is checked against the settings model down to the first field that is
    not a model (``TRADEBOT_RISK__…`` and ``TRADEBOT_MANAGEMENT__…`` are checked by the engine
    configuration when it is built). Names are case-insensitive, as for pydantic-settings.

    Raises
    ------
    ConfigError
        Naming the variable and the part that is unknown, with the known names at that level.
    """
    prefix = "TRADEBOT_"
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(prefix) or upper in OTHER_ENVIRONMENT or upper.startswith("TRADEBOT_TEST_"):
            continue
        parts = name[len(prefix) :].lower().split("__")
        model: type[BaseModel] | None = Settings
        for depth, part in enumerate(parts):
            if model is None:
                break
            fields = model.model_fields
            if part not in fields:
                where = "TRADEBOT_" + "__".join(p.upper() for p in parts[:depth]) + ("__" if depth else "")
                raise ConfigError(
                    f"environment variable {name}: {part.upper()!r} is not a setting under {where}*; "
                    f"known: {', '.join(sorted(f.upper() for f in fields))}"
                )
            model = _model_of(fields[part].annotation)


def _format_validation(exc: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        lines.append(f"  {field}: {err['msg']}, was {value!r}")
    return "\n".join(lines)


def build_engine_config(settings: Settings, *, run_id: str, base_timeframe: Timeframe) -> EngineConfig:
    """Convert validated settings into the frozen engine configuration.

    Raises
    ------
    ConfigError
        If a core config refuses a value (e.g. fast >= slow, an unknown management key).
    """
    try:
        streams = tuple(
            StreamConfig(
                timeframe=Timeframe(s.timeframe),
                fast=s.fast,
                slow=s.slow,
                band=s.band,
                atr_period=s.atr_period,
                confidence_atr_mult=s.confidence_atr_mult,
            )
            for s in settings.streams
        )
        timeframes = [s.timeframe for s in streams]
        if len(set(timeframes)) != len(timeframes):
            raise ValueError(f"streams: each timeframe may appear once, were {[t.value for t in timeframes]}")
        a = settings.allocation
        p = settings.planner
        return EngineConfig(
            run_id=run_id,
            quote=settings.quote,
            assets={s: s.split("/")[0] for s in settings.symbols},
            base_timeframe=base_timeframe,
            streams=streams,
            initial_cash=settings.backtest.initial_cash,
            rebalance_timeframe=Timeframe(settings.rebalance_timeframe),
            allocation=AllocationConfig(
                policy=a.policy,
                invest_fraction=a.invest_fraction,
                confidence_weighting=a.confidence_weighting,
                min_confidence_weight=a.min_confidence_weight,
                max_confidence_weight=a.max_confidence_weight,
                max_asset_fraction=a.max_asset_fraction,
            ),
            planner=PlannerConfig(
                band_fraction=to_decimal(p.band_fraction, field="band_fraction"),
                max_order_notional=p.max_order_notional,
                min_order_notional=p.min_order_notional,
                cash_buffer_fraction=to_decimal(p.cash_buffer_fraction, field="cash_buffer_fraction"),
            ),
            management=ManagementConfig.from_dict(dict(settings.management)),
            risk=RiskLimits.from_dict(dict(settings.risk)),
            manual_trades=settings.manual_trades,
            stops_at_venue=settings.venue_stops,
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


def redacted_dump(settings: Settings) -> dict[str, Any]:
    """Return the settings as a JSON-able dict with every secret replaced by ``"**********"``."""
    return settings.model_dump(mode="json")
