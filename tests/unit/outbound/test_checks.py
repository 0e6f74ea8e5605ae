"""Send-time checks (relay/outbound/checks.py) are one function for a single send and a batch: a notice's
deliveries planned for a member whose state then changed (STOP, unsubscribe, PAUSE, MUTE, DIGEST,
quiet hours, deactivated) end exactly the same whether relay.outbound.sending.send_delivery or
relay.outbound.bulk.send_batch takes them, and as planning would have decided."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from relay.infra.db import transaction
from relay.members import consent, ladder
from relay.model.tables import Case, Delivery, Member, utcnow
from relay.notices.lifecycle import create_notice, send_notice
from relay.outbound.bulk import send_batch
from relay.outbound.sending import send_delivery

BEN = "+12025550105"
BEN_EMAIL = "ben@example.org"


def _quiet_now(session, ben):
    """Ben's own SMS quiet hours, set to the hour around his local now; returns when they end (UTC)."""
    local = utcnow().astimezone(ZoneInfo("America/New_York"))
    start, end = local - timedelta(hours=1), local + timedelta(hours=1)
    ladder.set_quiet_hours(session, ben, "sms", f"{start:%H:%M}", f"{end:%H:%M}", "test")
    end_local = datetime.combine(end.date(), end.time().replace(second=0, microsecond=0), tzinfo=end.tzinfo)
    return end_local.astimezone(timezone.utc)


def _mute(session, ben):
    case = session.scalar(select(Case).where(Case.number == 1))
    ladder.mute(session, ben, "sms", case.id, "C1", "test")


CHANGES = {
    # change after planning -> Ben's (sms, email) deliveries: (status, error code) or "sent"
    "stop": (lambda s, ben: consent.opt_out_sms(s, ben, "sms:STOP"), (("opted_out", "opted_out"), "sent")),
    "unsubscribe": (lambda s, ben: consent.opt_out_email(s, ben, "web:unsubscribe"),
                    ("sent", ("opted_out", "opted_out"))),
    "pause": (lambda s, ben: ladder.pause(s, ben, "sms", timedelta(hours=24), "sms"),
              (("opted_out", "preferences"), "sent")),
    "mute": (_mute, (("opted_out", "preferences"), "sent")),
    "digest": (lambda s, ben: ladder.set_mode(s, ben, "email", "digest", "sms"),
               ("sent", ("opted_out", "preferences"))),
    "deactivated": (lambda s, ben: setattr(ben, "active", False), (("failed", "inactive"), ("failed", "inactive"))),
    "quiet_hours": (_quiet_now, (("queued", "quiet_hours"), "sent")),
    "nothing": (lambda s, ben: None, ("sent", "sent")),
}


def _send(network, path: str, batch: list[int]) -> None:
    if path == "single":
        for delivery_id in batch:
            send_delivery(network, delivery_id)
    else:
        send_batch(network, batch)


def _plan(network, severity: str = "routine") -> list[int]:
    with transaction(network.sessions) as session:
        notice_id = create_notice(session, kind="new_case", case_code="C1", lists=["tft"], severity=severity).id
    send_notice(network, notice_id)
    [batch] = network.dispatcher.batches
    return batch


@pytest.mark.parametrize("path", ["single", "batch"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_after_planning_is_handled_alike_by_single_sends_and_batches(network, sms, mail, path, change):
    batch = _plan(network)
    assert len(batch) == 10  # planned before the change: Ben has an SMS and an email delivery
    act, expected = CHANGES[change]
    with transaction(network.sessions) as session:
        ben = session.scalar(select(Member).where(Member.phone == BEN))
        quiet_end = act(session, ben)
    _send(network, path, batch)
    with network.sessions() as session:
        ben_id = session.scalar(select(Member.id).where(Member.phone == BEN))
        rows = {d.channel: d for d in session.scalars(select(Delivery).where(Delivery.member_id == ben_id))}
        others = session.scalars(select(Delivery.status).where(Delivery.member_id != ben_id)).all()
    assert set(others) == {"accepted"}  # everyone else as usual
    sent_to = {m.to for m in sms.sent} | {m.to for m in mail.sent}
    for channel, want, address in (("sms", expected[0], BEN), ("email", expected[1], BEN_EMAIL)):
        row = rows[channel]
        if want == "sent":
            assert row.status == "accepted" and address in sent_to, (channel, row.status, row.error_code)
        else:
            assert (row.status, row.error_code) == want, channel
            assert address not in sent_to and row.lease_until is None and row.error_message
    if change == "quiet_hours":  # waits for the end of his quiet hours, the attempt given back
        assert rows["sms"].attempts == 0 and rows["sms"].next_attempt_at == quiet_end


@pytest.mark.parametrize("path", ["single", "batch"])
def test_an_urgent_notice_still_reaches_a_member_who_paused_since(network, sms, path):
    batch = _plan(network, severity="urgent")
    with transaction(network.sessions) as session:
        ben = session.scalar(select(Member).where(Member.phone == BEN))
        ladder.pause(session, ben, "sms", timedelta(hours=24), "sms")
    _send(network, path, batch)
    assert BEN in {m.to for m in sms.sent}


@pytest.mark.parametrize("path", ["single", "batch"])
def test_messages_the_ladder_does_not_govern_go_as_planned(network, mail, path):
    """The unsubscribe confirmation (relay/members/subscriptions.py) goes to an address that has just opted out:
    it is the answer to that opt-out."""
    from relay.outbound.fanout import plan

    with transaction(network.sessions) as session:
        ben = session.scalar(select(Member).where(Member.phone == BEN))
        consent.opt_out_email(session, ben, "web:unsubscribe")
        [delivery_id] = plan(session, [{"dedupe_key": f"unsubscribed:email:{ben.id}:1", "purpose": "unsubscribed",
                                        "channel": "email", "member_id": ben.id, "to_address": BEN_EMAIL,
                                        "body": ""}])
    _send(network, path, [delivery_id])
    assert [m.to for m in mail.sent] == [BEN_EMAIL]


def test_a_relay_s_deadline_for_a_sending_slot_leaves_out_the_quiet_hours_it_waited(tmp_path):
    """A reply that waited out the member's night gets RELAY_RELAY_MAX_AGE from the morning, not from
    when it was planned, when the rate limit puts it off (relay/send_checks.deadline)."""
    from relay.outbound.checks import deadline
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, "sqlite://")
    planned = datetime(2026, 11, 28, 4, 0, tzinfo=timezone.utc)
    reply = Delivery(purpose="relay", channel="sms", created_at=planned)
    assert deadline(settings, reply, None)[:2] == (planned + settings.relay_max_age, "stale")
    assert deadline(settings, reply, None, timedelta(hours=8))[:2] == \
        (planned + timedelta(hours=8) + settings.relay_max_age, "stale")
    notice = Delivery(purpose="notice", channel="sms", created_at=planned)  # only relays age this way
    assert deadline(settings, notice, None, timedelta(hours=8))[1] != "stale"
