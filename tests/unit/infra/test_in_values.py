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


def test_an_array_literal_reads_back_as_the_same_list_on_postgresql(postgres_url):
    """relay/infra/storage.py array_literal: the text PostgreSQL reads as the array (ids and provider ids go as
    one string a statement, not as a list psycopg dumps element by element). Whatever a string holds comes back
    as it was: quotes, backslashes, commas, braces, spaces, the word NULL, Korean; None is NULL."""
    from sqlalchemy import Integer, String, Text, bindparam, cast
    from sqlalchemy.dialects import postgresql

    from relay.infra.storage import array_literal

    texts = ['SM' + 'a' * 32, 'say "hi"', 'back\\slash', 'a,b', '{braces}', ' spaced ', 'NULL', '', '폐렴', None,
             '<abc.123@relay.example.org>', "it's"]
    numbers = [0, 7, -3, 2**40]
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        as_text = cast(bindparam("p", type_=Text), postgresql.ARRAY(String))
        assert connection.execute(select(as_text), {"p": array_literal(texts)}).scalar() == texts
        as_int = cast(bindparam("p", type_=Text), postgresql.ARRAY(Integer))
        assert connection.execute(select(as_int), {"p": array_literal(numbers[:3])}).scalar() == numbers[:3]
        assert connection.execute(select(as_int), {"p": array_literal([])}).scalar() == []
    engine.dispose()
    assert array_literal(numbers) == "{0,7,-3,1099511627776}"


def test_an_array_literal_refuses_what_it_cannot_write_exactly():
    import pytest

    from relay.infra.storage import array_literal

    for value in (1.5, True, b"bytes"):
        with pytest.raises(TypeError):
            array_literal(["x", value])
