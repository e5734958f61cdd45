"""The manifest of a position dataset: what was replayed, how it was labelled, what the table holds.

JSON-able and deterministic (no wall clock, no absolute path beyond the ones given): the same candles
and settings give the same manifest. :func:`~tradebot.app.ml.files.write_dataset` adds the Parquet
file's name and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tradebot import __version__
from tradebot.adapters.feeds.columns import CandleColumns
from tradebot.app.backtest.backtest import LoadedData
from tradebot.app.ml.summary import base_rates
from tradebot.app.settings import Settings
from tradebot.core.domain import Timeframe, ms_to_datetime
from tradebot.core.ml import (
    LABEL_DEFINITIONS,
    LABEL_NAMES,
    FeatureConfig,
    LabelConfig,
    feature_definitions,
    feature_names,
)

__all__ = ["DATASET_FORMAT", "RunInfo", "build_manifest", "candles_sha256", "config_hash"]

#: Identifies the table layout and the manifest's keys; bumped when either changes.
DATASET_FORMAT = "tradebot-ml-dataset/1"

#: The settings that decide a backtest (what the config hash covers; not paths, URLs or secrets).
_TRADING_FIELDS = frozenset(
    {
        "quote",
        "symbols",
        "rebalance_timeframe",
        "manual_trades",
        "streams",
        "allocation",
        "planner",
        "backtest",
        "management",
        "risk",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """The backtest behind a dataset: its run id, config hash, rebalance closes and positions seen."""

    run_id: str
    config_hash: str
    n_clock: int
    n_positions: int


def config_hash(settings: Settings) -> str:
    """Return the SHA-256 (hex) of the settings that decide a backtest, as canonical JSON (sorted keys):
    symbols, streams, allocation, planner, backtest costs, management, risk limits and where stops
    live; not paths, database URLs or secrets."""
    trading = settings.model_dump(mode="json", include=set(_TRADING_FIELDS))
    trading["venue_stops"] = settings.venue_stops
    text = json.dumps(trading, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def candles_sha256(data: LoadedData) -> str:
    """Return the SHA-256 (hex) of the replayed base candles (their column bytes, symbol by symbol)
    and of the warm-up candles, in load order."""
    h = hashlib.sha256()
    for sym, candles in data.candles.items():
        h.update(f"{sym}|{data.base}|".encode())
        for col in CandleColumns.from_candles(sym, data.base, candles).columns():
            h.update(col.tobytes())
    for c in data.warmup:
        h.update(repr(tuple(c)).encode())
    return h.hexdigest()


def _iso(ms: int) -> str:
    return ms_to_datetime(ms).isoformat().replace("+00:00", "Z")


def build_manifest(
    settings: Settings,
    data: LoadedData,
    table: pa.Table,
    *,
    run: RunInfo,
    config_file: Path | None,
    data_dir: Path,
    requested: tuple[int | None, int | None],
    horizon_periods: int,
    labels: LabelConfig,
    features: FeatureConfig,
    stream_tfs: Sequence[str],
) -> dict[str, Any]:
    """Return the manifest of ``table`` built from ``data`` with ``settings``.

    Keys: ``format``, ``tradebot_version``, ``rows``, ``positions``, ``config_hash``, ``runs`` (one
    entry: run id, config file, config hash, symbols, timeframes, candles, rebalance closes, candle
    SHA-256), ``data_dir``, ``candle_range`` (first open and exclusive end, ms UTC and ISO, the
    requested window, per symbol), ``horizon``, ``costs``, ``feature_config``, ``id_columns``,
    ``features`` and ``feature_definitions``, ``labels`` and ``label_definitions``,
    ``label_base_rates`` and ``schema``.
    """
    by_symbol = {}
    for sym, candles in data.candles.items():
        by_symbol[sym] = {
            "first_open_ms": candles[0].open_time_ms,
            "end_ms": candles[-1].open_time_ms + data.base.ms,
            "candles": len(candles),
            "gaps": len(data.gaps.get(sym, ())),
        }
    start = min(v["first_open_ms"] for v in by_symbol.values())
    end = max(v["end_ms"] for v in by_symbol.values())
    clock = Timeframe(settings.rebalance_timeframe)
    names = feature_names(stream_tfs)
    return {
        "format": DATASET_FORMAT,
        "tradebot_version": __version__,
        "rows": table.num_rows,
        "positions": run.n_positions,
        "config_hash": run.config_hash,
        "runs": [
            {
                "run_id": run.run_id,
                "config_file": None if config_file is None else str(config_file),
                "config_hash": run.config_hash,
                "symbols": list(data.candles),
                "base_timeframe": str(data.base),
                "rebalance_timeframe": str(clock),
                "candles": data.n_candles,
                "clock_closes": run.n_clock,
                "candles_sha256": candles_sha256(data),
            }
        ],
        "data_dir": str(data_dir),
        "candle_range": {
            "start_ms": start,
            "end_ms": end,
            "start": _iso(start),
            "end": _iso(end),
            "requested_start_ms": requested[0],
            "requested_end_ms": requested[1],
            "by_symbol": by_symbol,
        },
        "horizon": {"periods": horizon_periods, "timeframe": str(clock), "ms": labels.horizon_ms},
        "costs": {"fee_fraction": labels.fee_fraction, "slippage_fraction": labels.slippage_fraction},
        "feature_config": features.to_dict(),
        "id_columns": [n for n in table.column_names if n not in names and n not in LABEL_NAMES],
        "features": list(names),
        "feature_definitions": feature_definitions(stream_tfs),
        "labels": list(LABEL_NAMES),
        "label_definitions": dict(LABEL_DEFINITIONS),
        "label_base_rates": base_rates(table),
        "schema": {f.name: str(f.type) for f in table.schema},
    }
