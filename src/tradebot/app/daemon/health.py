"""Health of a running daemon: a small JSON file it rewrites, read by ``tradebot healthcheck``.

The daemon writes ``{"updated_ms", "run_id", "mode", "venue", "last_candle_close_ms", "feed_lag_ms",
"last_reconciliation_ms", "trading_state", "pid"}`` (times ms UTC by the daemon's clock, lag in ms)
to ``TRADEBOT_DAEMON__HEALTH_FILE`` atomically (write to a temporary file, then rename). The Docker
``HEALTHCHECK`` runs ``tradebot healthcheck``, which prints the report and exits 0 when the file is
fresh and the feed lag is within bounds, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def write_health(path: str | Path, report: dict[str, Any]) -> None:
    """Atomically replace the health file at ``path`` with ``report`` (JSON)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(report, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, target)


def check_health(
    path: str | Path, *, max_age_s: float, max_feed_lag_s: float, now_ms: int | None = None
) -> tuple[bool, str]:
    """Return (healthy, one-line report) for the health file at ``path``.

    Unhealthy when the file is missing or unreadable, older than ``max_age_s`` seconds (by its
    ``written_wall_ms``, wall clock) or its ``feed_lag_ms`` exceeds ``max_feed_lag_s`` seconds.
    """
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return False, f"unhealthy: no readable health file at {str(path)!r} ({type(e).__name__})"
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    age_s = (now - int(report.get("written_wall_ms", 0))) / 1000
    lag = report.get("feed_lag_ms")
    recon = report.get("last_reconciliation_ms")
    line = (
        f"run {report.get('run_id')} ({report.get('mode')}/{report.get('venue')}): "
        f"state {report.get('trading_state')}, feed lag {lag} ms, "
        f"last reconciliation {recon} ms UTC, health file age {age_s:.1f} s"
    )
    if age_s > max_age_s:
        return False, f"unhealthy: health file older than {max_age_s} s; {line}"
    if lag is None or lag > max_feed_lag_s * 1000:
        return False, f"unhealthy: feed lag above {max_feed_lag_s} s; {line}"
    return True, f"healthy: {line}"
