"""The broadcast fast path: a notice planned set-wise and queued in batches, each batch sent by
bulk_send.send_batch with per-delivery claims kept; its pre-rendered emails say exactly what
compose() says, and a batch sent twice sends nothing twice."""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select, update

from relay.infra.db import transaction
from relay.model.messages import SendError
from relay.model.tables import Delivery, Member, Notice, utcnow
from relay.notices.audience import in_lists, wave_of
from relay.notices.lifecycle import create_notice, new_case_notice, send_notice
from relay.outbound.bulk import send_batch
from relay.render.mail import compose

HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Reply-To", "List-Id",
           "List-Unsubscribe", "List-Unsubscribe-Post", "List-Archive", "Archived-At", "Precedence",
           "Auto-Submitted", "X-Relay-Loop")


def _sent_notice(services, **fields) -> int:
    if not fields:
        return new_case_notice(services, "C1", ["tft"]).notice_id
    with transaction(services.sessions) as session:
        notice_id = create_notice(session, lists=["tft"], **fields).id
    return send_notice(services, notice_id).notice_id


def _statuses(services) -> dict[str, int]:
    with services.sessions() as session:
        found: dict[str, int] = {}
        for status in session.scalars(select(Delivery.status)):
            found[status] = found.get(status, 0) + 1
        return found


def test_a_notice_is_queued_as_batches_and_each_delivery_sent_once(network, sms, mail):
    _sent_notice(network)
    batches = network.dispatcher.batches
    assert len(batches) == 1 and len(batches[0]) == 10  # 5 members x (sms, email), mixed in one batch
    report = send_batch(network, batches[0])
    assert (report.sent, report.skipped, report.failed) == (10, 0, 0)
    assert len(sms.sent) == 5 and len(mail.sent) == 5
    assert _statuses(network) == {"accepted": 10}
    again = send_batch(network, batches[0])  # a redelivered task
    assert (again.sent, again.skipped) == (0, 10)
    assert len(sms.sent) == 5 and len(mail.sent) == 5


def test_large_broadcasts_are_split_into_batches_of_one_hundred(network):
    from relay.notices.lifecycle import dispatch_notice_batches

    _sent_notice(network, kind="announcement", title="Network meeting", body="Thursday")
    with network.sessions() as session:
        notice = session.scalars(select(Notice)).one()
        count = dispatch_notice_batches(network, notice, batch_size=3)
    assert count == 4 and [len(b) for b in network.dispatcher.batches[-4:]] == [3, 3, 3, 1]


def _same_email(bulk: bytes, composed: bytes) -> None:
    a, b = message_from_bytes(bulk, policy=policy.default), message_from_bytes(composed, policy=policy.default)
    for name in HEADERS:
        assert str(a[name]) == str(b[name]), name
    assert [p.get_content() for p in a.iter_parts()] == [p.get_content() for p in b.iter_parts()]
    assert [p.get_content_type() for p in a.iter_parts()] == ["text/plain", "text/html"]


def test_pre_rendered_emails_say_what_compose_says(network, mail):
    _sent_notice(network)
    _sent_notice(network, kind="guideline", title="Masks in CT rooms", body="FFP2 for every scan",
                 severity="urgent")
    for batch in network.dispatcher.batches:
        send_batch(network, batch)
    assert len(mail.sent) == 10
    assert all(b"Content-Transfer-Encoding: 8bit" in s.raw for s in mail.sent)  # pre-rendered, not composed
    with network.sessions() as session:
        for sent in mail.sent:
            delivery = session.get(Delivery, sent.delivery_id)
            _same_email(sent.raw, compose(session, network.settings, delivery).as_bytes())
    languages = {message_from_bytes(s.raw, policy=policy.default)["Subject"] for s in mail.sent}
    assert any("지침" in subject for subject in languages)  # ko members got the ko subject


def _broadcast_to_a_member_with(network, **fields) -> int:
    """Give the first member with an address `fields` (however they got stored), send a notice to all and every
    batch of it; returns that member's id."""
    with transaction(network.sessions) as session:
        member = session.scalars(select(Member).where(Member.email.is_not(None)).order_by(Member.id)).first()
        for name, value in fields.items():
            setattr(member, name, value)
        member_id = member.id
    _sent_notice(network)
    for batch in network.dispatcher.batches:
        send_batch(network, batch)
    return member_id


