"""`relay db upgrade`: database migrations."""
from __future__ import annotations

import click

from relay.cli.common import load_settings, safe_url, upgrade_database


@click.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every Alembic migration (safe to run again)."""
    settings = load_settings()
    upgrade_database(settings)
    click.echo(f"database {safe_url(settings.database_url)} is up to date")
