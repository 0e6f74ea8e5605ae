"""issue 18: an index on inbound_events (sender, received_at), for the inbound limits (relay/inbound/limits.py:
the flood count of a sender's last minute and the repeated-text check) — without it each reply's checks read
every stored SMS event (34 ms with 200,000 events, growing with the table)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_inbound_sender_time', 'inbound_events', ['sender', 'received_at'])


def downgrade() -> None:
    op.drop_index('ix_inbound_sender_time', table_name='inbound_events')
