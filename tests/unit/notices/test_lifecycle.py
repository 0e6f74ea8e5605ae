"""Notices of every kind: drafts, fan-out (each person once, channel choices, opt-outs), corrections
to exactly the original recipients, scheduling sent once by the beat task, expiry never sent late."""
from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from relay.cli import main
from relay.infra.db import transaction
from relay.infra.signing import notice_message_id
from relay.members import consent
from relay.members.directory import import_members, set_channels
from relay.model.notice_refs import notice_of
from relay.model.tables import Case, Delivery, Member, Notice, Participant, Post, utcnow
from relay.notices.corrections import correct_notice
from relay.notices.lifecycle import (
    NoticeError,
    NoticeExpired,
    NoticeNotFound,
    NoticeStateError,
    UnknownList,
    cancel_notice,
    create_notice,
    delivery_counts,
    new_case_notice,
    schedule_notice,
    send_notice,
    send_scheduled,
)
from tests.conftest import run_worker
from tests.helpers import deliveries, member

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"
DANA = "+821012345699"
EVERYONE = {KIM, LEE, PARK, ALICE, BEN}
EMAILS = {"jiwon@example.org", "minho@example.org", "seoyeon@example.org", "alice@example.org", "ben@example.org"}


def draft(services, **fields) -> int:
    fields.setdefault("lists", ["tft"])
    with transaction(services.sessions) as session:
        return create_notice(session, **fields).id


def emails(sender) -> dict[str, list]:
    found: dict[str, list] = {}
    for sent in sender.sent:
        found.setdefault(sent.to, []).append(message_from_bytes(sent.raw, policy=policy.default))
    return found


def pairs(services, notice_id: int) -> set[tuple[str, str]]:
    """(member phone, channel) of every delivery of the notice."""
    with services.sessions() as session:
        notice = session.get(Notice, notice_id)
        from relay.model.notice_refs import deliveries_filter

        rows = session.execute(select(Member.phone, Delivery.channel).join(Member, Member.id == Delivery.member_id)
                               .where(deliveries_filter(notice)))
        return {(phone, channel) for phone, channel in rows}


def set_member_channels(services, phone: str, channels: list[str]) -> None:
    with transaction(services.sessions) as session:
        set_channels(session.scalar(select(Member).where(Member.phone == phone)), channels)


@pytest.mark.parametrize("fields,error,message", [
    ({"kind": "memo", "title": "x"}, NoticeError, "kind must be"),
    ({"kind": "guideline", "title": " "}, NoticeError, "needs a title"),
    ({"kind": "guideline", "title": "x", "lists": []}, NoticeError, "at least one target list"),
    ({"kind": "guideline", "title": "x", "lists": ["tft", "nope"]}, UnknownList, "no list named nope"),
    ({"kind": "new_case", "title": "x"}, NoticeError, "needs its case"),
    ({"kind": "announcement", "title": "x", "severity": "high"}, NoticeError, "routine or urgent"),
    ({"kind": "announcement", "title": "x", "channels": "sms;fax"}, NoticeError, "channels must be"),
    ({"kind": "correction", "body": "x", "lists": []}, NoticeError, "needs the notice it corrects"),
    ({"kind": "correction", "body": "x", "lists": [], "corrects_notice_id": 99}, NoticeNotFound, "no notice 99"),
    ({"kind": "guideline", "title": "x", "corrects_notice_id": 1}, NoticeError, "only a correction"),
])
def test_drafts_are_validated(network, fields, error, message):
    with pytest.raises(error, match=message):
        draft(network, **fields)


def test_an_expiry_in_the_past_and_a_draft_case_are_refused(network):
    with pytest.raises(NoticeError, match="already past"):
        draft(network, kind="announcement", title="x", expires_at=utcnow() - timedelta(minutes=1))
    with transaction(network.sessions) as session:
        session.execute(update(Case).values(status="draft"))
    with pytest.raises(NoticeError, match="C1 is a draft"):
        draft(network, kind="new_case", case_code="C1")


