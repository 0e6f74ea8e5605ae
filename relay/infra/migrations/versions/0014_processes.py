"""heartbeats (when the sweeper last ran, so a worker can warn when none runs) and the last error of
an inbound event (shown by `relay events list`)

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'heartbeats',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    with op.batch_alter_table('inbound_events') as batch:
        batch.add_column(sa.Column('last_error', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('inbound_events') as batch:
        batch.drop_column('last_error')
    op.drop_table('heartbeats')
