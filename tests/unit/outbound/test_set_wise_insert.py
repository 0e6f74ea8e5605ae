"""relay/outbound/fanout.py insert_rows_set_wise on PostgreSQL: the rows travel as one JSON parameter
(json_to_recordset), so every value must come back exactly as given: Korean and emoji text with quotes,
backslashes, newlines and what looks like JSON or SQL; timestamps with their instant kept (a naive one is UTC,
as UTCDateTime reads it); None as NULL. A row whose key exists is skipped, and RETURNING names only new rows."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.model.tables import Delivery
from relay.outbound.fanout import insert_rows_set_wise
from relay.services import build_services
from tests.conftest import make_settings

SEOUL = timezone(timedelta(hours=9))
AWKWARD = ['김지원: "CT 결과" \\ 확인\n다음 단계 🫁', "{\"a\": [1, 2]}", "'; DROP TABLE deliveries; --", "\ttab\r\n",
           "a" * 4000]


def _row(i: int, body: str, created_at: datetime, next_attempt_at: datetime | None) -> dict:
    return {"dedupe_key": f"test:{i}", "purpose": "relay", "channel": "sms", "to_address": f"+8210{i:08d}",
            "body": body, "status": "queued", "attempts": 0, "post_id": None, "case_id": None, "member_id": None,
            "created_at": created_at, "updated_at": created_at, "next_attempt_at": next_attempt_at}


def test_every_value_comes_back_as_given_and_existing_keys_are_skipped(tmp_path, postgres_only_url):
    services = build_services(make_settings(tmp_path / "var", postgres_only_url))
    aware = datetime(2026, 12, 7, 11, 30, 15, 123456, tzinfo=SEOUL)
    naive = datetime(2026, 12, 7, 2, 30, 15, 654321)  # UTC, as relay writes them
    rows = [_row(i, body, aware if i % 2 else naive, None if i % 2 else aware) for i, body in enumerate(AWKWARD)]
    with Session(services.engine) as session:
        returned = insert_rows_set_wise(session, Delivery.__table__, rows, (Delivery.id, Delivery.dedupe_key))
        session.commit()
        assert sorted(key for _id, key in returned) == sorted(r["dedupe_key"] for r in rows)
        stored = {d.dedupe_key: d for d in session.scalars(select(Delivery))}
        for row in rows:
            d = stored[row["dedupe_key"]]
            assert d.body == row["body"] and d.to_address == row["to_address"] and d.post_id is None
            expected = row["created_at"] if row["created_at"].tzinfo else row["created_at"].replace(tzinfo=timezone.utc)
            assert d.created_at == expected  # the same instant, to the microsecond
            assert d.next_attempt_at == row["next_attempt_at"]
        again = [_row(0, "changed", aware, None), _row(99, "new", aware, None)]
        returned = insert_rows_set_wise(session, Delivery.__table__, again, (Delivery.id, Delivery.dedupe_key))
        session.commit()
        assert [key for _id, key in returned] == ["test:99"]  # the existing key skipped, not overwritten
        assert session.scalar(select(Delivery.body).where(Delivery.dedupe_key == "test:0")) == AWKWARD[0]
    services.dispose()