def test_a_draft_sends_nothing_until_sent(network, sms, mail):
    notice_id = draft(network, kind="guideline", title="Masks in CT rooms", body="FFP2 for every scan")
    run_worker(network)
    assert deliveries(network) == [] and sms.sent == [] and mail.sent == []
    with network.sessions() as session:
        assert session.get(Notice, notice_id).status == "draft"


def test_general_guideline_reaches_each_person_once_across_lists(network, sms, mail):
    notice_id = draft(network, kind="guideline", title="Masks in CT rooms", body="FFP2 for every scan",
                      lists=["tft", "us"])  # Ben is on both
    result = send_notice(network, notice_id)
    run_worker(network)
    assert (result.recipients, result.sms, result.emails) == (5, 5, 5)
    assert sorted(m.to for m in sms.sent) == sorted(EVERYONE)
    assert sorted(m.to for m in mail.sent) == sorted(EMAILS)
    english = next(m.body for m in sms.sent if m.to == LEE)
    assert english.startswith("relay: guideline: Masks in CT rooms\nFFP2 for every scan\n")
    assert "https://relay.example.org/library/" in english and "STOP" in english
    assert next(m.body for m in sms.sent if m.to == KIM).startswith("relay: 지침: Masks in CT rooms")
    mail_by = emails(mail)
    assert mail_by["ben@example.org"][0]["Subject"] == "Guideline: Masks in CT rooms"
    assert mail_by["jiwon@example.org"][0]["Subject"] == "지침: Masks in CT rooms"
    alice = mail_by["alice@example.org"][0]
    assert alice["Message-ID"].strip("<>") == notice_message_id(network.settings.secret(), notice_id,
                                                                network.settings.email_domain)
    assert alice["Reply-To"] is None and alice["Auto-Submitted"] == "auto-generated"
    text = alice.get_body(("plain",)).get_content()
    assert "FFP2 for every scan" in text and "Library: https://relay.example.org/library/" in text
    with network.sessions() as session:
        assert session.get(Notice, notice_id).status == "sent"
        assert session.scalar(select(Post).where(Post.kind == "notice")) is None  # no case, no thread post
        assert all(d.dedupe_key.startswith(f"notice:{notice_id}:") and d.case_id is None
                   for d in session.scalars(select(Delivery)))


def test_channels_and_member_choices_and_opt_outs(network, sms, mail):
    set_member_channels(network, LEE, ["email"])
    with transaction(network.sessions) as session:
        consent.opt_out_sms(session, session.scalar(select(Member).where(Member.phone == ALICE)), source="test")
    sms_only = draft(network, kind="announcement", title="Journal club moved", channels="sms")
    both = draft(network, kind="announcement", title="Journal club is back", channels=["sms", "email"])
    email_only = draft(network, kind="announcement", title="Slides", channels="email")
    first = send_notice(network, sms_only)
    assert pairs(network, sms_only) == {(KIM, "sms"), (PARK, "sms"), (BEN, "sms")}
    assert first.recipients == 3 and first.emails == 0
    send_notice(network, both)
    assert pairs(network, both) == {(KIM, "sms"), (PARK, "sms"), (BEN, "sms"), (KIM, "email"), (LEE, "email"),
                                    (PARK, "email"), (ALICE, "email"), (BEN, "email")}
    send_notice(network, email_only)
    assert {channel for _, channel in pairs(network, email_only)} == {"email"}
    assert len(pairs(network, email_only)) == 5


def test_a_notice_about_a_case_is_a_post_and_makes_followers(network, sms, mail):
    notice_id = draft(network, kind="announcement", title="Tumour board on C1", body="Thursday 20:00",
                      case_code="C1", lists=["us"], severity="urgent")
    send_notice(network, notice_id)
    run_worker(network)
    assert [m.to for m in sms.sent] == [BEN]
    assert sms.sent[0].body.startswith("URGENT relay: Tumour board on C1\nThursday 20:00\n")
    assert "https://relay.example.org/library/cases/C1" in sms.sent[0].body
    message = emails(mail)["ben@example.org"][0]
    assert message["Subject"] == "[C1] URGENT Announcement: Tumour board on C1"
    assert message["Archived-At"] == "<https://relay.example.org/library/cases/C1>"
    with network.sessions() as session:
        notice = session.get(Notice, notice_id)
        post = session.get(Post, notice.post_id)
        assert post.kind == "notice" and post.body == "Thursday 20:00"
        assert [m for m in session.scalars(select(Participant.member_id))] == [member(network, BEN).id]
        delivery = session.scalars(select(Delivery)).first()
        assert delivery.case_id == notice.case_id
        assert notice_of(session, delivery).severity == "urgent"  # what quiet hours will read (issue 5)


