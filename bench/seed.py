"""A synthetic network of N members for benchmarks and volume tests, written in bulk (Core
executemany and INSERT ... SELECT), not through the CSV import (which checks every row)."""
from __future__ import annotations

from sqlalchemy import insert, literal, select

from relay.cases import create_case
from relay.db import transaction
from relay.models import Member, MemberList, Membership, utcnow


def channels_of(i: int) -> tuple[str, ...]:
    """Member i's channels: 40 % SMS only, 40 % email only, 20 % both."""
    return ("sms",) if i % 10 < 4 else ("email",) if i % 10 < 8 else ("sms", "email")


def seed_network(sessions, n: int, list_name: str = "everyone", case_title: str = "Fever and cough") -> dict:
    """N members on one list (10 % Korean-speaking), and one published case C1. Returns the number of
    SMS and emails a notice to the list makes."""
    now = utcnow()
    with transaction(sessions) as session:
        member_list = MemberList(name=list_name)
        session.add(member_list)
        session.flush()
        rows = []
        for i in range(n):
            wanted = channels_of(i)
            rows.append({"name": f"Member {i}", "short_name": f"M{i}", "phone": f"+1202{i:07d}",
                         "email": f"member{i}@bench.example", "timezone": "UTC", "language": "ko" if i % 10 == 9 else "en",
                         "roles": "member", "active": True, "sms_discussion": "sms" in wanted,
                         "email_discussion": "email" in wanted, "email_hard_bounces": 0, "created_at": now,
                         "updated_at": now})
            if len(rows) == 5000:
                session.execute(insert(Member), rows)
                rows = []
        if rows:
            session.execute(insert(Member), rows)
        session.execute(insert(Membership).from_select(
            ["list_id", "member_id", "created_at"],
            select(literal(member_list.id), Member.id, literal(now, Membership.created_at.type))))
        create_case(session, case_title, chief_complaint="fever")
    sms = sum("sms" in channels_of(i) for i in range(n))
    return {"members": n, "sms": sms, "email": sum("email" in channels_of(i) for i in range(n))}
