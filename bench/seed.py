"""A synthetic network of N members for benchmarks and volume tests, written in bulk (Core
executemany and INSERT ... SELECT), not through the CSV import (which checks every row)."""
from __future__ import annotations

from sqlalchemy import func, insert, literal, select

from relay.infra.db import transaction
from relay.library.cases import create_case
from relay.model.tables import Member, MemberList, Membership, utcnow


def channels_of(i: int) -> tuple[str, ...]:
    """Member i's channels: 40 % SMS only, 40 % email only, 20 % both."""
    return ("sms",) if i % 10 < 4 else ("email",) if i % 10 < 8 else ("sms", "email")


def email_only(i: int) -> tuple[str, ...]:
    """Every member takes email only (the email-only fan-out: relay against Mailman's personalised delivery)."""
    return ("email",)


def seed_network(sessions, n: int, list_name: str = "everyone", case_title: str = "Fever and cough",
                 channels=channels_of) -> dict:
    """N members on one list (10 % Korean-speaking), and one published case C1; each member's channels
    from `channels(i)` (default channels_of). Returns the number of SMS and emails a notice to the list makes."""
    now = utcnow()
    with transaction(sessions) as session:
        member_list = MemberList(name=list_name)
        session.add(member_list)
        session.flush()
        if session.get_bind().dialect.name == "postgresql" and all(channels(i) == channels(i % 10) for i in range(n)):
            _insert_members_set_wise(session, n, [channels(k) for k in range(10)], now)
        else:  # a channel rule that is not by the last digit: row by row
            _insert_members_rows(session, n, channels, now)
        session.execute(insert(Membership).from_select(
            ["list_id", "member_id", "created_at"],
            select(literal(member_list.id), Member.id, literal(now, Membership.created_at.type))))
        create_case(session, case_title, chief_complaint="fever")
    sms = sum("sms" in channels(i) for i in range(n))
    return {"members": n, "sms": sms, "email": sum("email" in channels(i) for i in range(n))}


def _member_row(i: int, wanted: tuple[str, ...], now) -> dict:
    return {"name": f"Member {i}", "short_name": f"M{i}", "phone": f"+1202{i:07d}", "email": f"member{i}@bench.example",
            "timezone": "UTC", "language": "ko" if i % 10 == 9 else "en", "roles": "member", "active": True,
            "sms_discussion": "sms" in wanted, "email_discussion": "email" in wanted, "email_hard_bounces": 0,
            "created_at": now, "updated_at": now}


def _insert_members_rows(session, n: int, channels, now) -> None:
    for start in range(0, n, 5000):
        session.execute(insert(Member), [_member_row(i, channels(i), now) for i in range(start, min(n, start + 5000))])


def _insert_members_set_wise(session, n: int, by_digit: list[tuple[str, ...]], now) -> None:
    """The rows of _member_row for i in 0..n-1 in one INSERT ... SELECT over generate_series (100,000
    members: ~1 s instead of ~9 s row by row); the channels by i's last digit. Columns not named get
    their model defaults (include_defaults), as the ORM would give them."""
    from sqlalchemy import Integer, literal_column

    def flags(channel: str) -> str:
        return "(ARRAY[" + ",".join("true" if channel in wanted else "false" for wanted in by_digit) + "])[i % 10 + 1]"

    i = literal_column("i", Integer)
    columns = {"name": literal_column("'Member ' || i"), "short_name": literal_column("'M' || i"),
               "phone": literal_column("'+1202' || lpad(i::text, 7, '0')"),
               "email": literal_column("'member' || i || '@bench.example'"), "timezone": literal("UTC"),
               "language": literal_column("CASE WHEN i % 10 = 9 THEN 'ko' ELSE 'en' END"), "roles": literal("member"),
               "active": literal(True), "sms_discussion": literal_column(flags("sms")),
               "email_discussion": literal_column(flags("email")), "email_hard_bounces": literal(0),
               "created_at": literal(now, Member.created_at.type), "updated_at": literal(now, Member.updated_at.type)}
    series = select(*(value.label(name) for name, value in columns.items())).select_from(
        func.generate_series(0, n - 1).alias("i")).order_by(i)
    session.execute(insert(Member).from_select(list(columns), series))


