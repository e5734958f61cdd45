"""The one place that builds the daemon's parts for a mode, in the issue's start-up order.

settings validated (interlock) → database migrated or checked → (testnet/live) a venue ban recorded
before the restart waited out → markets loaded → reconciliation → indicator warm-up by backfill →
trading. Every part with a lifecycle is entered on the caller's
``AsyncExitStack`` and closed in reverse order.

Execution venue: ``paper`` uses :class:`~tradebot.app.daemon.paper.PaperRouter` (a simulated venue fed by the
live candles; no keys). ``testnet`` and ``live`` share one path: :func:`build_venue` opens the ccxt
venue of ``TRADEBOT_VENUE`` (:class:`~tradebot.adapters.venues.ccxt_venue.CcxtVenue` for Binance,
:class:`~tradebot.adapters.venues.ccxt_deribit.DeribitVenue`) on the mode's execution REST URL with
the mode's own keys, the instruments come from the venue (``load_markets``), and orders go through
:class:`~tradebot.app.daemon.venue_router.VenueRouter` (the order executor plus reconciliation). The
start-up reconciliation runs before any order; a refusal stops the start with its message. With
``TRADEBOT_DAEMON__USER_STREAM`` (default on) the venue's private stream
(:func:`~tradebot.app.daemon.user_stream.build_user_stream`) is built on the engine's queue too.

The daemon's store is a :class:`~tradebot.adapters.store.resilient.ResilientStore` once the database
is open (an unusable database at start is still a refused start): a later outage pauses trading and
is retried for ``TRADEBOT_DAEMON__STORE_OUTAGE_GRACE_S``. Backtests use the plain store.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from tradebot import __version__
from tradebot.adapters.feeds.backfill import (
    BackfillConfig,
    CcxtHistory,
    make_binance,
    make_deribit,
    map_ccxt_error,
)
from tradebot.adapters.feeds.binance_ws import BinanceFeedConfig, BinanceKlineFeed
from tradebot.adapters.feeds.deribit_ws import DeribitChartFeed, DeribitFeedConfig
from tradebot.adapters.feeds.replay import merge_by_time
from tradebot.adapters.feeds.ws_base import LiveCandleFeed
from tradebot.adapters.store import BatchingWriter, SqlEventStore
from tradebot.adapters.store.engine import daemon_engine_options
from tradebot.adapters.store.migrate import check_current, ensure_schema
from tradebot.adapters.store.resilient import ResilientStore
from tradebot.adapters.venues.ccxt_venue import CcxtVenue
from tradebot.adapters.venues.user_stream import UserStream
from tradebot.app.daemon.clock import LiveClock
from tradebot.app.daemon.execution import OrderExecutor
from tradebot.app.daemon.interlock import ResolvedEndpoints, check_interlock
from tradebot.app.daemon.paper import PaperRouter
from tradebot.app.daemon.reconcile import ReconcileConfig, ReconciliationRefused
from tradebot.app.daemon.user_stream import build_user_stream
from tradebot.app.daemon.venue_bans import ban_key, wait_out_ban
from tradebot.app.daemon.venue_health import VenueHealth, VenueHealthConfig
from tradebot.app.daemon.venue_router import VenueRouter, build_venue
from tradebot.app.instruments import default_instruments
from tradebot.app.logging import bind_run, redact_text, register_secrets
from tradebot.app.ml.runtime import predictor_for
from tradebot.app.settings import Settings, build_engine_config, redacted_dump
from tradebot.core.domain import Candle, Instrument, Symbol, Timeframe, floor_time, to_decimal
from tradebot.core.engine import Engine
from tradebot.core.ml import FeatureConfig
from tradebot.core.ml.predictor import Predictor
from tradebot.errors import ConfigError, VenueUnavailable

log = structlog.get_logger("tradebot.daemon")

BASE = Timeframe.M1
STATE_VERSION = 1


@dataclass(kw_only=True)
class DaemonOptions:
    """How to run the daemon (the CLI's and the demo's knobs; settings hold the rest).

    Attributes
    ----------
    migrate
        Upgrade the schema to head at start (demo, SQLite); otherwise only check it.
    clock
        Runtime clock (default the wall clock; the demo follows the simulator's clock).
    stop_at_open_ms
        Stop once every symbol's candle with this open time (ms UTC) was processed (demo, tests);
        ``None`` runs until a signal.
    handle_signals
        Install SIGTERM/SIGINT handlers (off when embedded in another asyncio program).
    run_id
        Overrides ``TRADEBOT_DAEMON__RUN_ID``.
    anchor_ms
        First candle (open time, ms UTC) a *new* run trades; the warm-up ends before it and the feed
        backfills from it. Default: the current minute of the venue's clock. Ignored on resume.
    finish_run
        When the stop time is reached, close the books (``Engine.finish``), store the summary and mark
        the run ``completed`` (the demo); a daemon stopped by a signal stays resumable.
    """

    migrate: bool = False
    clock: LiveClock | None = None
    stop_at_open_ms: int | None = None
    handle_signals: bool = True
    run_id: str | None = None
    anchor_ms: int | None = None
    finish_run: bool = False


@dataclass(kw_only=True)
class Components:
    """What :func:`bootstrap` built; owned by the caller's exit stack."""

    settings: Settings
    endpoints: ResolvedEndpoints
    run_id: str
    symbols: tuple[Symbol, ...]
    engine: Engine
    router: PaperRouter | VenueRouter
    feed: LiveCandleFeed
    queue: Any
    store: ResilientStore
    writer: BatchingWriter
    history: CcxtHistory
    clock: LiveClock
    anchor_ms: int
    resumed: bool
    last_reconciliation_ms: int
    startup_records: list[object] = field(default_factory=list)
    last_open: dict[Symbol, int] = field(default_factory=dict)
    #: The venue's private stream (testnet / live with ``TRADEBOT_DAEMON__USER_STREAM``), onto ``queue``.
    user_stream: UserStream | None = None


def secrets_of(settings: Settings) -> list[str]:
    """Return every secret value in ``settings`` (API keys, the Telegram bot token, the database
    password) for redaction. The token also masks the Bot API URLs that carry it (``/bot<token>/``)."""
    values = [
        s.get_secret_value()
        for s in (
            settings.testnet_api_key,
            settings.testnet_api_secret,
            settings.live_api_key,
            settings.live_api_secret,
            settings.telegram.token,
        )
        if s
    ]
    if settings.postgres_password:
        values.append(settings.postgres_password.get_secret_value())
    url = settings.database_url.get_secret_value()
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:  # a malformed URL is refused later with its own message
        password = None
    if password:
        values.append(str(password))
    return values


def resolve_run_id(settings: Settings, options: DaemonOptions) -> str:
    """Return the run to create or resume: option, ``TRADEBOT_DAEMON__RUN_ID``, else ``<mode>-<venue>``."""
    return options.run_id or settings.daemon.run_id or f"{settings.mode}-{settings.venue}"


def build_router(
    settings: Settings, instruments: Mapping[Symbol, Instrument], balances: Mapping[str, Decimal]
) -> PaperRouter:
    """Return the paper execution side (testnet/live use :func:`build_venue` and a ``VenueRouter``).

    Raises
    ------
    ConfigError
        For any other mode.
    """
    if settings.mode != "paper":
        raise ConfigError(f"build_router builds the paper venue only, mode was {settings.mode!r}")
    return PaperRouter(
        instruments,
        balances,
        slippage_bps=settings.backtest.slippage_bps,
        max_volume_fraction=settings.backtest.max_volume_fraction,
    )


async def open_database(settings: Settings, options: DaemonOptions, stack: AsyncExitStack) -> SqlEventStore:
    """Migrate (``options.migrate``) or check the schema, then open the store on ``stack``.

    Raises
    ------
    ConfigError
        If the schema is not at head and migration was not asked for.
    """
    url = settings.database_url.get_secret_value()
    try:
        current = await check_current(url)
        if options.migrate and not current:
            await ensure_schema(url)
            current = True
    except (SQLAlchemyError, OSError) as e:
        shown = make_url(url).render_as_string(hide_password=True)
        detail = str(getattr(e, "orig", None) or e).splitlines()[0]
        raise ConfigError(f"database {shown} is not usable: {redact_text(detail)}") from None
    if not current:
        raise ConfigError(
            "the database schema is not at the newest revision: run `tradebot db upgrade` "
            "(or the compose service `migrate`) first"
        )
    # PostgreSQL: pinged pooled connections, bounded connects and statements (a hung one times out
    # and is retried by the resilient store like any outage)
    engine_options = daemon_engine_options(url, statement_timeout_s=settings.daemon.store_statement_timeout_s)
    store = SqlEventStore(url, **engine_options)
    await store.open()
    stack.push_async_callback(store.close)
    return store


def _feed_and_history(
    settings: Settings, endpoints: ResolvedEndpoints, clock: LiveClock, queue: Any, stack: AsyncExitStack
) -> tuple[type[BinanceKlineFeed] | type[DeribitChartFeed], Any, CcxtHistory, tuple[Symbol, ...]]:
    bf = settings.feeds.backfill
    backfill = BackfillConfig(**bf.model_dump())
    if settings.venue == "binance":
        exchange = make_binance(endpoints.feed_rest.url, timeout_ms=bf.timeout_ms)
        fs = settings.feeds.binance
        cfg: Any = BinanceFeedConfig(
            **{
                **fs.model_dump(exclude={"rest_url", "symbols"}),
                "ws_url": endpoints.feed_ws.url,
                "symbols": tuple(fs.symbols or settings.symbols),
            }
        )
        feed_cls: type[BinanceKlineFeed] | type[DeribitChartFeed] = BinanceKlineFeed
    else:
        exchange = make_deribit(endpoints.feed_rest.url, timeout_ms=bf.timeout_ms)
        fs2 = settings.feeds.deribit
        cfg = DeribitFeedConfig(**{**fs2.model_dump(exclude={"rest_url"}), "ws_url": endpoints.feed_ws.url})
        feed_cls = DeribitChartFeed
    stack.push_async_callback(exchange.close)
    symbols = tuple(Symbol(s) for s in cfg.wire_symbols().values())
    return feed_cls, cfg, CcxtHistory(exchange, backfill), symbols


def unreachable_at_start(exchange: Any, exc: BaseException) -> VenueUnavailable:
    """Return the error of a venue that cannot be reached at start: its host, the root cause (DNS,
    refused connection, timeout, TLS) and what to check, instead of ccxt's bare ``GET <url>``."""
    root: BaseException = exc
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    url = ""
    match = re.search(r"(https?|wss?)://[^\s/]+", str(exc))
    if match:
        url = match.group(0)
    host = urlsplit(url).netloc if url else "its API host"
    cause = f"{type(root).__name__}: {root}" if root is not exc else str(exc)
    return VenueUnavailable(
        f"cannot reach {exchange.id} at {host} to load its markets ({redact_text(cause)[:240]}). "
        "Check the network, DNS, proxy and firewall of this host, and the REST URL "
        f"(TRADEBOT_FEEDS__{exchange.id.upper()}__REST_URL). Paper mode still reads the venue's real "
        "market data; to try tradebot offline, run `tradebot demo`."
    )


async def load_markets(history: CcxtHistory, symbols: Sequence[str]) -> None:
    """Load the market list of the data venue and check every symbol is listed.

    Raises
    ------
    ConfigError
        Naming the unknown symbols.
    VenueError
        When the venue cannot be reached (mapped from ccxt).
    """
    import ccxt.async_support as ccxt

    try:
        markets = await history.exchange.load_markets()
    except ccxt.NetworkError as e:
        raise unreachable_at_start(history.exchange, e) from e
    except ccxt.BaseError as e:
        raise map_ccxt_error(e) from e
    unknown = [s for s in symbols if s not in markets]
    if unknown:
        raise ConfigError(f"symbols not listed on {history.exchange.id}: {unknown}")


async def warm_up(engine: Engine, history: CcxtHistory, settings: Settings, anchor_ms: int) -> list[object]:
    """Warm the streams from native candles before ``anchor_ms`` exactly as the backtest does.

    For each stream timeframe (and the rebalance timeframe) the candles with
    ``anchor − 3·max(slow)·tf <= open <= anchor − tf`` are fetched over REST (the window of
    :func:`tradebot.app.backtest.backtest.load_data`), so a daemon started at ``anchor_ms`` decides like a
    backtest starting there.
    """
    tfs = {Timeframe(s.timeframe) for s in settings.streams} | {Timeframe(settings.rebalance_timeframe)}
    lookback = max(s.slow for s in settings.streams) * 3
    candles: list[Candle] = []
    for sym in engine.symbols:
        for tf in sorted(tfs, key=lambda t: t.ms):
            candles += await history.fetch_candles(
                sym, tf, anchor_ms - lookback * tf.ms, anchor_ms - tf.ms + 1
            )
    ml_bars = FeatureConfig().warmup_periods
    if engine.ml is not None and ml_bars > lookback:  # the models' features need a longer history
        clock = Timeframe(settings.rebalance_timeframe)
        older: list[Candle] = []
        for sym in engine.symbols:
            older += await history.fetch_candles(
                sym, clock, anchor_ms - ml_bars * clock.ms, anchor_ms - clock.ms + 1
            )
        engine.ml.warm_up(older, settings.rebalance_timeframe)
    return list(engine.warm_up(candles))


async def prime(engine: Engine, history: CcxtHistory, since_ms: int, last_open: Mapping[Symbol, int]) -> int:
    """Replay to the book (deciding nothing) the base candles from ``since_ms`` to each symbol's last
    processed open time; return how many."""
    per_symbol = {}
    for sym in engine.symbols:
        per_symbol[sym] = await history.fetch_candles(sym, BASE, since_ms, last_open[sym] + BASE.ms)
    candles = list(merge_by_time(per_symbol))
    engine.prime(candles)
    return len(candles)


def load_model(settings: Settings, run_id: str) -> Predictor | None:
    """The model of ``[management.ml]`` (``None`` without one), loaded before the database or any
    venue is touched, and its card's SHA-256 logged (``ml_model_loaded``).

    Raises
    ------
    ModelError
        A missing, corrupt or mismatched model (a ``ConfigError``: the daemon exits with code 2,
        the message naming the file and the mismatch).
    """
    config = build_engine_config(settings, run_id=run_id, base_timeframe=BASE)
    predictor = predictor_for(config)
    if predictor is not None:
        log.info("ml_model_loaded", model=config.management.ml.model, name=predictor.name,
                 version=predictor.version, card_sha256=getattr(predictor, "card_sha256", None),
                 features=len(predictor.features), outputs=sorted(predictor.models))  # fmt: skip
    return predictor


async def _engine_and_router(settings: Settings, endpoints: ResolvedEndpoints, stack: AsyncExitStack,
                             store: ResilientStore, clock: LiveClock, state: dict[str, Any] | None,
                             history: CcxtHistory, run_id: str,
                             predictor: Predictor | None) -> tuple[Engine, PaperRouter | VenueRouter]:  # fmt: skip
    """Instruments (defaults for paper, the venue's own otherwise), the engine and the execution side."""
    symbols = tuple(settings.symbols)
    config = build_engine_config(settings, run_id=run_id, base_timeframe=BASE)
    venue = None if settings.mode == "paper" else build_venue(settings, endpoints, stack)
    if venue is None:
        instruments = default_instruments(symbols, taker_fee=settings.backtest.taker_fee)
    else:
        instruments = await venue.load_instruments(symbols)
    log.info("markets_loaded", symbols=list(symbols), source=history.exchange.id,
             execution="paper" if venue is None else venue.name)  # fmt: skip
    engine = Engine(config, instruments, predictor)
    if venue is None:
        balances = (
            {settings.quote: settings.backtest.initial_cash}
            if state is None
            else PaperRouter.balances_from_state(state["daemon"]["paper"])
        )
        return engine, build_router(settings, instruments, balances)
    executor = OrderExecutor(venue, store, instruments, now_ms=clock.now_ms)
    ds = settings.daemon
    health = VenueHealth(venue.name, VenueHealthConfig(pause_after=ds.venue_pause_after,
                                                       retry_initial_s=ds.venue_retry_initial_s,
                                                       retry_max_s=ds.venue_retry_max_s))  # fmt: skip
    recon = ReconcileConfig(balance_changes=ds.balance_changes)
    return engine, VenueRouter(executor, quote=settings.quote, health=health, reconcile_config=recon)


async def _reconcile_at_start(router: PaperRouter | VenueRouter, engine: Engine, store: ResilientStore, run_id: str,
                              state: dict[str, Any] | None, anchor: int) -> list[object]:  # fmt: skip
    """Paper: re-queue the engine's in-flight orders. Venue: :meth:`VenueRouter.start`. Returns engine output."""
    if isinstance(router, VenueRouter):
        return await router.start(
            engine,
            db_orders=await store.orders(run_id),
            db_fills=await store.fills(run_id),
            saved=None if state is None else state["daemon"]["venue"],
            fresh_since_ms=anchor,
        )
    out: list[object] = []
    marks = {s: to_decimal(engine.mark(s)) for s in engine.symbols}
    in_flight = [engine.orders[c] for c in sorted(engine.in_flight)]
    for update in router.requeue(in_flight, marks):
        out.extend(engine.on_order_update(update))
    log.info("reconciled", execution=router.name, open_orders=router.open_orders(), requeued=len(in_flight))
    return out


async def bootstrap(
    settings: Settings, options: DaemonOptions, stack: AsyncExitStack, queue: Any
) -> Components:
    """Build everything in start-up order; see the module docstring.

    Raises
    ------
    ConfigError
        Interlock refusal, a model that does not match (ModelError), schema not at head, unknown
        symbols, unsupported mode.
    VenueError
        The market-data venue is unreachable.
    """
    register_secrets(secrets_of(settings))
    endpoints = check_interlock(settings)
    run_id = resolve_run_id(settings, options)
    bind_run(run_id=run_id, mode=settings.mode, venue=settings.venue)
    log.info("daemon_starting", version=__version__, **endpoints.log_fields())
    predictor = load_model(settings, run_id)  # a model that does not match refuses the start (exit 2)
    clock = options.clock or LiveClock()
    # From here on a database outage pauses the daemon instead of stopping it (resilient.py)
    store = ResilientStore(
        await open_database(settings, options, stack), grace_s=settings.daemon.store_outage_grace_s
    )
    log.info("database_ready", dialect=store.dialect)
    if settings.mode != "paper":  # a ban recorded before this start: send nothing until it ends
        await wait_out_ban(settings.daemon.ban_file, ban_key(settings.venue, endpoints.exchange_rest.url),
                           now_ms=lambda: time.time_ns() // 1_000_000)  # fmt: skip
    feed_cls, feed_cfg, history, symbols = _feed_and_history(settings, endpoints, clock, queue, stack)
    if tuple(settings.symbols) != symbols:
        settings = settings.model_copy(update={"symbols": symbols})
    await load_markets(history, symbols)
    state = await store.load_engine_state(run_id)
    engine, router = await _engine_and_router(
        settings, endpoints, stack, store, clock, state, history, run_id, predictor
    )
    if state is not None:
        anchor = int(state["daemon"]["anchor_ms"])
    elif options.anchor_ms is not None:
        anchor = floor_time(options.anchor_ms, BASE)
    else:
        anchor = floor_time(await history.server_time_ms(), BASE)
    # A checkpoint with the signal book restores it below: no warm-up, no replay since the anchor.
    saved_book = state is not None and state["engine"].get("book") is not None
    startup: list[object] = [] if saved_book else await warm_up(engine, history, settings, anchor)
    if state is None:
        last_open = {s: anchor - BASE.ms for s in symbols}
        await store.start_run(
            run_id=run_id,
            mode=settings.mode,
            config=redacted_dump(settings),
            version=__version__,
            started_ms=anchor,
        )
    else:
        book_restored = engine.restore(state["engine"])
        last_open = {s: int(v["time"]) - BASE.ms for s, v in state["engine"]["symbols"].items()}
        last_open = {s: max(t, anchor - BASE.ms) for s, t in last_open.items()}
        # bounded restart: with the book in the checkpoint only the feed's catch-up after it is fetched
        primed = 0 if book_restored else await prime(engine, history, anchor, last_open)
        store.bind_run(run_id)
        log.info(
            "engine_restored",
            book_restored=book_restored,
            candles_primed=primed,
            last_time_ms=engine.last_time_ms,
            in_flight_orders=len(engine.in_flight),
        )
    try:
        startup.extend(await _reconcile_at_start(router, engine, store, run_id, state, anchor))
    except ReconciliationRefused as e:  # keep its events, with the state that numbered them, then stop
        await store.commit_step([*startup, *e.records], run_id=run_id,
                                state=_state(engine, anchor, router), updated_ms=clock.now_ms())  # fmt: skip
        raise
    reconciled_ms = clock.now_ms()
    user_stream = None
    if isinstance(router, VenueRouter) and isinstance(router.venue, CcxtVenue):
        user_stream = build_user_stream(settings, endpoints, router.venue, queue)
    writer = await stack.enter_async_context(BatchingWriter(store))
    feed = feed_cls(
        config=feed_cfg, history=history, queue=queue, last_open_ms=last_open, now_ms=clock.now_ms
    )
    log.info("warmed_up", anchor_ms=anchor, resumed=state is not None, streams=len(engine.book.states()))
    return Components(
        settings=settings,
        endpoints=endpoints,
        run_id=run_id,
        symbols=symbols,
        engine=engine,
        router=router,
        feed=feed,
        queue=queue,
        store=store,
        writer=writer,
        history=history,
        clock=clock,
        anchor_ms=anchor,
        resumed=state is not None,
        last_reconciliation_ms=reconciled_ms,
        startup_records=startup,
        last_open=dict(last_open),
        user_stream=user_stream,
    )


def checkpoint_state(c: Components) -> dict[str, Any]:
    """Return the state saved for a restart: the engine snapshot and the daemon's own part."""
    return _state(c.engine, c.anchor_ms, c.router)


def _state(engine: Engine, anchor_ms: int, router: PaperRouter | VenueRouter) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "engine": engine.snapshot(),
        "daemon": {
            "anchor_ms": anchor_ms,
            ("paper" if isinstance(router, PaperRouter) else "venue"): router.state(),
        },
    }


def new_run_id(prefix: str) -> str:
    """Return ``<prefix>-<12 hex>`` (a fresh run, e.g. for the demo)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


__all__ = ["Components", "DaemonOptions", "bootstrap", "checkpoint_state"]