def test_a_member_name_holding_line_breaks_adds_no_header_to_a_pre_rendered_email(network, mail):
    """A name is a claim (an import, a form, an API call): one with CR/LF must not add a header (Bcc here) to the
    broadcast's email. compose() puts the name on one line; the pre-rendered path must say the same."""
    member_id = _broadcast_to_a_member_with(network, name="Kim\r\nBcc: attacker@evil.example")
    with network.sessions() as session:
        for sent in mail.sent:
            delivery = session.get(Delivery, sent.delivery_id)
            message = message_from_bytes(sent.raw, policy=policy.default)
            assert message["Bcc"] is None and b"\r\nBcc:" not in sent.raw
            _same_email(sent.raw, compose(session, network.settings, delivery).as_bytes())
            if delivery.member_id == member_id:
                assert str(message["To"]).startswith('"Kim Bcc: attacker@evil.example"')


def test_an_address_holding_line_breaks_is_never_pre_rendered_into_a_header(network, mail):
    """The same for the address: whatever let it be stored, the pre-rendered path does not write it into To; it
    goes to compose(), which refuses a header with a line break, so that delivery fails and says why."""
    member_id = _broadcast_to_a_member_with(network, email="kim@example.org\r\nBcc: attacker@evil.example")
    assert mail.sent and not any(b"attacker@evil.example" in sent.raw for sent in mail.sent)
    with network.sessions() as session:
        failed = session.scalars(select(Delivery).where(Delivery.member_id == member_id,
                                                        Delivery.channel == "email")).one()
        assert (failed.status, failed.error_code) == ("failed", "compose")


def test_expired_notice_is_not_sent_late_by_the_batch(network, sms, mail):
    _sent_notice(network, kind="announcement", title="Short-lived", body="soon over",
                 expires_at=utcnow() + timedelta(hours=1))
    with transaction(network.sessions) as session:
        session.execute(update(Notice).values(expires_at=utcnow() - timedelta(seconds=1)))
    report = send_batch(network, network.dispatcher.batches[0])
    assert report.failed == 10 and not sms.sent and not mail.sent
    with network.sessions() as session:
        assert set(session.scalars(select(Delivery.error_code))) == {"expired"}


def test_a_failed_send_in_a_batch_is_retried_alone(network, sms, mail):
    real_send = sms.send

    def flaky(message):
        if message.to == "+821012345602":
            raise SendError("Twilio 503", code="503", retryable=True)
        return real_send(message)

    sms.send = flaky
    _sent_notice(network)
    report = send_batch(network, network.dispatcher.batches[0])
    assert (report.sent, report.retry) == (9, 1)
    with network.sessions() as session:
        waiting = session.scalars(select(Delivery).where(Delivery.status == "queued")).one()
        assert waiting.to_address == "+821012345602" and waiting.next_attempt_at is not None


def test_the_sweeper_puts_a_waiting_broadcast_back_in_batches_not_ahead_of_replies(network, sms, mail):
    from relay.sweeper import sweep

    _sent_notice(network)
    network.dispatcher.batches.clear()
    network.dispatcher.deliveries.clear()
    with transaction(network.sessions) as session:  # queued two minutes ago, never picked up (broker lost it)
        session.execute(update(Delivery).values(dispatched_at=utcnow() - timedelta(minutes=2),
                                                created_at=utcnow() - timedelta(minutes=2)))
    assert sweep(network).deliveries == 10
    assert [len(b) for b in network.dispatcher.batches] == [10]
    assert len(network.dispatcher.deliveries) == 10  # the recorder also lists batch ids; none went alone:
    assert network.dispatcher.deliveries == network.dispatcher.batches[0]
    report = send_batch(network, network.dispatcher.batches[0])
    assert report.sent == 10 and len(sms.sent) == 5 and len(mail.sent) == 5
    assert sweep(network).deliveries == 0


def test_a_broadcast_is_sent_in_two_waves_and_never_twice(network, sms, mail, monkeypatch):
    from relay.notices import lifecycle as notices

    monkeypatch.setattr(notices, "FIRST_WAVE", 2)  # the first two members go first
    result = _sent_notice(network)
    batches = network.dispatcher.batches
    assert [len(b) for b in batches] == [4, 6]  # 2 members x 2 channels, then the other 3
    with network.sessions() as session:
        assert session.get(Notice, result).status == "sent"
        first = {session.get(Delivery, i).member_id for i in batches[0]}
        rest = {session.get(Delivery, i).member_id for i in batches[1]}
    assert len(first) == 2 and len(rest) == 3 and not first & rest
    for batch in batches:
        send_batch(network, batch)
    assert len(sms.sent) == 5 and len(mail.sent) == 5


