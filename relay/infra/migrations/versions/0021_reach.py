"""issue 20, reach: daily case views, daily reader counts (counts only: no address, no hash, no salt),
the rollup of closed days (deliveries, replies, notices), the cached country of each member's number,
the admin's switch that publishes the headline figures; and created_at indexes on deliveries, posts
and consent_events, which the rollups and today's live figures read by day

Revision ID: 0021
Revises: 0015
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'reach_case_views',
        sa.Column('case_id', sa.Integer(), sa.ForeignKey('cases.id', ondelete='CASCADE'), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('views', sa.Integer(), nullable=False, server_default='0'),
        sa.PrimaryKeyConstraint('case_id', 'day'),
    )
    op.create_index('ix_reach_case_views_day', 'reach_case_views', ['day'])
    op.create_table(
        'reach_readers',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('visitors', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('members', sa.Integer(), nullable=False, server_default='0'),
        sa.PrimaryKeyConstraint('day'),
    )
    op.create_table(
        'reach_daily',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('series', sa.String(length=20), nullable=False),
        sa.Column('label', sa.String(length=40), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False, server_default='0'),
        sa.PrimaryKeyConstraint('day', 'series', 'label'),
    )
    op.create_table(
        'reach_member_countries',
        sa.Column('member_id', sa.Integer(), sa.ForeignKey('members.id', ondelete='CASCADE'), nullable=False),
        sa.Column('phone', sa.String(length=20), nullable=False, server_default=''),
        sa.Column('country', sa.String(length=2), nullable=False, server_default=''),
        sa.PrimaryKeyConstraint('member_id'),
    )
    op.create_index('ix_reach_member_countries_country', 'reach_member_countries', ['country'])
    op.create_table(
        'reach_publication',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('headline', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('changed_by', sa.String(length=120), nullable=False, server_default=''),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_deliveries_created_at', 'deliveries', ['created_at'])
    op.create_index('ix_posts_created_at', 'posts', ['created_at'])
    op.create_index('ix_consent_events_created_at', 'consent_events', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_consent_events_created_at', table_name='consent_events')
    op.drop_index('ix_posts_created_at', table_name='posts')
    op.drop_index('ix_deliveries_created_at', table_name='deliveries')
    op.drop_table('reach_publication')
    op.drop_index('ix_reach_member_countries_country', table_name='reach_member_countries')
    op.drop_table('reach_member_countries')
    op.drop_table('reach_daily')
    op.drop_table('reach_readers')
    op.drop_index('ix_reach_case_views_day', table_name='reach_case_views')
    op.drop_table('reach_case_views')
