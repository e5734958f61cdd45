"""orders.stop_price and orders.limit_price: the trigger and the limit price of an order (quote
currency).

Stop orders rest at the venue (issue 13): the orders table records each one with its order type
(``stop_market`` / ``stop_limit``) and its trigger price, ``NULL`` for every other order type. The
limit price of a limit or stop-limit order is kept too, so that a stored stop-limit order can be
rebuilt as the command it was (a stop-limit needs both prices). Rows written before this revision
keep ``NULL`` in both.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

#: Lossless decimals: NUMERIC(38, 18) on PostgreSQL, decimal text on SQLite (types.DecimalType), as in 0001.
DECIMAL = sa.Numeric(38, 18).with_variant(sa.Text(), "sqlite")

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable ``orders.stop_price`` and ``orders.limit_price`` columns."""
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("stop_price", DECIMAL, nullable=True))
        batch.add_column(sa.Column("limit_price", DECIMAL, nullable=True))


def downgrade() -> None:
    """Drop ``orders.stop_price`` and ``orders.limit_price``."""
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("limit_price")
        batch.drop_column("stop_price")
