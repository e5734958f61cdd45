"""Exception taxonomy of tradebot, named by the recovery action the caller must take.

::

    TradebotError
    ├── ConfigError            refuse to start
    ├── VenueError
    │   ├── VenueUnavailable   transient: retry with backoff (reads only)
    │   │   └── RateLimited    back off harder (honour retry_after_s)
    │   ├── VenueBanned        HTTP 418: halt the venue, log loudly
    │   ├── OrderRejected      do not retry; emit a position event
    │   ├── InsufficientFunds  do not retry; risk block
    │   └── OrderStateUnknown  look the order up by client order id before anything else
    ├── DataError              log the raw payload, skip the message
    ├── StoreUnavailable       the database stayed unreachable past the grace period: exit 1
    └── InvariantViolation     a bug: stop trading, keep the evidence

Errors are mapped once, at the adapter that sees the foreign exception, with ``raise ... from e``.
This module imports nothing from the project so every layer may raise its types.
"""

from __future__ import annotations


class TradebotError(Exception):
    """Base class of every error tradebot raises on purpose."""


class ConfigError(TradebotError):
    """The configuration is invalid; the process must refuse to start.

    The message names the field and the offending value.
    """


class DataError(TradebotError):
    """An input record (CSV row, websocket frame, REST payload) is malformed.

    The caller logs the raw payload (truncated) and skips the record; nothing else is lost.
    """


class InvariantViolation(TradebotError):
    """An internal invariant broke (a bug). Trading must stop with the evidence kept."""


class StoreUnavailable(TradebotError):
    """The event store stayed unreachable (connection lost, disk full) longer than the daemon's
    grace period, or a stop was requested during an outage. The daemon exits 1; what it had not
    stored is replayed from the last checkpoint at the next start."""


class VenueError(TradebotError):
    """Base class of errors raised by an execution venue or market-data source."""


class VenueUnavailable(VenueError):
    """Transient venue failure (timeout, 5xx, connection reset). Safe to retry *reads* only."""


class RateLimited(VenueUnavailable):
    """The venue throttled us (HTTP 429 / -1003). Back off at least ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class VenueBanned(VenueError):
    """The venue banned this client (HTTP 418). Halt all requests to the venue."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OrderRejected(VenueError):
    """The venue definitively refused an order (filters, invalid params). Never retried."""


class InsufficientFunds(OrderRejected):
    """The venue refused an order for lack of balance. Never retried; blocks the intent."""


class OrderStateUnknown(VenueError):
    """The outcome of a submit or cancel is unknown (timeout, 5xx, -1007 after send).

    The order must be looked up by client order id before anything is sent again.
    """


def is_retryable(exc: BaseException) -> bool:
    """Return True when ``exc`` may be retried as is (idempotent reads only).

    Order placement is never retried through this predicate: an unknown submit is resolved by
    looking the order up by client order id.
    """
    return isinstance(exc, VenueUnavailable) and not isinstance(exc, OrderStateUnknown)