def test_new_case_notice_keeps_working_through_the_new_path(network, sms, mail):
    result = new_case_notice(network, "C1", ["tft", "us"])
    run_worker(network)
    assert (result.recipients, result.sms, result.emails) == (5, 5, 5)
    with network.sessions() as session:
        notice = session.get(Notice, result.notice_id)
        assert (notice.kind, notice.status, notice.title, notice.lists) == (
            "new_case", "sent", "Fever and ground-glass opacities", "tft;us")
    assert emails(mail)["ben@example.org"][0]["Subject"] == "[C1] Fever and ground-glass opacities"


def test_a_notice_is_sent_once(network):
    notice_id = draft(network, kind="announcement", title="Once")
    send_notice(network, notice_id)
    before = len(deliveries(network))
    with pytest.raises(NoticeStateError, match="is sent"):
        send_notice(network, notice_id)
    assert len(deliveries(network)) == before
    with pytest.raises(NoticeNotFound):
        send_notice(network, 999)


def test_correction_reaches_exactly_the_original_recipients_on_the_same_channels(network, sms, mail):
    set_member_channels(network, LEE, ["email"])  # Lee takes the original by email only
    original = new_case_notice(network, "C1", ["tft"])
    with transaction(network.sessions) as session:  # Park's SMS never got through
        session.execute(update(Delivery).where(Delivery.to_address == PARK).values(status="failed"))
    run_worker(network)
    # Since the original: Dana joins the list, Alice opts out of SMS, Lee turns SMS back on.
    with transaction(network.sessions) as session:
        report = import_members(session, "name,phone,email,timezone,language,lists,roles\n"
                                         f"Dana Kwon,{DANA},dana@example.org,Asia/Seoul,ko,tft,member\n")
        assert report.created == 1
        consent.opt_out_sms(session, session.scalar(select(Member).where(Member.phone == ALICE)), source="test")
    set_member_channels(network, LEE, ["sms", "email"])
    sms.sent.clear()
    mail.sent.clear()

    result = correct_notice(network, original.notice_id, "The patient is 45, not 54.")
    run_worker(network)
    assert pairs(network, result.notice_id) == {
        (KIM, "sms"), (KIM, "email"), (LEE, "email"), (PARK, "email"), (ALICE, "email"), (BEN, "sms"),
        (BEN, "email")}
    assert sorted(m.to for m in sms.sent) == sorted([KIM, BEN])
    assert sorted(m.to for m in mail.sent) == sorted(EMAILS)
    assert DANA not in {m.to for m in sms.sent} and "dana@example.org" not in {m.to for m in mail.sent}
    ben_text = next(m.body for m in sms.sent if m.to == BEN)
    assert ben_text.startswith("relay: CORRECTION to C1: Fever and ground-glass opacities\n"
                               "The patient is 45, not 54.\nhttps://relay.example.org/library/cases/C1")
    assert next(m.body for m in sms.sent if m.to == KIM).startswith("relay: 정정 (C1): ")
    by = emails(mail)
    assert by["ben@example.org"][0]["Subject"] == "[C1] Correction: Fever and ground-glass opacities"
    assert by["jiwon@example.org"][0]["Subject"] == "[C1] 정정: Fever and ground-glass opacities"
    with network.sessions() as session:
        correction = session.get(Notice, result.notice_id)
        assert (correction.kind, correction.corrects_notice_id, correction.status) == (
            "correction", original.notice_id, "sent")
        first = session.get(Notice, original.notice_id)
        # The correction is the next post of the case thread, threaded under the original by email.
        assert session.get(Post, correction.post_id).body == "The patient is 45, not 54."
        from relay.infra.signing import post_message_id

        original_id = post_message_id(network.settings.secret(), first.post_id, network.settings.email_domain)
        assert by["ben@example.org"][0]["In-Reply-To"] == f"<{original_id}>"


