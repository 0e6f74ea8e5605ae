"""console: member passwords (argon2id hashes) and the emergency sending hold

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'member_passwords',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('member_id', sa.Integer(), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('member_id'),
    )
    op.create_table(
        'sending_hold',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('held', sa.Boolean(), nullable=False),
        sa.Column('reason', sa.String(length=300), nullable=False),
        sa.Column('changed_by', sa.String(length=120), nullable=False),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('sending_hold')
    op.drop_table('member_passwords')
