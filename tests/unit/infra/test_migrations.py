"""Alembic migrations build exactly the schema the models describe, on both databases."""
from __future__ import annotations

from alembic import command

from relay.infra.migrate import alembic_config, current_heads, upgrade


def test_models_and_migrations_agree(database_url):
    command.check(alembic_config(database_url))  # raises if autogenerate finds a difference


def test_upgrade_is_idempotent(database_url):
    upgrade(database_url)
    upgrade(database_url)
    assert current_heads(database_url) == {"0024"}
