"""Health of a running daemon: a small JSON file it rewrites, read by ``tradebot healthcheck``.

The daemon writes, every ``TRADEBOT_DAEMON__STATUS_INTERVAL_S``::

    {"written_wall_ms", "run_id", "mode", "venue", "pid", "last_candle_close_ms", "feed_lag_ms",
     "trading_state", "halt_reason", "trading_blocked", "last_error", "last_reconciliation_ms",
     "reconciliation_age_s", "reconcile_max_age_s", "equity_quote", "user_stream_up",
     "store_unavailable_since_ms", "store_error", "store_outages"}

Times are ms UTC by the daemon's clock, ``written_wall_ms`` by the wall clock; ages in seconds, lag
in ms. ``store_unavailable_since_ms`` (wall clock) is set while the database cannot be written
(trading is paused, see :mod:`tradebot.adapters.store.resilient`), with the last ``store_error``;
the daemon rewrites the file at once when an outage begins or ends. ``user_stream_up`` says whether
the venue's private stream is subscribed (``None`` without one; a stream down is not unhealthy: fills
then come by polling). The file lives in the daemon's
state directory (``TRADEBOT_DAEMON__HEALTH_FILE``, default ``<data home>/health.json``) and is
replaced atomically: written to a fresh temporary file created exclusively next to it (never an
existing path, so a planted symlink is not followed), then renamed over it (a rename replaces a
symlink, it does not write through it).

``tradebot healthcheck`` (the Docker ``HEALTHCHECK``) prints the report and exits 0 only when the file
is fresh, the feed lag is within bounds, trading is neither halted nor blocked, the database is
reachable (any outage fails it, however short: trading is paused while it lasts), and — with a venue
(testnet, live) — the last reconciliation is younger than its limit.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

#: Modes whose account is reconciled with a venue (paper mode has nothing to reconcile).
RECONCILED_MODES = frozenset({"testnet", "live"})


def write_health(path: str | Path, report: dict[str, Any]) -> None:
    """Atomically replace the health file at ``path`` with ``report`` (JSON), without following a
    symlink at the temporary or the final path; the folder is created (mode 0700) if missing."""
    target = Path(path)
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(report, sort_keys=True, default=str))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_health(
    path: str | Path,
    *,
    max_age_s: float,
    max_feed_lag_s: float,
    max_reconcile_age_s: float | None = None,
    now_ms: int | None = None,
) -> tuple[bool, str]:
    """Return (healthy, one-line report) for the health file at ``path``.

    Unhealthy when the file is missing or unreadable; older than ``max_age_s`` seconds (by its
    ``written_wall_ms``, wall clock); its ``feed_lag_ms`` exceeds ``max_feed_lag_s`` seconds; trading
    is ``halted`` or blocked (``trading_blocked``: orders refused, e.g. by a reconciliation
    mismatch); the store is unavailable (``store_unavailable_since_ms`` set: trading paused until the
    database is back); or, in testnet/live mode, the last reconciliation is older than
    ``max_reconcile_age_s`` (default: the file's ``reconcile_max_age_s``) — its age as the daemon
    wrote it plus the file's age.
    """
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return False, f"unhealthy: no readable health file at {str(path)!r} ({type(e).__name__})"
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    age_s = (now - int(report.get("written_wall_ms", 0))) / 1000
    lag = report.get("feed_lag_ms")
    recon = report.get("last_reconciliation_ms")
    recon_age = report.get("reconciliation_age_s")
    recon_text = "never" if recon is None else f"{recon} ms UTC"
    if recon_age is not None:
        recon_text += f" ({float(recon_age) + age_s:.0f} s ago)"
    state = report.get("trading_state")
    line = (
        f"run {report.get('run_id')} ({report.get('mode')}/{report.get('venue')}): "
        f"state {state}, feed lag {lag} ms, last reconciliation {recon_text}, health file age {age_s:.1f} s"
    )
    if report.get("last_error"):
        line += f", last error: {report['last_error']}"
    if age_s > max_age_s:
        return False, f"unhealthy: health file older than {max_age_s} s; {line}"
    if lag is None or lag > max_feed_lag_s * 1000:
        return False, f"unhealthy: feed lag above {max_feed_lag_s} s; {line}"
    if state == "halted":
        return False, f"unhealthy: trading halted ({report.get('halt_reason') or 'risk limit'}); {line}"
    down_since = report.get("store_unavailable_since_ms")
    if down_since is not None:
        down_s = (now - int(down_since)) / 1000
        return False, (
            f"unhealthy: database unavailable for {down_s:.0f} s, trading paused "
            f"({report.get('store_error') or 'unknown error'}); {line}"
        )
    if report.get("trading_blocked"):
        return False, f"unhealthy: trading blocked ({report['trading_blocked']}); {line}"
    limit = max_reconcile_age_s if max_reconcile_age_s is not None else report.get("reconcile_max_age_s")
    if report.get("mode") in RECONCILED_MODES and limit is not None:
        if recon is None or recon_age is None:
            return False, f"unhealthy: no reconciliation recorded; {line}"
        if float(recon_age) + age_s > float(limit):
            return False, f"unhealthy: last reconciliation older than {float(limit):g} s; {line}"
    return True, f"healthy: {line}"