def test_correction_of_a_general_notice_threads_under_it(network, sms, mail):
    notice_id = draft(network, kind="announcement", title="Meeting moved", body="To Friday", lists=["us"])
    send_notice(network, notice_id)
    run_worker(network)
    mail.sent.clear()
    result = correct_notice(network, notice_id, "Friday at 19:00, not 18:00")
    run_worker(network)
    assert pairs(network, result.notice_id) == {(BEN, "sms"), (BEN, "email")}
    message = emails(mail)["ben@example.org"][0]
    assert message["Subject"] == "Correction: Meeting moved"
    settings = network.settings
    assert message["In-Reply-To"] == f"<{notice_message_id(settings.secret(), notice_id, settings.email_domain)}>"


def test_only_a_sent_notice_can_be_corrected(network):
    notice_id = draft(network, kind="announcement", title="Draft")
    with pytest.raises(NoticeStateError, match="not sent"):
        correct_notice(network, notice_id, "oops")
    send_notice(network, notice_id)
    with pytest.raises(NoticeError, match="needs its text"):
        correct_notice(network, notice_id, "  ")
    with pytest.raises(NoticeError, match="give no lists"):
        draft(network, kind="correction", body="x", corrects_notice_id=notice_id, lists=["tft"])


def test_scheduled_notice_is_sent_once_when_due(network, sms):
    now = utcnow()
    notice_id = draft(network, kind="announcement", title="Later", lists=["us"])
    with transaction(network.sessions) as session:
        with pytest.raises(NoticeError, match="in the past"):
            schedule_notice(session, notice_id, now - timedelta(minutes=1), now=now)
        schedule_notice(session, notice_id, now + timedelta(hours=1), now=now)
    assert send_scheduled(network, now=now) == []
    assert deliveries(network) == []
    sent = send_scheduled(network, now=now + timedelta(hours=1, seconds=1))
    assert [r.notice_id for r in sent] == [notice_id]
    assert send_scheduled(network, now=now + timedelta(hours=2)) == []
    run_worker(network)
    assert [m.to for m in sms.sent] == [BEN]
    with network.sessions() as session:
        notice = session.get(Notice, notice_id)
        assert notice.status == "sent" and notice.sent_at == now + timedelta(hours=1, seconds=1)


def test_scheduled_notice_is_sent_once_by_concurrent_beats(postgres_only_url, tmp_path, sms):
    """Two beat processes (here four threads) run relay.send_scheduled at the same moment."""
    import threading

    from relay.infra.dispatch import RecordingDispatcher
    from relay.library.cases import create_case
    from relay.services import build_services
    from tests.conftest import DEMO_CSV, RecordingSender, make_settings

    services = build_services(make_settings(tmp_path, postgres_only_url), dispatcher=RecordingDispatcher(),
                              senders={"sms": sms, "email": RecordingSender()})
    with transaction(services.sessions) as session:
        import_members(session, DEMO_CSV)
        create_case(session, "A case")
    now = utcnow()
    ids = [draft(services, kind="announcement", title=f"Scheduled {n}", case_code="C1" if n else None)
           for n in range(3)]
    with transaction(services.sessions) as session:
        for notice_id in ids:
            schedule_notice(session, notice_id, now + timedelta(minutes=5), now=now)
    barrier = threading.Barrier(4)
    sent: list[int] = []

    def beat():
        barrier.wait()
        sent.extend(r.notice_id for r in send_scheduled(services, now=now + timedelta(minutes=6)))

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sent) == ids
    assert len(deliveries(services)) == 3 * 10
    assert len(services.dispatcher.deliveries) == 3 * 10
    with services.sessions() as session:
        assert {n.status for n in session.scalars(select(Notice))} == {"sent"}
        assert len(list(session.scalars(select(Post).where(Post.kind == "notice")))) == 2
    services.dispose()