DIGEST_ZONES = ("UTC", "Europe/London", "Europe/Berlin", "Europe/Athens", "Africa/Nairobi", "Asia/Tehran",
                "Asia/Dubai", "Asia/Kabul", "Asia/Karachi", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Dhaka",
                "Asia/Bangkok", "Asia/Shanghai", "Asia/Seoul", "Australia/Adelaide", "Australia/Sydney",
                "Pacific/Auckland", "Pacific/Chatham", "Pacific/Honolulu", "America/Anchorage",
                "America/Los_Angeles", "America/Denver", "America/Chicago", "America/New_York",
                "America/Caracas", "America/Sao_Paulo", "America/St_Johns", "Atlantic/Azores")


def digest_zones(now, margin_minutes: int = 45) -> list[tuple[str, int]]:
    """(zone, delivery hour) pairs that make a daily digest due at `now`: the hour is the zone's local
    hour at `now` (so today's delivery time has come). Zones within `margin_minutes` of local midnight
    are left out, so the local date cannot change while the benchmark runs."""
    from datetime import timedelta

    from relay.members.ladder import zone

    found = []
    for name in DIGEST_ZONES:
        local = now.astimezone(zone(name))
        if (local + timedelta(minutes=margin_minutes)).date() == local.date():
            found.append((name, local.hour))
    return found


def seed_digest_subscribers(sessions, n: int, now) -> dict:
    """N confirmed daily email digest subscribers, all due at `now` (timezones spread over the world,
    each with its delivery hour at its local hour of `now`), each with yesterday's digest already
    sent (so today's window is the last 24 hours), and a day's content grouped by case: three new
    cases (one members-only), two guideline changes, and posts on five cases.

    Half are members switched to digest (10 % Korean-speaking, 1 in 20 muting one case); the other
    half subscribed on the web form (public cases only). Returns counts and the zones used."""
    from datetime import timedelta

    from sqlalchemy import Date, String, cast, func
    from sqlalchemy import text as sql_text

    from relay.model.tables import CaseMute, Digest, DigestSubscription, Notice, Post, Thread

    zones = digest_zones(now)
    day_ago = now - timedelta(days=1)
    confirmed = now - timedelta(days=3)
    with transaction(sessions) as session:
        authors = []
        for i in range(8):
            author = Member(name=f"Doctor {i}", short_name=f"Dr{i}", email=f"author{i}@bench.example",
                            phone=f"+1203{i:07d}", timezone="UTC", language="en", roles="member",
                            created_at=confirmed, updated_at=confirmed)
            session.add(author)
            authors.append(author)
        session.flush()
        cases = []
        for _i, (title, visibility, published) in enumerate([
                ("Fever and cough after travel", "public", now - timedelta(days=10)),
                ("Rash in a returning hiker", "members", now - timedelta(days=6)),
                ("Ground-glass opacities in a non-smoker", "public", now - timedelta(hours=20)),
                ("Recurrent syncope in a teenager", "members", now - timedelta(hours=9)),
                ("Hyponatraemia after a marathon", "public", now - timedelta(hours=2))]):
            case = create_case(session, title, chief_complaint=title.split()[0].lower(), visibility=visibility)
            case.published_at = case.created_at = published
            cases.append(case)
        session.flush()
        for c, case in enumerate(cases):
            thread = session.query(Thread).filter_by(case_id=case.id).one()
            for p in range(3 + c):
                session.add(Post(thread_id=thread.id, author_id=authors[(c + p) % len(authors)].id, kind="reply",
                                 channel="web" if p % 2 else "email",
                                 body=f"Post {p + 1} on {case.code}: " + "the history and the findings " * (2 + p),
                                 created_at=now - timedelta(hours=22 - 3 * c, minutes=10 * p)))
        for title, case in (("Empirical antibiotics for travellers' fever", cases[0]),
                            ("Chest CT before discharge", cases[2])):
            session.add(Notice(kind="guideline", case_id=case.id, lists="everyone", title=title, body=title,
                               status="sent", sent_at=now - timedelta(hours=5), created_at=now - timedelta(hours=5)))

        members, subscriptions = [], []
        for i in range(n):
            name, hour = zones[i % len(zones)]
            address = f"reader{i}@bench.example"
            if i % 2 == 0:
                members.append({"name": f"Reader {i}", "short_name": f"R{i}", "phone": None, "email": address,
                                "timezone": name, "language": "ko" if i % 20 == 18 else "en", "roles": "member",
                                "active": True, "sms_discussion": False, "email_discussion": False,
                                "email_hard_bounces": 0, "created_at": confirmed, "updated_at": confirmed})
            subscriptions.append({"member_id": None, "channel": "email", "address": address, "timezone": name,
                                  "frequency": "daily", "hour": hour, "status": "active", "consent_ip": "",
                                  "consent_form": "", "created_at": confirmed, "confirmed_at": confirmed,
                                  "unsubscribed_at": None})
        for start in range(0, len(members), 5000):
            session.execute(insert(Member), members[start:start + 5000])
        for start in range(0, len(subscriptions), 5000):
            session.execute(insert(DigestSubscription), subscriptions[start:start + 5000])
        # the members' own subscriptions point at them (same address)
        session.execute(sql_text("UPDATE digest_subscriptions s SET member_id = m.id FROM members m "
                                 "WHERE m.email = s.address AND s.channel = 'email'"))
        session.execute(insert(CaseMute).from_select(
            ["member_id", "case_id", "channel", "created_at"],
            select(Member.id, literal(cases[0].id), literal("email"), literal(confirmed, CaseMute.created_at.type))
            .where(Member.email.like("reader%@bench.example"), Member.id % 20 == 0)))
        # yesterday's digest, already sent: today's window starts where it ended
        yesterday = cast(cast(func.timezone(DigestSubscription.timezone, literal(day_ago, Digest.window_end.type)),
                              Date), String)
        session.execute(insert(Digest).from_select(
            ["subscription_id", "period", "window_start", "window_end", "items", "subject", "text", "html",
             "created_at"],
            select(DigestSubscription.id, yesterday, literal(day_ago - timedelta(days=1), Digest.window_start.type),
                   literal(day_ago, Digest.window_end.type), literal(0), literal(""), literal(""), literal(""),
                   literal(day_ago, Digest.created_at.type))))
    return {"subscribers": n, "members": len(members), "zones": [z for z, _ in zones],
            "cases": [c.code for c in cases], "window_start": day_ago}


