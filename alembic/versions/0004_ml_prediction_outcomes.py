"""ml_position_predictions: where and when a prediction was made, what it recommended, and its outcome.

The engine records a model's prediction at a rebalance-clock close (issue 16) and, once the trade
it was about has closed, how it turned out. A prediction row now carries its ``symbol``, its time
(``ts`` aware UTC and ``ts_ms``, ms UTC), the model's ``recommended_action`` and the engine's
``action_taken``; the outcome update fills ``outcome`` (JSON: the actual values),
``prediction_accuracy`` (a fraction in [0, 1]) and ``outcome_ts_ms`` (when the trade closed, ms
UTC). Every new column is nullable: rows written before this revision keep ``NULL``, and a
prediction has no outcome until its trade closes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

#: Aware UTC timestamps (types.UTCDateTime); SQLite keeps the UTC wall time as text, as in 0001.
TIMESTAMP = sa.DateTime(timezone=True)
#: JSONB on PostgreSQL, JSON elsewhere (types.JSONType), as in 0001.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "symbol", "ts", "ts_ms", "recommended_action", "action_taken", "outcome",
    "prediction_accuracy", "outcome_ts_ms",
)  # fmt: skip


def upgrade() -> None:
    """Add the nullable prediction context and outcome columns of ``ml_position_predictions``."""
    with op.batch_alter_table("ml_position_predictions") as batch:
        batch.add_column(sa.Column("symbol", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("ts", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("ts_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("recommended_action", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("action_taken", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("outcome", JSON, nullable=True))
        batch.add_column(sa.Column("prediction_accuracy", sa.Double(), nullable=True))
        batch.add_column(sa.Column("outcome_ts_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop the columns added by :func:`upgrade`."""
    with op.batch_alter_table("ml_position_predictions") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