def test_the_first_wave_goes_in_small_batches_so_every_worker_process_starts_at_once(network, sms, mail, monkeypatch):
    from relay.notices import lifecycle as notices

    monkeypatch.setattr(notices, "FIRST_WAVE", 2)
    monkeypatch.setattr(notices, "FIRST_WAVE_BATCH", 3)
    _sent_notice(network)
    assert [len(b) for b in network.dispatcher.batches] == [3, 1, 6]  # 2 members x 2 channels; then the rest
    for batch in network.dispatcher.batches:
        send_batch(network, batch)
    assert len(sms.sent) == 5 and len(mail.sent) == 5


def test_the_rest_of_a_broadcast_is_planned_in_growing_waves_each_queued_before_the_next_is_planned(
        network, sms, mail, monkeypatch):
    """Issue 18: the workers send one wave while the next is planned, so none sits idle while a big list
    is planned; each wave is committed before it is queued."""
    from relay.notices import lifecycle as notices

    monkeypatch.setattr(notices, "FIRST_WAVE", 1)
    monkeypatch.setattr(notices, "LARGEST_WAVE", 2)  # waves of 1, then 2, 2 members: members 1 | 2-3 | 4-5
    planned_when_queued = []
    queue = network.dispatcher.deliver_batches

    def deliver_batches(batches, **kwargs):
        batches = list(batches)
        with network.sessions() as session:  # another session: only what is committed
            planned_when_queued.append(len(session.scalars(select(Delivery.id)).all()))
        return queue(batches, **kwargs)

    monkeypatch.setattr(network.dispatcher, "deliver_batches", deliver_batches)
    notice_id = _sent_notice(network)
    batches = network.dispatcher.batches
    assert [len(b) for b in batches] == [2, 4, 4]  # members x (sms, email)
    assert planned_when_queued == [2, 6, 10]  # each wave queued once committed, before the next was planned
    with network.sessions() as session:
        assert session.get(Notice, notice_id).status == "sent"
        waves = [sorted({session.get(Delivery, i).member_id for i in batch}) for batch in batches]
    assert waves == [[1], [2, 3], [4, 5]]
    for batch in batches:
        send_batch(network, batch)
    assert len(sms.sent) == 5 and len(mail.sent) == 5


def test_the_first_wave_of_a_notice_to_several_lists_is_small_and_nobody_is_missed_or_doubled(
        network, sms, mail, monkeypatch):
    from relay.members.directory import import_members
    from relay.notices import lifecycle as notices

    with transaction(network.sessions) as session:  # "us": Ben (5) and Dana (6); "tft": 1-5
        import_members(session, "name,phone,email,timezone,language,lists,roles\n"
                                "Dana Cruz,+12025550106,dana@example.org,America/New_York,en,us,member\n")
        assert notices.first_wave_boundary(session, ["tft", "us"]) is None  # both shorter than a wave
    monkeypatch.setattr(notices, "FIRST_WAVE", 3)
    with transaction(network.sessions) as session:
        assert notices.first_wave_boundary(session, ["tft", "us"]) == 4  # the 4th of tft; "us" is short
    monkeypatch.setattr(notices, "FIRST_WAVE", 1)
    monkeypatch.setattr(notices, "WAVE_GROWTH", 2)
    with transaction(network.sessions) as session:
        assert notices.first_wave_boundary(session, ["tft", "us"]) == 2  # min(2nd of tft = 2, 2nd of us = 6)
        assert notices.first_wave_boundary(session, ["nobody"]) is None
    notice_id = new_case_notice(network, "C1", ["tft", "us"]).notice_id
    batches = network.dispatcher.batches
    # member 1 on both channels; then a wave of 2 per list (2-3: tft's 2nd and 3rd, "us" has none there);
    # then 4-6, fewer than 4 per list
    assert [len(b) for b in batches] == [2, 4, 6]
    with transaction(network.sessions) as session:
        assert notices.wave_boundary(session, ["tft", "us"], 2, 2) == 4
        assert notices.wave_boundary(session, ["tft", "us"], 4, 4) is None
        for after, before in ((0, 2), (2, 4), (4, None), (5, 6), (0, None)):  # as in_lists() selects, on each dialect
            wave = session.scalars(select(Member.id).where(wave_of(session, ["tft", "us"], after, before))).all()
            ranged = session.scalars(select(Member.id).where(in_lists(["tft", "us"], below=before, at_least=after))).all()
            assert sorted(wave) == sorted(ranged) == [m for m in range(1, 7) if m >= after and (before is None or m < before)]
    with network.sessions() as session:
        assert session.get(Notice, notice_id).status == "sent"
        planned = [(d.member_id, d.channel) for d in session.scalars(select(Delivery))]
    assert len(planned) == len(set(planned)) == 12
    for batch in batches:
        send_batch(network, batch)
    assert len(sms.sent) == 6 and len(mail.sent) == 6