REPLY_CASES_PER_MEMBERS = 4  # members following each case in the inbound workload


def reply_phone(i: int) -> str:
    return f"+1404{i:07d}"


def seed_repliers(sessions, members: int) -> dict:
    """The inbound workload's network: `members` SMS members (phones reply_phone(i)), and one case per
    REPLY_CASES_PER_MEMBERS of them that those members follow, so that each member's reply "C<n> ..."
    (reply_case(i)) is a post on a case they follow, relayed by SMS to its other followers, as a real
    discussion is. Returns counts."""
    from relay.model.tables import Case, Participant, Thread

    now = utcnow()
    cases = max(1, members // REPLY_CASES_PER_MEMBERS)
    with transaction(sessions) as session:
        rows = [{"name": f"Replier {i}", "short_name": f"R{i}", "phone": reply_phone(i), "email": None,
                 "timezone": "UTC", "language": "en", "roles": "member", "active": True, "sms_discussion": True,
                 "email_discussion": False, "email_hard_bounces": 0, "created_at": now, "updated_at": now}
                for i in range(members)]
        for start in range(0, len(rows), 5000):
            session.execute(insert(Member), rows[start:start + 5000])
        ids = dict(session.execute(select(Member.phone, Member.id).where(Member.phone.like("+1404%"))).all())
        # The cases as create_case makes them (open, public, published now, numbered from 1 in this fresh
        # database, each with its thread), written in bulk: one by one they were most of the workload's set-up.
        first = (session.scalar(select(func.max(Case.number))) or 0) + 1
        numbered = dict(session.execute(insert(Case).returning(Case.number, Case.id), [
            {"number": first + n, "title": f"Bench case {n + 1}", "chief_complaint": "cough", "symptoms": "",
             "exposure_history": "", "findings": "", "status": "open", "visibility": "public", "published_at": now}
            for n in range(cases)]).all())
        threads = dict(session.execute(insert(Thread).returning(Thread.case_id, Thread.id),
                                       [{"case_id": numbered[first + n]} for n in range(cases)]).all())
        session.execute(insert(Participant), [
            {"thread_id": threads[numbered[first + i % cases]], "member_id": ids[reply_phone(i)], "reason": "posted",
             "created_at": now} for i in range(members)])
    return {"members": members, "cases": cases}


def reply_case(i: int, members: int) -> str:
    """The case code member i replies on (the case it follows)."""
    return f"C{i % max(1, members // REPLY_CASES_PER_MEMBERS) + 1}"
