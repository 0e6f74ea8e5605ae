"""Small SQL helpers that differ by dialect (SQLite and PostgreSQL).

They take a Table or a model's `__table__`, which SQLAlchemy's declarative base types as FromClause
although it is the Table at run time (hence the casts)."""
from __future__ import annotations

from typing import Any, Sequence, cast

from sqlalchemy import Connection, FromClause, Table, any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflicts(session: Session, table: FromClause, rows: Sequence[dict[str, Any]],
                              batch: int = 1000) -> None:
    """Insert rows, skipping any that hit a unique constraint: the database decides what is new."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(cast(Table, table)).on_conflict_do_nothing()
    for start in range(0, len(rows), batch):
        session.execute(stmt, list(rows[start:start + batch]))


def insert_from_select_ignoring_conflicts(session: Session, table: FromClause, columns: list[str], query) -> None:
    """INSERT INTO table (columns) SELECT ... ON CONFLICT DO NOTHING: set-wise, in the database."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(cast(Table, table)).from_select(columns, query).on_conflict_do_nothing()
    session.execute(stmt)


_INSERT_IF_NEW: dict[tuple[str, str, frozenset], Any] = {}


def insert_if_new(session: Session | Connection, table: FromClause, values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the new row's id, or None if it existed.

    The statement is built once per (dialect, table, columns) and the values go as parameters, so
    SQLAlchemy compiles it once: on the webhook path this is most of the insert's cost. A Core
    connection does as well as a session (the webhook edge uses one: relay/inbound/record.py)."""
    dialect = (session.dialect if isinstance(session, Connection) else session.get_bind().dialect).name
    key = (dialect, cast(Table, table).name, frozenset(values))
    stmt = _INSERT_IF_NEW.get(key)
    if stmt is None:
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(cast(Table, table)).on_conflict_do_nothing().returning(table.c.id)
        _INSERT_IF_NEW[key] = stmt
    return session.execute(stmt, values).scalar()


def in_values(session: Session | Connection, column, values):
    """`column IN values` for a batch's many values. On PostgreSQL `column = ANY(:array)`: one parameter, so the
    statement's text is the same whatever the count (SQLAlchemy renders it and psycopg parses it once, and
    PostgreSQL can keep it prepared) instead of one placeholder per value, which SQLAlchemy renders and psycopg
    splits again for every batch (issue 18: ~25 % of a drained reply's CPU at 200 events a batch, with 100,000
    placeholders rendered). Elsewhere (SQLite, the tests) the IN list."""
    values = list(values)
    dialect = session.dialect if isinstance(session, Connection) else session.get_bind().dialect
    if dialect.name == "postgresql":
        return column == any_(bindparam(None, value=values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)
