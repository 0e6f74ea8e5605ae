"""issue 16: an image's file name is shown to every reader of the library (its alt text), and images filed
before the guard read names kept them as they came ("홍길동 환자 CXR.jpg"). This empties every stored name in
which the guard finds an identifier (relay/guard/file_names.py), as relay now does when an image is filed; the
library then shows "Image N". With RELAY_GUARD=off in the environment (a network that shares patient data
under its own agreement) the names are left. Nothing to undo: a name once emptied is gone.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08
"""
import logging
import os

import sqlalchemy as sa
from alembic import op

from relay.guard.file_names import kinds_in_file_name

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
IMAGES = sa.table("case_images", sa.column("id", sa.Integer), sa.column("filename", sa.String))


def upgrade() -> None:
    if os.environ.get("RELAY_GUARD", "").strip().lower() == "off":
        log.info("0024: RELAY_GUARD=off, image file names left as they are")
        return
    bind = op.get_bind()
    named = bind.execute(sa.select(IMAGES.c.id, IMAGES.c.filename).where(IMAGES.c.filename != "")).all()
    found = [row.id for row in named if kinds_in_file_name(row.filename)]
    for start in range(0, len(found), 1000):
        bind.execute(sa.update(IMAGES).where(IMAGES.c.id.in_(found[start:start + 1000])).values(filename=""))
    log.info("0024: %s of %s image file names held an identifier and were emptied", len(found), len(named))


def downgrade() -> None:
    pass
