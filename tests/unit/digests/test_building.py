"""Digests with a frozen clock: the beat schedule run over a simulated week for subscribers in Seoul, London,
New York (across the end of daylight saving), Kathmandu (+5:45) and Chatham (+12:45) — each gets exactly one
digest per period at 07:00 local, none when nothing is new — and exactly once under retries and two
concurrent beat processes (PostgreSQL)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select, update

from relay.digests.building import due_period, run_digests
from relay.discussion.threads import ensure_thread
from relay.infra.db import transaction
from relay.infra.dispatch import RecordingDispatcher
from relay.library.cases import create_case
from relay.model.tables import Delivery, Digest, DigestSubscription, Post, utcnow
from relay.services import build_services
from tests.conftest import RecordingSender, make_settings, run_worker
from workers.app import create_celery

ZONES = ("Asia/Seoul", "Europe/London", "America/New_York", "Asia/Kathmandu", "Pacific/Chatham")
START = datetime(2026, 10, 28, 0, 0, tzinfo=timezone.utc)  # New York leaves daylight saving on 1 November
END = START + timedelta(days=8)
# Posts at 12:00 UTC every day but 31 October and 1 November: everyone has empty periods in between.
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)  # a fixed "now", far from any period boundary
POST_TIMES = [START + timedelta(days=d, hours=12) for d in range(8) if d not in (3, 4)]


def subscribe(services, address: str, zone: str, frequency: str = "daily", hour: int = 7, at=START) -> int:
    with transaction(services.sessions) as session:
        sub = DigestSubscription(channel="email", address=address, timezone=zone, frequency=frequency, hour=hour,
                                 status="active", created_at=at, confirmed_at=at)
        session.add(sub)
        session.flush()
        return sub.id


def post_at(services, case_code: str, when: datetime, text: str) -> None:
    from relay.library.cases import get_case

    with transaction(services.sessions) as session:
        case = get_case(session, case_code)
        session.add(Post(thread_id=ensure_thread(session, case).id, kind="reply", channel="web", body=text,
                         created_at=when))


def beat_ticks(start: datetime, end: datetime):
    """The times the beat entry fires between start and end (a crontab: minutes 0, 15, 30, 45)."""
    schedule = create_celery(make_settings_for_beat()).conf.beat_schedule["send-digests"]["schedule"]
    minutes = sorted(schedule.minute)
    assert minutes == [0, 15, 30, 45]
    t = start
    while t < end:
        if t.minute in minutes:
            yield t
        t += timedelta(minutes=15)


def make_settings_for_beat():
    import tempfile
    from pathlib import Path

    return make_settings(Path(tempfile.mkdtemp()), "sqlite://")


def test_a_simulated_week_gives_one_digest_per_period_at_the_local_hour(network, mail):
    with transaction(network.sessions) as session:
        case = create_case(session, "Week case")
        case.published_at = case.created_at = START - timedelta(days=30)
    subs = {zone: subscribe(network, f"{zone.split('/')[1].lower()}@example.net", zone) for zone in ZONES}
    weekly = subscribe(network, "weekly@example.net", "Asia/Seoul", frequency="weekly")
    pending = iter(POST_TIMES)
    next_post = next(pending)
    for tick in beat_ticks(START, END):
        while next_post is not None and next_post <= tick:
            post_at(network, "C2", next_post, f"post at {next_post.isoformat()}")
            next_post = next(pending, None)
        with time_machine.travel(tick, tick=False):
            run_digests(network, now=tick)
            run_worker(network)

    with network.sessions() as session:
        digests = session.scalars(select(Digest).order_by(Digest.id)).all()
        deliveries = {d.dedupe_key: d for d in session.scalars(select(Delivery).where(Delivery.purpose == "digest"))}
    for zone, sub_id in subs.items():
        tz = ZoneInfo(zone)
        mine = [d for d in digests if d.subscription_id == sub_id]
        # One per local day whose 07:00 falls in the simulated week, each built at exactly 07:00 local.
        days = sorted({(START + timedelta(hours=h)).astimezone(tz).date() for h in range(8 * 24)})
        expected_periods = [d.isoformat() for d in days
                            if START <= datetime(d.year, d.month, d.day, 7, tzinfo=tz) < END]
        assert [d.period for d in mine] == expected_periods, zone
        for digest in mine:
            local = digest.created_at.astimezone(tz)
            assert (local.hour, local.minute) == (7, 0), (zone, digest.period, local)
            assert local.date().isoformat() == digest.period
            new_posts = [t for t in POST_TIMES if digest.window_start <= t < digest.window_end]
            assert digest.items == (1 if new_posts else 0), (zone, digest.period)
            assert (f"digest:{digest.id}" in deliveries) == bool(new_posts), (zone, digest.period)
        assert any(d.items == 0 for d in mine) and any(d.items for d in mine)  # some empty, some not
        # Windows chain without a gap or an overlap.
        assert all(a.window_end == b.window_start for a, b in zip(mine, mine[1:]))
    # New York across the change: 07:00 EDT is 11:00 UTC, 07:00 EST is 12:00 UTC.
    ny = {d.period: d.created_at for d in digests if d.subscription_id == subs["America/New_York"]}
    assert ny["2026-10-31"].hour == 11 and ny["2026-11-01"].hour == 12
    kathmandu = [d.created_at for d in digests if d.subscription_id == subs["Asia/Kathmandu"]]
    assert {(t.hour, t.minute) for t in kathmandu} == {(1, 15)}
    chatham = [d.created_at for d in digests if d.subscription_id == subs["Pacific/Chatham"]]
    assert {(t.hour, t.minute) for t in chatham} == {(17, 15)}  # 07:00 +13:45 (Chatham summer time)
    # The weekly subscriber: one digest, on Monday 2 November at 07:00 in Seoul.
    [week] = [d for d in digests if d.subscription_id == weekly]
    assert week.period == "2026-W45" and week.created_at == datetime(2026, 11, 1, 22, 0, tzinfo=timezone.utc)
    # Every digest that had something was sent, once, as email with both parts.
    sent = [m for m in mail.sent if m.to.endswith("@example.net")]
    assert len(sent) == len(deliveries)
    assert len({m.delivery_id for m in sent}) == len(sent)


def test_digest_email_has_both_parts_groups_by_case_and_carries_one_click_unsubscribe(network, mail):
    now = NOON
    sub_id = subscribe(network, "reader@example.net", "UTC", hour=0, at=now - timedelta(days=2))
    with transaction(network.sessions) as session:
        session.get(DigestSubscription, sub_id).confirmed_at = now - timedelta(days=2)
    for i in range(5):
        post_at(network, "C1", now - timedelta(hours=5 - i), f"post number {i} " + "long words " * 30)
    run_digests(network, now=now)
    run_worker(network)
    [sent] = [m for m in mail.sent if m.to == "reader@example.net"]
    email = message_from_bytes(sent.raw, policy=policy.default)
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/unsubscribe/" in email["List-Unsubscribe"] and "mailto:unsubscribe+" in email["List-Unsubscribe"]
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert "C1: Fever and ground-glass opacities (5 new posts)" in text
    assert "post number 4" in text and "post number 1" not in text  # the latest three, shortened
    assert "…" in text and "https://relay.example.org/library/cases/C1" in text
    assert '<a href="https://relay.example.org/library/cases/C1">C1</a>' in html
    assert "New cases" in html or "New discussion" in html


def test_nothing_new_means_nothing_sent(network, mail):
    now = NOON
    subscribe(network, "quiet@example.net", "UTC", hour=0, at=now - timedelta(hours=1))
    with transaction(network.sessions) as session:
        session.scalar(select(DigestSubscription)).confirmed_at = now - timedelta(days=1)
        from relay.model.tables import Case

        for case in session.scalars(select(Case)):  # C1 is older than the window
            case.published_at = case.created_at = now - timedelta(days=3)
    report = run_digests(network, now=now)
    run_worker(network)
    assert report.sent == 0 and mail.sent == []
    with network.sessions() as session:
        assert [d.items for d in session.scalars(select(Digest))] == [0]


def test_a_retried_run_sends_nothing_more(network, mail):
    now = NOON
    subscribe(network, "again@example.net", "UTC", hour=0, at=now - timedelta(days=1))
    post_at(network, "C1", now - timedelta(minutes=5), "new")
    assert run_digests(network, now=now).sent == 1
    assert run_digests(network, now=now + timedelta(minutes=15)).sent == 0
    with network.sessions() as session:
        assert len(session.scalars(select(Digest)).all()) == 1


def test_due_period_waits_for_the_local_hour_and_for_the_confirmation():
    sub = DigestSubscription(timezone="Asia/Kathmandu", frequency="daily", hour=7,
                             confirmed_at=datetime(2026, 11, 1, tzinfo=timezone.utc))
    assert due_period(sub, datetime(2026, 11, 2, 1, 14, tzinfo=timezone.utc)) is None  # 06:59 local
    assert due_period(sub, datetime(2026, 11, 2, 1, 15, tzinfo=timezone.utc))[0] == "2026-11-02"
    sub.confirmed_at = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)  # confirmed after today's 07:00
    assert due_period(sub, datetime(2026, 11, 2, 3, 0, tzinfo=timezone.utc)) is None


def test_two_concurrent_beat_runs_build_one_digest_per_subscriber(postgres_only_url, tmp_path):
    """Two beat processes (each its own engine and connections) run the same quarter hour at once."""
    settings = make_settings(tmp_path / "var", postgres_only_url)
    mails = [RecordingSender(), RecordingSender()]
    runners = [build_services(settings, dispatcher=RecordingDispatcher(), senders={"sms": RecordingSender(),
                                                                                   "email": mails[i]})
               for i in range(2)]
    now = NOON
    try:
        with transaction(runners[0].sessions) as session:
            case = create_case(session, "Concurrent case")
            case.published_at = case.created_at = now - timedelta(hours=1)
        for i in range(20):
            subscribe(runners[0], f"reader{i}@example.net", ZONES[i % len(ZONES)], hour=0,
                      at=now - timedelta(days=2))
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def beat(services):
            try:
                barrier.wait()
                for _ in range(3):  # and each retries its task
                    run_digests(services, now=now)
            except BaseException as exc:  # noqa: BLE001 — reported below
                errors.append(exc)

        threads = [threading.Thread(target=beat, args=(s,)) for s in runners]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        for services in runners:
            run_worker(services)
        with runners[0].sessions() as session:
            digests = session.scalars(select(Digest)).all()
            planned = session.scalars(select(Delivery).where(Delivery.purpose == "digest")).all()
        due = [d for d in digests]
        assert len({d.subscription_id for d in due}) == len(due) == 20
        assert len(planned) == 20
        assert sorted(m.to for sender in mails for m in sender.sent) == sorted(
            f"reader{i}@example.net" for i in range(20))
    finally:
        for services in runners:
            services.dispose()


@pytest.mark.parametrize("bad", ["", "Mars/Base", "../etc/passwd"])
def test_unknown_zones_are_refused(bad):
    from relay.members.subscriptions import SubscriptionError, valid_zone

    with pytest.raises(SubscriptionError):
        valid_zone(bad)


def test_an_sms_member_who_texts_digest_gets_one_text_with_the_library_link(network, sms):
    from tests.helpers import record_sms

    record_sms(network, "+821012345603", "DIGEST")  # Park, Asia/Seoul
    run_worker(network)
    with transaction(network.sessions) as session:
        sub = session.scalar(select(DigestSubscription))
        sub.confirmed_at = NOON - timedelta(days=1)
    for i in range(3):
        post_at(network, "C1", NOON - timedelta(hours=i + 1), f"post {i}")
    sms.sent.clear()
    seoul_seven = datetime(2026, 11, 28, 7, 0, tzinfo=ZoneInfo("Asia/Seoul")).astimezone(timezone.utc)
    run_digests(network, now=seoul_seven - timedelta(minutes=15))
    run_worker(network)
    assert sms.sent == []  # 06:45 in Seoul: not yet
    run_digests(network, now=seoul_seven)
    run_worker(network)
    [text] = sms.sent
    assert text.to == "+821012345603" and len(text.body) <= 160
    assert "3 posts in 1 case" in text.body and text.body.endswith("https://relay.example.org/library/")


def test_the_beat_task_sends_digests_once_however_often_it_runs(tmp_path, network, mail):
    """relay.send_digests is on the beat schedule (maintenance queue); a retried task sends nothing more."""
    import os

    from relay.infra.dispatch import QUEUE_MAINTENANCE, TASK_QUEUES, TASK_SEND_DIGESTS

    app = create_celery(network.settings.replace(var_dir=tmp_path / "beat"))
    entry = app.conf.beat_schedule["send-digests"]
    assert entry["task"] == TASK_SEND_DIGESTS
    assert entry["options"]["queue"] == QUEUE_MAINTENANCE == TASK_QUEUES[TASK_SEND_DIGESTS]
    app.relay_services._services, app.relay_services._pid = network, os.getpid()
    now = datetime.now(timezone.utc)
    subscribe(network, "task@example.net", "UTC", hour=0, at=now - timedelta(days=2))
    post_at(network, "C1", now - timedelta(minutes=1), "something new")
    results = [app.tasks[TASK_SEND_DIGESTS].apply().get() for _ in range(3)]
    assert results[0] == 1 and results[1:] == [0, 0]
    run_worker(network)
    assert [m.to for m in mail.sent] == ["task@example.net"]


# --- the set-wise path (relay.digests.building.build_digests, bulk_send's digest emails): what the bench times


def _varied_subscribers(services, now):
    """Members and web subscribers who see different things: members-only and draft cases, a mute, a
    missed notice, Korean, SMS, weekly, a later window start; returns the (subscription, period) due."""
    from relay.members.subscriptions import ensure_member_subscription
    from relay.model.tables import CaseMute, Member, Notice

    with transaction(services.sessions) as session:
        public = create_case(session, "Public case", visibility="public")
        members_only = create_case(session, "Members-only case", visibility="members")
        draft = create_case(session, "Draft case", draft=True)
        for case in (public, members_only, draft):
            case.created_at = now - timedelta(hours=10)
            case.published_at = None if case is draft else now - timedelta(hours=10)
        codes = (public.code, members_only.code, draft.code)
        session.add(Notice(kind="guideline", case_id=public.id, lists="tft", title="Public guideline", body="b",
                           status="sent", sent_at=now - timedelta(hours=3)))
        session.add(Notice(kind="guideline", case_id=members_only.id, lists="tft", title="Members guideline",
                           body="b", status="sent", sent_at=now - timedelta(hours=2)))
        session.add(Notice(kind="guideline", lists="tft", title="General guideline", body="b", status="sent",
                           sent_at=now - timedelta(hours=1)))
        expired = Notice(kind="announcement", lists="tft", title="Missed meeting", body="b", status="sent",
                         sent_at=now - timedelta(hours=5), expires_at=now - timedelta(hours=4))
        session.add(expired)
        members = {m.name.split()[0]: m for m in session.scalars(select(Member))}
        subs = [ensure_member_subscription(session, m, "email") for m in members.values()]
        subs.append(ensure_member_subscription(session, members["Ben"], "sms"))
        session.flush()
        session.add(CaseMute(member_id=members["Lee"].id, case_id=public.id, channel="email"))
        session.add(Delivery(dedupe_key=f"notice:{expired.id}:{members['Park'].id}:email", purpose="notice",
                             channel="email", member_id=members["Park"].id, to_address="seoyeon@example.org",
                             body="", status="failed", error_code="expired", updated_at=now - timedelta(hours=4)))
        for sub in subs:
            sub.confirmed_at = sub.created_at = now - timedelta(days=2)
        sub_ids = [s.id for s in subs]
    for code in codes:
        for i in range(4):
            post_at(services, code, now - timedelta(hours=9 - i), f"{code} post {i} " + "words " * 40)
    post_at(services, "C1", now - timedelta(hours=30), "in the two-day windows, not in the six-hour one")
    sub_ids += [subscribe(services, f"web{i}@example.net", "UTC", at=now - timedelta(days=2)) for i in range(3)]
    weekly = subscribe(services, "weekly@example.net", "UTC", frequency="weekly", at=now - timedelta(days=9))
    later = sub_ids[-1]
    with transaction(services.sessions) as session:  # its last digest ended 6 hours ago
        session.add(Digest(subscription_id=later, period="old", window_start=now - timedelta(days=1),
                           window_end=now - timedelta(hours=6), created_at=now - timedelta(hours=6)))
    return [(s, "2026-11-27") for s in sub_ids] + [(weekly, "2026-W48")]


def _written(services):
    with services.sessions() as session:
        digests = {d.subscription_id: (d.period, d.window_start, d.window_end, d.items, d.subject, d.text, d.html)
                   for d in session.scalars(select(Digest).where(Digest.period != "old"))}
        by_digest = {d.id: d.subscription_id for d in session.scalars(select(Digest))}
        planned = {by_digest[int(d.dedupe_key.split(":")[1])]: (d.channel, d.member_id, d.to_address, d.body,
                                                                 d.status)
                   for d in session.scalars(select(Delivery).where(Delivery.purpose == "digest"))}
    return digests, planned


def test_the_set_wise_build_writes_what_the_subscriber_by_subscriber_build_writes(network):
    from relay.digests.building import build_digest, build_digests

    now = NOON
    due = _varied_subscribers(network, now)
    ids = build_digests(network, due, now)
    bulk = _written(network)
    with transaction(network.sessions) as session:
        session.execute(Delivery.__table__.delete().where(Delivery.purpose == "digest"))
        session.execute(Digest.__table__.delete().where(Digest.period != "old"))
    one_by_one = [i for s, p in due for i in build_digest(network, s, p, now)]
    reference = _written(network)
    assert bulk == reference
    digests, planned = bulk
    assert len(digests) == len(due) and len(ids) == len(one_by_one) == len(planned) == len(due)
    with network.sessions() as session:
        address = {s.id: s.address for s in session.scalars(select(DigestSubscription))}
    texts = {address[sub]: d[5] for sub, d in digests.items()}
    # the subscribers really did get different digests
    assert "Public case" in texts["jiwon@example.org"] and "Public case" not in texts["minho@example.org"]  # muted
    assert [a for a, t in texts.items() if "Missed meeting" in t] == ["seoyeon@example.org"]
    assert sorted(a for a, t in texts.items() if "Members-only case" in t) == sorted(
        a for a in texts if a.endswith("example.org"))  # members (email), not web subscribers
    assert not any("Draft case" in t for t in texts.values())
    assert sum("/preferences/" in t for t in texts.values()) == 5
    assert "C1: Fever" not in texts["web2@example.net"]  # its window started 6 hours ago
    assert "C1: Fever" in texts["web1@example.net"] and "weekly digest" in digests[max(digests)][4]
    assert texts["+12025550105"].startswith("relay") and len(texts["+12025550105"]) <= 160  # Ben's SMS
    assert build_digests(network, due, now) == []  # built already: nothing again


def test_a_digest_run_is_queued_in_batches_and_its_emails_say_what_compose_says(network, mail):
    from relay.outbound.bulk import send_batch
    from relay.render.digest_mail import compose
    from tests.unit.outbound.test_bulk import _same_email

    due = _varied_subscribers(network, NOON)
    report = run_digests(network, now=NOON)
    assert report.built == report.sent == len(due)
    batches = network.dispatcher.batches
    assert sorted(i for b in batches for i in b) == sorted(report.delivery_ids)
    with network.sessions() as session:
        assert all(d.dispatched_at is not None for d in session.scalars(select(Delivery).where(
            Delivery.purpose == "digest")))
    for batch in batches:
        assert send_batch(network, batch).sent == len(batch)
    assert len(mail.sent) == report.sent - 1  # Ben's SMS digest went to the SMS sender
    assert all(b"Content-Transfer-Encoding: 8bit" in m.raw for m in mail.sent)  # composed once, not per reader
    with network.sessions() as session:
        for sent in mail.sent:
            delivery = session.get(Delivery, sent.delivery_id)
            _same_email(sent.raw, compose(session, network.settings, delivery).as_bytes())
            assert sent.message_id == str(compose(session, network.settings, delivery)["Message-ID"]).strip("<>")
    assert run_digests(network, now=NOON + timedelta(minutes=15)).sent == 0


def test_a_digest_address_holding_line_breaks_is_never_pre_rendered_into_a_header(network, mail):
    """As for a broadcast's notices (relay/render/mail.pre_rendered_to): whatever let an address with CR/LF be
    stored, the pre-rendered digest does not write it into To; compose() refuses it, and that delivery fails."""
    from relay.outbound.bulk import send_batch

    _varied_subscribers(network, NOON)
    report = run_digests(network, now=NOON)
    with transaction(network.sessions) as session:
        forged = session.scalars(select(Delivery).where(Delivery.purpose == "digest", Delivery.channel == "email")
                                 .order_by(Delivery.id)).first()
        forged.to_address = "reader@example.org\r\nBcc: attacker@evil.example"
        forged_id = forged.id
    for batch in network.dispatcher.batches:
        send_batch(network, batch)
    assert len(mail.sent) == report.sent - 2  # Ben's SMS digest, and the forged one
    assert not any(b"attacker@evil.example" in sent.raw for sent in mail.sent)
    with network.sessions() as session:
        failed = session.get(Delivery, forged_id)
        assert (failed.status, failed.error_code) == ("failed", "compose")


def test_a_chunk_that_fails_is_built_subscriber_by_subscriber(network, monkeypatch, mail):
    import relay.digests.building

    due = _varied_subscribers(network, NOON)

    def broken(*args):
        raise RuntimeError("set-wise build failed")

    monkeypatch.setattr(relay.digests.building, "build_digests", broken)
    report = run_digests(network, now=NOON)
    assert report.built == report.sent == len(due)
    run_worker(network)
    assert len(mail.sent) == report.sent - 1


def test_digest_deliveries_left_waiting_go_back_in_batches(network):
    from relay.sweeper import sweep

    _varied_subscribers(network, NOON)
    sent = run_digests(network, now=NOON).delivery_ids
    network.dispatcher.batches.clear()
    network.dispatcher.deliveries.clear()
    with transaction(network.sessions) as session:  # as if the broker lost them
        session.execute(update(Delivery).where(Delivery.purpose == "digest").values(
            dispatched_at=utcnow() - timedelta(hours=1)))
    sweep(network)
    assert sorted(i for b in network.dispatcher.batches for i in b) == sorted(sent)