def test_a_broadcast_left_half_planned_by_a_crash_is_finished_by_the_sweeper(network, sms, mail):
    from relay.sweeper import sweep

    with transaction(network.sessions) as session:  # claimed and stamped, then the sender died
        notice_id = create_notice(session, kind="announcement", title="Meeting", body="Thursday",
                                  lists=["tft"]).id
        notice = session.get(Notice, notice_id)
        notice.status, notice.sent_at = "sending", utcnow() - timedelta(minutes=10)
    sweep(network)
    with network.sessions() as session:
        assert session.get(Notice, notice_id).status == "sent"
    for batch in network.dispatcher.batches:
        send_batch(network, batch)
    assert len(sms.sent) == 5 and len(mail.sent) == 5
    sweep(network)  # nothing left to finish, nothing sent again
    for batch in network.dispatcher.batches:
        send_batch(network, batch)
    assert len(sms.sent) == 5 and len(mail.sent) == 5


def test_a_sender_that_dies_between_waves_leaves_nothing_lost_or_doubled(network, sms, mail, monkeypatch):
    """Waves 1 and 2 committed and queued, wave 3 committed but never queued (the process died): the
    sweeper finishes the notice, and every member gets exactly one message per channel."""
    from relay.notices import lifecycle as notices
    from relay.sweeper import sweep

    monkeypatch.setattr(notices, "FIRST_WAVE", 1)
    monkeypatch.setattr(notices, "LARGEST_WAVE", 2)  # waves: member 1 | 2-3 | 4-5
    real_dispatch = notices.dispatch_notice_batches
    calls = []

    def dies_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise SystemExit("killed")
        return real_dispatch(*args, **kwargs)

    monkeypatch.setattr(notices, "dispatch_notice_batches", dies_at_the_third)
    with pytest.raises(SystemExit):
        _sent_notice(network)
    monkeypatch.setattr(notices, "dispatch_notice_batches", real_dispatch)
    for batch in network.dispatcher.batches:  # the workers send what was queued
        send_batch(network, batch)
    assert len(sms.sent) == len(mail.sent) == 3
    with transaction(network.sessions) as session:
        notice = session.scalars(select(Notice)).one()
        assert notice.status == "sending"
        notice.sent_at = utcnow() - timedelta(minutes=10)
    sweep(network)
    for batch in network.dispatcher.batches:  # everything queued, the first batches again too
        send_batch(network, batch)
    with network.sessions() as session:
        assert session.scalars(select(Notice)).one().status == "sent"
    sent = sorted((m.channel, m.to) for m in sms.sent + mail.sent)
    assert len(sent) == len(set(sent)) == 10  # 5 members x 2 channels, none twice


def test_callbacks_that_raced_ahead_of_a_batch_are_dispatched_once_its_sids_are_recorded(network, sms):
    """Twilio may call back before the batch records the sid (relay/outbound/bulk.py _raced_statuses: one
    LIKE ANY on PostgreSQL, an OR of LIKEs elsewhere): those events are queued again, and no other's."""
    from relay.inbound.statuses import apply_status
    from tests.unit.inbound.test_statuses import record_status

    _sent_notice(network)
    [batch] = network.dispatcher.batches
    with network.sessions() as session:
        sms_ids = sorted(session.scalars(select(Delivery.id).where(Delivery.id.in_(batch), Delivery.channel == "sms")))
    early = [record_status(network, f"SM{delivery_id:032x}", status)  # the recording sender's sids
             for delivery_id, status in zip(sms_ids[:2], ("delivered", "sent"))]
    other = record_status(network, "SM" + "f" * 32, "delivered")  # another message's callback
    for event_id in early + [other]:
        assert apply_status(network, event_id) == "unmatched"
    network.dispatcher.statuses.clear()
    report = send_batch(network, batch)
    assert report.sent == 10
    assert sorted(network.dispatcher.statuses) == sorted(early)


