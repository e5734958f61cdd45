"""Options of ``tradebot download`` (kept apart from :mod:`.download`, so that building the CLI parser
does not import ccxt)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

VENUES = ("binance", "deribit")


def _utc_date(value: str) -> int:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a UTC date like 2024-01-31, was {value!r}") from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``download`` options to ``p``."""
    p.add_argument("--exchange", choices=VENUES, default="binance", help="venue (default binance)")
    p.add_argument("--symbols", help="e.g. BTC,ETH,SOL or BTC/USDT (default: the configured symbols)")
    p.add_argument("--timeframe", default="1m", help="base timeframe, e.g. 1m, 5m, 15m, 1h (default 1m)")
    p.add_argument("--since", type=_utc_date, required=True, help="first UTC date, e.g. 2024-01-01")
    p.add_argument("--until", type=_utc_date, help="end UTC date, exclusive (default: now)")
    p.add_argument("--data", type=Path, default=Path("data"), help="output folder (default data)")
    p.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the streams' 1h/4h/1d files from enough before --since (default on)",
    )
    p.add_argument(
        "--rest-url", help="REST base URL (default TRADEBOT_FEEDS__<VENUE>__REST_URL or the venue)"
    )
    p.add_argument("--config", type=Path, help="TOML configuration file")
