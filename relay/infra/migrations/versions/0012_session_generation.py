"""member_passwords.session_generation: signing out ends every session of the account server-side

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('member_passwords') as batch:
        batch.add_column(sa.Column('session_generation', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('member_passwords') as batch:
        batch.drop_column('session_generation')
