"""Options of ``tradebot ml dataset`` (kept apart from :mod:`.dataset`, so that building the CLI parser
does not import pyarrow)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

__all__ = ["add_arguments"]


def _horizon(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of rebalance periods >= 1, was {value!r}")
    return n


def add_arguments(
    p: argparse.ArgumentParser,
    *,
    utc_ms: Callable[[str], int],
    symbols: Callable[[str], tuple[str, ...]],
    default_data: Path,
) -> None:
    """Add the ``ml dataset`` options to ``p``, with the CLI's own date and symbol parsers."""
    p.add_argument("--data", type=Path, default=default_data, help="candle folder (default data/sample)")
    p.add_argument("--timeframe", help="base timeframe (default: finest available)")
    p.add_argument("--symbols", type=symbols, help="e.g. BTC,ETH (default: the config's symbols)")
    p.add_argument("--start", type=utc_ms, help="first UTC date of the window")
    p.add_argument("--end", type=utc_ms, help="end UTC date (exclusive); labels never read past it")
    p.add_argument("--config", type=Path, help="TOML configuration file, e.g. config/managed.toml")
    p.add_argument("--out", type=Path, required=True, help="the dataset file, FILE.parquet")
    p.add_argument(
        "--horizon",
        type=_horizon,
        default=24,
        metavar="H",
        help="label horizon in rebalance periods (default 24)",
    )
