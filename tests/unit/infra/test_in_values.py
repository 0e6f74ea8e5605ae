"""relay/infra/storage.py in_values: `column IN values` that finds the same rows on both databases, and on
PostgreSQL is one array parameter, so the statement's text does not grow with the number of values (a batch of
200 replies rendered, and psycopg parsed, one placeholder per value in every statement; issue 18)."""
from __future__ import annotations

from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session

from relay.infra.storage import in_values
from relay.model.tables import Member


def _members(session: Session, count: int) -> None:
    session.add_all([Member(name=f"M{i}", short_name=f"M{i}", phone=f"+8210{i:08d}") for i in range(count)])
    session.commit()


def test_the_same_rows_on_either_database_and_one_statement_text_on_postgresql(database_url):
    engine = create_engine(database_url)
    texts: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *_: texts.append(statement))
    with Session(engine) as session:
        _members(session, 30)
        phones = [f"+8210{i:08d}" for i in range(0, 30, 3)] + ["+15550000000"]  # one nobody has
        texts.clear()
        found = session.scalars(select(Member.name).where(in_values(session, Member.phone, phones))
                                .order_by(Member.id)).all()
        assert found == [f"M{i}" for i in range(0, 30, 3)]
        ids = session.scalars(select(Member.id).order_by(Member.id)).all()
        by_id = select(Member.id).order_by(Member.id)  # no ORDER BY, PostgreSQL may answer in any order
        assert session.scalars(by_id.where(in_values(session, Member.id, ids[:2]))).all() == ids[:2]
        assert session.scalars(by_id.where(in_values(session, Member.id, ids))).all() == ids
        assert session.scalars(by_id.where(in_values(session, Member.id, []))).all() == []
    engine.dispose()
    few, many = texts[2], texts[3]  # two ids, then thirty
    if engine.dialect.name == "postgresql":
        assert few == many and "= ANY (" in many, (few, many)
    else:
        assert len(many) > len(few)  # SQLite: the IN list, one placeholder per value
