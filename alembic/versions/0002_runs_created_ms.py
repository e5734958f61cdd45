"""runs.created_ms: the wall-clock time a run was first recorded (ms UTC).

``started_ms`` is the engine's time of the run's first candle: every demo of the shipped sample and
every backtest of one window share it, so it cannot order runs. ``created_ms`` orders ``tradebot
runs`` and picks "the latest run" for ``events``, ``status`` and ``trades``. Rows from before this
revision keep ``NULL`` (they sort after the new ones, by ``started_ms``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 12:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable ``runs.created_ms`` column."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("created_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop ``runs.created_ms``."""
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("created_ms")
