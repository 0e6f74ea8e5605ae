"""Counters kept in the database by one atomic statement: INSERT ... ON CONFLICT DO UPDATE SET n = n + k
(PostgreSQL and SQLite both have it), so concurrent web processes never lose an increment and never
read-modify-write in Python."""
from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def _insert(session: Session, table: Any):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def increment(session: Session, table: Any, keys: dict[str, Any], column: str, by: int = 1) -> None:
    """Add `by` to `column` of the row of `table` with primary key `keys`, creating it at `by`."""
    statement = _insert(session, table).values(**keys, **{column: by})
    session.execute(statement.on_conflict_do_update(
        index_elements=list(keys), set_={column: getattr(table.c, column) + by}))


def put(session: Session, table: Any, keys: dict[str, Any], values: dict[str, Any]) -> None:
    """Write `values` on the row of `table` with primary key `keys`, creating it if missing."""
    statement = _insert(session, table).values(**keys, **values)
    session.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=values))


def put_many(session: Session, table: Any, keys: list[str], rows: list[dict[str, Any]]) -> None:
    """`put` for many rows in one statement (executemany): each row's non-key columns overwrite."""
    if not rows:
        return
    statement = _insert(session, table)
    columns = [name for name in rows[0] if name not in keys]
    session.execute(statement.on_conflict_do_update(
        index_elements=keys, set_={name: statement.excluded[name] for name in columns}), rows)
