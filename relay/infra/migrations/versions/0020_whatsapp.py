"""issue 19: WhatsApp as a third channel: the member's WhatsApp number (default: the phone), the choice, the
recorded opt-in and opt-out, and the last inbound WhatsApp message (the 24-hour window)

Revision ID: 0020
Revises: 0015
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('members') as batch:
        batch.add_column(sa.Column('whatsapp', sa.String(length=20), nullable=True))
        batch.add_column(sa.Column('whatsapp_discussion', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('whatsapp_opted_in_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('whatsapp_opted_out_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('whatsapp_last_inbound_at', sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint('uq_members_whatsapp', ['whatsapp'])


def downgrade() -> None:
    with op.batch_alter_table('members') as batch:
        batch.drop_constraint('uq_members_whatsapp', type_='unique')
        for column in ('whatsapp_last_inbound_at', 'whatsapp_opted_out_at', 'whatsapp_opted_in_at',
                       'whatsapp_discussion', 'whatsapp'):
            batch.drop_column(column)
