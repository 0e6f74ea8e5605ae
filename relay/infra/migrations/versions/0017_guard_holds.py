"""issue 16, the patient-information guard: held messages, the guard's verdict and kinds on inbound events,
and a list's own guard mode

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0015'
branch_labels = None
depends_on = None

WAITING = sa.text("status = 'held'")


def upgrade() -> None:
    with op.batch_alter_table('inbound_events') as batch:
        batch.add_column(sa.Column('guard_verdict', sa.String(length=10), nullable=False, server_default=''))
        batch.add_column(sa.Column('guard_kinds', sa.JSON(), nullable=True))
    with op.batch_alter_table('member_lists') as batch:
        batch.add_column(sa.Column('guard', sa.String(length=10), nullable=True))
    op.create_table(
        'held_messages',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('code', sa.String(length=12), nullable=False, unique=True),
        sa.Column('inbound_event_id', sa.Integer(), sa.ForeignKey('inbound_events.id'), nullable=True, unique=True),
        sa.Column('member_id', sa.Integer(), sa.ForeignKey('members.id', ondelete='CASCADE'), nullable=False),
        sa.Column('case_id', sa.Integer(), sa.ForeignKey('cases.id', ondelete='CASCADE'), nullable=False),
        sa.Column('channel', sa.String(length=10), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('kinds', sa.JSON(), nullable=False),
        sa.Column('findings', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('decided_by', sa.String(length=100), nullable=False),
        sa.Column('post_id', sa.Integer(), sa.ForeignKey('posts.id'), nullable=True, unique=True),
    )
    op.create_index('ix_held_messages_member_id', 'held_messages', ['member_id'])
    op.create_index('ix_held_waiting', 'held_messages', ['expires_at'], postgresql_where=WAITING,
                    sqlite_where=WAITING)


def downgrade() -> None:
    op.drop_index('ix_held_waiting', table_name='held_messages')
    op.drop_index('ix_held_messages_member_id', table_name='held_messages')
    op.drop_table('held_messages')
    with op.batch_alter_table('member_lists') as batch:
        batch.drop_column('guard')
    with op.batch_alter_table('inbound_events') as batch:
        batch.drop_column('guard_kinds')
        batch.drop_column('guard_verdict')
