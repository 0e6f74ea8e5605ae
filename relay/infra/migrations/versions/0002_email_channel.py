"""email channel: member channels, email opt-out and bounces, raw email payloads, webhook nonces

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_discussion', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('email_opted_out_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('email_hard_bounces', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('email_suspended_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('content_type', sa.String(length=200), nullable=False, server_default=''))
    op.create_table('email_bounces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('diagnostic', sa.Text(), nullable=False),
    sa.Column('inbound_event_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbound_event_id'], ['inbound_events.id'], ),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('email_bounces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_bounces_member_id'), ['member_id'], unique=False)
    op.create_table('webhook_nonces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('nonce', sa.String(length=200), nullable=False),
    sa.Column('inbound_event_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbound_event_id'], ['inbound_events.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider', 'nonce')
    )


def downgrade() -> None:
    op.drop_table('webhook_nonces')
    with op.batch_alter_table('email_bounces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_bounces_member_id'))
    op.drop_table('email_bounces')
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.drop_column('content_type')
        batch_op.drop_column('payload')
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('email_suspended_at')
        batch_op.drop_column('email_hard_bounces')
        batch_op.drop_column('email_opted_out_at')
        batch_op.drop_column('email_discussion')
