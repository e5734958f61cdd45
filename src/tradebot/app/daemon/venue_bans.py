"""Venue bans kept across restarts: a Binance HTTP 418 names how long the IP is banned, and a daemon
that restarts during the ban must not send anything before it ends (each refused request extends a
ban, from 2 minutes up to 3 days: ``rest-api.md`` "LIMITS").

The ban file (``TRADEBOT_DAEMON__BAN_FILE``, JSON ``{"<venue> <host>": {"banned_until_ms": …}}``)
is written as soon as the gate learns of a ban (:func:`record_ban`, through a temporary file and
``os.replace``) and read at start, before the first request (:func:`wait_out_ban`). A missing or
unreadable file means no ban.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import structlog

log = structlog.get_logger("tradebot.daemon")


def ban_key(venue: str, rest_url: str) -> str:
    """Return the key of a venue's ban: the venue name and its REST host (a ban is per host and IP)."""
    return f"{venue} {urlsplit(rest_url).netloc or rest_url}"


def _read(path: Path) -> dict[str, dict[str, int]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def banned_until_ms(path: str | Path, key: str) -> int | None:
    """Return the recorded end of the ban of ``key`` (ms UTC), or ``None``."""
    entry = _read(Path(path)).get(key)
    value = entry.get("banned_until_ms") if isinstance(entry, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def record_ban(path: str | Path, key: str, until_ms: int) -> None:
    """Record that ``key`` is banned until ``until_ms`` (ms UTC); a write failure is logged, not raised."""
    target = Path(path)
    data = _read(target)
    data[key] = {"banned_until_ms": int(until_ms)}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".venue_bans.")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, target)
    except OSError as e:
        log.error("venue_ban_not_recorded", key=key, banned_until_ms=until_ms, error=str(e)[:200])
        return
    log.warning("venue_ban_recorded", key=key, banned_until_ms=until_ms, file=str(target))


async def wait_out_ban(path: str | Path, key: str, *, now_ms: Callable[[], int],
                       sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> int | None:  # fmt: skip
    """Wait, sending nothing, until a ban of ``key`` recorded before this start has ended.

    Returns the ban's end (ms UTC) when one was waited out, else ``None``.
    """
    until = banned_until_ms(path, key)
    if until is None or until <= now_ms():
        return None
    log.warning("venue_ban_in_force", key=key, banned_until_ms=until, wait_s=round((until - now_ms()) / 1000, 1),
                action="no request is sent until the ban recorded before the restart ends")  # fmt: skip
    while (left_ms := until - now_ms()) > 0:
        await sleep(min(left_ms / 1000, 60.0))
    log.info("venue_ban_ended", key=key, banned_until_ms=until)
    return until


__all__ = ["ban_key", "banned_until_ms", "record_ban", "wait_out_ban"]
