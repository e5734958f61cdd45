"""The summary of a run: its dict shape, how it is built, and its JSON file.

The same summary ends a backtest, a demo and a daemon run; the rich tables that print it live in
:mod:`tradebot.app.reports.tables`, the equity chart in :mod:`tradebot.app.reports.chart`.

Summary dict (built by :func:`build_summary`, read back by :func:`read_summary_json`)::

    {
      "schema_version": 1,
      "run": {"run_id": str, "mode": str, "config": str, "quote": "USDT", ...},   # free-form, from caller
      "initial_equity": "10000.00" | None,       # quote currency, Decimal string
      "final_equity": "10421.37" | None,
      "overall": Metrics.to_dict(),              # tradebot.core.metrics: fractions, Decimals in quote
      "per_asset": {symbol: TradeStats.to_dict()},
      "per_stream": {stream: StreamStats.to_dict()},
      "event_counts": {event_type: int},         # e.g. {"entry": 12, "early_exit": 3}
      "event_savings": {event_type: Decimal},    # Σ amount_saved_or_gained, quote (may be empty)
      "buy_and_hold": {**Metrics.to_dict(),      # the benchmark (build_run_summary), same keys as overall,
                       "entry": "first open" | "first mark", "entry_ms": int | None,
                       "entry_prices": {symbol: Decimal}, "quantities": {symbol: Decimal},
                       "weights": {symbol: Decimal}} | None,   # via extras; absent in older summaries
      **extras,                                  # e.g. "scale_in_success_rate": 0.6 (fraction)
    }

In memory, money values are ``Decimal``; in the JSON file every ``Decimal`` is a string (``f"{x:f}"``)
and every NaN / ±inf becomes ``null``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np

from tradebot.core.metrics import Metrics

SCHEMA_VERSION = 1
_RESERVED = frozenset(
    {"schema_version", "run", "initial_equity", "final_equity", "overall", "per_asset", "per_stream"}
    | {"event_counts", "event_savings"}
)


def _to_plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return dict(value)


def build_summary(
    *,
    run_info: Mapping[str, Any],
    metrics: Metrics,
    per_asset: Mapping[str, Any],
    per_stream: Mapping[str, Any] | Sequence[Any],
    event_counts: Mapping[str, int],
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the summary dict of a run (shape in the module docstring).

    Parameters
    ----------
    run_info
        Free-form run description; ``"quote"`` names the quote currency (e.g. ``"USDT"``).
    metrics
        Overall measures from :func:`tradebot.core.metrics.compute_metrics`.
    per_asset
        ``{symbol: TradeStats}`` (e.g. from ``group_metrics``) or ``{symbol: dict}``.
    per_stream
        ``{stream: StreamStats | dict}`` or a sequence of ``StreamStats`` (keyed by ``.stream``).
    event_counts
        ``{event_type: count}`` (e.g. the first result of ``event_stats``).
    extras
        More top-level keys, e.g. ``{"event_savings": {...}, "scale_in_success_rate": 0.6}``.

    Raises
    ------
    ValueError
        If ``extras`` uses a reserved key other than ``event_savings``.
    """
    extras = dict(extras or {})
    clash = sorted((set(extras) & _RESERVED) - {"event_savings"})
    if clash:
        raise ValueError(f"extras must not use reserved summary keys, was {clash!r}")
    if isinstance(per_stream, Mapping):
        streams = {str(k): _to_plain(v) for k, v in per_stream.items()}
    else:
        streams = {s.stream: _to_plain(s) for s in per_stream}
    overall = metrics.to_dict()
    return {
        "schema_version": SCHEMA_VERSION,
        "run": dict(run_info),
        "initial_equity": None if metrics.initial_equity is None else f"{metrics.initial_equity:f}",
        "final_equity": None if metrics.final_equity is None else f"{metrics.final_equity:f}",
        "overall": overall,
        "per_asset": {str(k): _to_plain(v) for k, v in per_asset.items()},
        "per_stream": streams,
        "event_counts": {str(k): int(v) for k, v in sorted(event_counts.items())},
        "event_savings": dict(extras.pop("event_savings", {})),
        **extras,
    }


def _jsonable(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return f"{value:f}" if value.is_finite() else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, datetime | UUID):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    if hasattr(value, "to_dict") or (is_dataclass(value) and not isinstance(value, type)):
        return _jsonable(_to_plain(value), path)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), path)
    raise TypeError(f"{path} is not JSON-serialisable, was {value!r}")


def write_summary_json(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``summary`` as JSON (UTF-8, indented), atomically (temp file + rename).

    Decimals become strings, NaN/±inf become ``null``, dataclasses become objects. Top-level
    ``initial_equity`` and ``final_equity`` are required (taken from ``summary["overall"]`` if missing).

    Raises
    ------
    ValueError
        If the equity keys are missing from both the top level and ``overall``.
    TypeError
        If a value cannot be serialised (the message names its path, e.g. ``summary.run.x``).
    """
    data = dict(summary)
    for key in ("initial_equity", "final_equity"):
        if key not in data:
            overall = data.get("overall", {})
            if key not in overall:
                raise ValueError(f"summary must contain {key!r} (top level or overall), was missing")
            data[key] = overall[key]
    text = json.dumps(_jsonable(data, "summary"), indent=2, allow_nan=False, ensure_ascii=False)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_summary_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return a summary written by :func:`write_summary_json` (Decimals stay strings; renderers accept them)."""
    summary: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return summary
