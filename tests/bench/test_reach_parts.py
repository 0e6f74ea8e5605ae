"""bench/reach.py writes the year's deliveries in one part per core; together the parts are exactly the
rows of the single statement (issue 18 item 6 made the bench's set-up faster, not different)."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import create_engine, text

from bench.reach import Scale, deliveries


def test_deliveries_in_parts_are_the_rows_of_one_statement(postgres_only_url):
    engine = create_engine(postgres_only_url)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    scale = Scale(deliveries=1_001)
    found = []
    for parts in (1, 2, 3):
        with engine.connect() as conn, conn.begin() as transaction:
            for statement in deliveries(scale, parts):
                conn.execute(text(statement), {"start": start})
            found.append(conn.execute(text(
                "SELECT count(*), md5(string_agg(concat_ws('|', dedupe_key, channel, status, error_code, created_at),"
                " ',' ORDER BY dedupe_key)) FROM deliveries")).one())
            transaction.rollback()
    assert len(deliveries(scale, 3)) == 3
    assert found[0][0] == 1_001 and found[0] == found[1] == found[2]
    engine.dispose()
