"""library and notices: case visibility, views and publication; notice kinds, severity, channels,
expiry, scheduling and corrections

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('visibility', sa.String(length=20), nullable=False, server_default='public'))
        batch_op.add_column(sa.Column('views', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('published_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('title', sa.String(length=300), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('body', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('severity', sa.String(length=10), nullable=False, server_default='routine'))
        batch_op.add_column(sa.Column('channels', sa.String(length=20), nullable=False, server_default='sms;email'))
        batch_op.add_column(sa.Column('status', sa.String(length=20), nullable=False, server_default='sent'))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('corrects_notice_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('created_by', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_notices_corrects', 'notices', ['corrects_notice_id'], ['id'])
        batch_op.create_foreign_key('fk_notices_created_by', 'members', ['created_by'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_constraint('fk_notices_created_by', type_='foreignkey')
        batch_op.drop_constraint('fk_notices_corrects', type_='foreignkey')
        for column in ('created_by', 'corrects_notice_id', 'sent_at', 'scheduled_for', 'expires_at', 'status',
                       'channels', 'severity', 'body', 'title'):
            batch_op.drop_column(column)
    with op.batch_alter_table('cases', schema=None) as batch_op:
        for column in ('published_at', 'views', 'visibility'):
            batch_op.drop_column(column)
