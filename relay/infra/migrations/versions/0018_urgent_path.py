"""issue 17, the urgent path: acknowledgements, confirmation codes of coordinator commands, escalation
steps; a notice's acknowledgement window and escalation step; a member's "no calls" preference

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notices') as batch:
        batch.add_column(sa.Column('ack_within_s', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('escalation_step_s', sa.Integer(), nullable=True))
    with op.batch_alter_table('members') as batch:
        batch.add_column(sa.Column('calls_ok', sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        'acknowledgements',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('notice_id', sa.Integer(), sa.ForeignKey('notices.id', ondelete='CASCADE'), nullable=False),
        sa.Column('member_id', sa.Integer(), sa.ForeignKey('members.id', ondelete='CASCADE'), nullable=False),
        sa.Column('channel', sa.String(10), nullable=False),
        sa.Column('inbound_event_id', sa.Integer(), nullable=True),
        sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('notice_id', 'member_id'),
    )
    op.create_index('ix_acknowledgements_member_id', 'acknowledgements', ['member_id'])
    op.create_table(
        'confirmation_codes',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('code_hash', sa.String(64), nullable=False, unique=True),
        sa.Column('action', sa.String(20), nullable=False),
        sa.Column('notice_id', sa.Integer(), sa.ForeignKey('notices.id', ondelete='CASCADE'), nullable=True),
        sa.Column('member_id', sa.Integer(), sa.ForeignKey('members.id', ondelete='CASCADE'), nullable=False),
        sa.Column('address', sa.String(320), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('outcome', sa.String(20), nullable=False, server_default=''),
    )
    op.create_table(
        'escalation_steps',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('notice_id', sa.Integer(), sa.ForeignKey('notices.id', ondelete='CASCADE'), nullable=False),
        sa.Column('member_id', sa.Integer(), sa.ForeignKey('members.id', ondelete='CASCADE'), nullable=False),
        sa.Column('step', sa.String(20), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False, server_default=''),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('notice_id', 'member_id', 'step'),
    )
    op.create_index('ix_escalation_steps_member_id', 'escalation_steps', ['member_id'])


def downgrade() -> None:
    op.drop_table('escalation_steps')
    op.drop_table('confirmation_codes')
    op.drop_index('ix_acknowledgements_member_id', table_name='acknowledgements')
    op.drop_table('acknowledgements')
    with op.batch_alter_table('members') as batch:
        batch.drop_column('calls_ok')
    with op.batch_alter_table('notices') as batch:
        batch.drop_column('escalation_step_s')
        batch.drop_column('ack_within_s')