def test_the_bulk_batch_size_is_a_setting(network):
    from relay.infra.settings import Settings, SettingsError
    from relay.notices.lifecycle import dispatch_notice_batches
    from relay.outbound.queueing import batch_size

    assert Settings.from_env({}).bulk_batch_size == 250
    assert Settings.from_env({"RELAY_BULK_BATCH_SIZE": "40"}).bulk_batch_size == 40
    with pytest.raises(SettingsError, match="RELAY_BULK_BATCH_SIZE"):
        Settings.from_env({"RELAY_BULK_BATCH_SIZE": "0"})
    assert batch_size(network) == 250
    _sent_notice(network)
    network.settings = dataclasses.replace(network.settings, bulk_batch_size=4)
    with network.sessions() as session:
        notice = session.scalars(select(Notice)).one()
        network.dispatcher.batches.clear()
        assert dispatch_notice_batches(network, notice) == 3  # 10 deliveries in tasks of 4
    assert [len(b) for b in network.dispatcher.batches] == [4, 4, 2]


def test_what_was_accepted_is_recorded_row_by_row_and_a_status_that_moved_on_is_kept(network):
    """bulk._record_accepted (one UPDATE ... FROM unnest on PostgreSQL, an executemany elsewhere): a delivery
    still `sending` becomes `accepted` with its lease cleared; one a callback already moved on (delivered)
    keeps its status; both get their provider id and sent_at; others are untouched."""
    from relay.outbound.bulk import _record_accepted

    _sent_notice(network)
    [batch] = network.dispatcher.batches
    first, second, untouched = sorted(batch)[:3]
    lease = utcnow() + timedelta(minutes=5)
    with transaction(network.sessions) as session:
        session.execute(update(Delivery).where(Delivery.id.in_([first, untouched])).values(
            status="sending", lease_until=lease, error_code="x", error_message="earlier"))
        session.execute(update(Delivery).where(Delivery.id == second).values(status="delivered", lease_until=lease))
    now = utcnow()
    with transaction(network.sessions) as session:
        _record_accepted(session, [(first, "SM" + "1" * 32), (second, "SM" + "2" * 32)], now)
    with network.sessions() as session:
        rows = {d.id: d for d in session.scalars(select(Delivery).where(Delivery.id.in_([first, second, untouched])))}
    assert (rows[first].status, rows[first].lease_until, rows[first].provider_message_id) == ("accepted", None,
                                                                                              "SM" + "1" * 32)
    assert (rows[first].error_code, rows[first].error_message) == (None, None)
    assert (rows[second].status, rows[second].provider_message_id) == ("delivered", "SM" + "2" * 32)
    assert rows[second].lease_until is not None
    assert abs((rows[first].sent_at - now).total_seconds()) < 1 and rows[first].sent_at.tzinfo is not None
    assert (rows[untouched].status, rows[untouched].provider_message_id) == ("sending", None)


def test_on_postgresql_no_statement_of_a_batch_lists_its_members_one_placeholder_each(postgres_only_url, tmp_path):
    """Issue 18: a batch's statements take its ids as one array parameter (relay/infra/storage.py in_values).
    An IN list of one placeholder per member is rendered by SQLAlchemy and split by psycopg again for every
    batch (too long for psycopg's cache): the ladder's digest-choice query did that for 250 members a batch."""
    import re

    from sqlalchemy import event

    from relay.infra.dispatch import RecordingDispatcher
    from relay.library.cases import create_case
    from relay.members.directory import import_members
    from relay.services import build_services
    from tests.conftest import DEMO_CSV, RecordingSender, make_settings

    services = build_services(make_settings(tmp_path / "var", postgres_only_url), dispatcher=RecordingDispatcher(),
                              senders={"sms": RecordingSender(), "email": RecordingSender()})
    try:
        with transaction(services.sessions) as session:
            assert not import_members(session, DEMO_CSV).errors
            create_case(session, "Fever", chief_complaint="fever")
        _sent_notice(services)
        statements: list[str] = []
        engine = services.sessions.kw["bind"]
        listener = lambda conn, cursor, statement, *_: statements.append(statement)  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            report = send_batch(services, services.dispatcher.batches[0])
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert report.sent == 10  # five members, SMS and email
        placeholder = r"%\(\w+\)s(?:::[A-Z ]+)?"  # as SQLAlchemy writes them for psycopg: %(member_id_1_1)s::INTEGER
        lists = [len(re.findall(placeholder, found)) for statement in statements
                 for found in re.findall(rf"IN \(((?:{placeholder}(?:, )?)+)\)", statement)]
        assert max(lists, default=0) < 5, [s for s in statements if " IN (" in s]  # the 5 members' ids, one each
        assert any("= ANY (" in statement for statement in statements)  # the ids do go as arrays
    finally:
        services.dispose()
