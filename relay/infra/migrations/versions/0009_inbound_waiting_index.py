"""a partial index on the stored webhooks nobody has queued yet: the drain task's claim reads it

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

WAITING = sa.text("processed_at IS NULL AND dispatched_at IS NULL")


def upgrade() -> None:
    op.create_index('ix_inbound_waiting', 'inbound_events', ['id'], unique=False,
                    postgresql_where=WAITING, sqlite_where=WAITING)


def downgrade() -> None:
    op.drop_index('ix_inbound_waiting', table_name='inbound_events')
