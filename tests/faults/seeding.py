"""Fast seeding for fault tests: thousands of members on one list, by bulk INSERT (import_members
checks each CSV row in its own savepoint, which is right for people and too slow for 10,000)."""
from __future__ import annotations

from sqlalchemy import insert, select

from relay.infra.db import transaction
from relay.library.cases import create_case
from relay.model.tables import Member, MemberList, Membership, utcnow


def phone_of(n: int) -> str:
    return f"+1202{n:07d}"


def seed_members(services, count: int, list_name: str = "all", emails: bool = False,
                 coordinators: int = 0) -> list[str]:
    """`count` members on `list_name` (the first `coordinators` with role coordinator), and open case C1."""
    now = utcnow()
    rows = [{"name": f"Member {n}", "short_name": f"M{n}", "phone": phone_of(n),
             "email": f"m{n}@example.org" if emails else None, "timezone": "UTC", "language": "en",
             "roles": "coordinator;member" if n < coordinators else "member", "active": True,
             "sms_discussion": True, "email_discussion": emails, "email_hard_bounces": 0,
             "created_at": now, "updated_at": now} for n in range(count)]
    with transaction(services.sessions) as session:
        member_list = MemberList(name=list_name)
        session.add(member_list)
        session.flush()
        for start in range(0, count, 2000):
            session.execute(insert(Member), rows[start:start + 2000])
        ids = list(session.scalars(select(Member.id)))
        for start in range(0, len(ids), 2000):
            session.execute(insert(Membership), [{"list_id": member_list.id, "member_id": i, "created_at": now}
                                                 for i in ids[start:start + 2000]])
        assert create_case(session, "Fever and ground-glass opacities", chief_complaint="fever").code == "C1"
    return [row["phone"] for row in rows]