def test_expired_notice_is_never_sent_late(network, sms, mail):
    notice_id = draft(network, kind="announcement", title="Tonight only", expires_at=utcnow() + timedelta(hours=1))
    send_notice(network, notice_id)
    with transaction(network.sessions) as session:  # the queue was slow: the expiry passed meanwhile
        session.execute(update(Notice).values(expires_at=utcnow() - timedelta(seconds=1)))
    run_worker(network)
    assert sms.sent == [] and mail.sent == []
    rows = deliveries(network)
    assert len(rows) == 10 and {(d.status, d.error_code) for d in rows} == {("failed", "expired")}
    with network.sessions() as session:
        assert delivery_counts(session, session.get(Notice, notice_id)) == {"sms": {"failed": 5},
                                                                            "email": {"failed": 5}}


def test_expired_drafts_and_scheduled_notices_are_not_sent(network):
    now = utcnow()
    late = draft(network, kind="announcement", title="Draft", expires_at=now + timedelta(hours=1))
    scheduled = draft(network, kind="announcement", title="Scheduled", expires_at=now + timedelta(hours=2))
    with transaction(network.sessions) as session:
        schedule_notice(session, scheduled, now + timedelta(hours=1), now=now)
        with pytest.raises(NoticeError, match="before it would be sent"):
            schedule_notice(session, late, now + timedelta(hours=3), now=now)
    with pytest.raises(NoticeExpired, match="not sent late"):
        send_notice(network, late, now=now + timedelta(hours=1, minutes=1))
    with transaction(network.sessions) as session:  # the beat was down until after the expiry
        session.execute(update(Notice).where(Notice.id == scheduled).values(expires_at=now + timedelta(minutes=30)))
    assert send_scheduled(network, now=now + timedelta(hours=1)) == []
    assert deliveries(network) == []
    with network.sessions() as session:
        assert session.get(Notice, scheduled).status == "expired"
        assert session.get(Notice, late).status == "draft"


def test_a_scheduled_notice_whose_case_went_back_to_draft_returns_to_draft(network):
    now = utcnow()
    notice_id = draft(network, kind="new_case", case_code="C1")
    with transaction(network.sessions) as session:
        schedule_notice(session, notice_id, now + timedelta(minutes=1), now=now)
        session.execute(update(Case).values(status="draft"))
    assert send_scheduled(network, now=now + timedelta(minutes=2)) == []
    assert deliveries(network) == []
    with network.sessions() as session:
        notice = session.get(Notice, notice_id)
        assert (notice.status, notice.scheduled_for, notice.post_id) == ("draft", None, None)


