"""raw inbound bodies are purged after RELAY_RAW_RETENTION: when it was done, and a partial index on
the rows still holding one, which the sweeper's purge reads oldest first

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

KEPT = sa.text("raw_purged_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table('inbound_events') as batch:
        batch.add_column(sa.Column('raw_purged_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_inbound_raw_kept', 'inbound_events', ['received_at'], unique=False,
                    postgresql_where=KEPT, sqlite_where=KEPT)


def downgrade() -> None:
    op.drop_index('ix_inbound_raw_kept', table_name='inbound_events')
    with op.batch_alter_table('inbound_events') as batch:
        batch.drop_column('raw_purged_at')
