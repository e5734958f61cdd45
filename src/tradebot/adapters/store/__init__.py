"""Event store: SQLAlchemy 2 models, Alembic migrations and the async, batching SQL event store."""

from tradebot.adapters.store.engine import (
    DEFAULT_DATABASE_URL,
    create_engine,
    parse_database_url,
    require_existing,
    sqlite_file,
)
from tradebot.adapters.store.event_store import RunInfo, SqlEventStore
from tradebot.adapters.store.migrate import check_current, current_revision, ensure_schema, upgrade
from tradebot.adapters.store.records import MlPositionPrediction, MlPredictionOutcome
from tradebot.adapters.store.writer import BatchingWriter, WriterQueueFull

__all__ = [
    "DEFAULT_DATABASE_URL",
    "BatchingWriter",
    "MlPositionPrediction",
    "MlPredictionOutcome",
    "RunInfo",
    "SqlEventStore",
    "WriterQueueFull",
    "check_current",
    "create_engine",
    "current_revision",
    "ensure_schema",
    "parse_database_url",
    "require_existing",
    "sqlite_file",
    "upgrade",
]