def test_cli_create_preview_send_status_correct(settings, network, monkeypatch, sms):
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("RELAY_PUBLIC_BASE_URL", settings.public_base_url)
    runner = CliRunner()
    result = runner.invoke(main, ["notice", "create", "--kind", "guideline", "--title", "Masks in CT rooms",
                                  "--body", "FFP2 for every scan", "--list", "tft", "--list", "us",
                                  "--channels", "sms", "--expires", "6h", "--severity", "urgent"])
    assert result.exit_code == 0, result.output
    notice_id = int(result.output.strip())
    result = runner.invoke(main, ["notice", "preview", str(notice_id)])
    assert result.exit_code == 0, result.output
    assert "recipients now: 5 members; 5 SMS, 0 emails" in result.output
    assert "  KR  3 recipients, 4 segments at $0.0450 = $0.1800" in result.output
    assert "SMS [ko] to 1: UCS-2" in result.output and "SMS [en] to 4: GSM-7" in result.output
    assert "  | URGENT relay: guideline: Masks in CT rooms" in result.output
    result = runner.invoke(main, ["notice", "send", str(notice_id)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"notice {notice_id} sent: 5 members, 5 SMS and 0 emails queued"
    result = runner.invoke(main, ["notice", "status", str(notice_id)])
    assert result.exit_code == 0 and "sms: queued 5" in result.output
    assert f"notice {notice_id} (guideline, urgent) sent " in result.output
    result = runner.invoke(main, ["notice", "send", str(notice_id)])
    assert result.exit_code != 0 and "not sent again" in result.output
    result = runner.invoke(main, ["notice", "correct", str(notice_id), "--text", "FFP3, not FFP2"])
    assert result.exit_code == 0 and "0 members" in result.output  # nothing was accepted yet: nobody received it
    result = runner.invoke(main, ["notice", "create", "--kind", "announcement", "--title", "Later", "--list", "us"])
    later = result.output.strip()
    result = runner.invoke(main, ["notice", "send", later, "--at", "2099-01-01T07:00:00+09:00"])
    assert result.exit_code == 0 and result.output.strip() == f"notice {later} scheduled for 2098-12-31T22:00:00+00:00"
    result = runner.invoke(main, ["notice", "correct", later, "--text", "Earlier"])  # issue 15, item 3
    assert result.exit_code == 1 and "edit it instead" not in result.output
    assert "is scheduled, not sent: there is nothing to correct" in result.output
    assert f"cancel it (relay notice cancel {later}" in result.output and "create a new one" in result.output
    result = runner.invoke(main, ["notice", "send", later, "--at", "tomorrow"])
    assert result.exit_code != 0 and "ISO 8601" in result.output
    result = runner.invoke(main, ["notice", "create", "--kind", "announcement", "--title", "x", "--list", "nope"])
    assert result.exit_code != 0 and "no list named nope" in result.output
    result = runner.invoke(main, ["notice", "status", "999"])
    assert result.exit_code != 0 and "no notice 999" in result.output


def test_the_beat_sends_scheduled_notices(tmp_path, network, sms):
    """relay.send_scheduled is on the beat schedule, on the maintenance queue, and runs send_scheduled."""
    from relay.infra.dispatch import QUEUE_MAINTENANCE, TASK_QUEUES, TASK_SEND_SCHEDULED
    from workers.app import create_celery

    app = create_celery(network.settings.replace(var_dir=tmp_path / "beat"))
    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == TASK_SEND_SCHEDULED)
    assert entry["options"]["queue"] == QUEUE_MAINTENANCE == TASK_QUEUES[TASK_SEND_SCHEDULED]
    app.relay_services._services, app.relay_services._pid = network, __import__("os").getpid()
    now = utcnow()
    notice_id = draft(network, kind="announcement", title="Soon", lists=["us"])
    with transaction(network.sessions) as session:
        schedule_notice(session, notice_id, now + timedelta(seconds=1), now=now)
        session.execute(update(Notice).values(scheduled_for=now - timedelta(seconds=1)))
    assert app.tasks[TASK_SEND_SCHEDULED].apply().get() == [notice_id]
    assert app.tasks[TASK_SEND_SCHEDULED].apply().get() == []


def test_a_scheduled_notice_can_be_cancelled_and_then_never_goes(network, sms, settings, monkeypatch):
    now = utcnow()
    notice_id = draft(network, kind="announcement", title="Withdrawn", lists=["tft"])
    with transaction(network.sessions) as session:
        schedule_notice(session, notice_id, now + timedelta(hours=1), now=now)
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    result = CliRunner().invoke(main, ["notice", "cancel", str(notice_id)])
    assert result.exit_code == 0, result.output
    assert send_scheduled(network, now=now + timedelta(hours=2)) == []
    with pytest.raises(NoticeStateError, match="cancelled"):
        send_notice(network, notice_id)
    run_worker(network)
    assert sms.sent == [] and deliveries(network) == []
    with network.sessions() as session:
        assert session.get(Notice, notice_id).status == "cancelled"
        from relay.infra.audit import recent
        assert [(e.action, e.source) for e in recent(session, 20) if e.action.startswith("notice.")] == [
            ("notice.cancel", "cli"), ("notice.schedule", "system")]


def test_a_sent_notice_cannot_be_cancelled_only_corrected(network):
    notice_id = draft(network, kind="announcement", title="Out", lists=["tft"])
    send_notice(network, notice_id)
    with transaction(network.sessions) as session:
        with pytest.raises(NoticeStateError, match="send a correction instead"):
            cancel_notice(session, notice_id)


def test_a_notice_about_a_members_only_case_says_signing_in_is_needed(network, sms, mail):
    """Issue 15, item 11: the link of a members-only case answers 404 until the reader signs in; the SMS and
    the email say so (in the member's language), and a public case's notice does not."""
    from relay.library.cases import set_visibility
    from relay.notices.lifecycle import new_case_notice

    with transaction(network.sessions) as session:
        set_visibility(session, "C1", "members")
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    bodies = {m.to: m.body for m in sms.sent}
    assert "(members only: sign in to read)" in bodies["+821012345602"]  # Lee reads English
    assert "(회원 전용: 로그인 필요)" in bodies["+821012345601"]  # Kim reads Korean
    texts = [message_from_bytes(m.raw, policy=policy.default).get_body(("plain",)).get_content() for m in mail.sent]
    assert texts and all("sign in" in t or "로그인" in t for t in texts)
    assert any("This case is for members only: sign in to read it (https://relay.example.org/signin)" in t
               for t in texts)
    sms.sent.clear()
    with transaction(network.sessions) as session:
        set_visibility(session, "C1", "public")
        create_notice(session, kind="announcement", title="Public now", lists=["tft"], case_code="C1")
    assert "sign in" not in sms_text_of(network)


def sms_text_of(services) -> str:
    from relay.model.tables import Case, Notice
    from relay.notices.audience import sms_text

    with services.sessions() as session:
        notice = session.scalars(select(Notice).order_by(Notice.id.desc())).first()
        return sms_text(services.settings, notice, session.get(Case, notice.case_id), "en")


def test_a_notice_sent_from_the_command_line_is_labelled_so(settings, network, monkeypatch):
    """Issue 15, item 11: its post in the case thread has channel `cli` (the library says "Command line"),
    not `console`; one sent through the API says `api`."""
    from relay.model.tables import Post
    from webhooks.app import create_app

    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    result = CliRunner().invoke(main, ["notice", "new-case", "C1", "--list", "tft"])
    assert result.exit_code == 0, result.output
    with network.sessions() as session:
        assert session.scalars(select(Post.channel).where(Post.kind == "notice")).all() == ["cli"]
    page = create_app(services=network).test_client().get("/library/cases/C1").get_data(as_text=True)
    assert "Command line" in page
    network.settings = network.settings.replace(api_token="t0ken")
    api = create_app(services=network).test_client()
    auth = {"Authorization": "Bearer t0ken"}
    notice = api.post("/api/v1/notices", json={"kind": "announcement", "title": "Rounds", "lists": ["tft"],
                                                "case": "C1"}, headers=auth).get_json()
    assert api.post(f"/api/v1/notices/{notice['id']}/send", headers=auth).status_code == 202
    with network.sessions() as session:
        assert session.scalars(select(Post.channel).where(Post.kind == "notice").order_by(Post.id)).all() == [
            "cli", "api"]


def test_a_broadcast_gives_each_member_the_sms_in_their_language_without_asking_which_languages_are_there(network):
    """The set-wise plan writes each member's SMS in their language (English and Korean here), from texts rendered
    once a notice for every language a member can hold; it no longer asks each wave which languages its members
    have (a query a wave and channel: 0.73 s of a 100,000-member plan, docs/scale.md)."""
    from sqlalchemy import event

    from relay.model.tables import LANGUAGES
    from relay.notices.audience import sms_text

    with transaction(network.sessions) as session:
        session.execute(update(Member).where(Member.phone.in_([KIM, LEE])).values(language="ko"))
        session.execute(update(Member).where(Member.phone.in_([PARK, ALICE, BEN])).values(language="en"))
    statements: list[str] = []
    engine = network.sessions.kw["bind"]
    listener = lambda conn, cursor, statement, *_: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        notice_id = new_case_notice(network, "C1", ["tft"]).notice_id
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert not [s for s in statements if "DISTINCT coalesce(" in s]
    with network.sessions() as session:
        notice = session.get(Notice, notice_id)
        case = session.get(Case, notice.case_id)
        expected = {lang: sms_text(network.settings, notice, case, lang) for lang in LANGUAGES}
        assert expected["ko"] != expected["en"]
        rows = session.execute(select(Member.phone, Member.language, Delivery.body).join(
            Member, Member.id == Delivery.member_id).where(Delivery.channel == "sms")).all()
    assert {phone for phone, _, _ in rows} == EVERYONE
    for phone, language, body in rows:
        assert body == expected[language], (phone, language)
