"""structlog configuration: console output on a terminal, JSON lines elsewhere, secrets redacted.

Event names are stable snake_case (``candle_closed``, ``order_submitted``); values go in keyword
arguments with units in the key (``qty_base``, ``notional_quote``, ``latency_ms``). ``bind_run`` binds
run id, mode and venue once per run so every line carries them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "**********"
_SECRET_KEYS = re.compile(r"(secret|password|passwd|api_?key|token|private_?key|signature)", re.IGNORECASE)
# ``scheme://user:password@host``: the password cannot hold "/" (it must be %2F in a URL), so a
# websocket URL like ``wss://host:9443/stream?streams=btcusdt@kline_1m`` is left alone.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z0-9+.-]+://[^:/@\s]+:)(?P<pw>[^@\s/]+)(?P<at>@)", re.IGNORECASE)
# ``?password=…`` / ``&token=…`` query parameters (libpq and SQLAlchemy accept a password there).
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&](?:password|passwd|pwd|secret|token|api_?key|signature)=)(?P<value>[^&\s'\"]+)",
    re.IGNORECASE,
)
_known_secrets: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Remember secret values (API keys, passwords) so that they are masked wherever they appear."""
    for v in values:
        if v and len(v) >= 4:
            _known_secrets.add(v)


def redact_text(text: str) -> str:
    """Mask registered secrets, URL passwords (``scheme://user:***@host``) and secret query parameters
    (``?password=***``) in ``text``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{REDACTED}{m['at']}", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['key']}{REDACTED}", text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(key, v) for v in value)
    if isinstance(value, BaseException):
        return redact_text(repr(value))
    return value


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: mask secret-looking keys, registered secret values and URL passwords."""
    return {k: _redact_value(k, v) for k, v in event_dict.items()}


def _redact_rendered(_logger: Any, _method: str, rendered: str) -> str:
    # Last line of defence: the rendered line (tracebacks included) is scanned once more.
    return redact_text(rendered)


_NOISY_LIBRARIES = ("ccxt", "websockets", "aiohttp", "asyncio", "sqlalchemy", "aiosqlite", "asyncpg")


class _RedactingFilter(logging.Filter):
    """Mask registered secrets and URL passwords in stdlib log records (ccxt, websockets, alembic)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        return True


class _CurrentStderr:
    """File-like object that writes to whatever ``sys.stderr`` is at the moment of the write."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog (and the stdlib root logger) for the process.

    Parameters
    ----------
    level
        ``debug`` / ``info`` / ``warning`` / ``error``.
    fmt
        ``console`` (coloured, human), ``json`` (one JSON object per line) or ``auto`` (console on a
        TTY, JSON otherwise).
    stream
        Where to write (default ``sys.stderr``).
    """
    target = stream if stream is not None else sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and hasattr(target, "isatty") and target.isatty())
    # Without an explicit stream, resolve sys.stderr at each write: a stream captured at configure
    # time (a test's capture, a replaced stderr) may be closed by the time a later line is written.
    stream = stream if stream is not None else _CurrentStderr()
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True) if use_console else structlog.processors.JSONRenderer()
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_processor,
    ]
    if not use_console:
        processors.append(structlog.processors.format_exc_info)
    processors += [renderer, _redact_rendered]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.setLevel(level.upper())
    handler = next((h for h in root.handlers if getattr(h, "_tradebot", False)), None)
    if handler is None:
        handler = logging.StreamHandler(stream)
        handler.addFilter(_RedactingFilter())
        handler._tradebot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    elif isinstance(handler, logging.StreamHandler):
        handler.setStream(stream)  # a later configure_logging(stream=…) moves stdlib lines too
    # Third-party lines (alembic, ccxt, websockets) go through the same renderer as tradebot's own:
    # one JSON object per line off a terminal, so `jq` reads the whole log.
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                redact_processor,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *([] if use_console else [structlog.processors.format_exc_info]),
                renderer,
            ],
        )
    )
    # Third-party libraries log raw requests at DEBUG (ccxt: signed URLs and API-key headers): keep them
    # at WARNING whatever the level asked for; what they still emit is redacted by the filter above.
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def bind_run(**values: Any) -> None:
    """Bind values (run_id, mode, venue) to every following log line of this context."""
    structlog.contextvars.bind_contextvars(**values)
