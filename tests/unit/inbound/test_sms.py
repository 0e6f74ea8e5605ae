"""The core flow without servers: notice -> member reply by SMS -> relays and confirmation."""
from __future__ import annotations

import pytest

from relay.inbound.sms import process_inbound
from relay.notices.lifecycle import new_case_notice
from tests.conftest import run_worker
from tests.helpers import deliveries, event, member, record_sms

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"


def test_new_case_notice_reaches_every_list_member_once(network, sms):
    result = new_case_notice(network, "C1", ["tft", "us"])  # Ben is on both lists
    run_worker(network)
    assert result.recipients == 5
    assert sorted(m.to for m in sms.sent) == sorted([KIM, LEE, PARK, ALICE, BEN])
    english = next(m for m in sms.sent if m.to == LEE).body
    assert "C1" in english and "https://relay.example.org/library/cases/C1" in english
    assert 'Reply with "C1' in english
    korean = next(m for m in sms.sent if m.to == KIM).body
    assert "새 증례 C1" in korean


def test_reply_with_case_code_is_relayed_to_every_other_participant(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    sms.sent.clear()
    record_sms(network, LEE, "C1 looks like organising pneumonia")
    run_worker(network)
    relayed = {m.to: m.body for m in sms.sent if m.to != LEE}
    assert sorted(relayed) == sorted([KIM, PARK, ALICE, BEN])
    assert set(relayed.values()) == {"C1 Lee Minho: looks like organising pneumonia"}
    confirmation = [m.body for m in sms.sent if m.to == LEE]
    assert confirmation == ["Posted to C1, relayed to 4."]


def test_bare_reply_goes_to_the_case_last_notified(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    sms.sent.clear()
    event_id = record_sms(network, PARK, "agree, typical pattern")
    run_worker(network)
    assert event(network, event_id).outcome == "posted"
    assert "C1 Park Seoyeon: agree, typical pattern" in {m.body for m in sms.sent}


def test_bare_reply_with_no_recent_case_asks_which_case(network, sms):
    event_id = record_sms(network, PARK, "what do you think?")
    run_worker(network)
    assert event(network, event_id).outcome == "asked:none"
    assert len(sms.sent) == 1 and sms.sent[0].to == PARK
    assert "which case" in sms.sent[0].body


@pytest.mark.parametrize("body", ["", "   ", "\n\t "])
def test_an_empty_sms_gets_the_empty_answer(network, sms, body):
    """Issue 15, item 8: an empty SMS is told it was empty (with what to send), not asked which case it is for."""
    event_id = record_sms(network, PARK, body)
    run_worker(network)
    assert event(network, event_id).outcome == "empty"
    assert len(sms.sent) == 1 and sms.sent[0].to == PARK
    assert "your message was empty, so nothing was posted" in sms.sent[0].body
    assert "which case" not in sms.sent[0].body and 'e.g. "C123 your opinion"' in sms.sent[0].body


def test_a_case_code_alone_is_empty_for_that_case(network, sms):
    event_id = record_sms(network, PARK, "C1")
    run_worker(network)
    assert event(network, event_id).outcome == "empty"
    assert "your message to C1 was empty" in sms.sent[0].body and "C123" not in sms.sent[0].body


def test_stop_opts_out_and_is_never_relayed(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    sms.sent.clear()
    event_id = record_sms(network, ALICE, "stop")
    run_worker(network)
    assert event(network, event_id).outcome == "command:stop"
    assert sms.sent == []  # no relay, and no reply to an opted-out number
    assert member(network, ALICE).sms_opted_out_at is not None
    record_sms(network, LEE, "C1 second opinion please")
    run_worker(network)
    assert ALICE not in {m.to for m in sms.sent}


def test_processing_the_same_event_twice_changes_nothing(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    event_id = record_sms(network, LEE, "C1 first")
    first = process_inbound(network, event_id)
    before = len(deliveries(network))
    second = process_inbound(network, event_id)
    assert first.outcome == "posted" and second.outcome == "duplicate"
    assert len(deliveries(network)) == before


def test_unknown_sender_gets_one_polite_reply_a_day(network, sms):
    stranger = "+447700900123"
    first = record_sms(network, stranger, "C1 hello?")
    record_sms(network, stranger, "hello again")
    run_worker(network)
    assert event(network, first).outcome == "rejected"
    assert [m.to for m in sms.sent] == [stranger]
    assert "not registered" in sms.sent[0].body


def test_help_and_start(network, sms):
    record_sms(network, ALICE, "STOP")
    record_sms(network, ALICE, "help")
    run_worker(network)
    assert sms.sent == []  # opted out: not even HELP is answered
    record_sms(network, ALICE, "start")
    run_worker(network)
    assert member(network, ALICE).sms_opted_out_at is None
    assert [m.to for m in sms.sent] == [ALICE] and "receive case texts again" in sms.sent[0].body
    record_sms(network, ALICE, "HELP")
    run_worker(network)
    assert "C123 your text" in sms.sent[-1].body


def test_posts_from_our_own_number_are_dropped(network, sms):
    event_id = record_sms(network, "+15005550006", "C1 loop")
    run_worker(network)
    assert event(network, event_id).outcome == "discarded" and sms.sent == []


def test_concurrent_processing_of_one_event_makes_one_post(postgres_only_url, tmp_path, sms):
    """Two workers given the same event at the same moment (PostgreSQL row locks decide)."""
    import threading

    from sqlalchemy import func, select

    from relay.infra.db import transaction
    from relay.infra.dispatch import RecordingDispatcher
    from relay.library.cases import create_case
    from relay.members.directory import import_members
    from relay.model.tables import Post
    from relay.services import build_services
    from tests.conftest import DEMO_CSV, make_settings

    services = build_services(make_settings(tmp_path, postgres_only_url), dispatcher=RecordingDispatcher(),
                              senders={"sms": sms})
    with transaction(services.sessions) as session:
        import_members(session, DEMO_CSV)
        create_case(session, "A case")
    new_case_notice(services, "C1", ["tft"])
    event_id = record_sms(services, LEE, "C1 at the same time")
    barrier = threading.Barrier(4)
    outcomes = []

    def work():
        barrier.wait()
        outcomes.append(process_inbound(services, event_id).outcome)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["duplicate"] * 3 + ["posted"]
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Post).where(Post.kind == "reply")) == 1
    services.dispose()


def test_a_reply_to_a_big_discussion_goes_out_in_bulk_tasks_not_one_task_a_follower(network, sms):
    """A reply processed on its own (a quiet moment: no batch of replies to join) to a case that a broadcast
    made thousands follow is relayed in bulk tasks of RELAY_BULK_BATCH_SIZE on the outbound queue, as a
    drained batch's relays are, not as one task per follower (7,400 Celery tasks for one reply)."""
    from sqlalchemy import insert, select

    from relay.discussion.threads import ensure_thread
    from relay.infra.db import transaction
    from relay.infra.dispatch import QUEUE_OUTBOUND
    from relay.library.cases import get_case
    from relay.model.tables import Member, Participant

    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    with transaction(network.sessions) as session:
        session.execute(insert(Member), [{"name": f"Member {i}", "short_name": f"M{i}", "phone": f"+1646555{i:04d}", "timezone": "UTC",
                                          "language": "en", "roles": "member"} for i in range(600)])
        thread = ensure_thread(session, get_case(session, "C1"))
        ids = session.scalars(select(Member.id).where(Member.name.like("Member %"))).all()
        session.execute(insert(Participant), [{"thread_id": thread.id, "member_id": i} for i in ids])
    network.dispatcher.batches.clear()
    network.dispatcher.batch_queues.clear()
    network.dispatcher.deliveries.clear()
    event_id = record_sms(network, LEE, "C1 agree, organising pneumonia")
    network.dispatcher.inbound.remove(event_id)
    outcome = process_inbound(network, event_id)
    count = len(outcome.delivery_ids)  # the 604 followers (some by SMS and email) and the answer
    assert outcome.outcome == "posted" and 605 <= count < 620
    assert [len(b) for b in network.dispatcher.batches] == [250, 250, count - 500]
    assert set(network.dispatcher.batch_queues) == {QUEUE_OUTBOUND}
    assert sorted(sum(network.dispatcher.batches, [])) == sorted(outcome.delivery_ids)
    assert network.dispatcher.deliveries == sum(network.dispatcher.batches, [])  # not one task per follower
    sms.sent.clear()
    run_worker(network)
    assert len(sms.sent) == 605 and [m.body for m in sms.sent if m.to == LEE] == ["Posted to C1, relayed to 604."]
