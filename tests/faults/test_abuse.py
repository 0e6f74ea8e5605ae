"""Abuse and loops: one member texting 100 times a minute is throttled (kept, not relayed past the
limit, told once) without slowing anyone else, STOP still works; two auto-responders answering
every relay stop after one message each. (Email loops and auto-replies:
tests/unit/inbound/test_mail.py::test_a_mail_loop_between_two_relays_stops_after_one_message and
test_automatic_mail_is_recorded_and_never_relayed.)"""
from __future__ import annotations

import collections

from sqlalchemy import select

from relay.model.tables import InboundEvent
from relay.notices.lifecycle import new_case_notice
from tests.conftest import run_worker
from tests.helpers import record_sms

from .conftest import report

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"


def _outcomes(services, sender):
    with services.sessions() as session:
        return list(session.scalars(select(InboundEvent.outcome).where(InboundEvent.sender == sender)
                                    .order_by(InboundEvent.id)))


def test_a_member_texting_100_times_a_minute_is_throttled_alone(network, sms):
    limit = network.settings.inbound_per_minute
    new_case_notice(network, "C1", ["tft"])  # everyone follows C1
    run_worker(network)
    sms.sent.clear()
    for n in range(100):
        record_sms(network, LEE, f"C1 flood {n}")
        if n == 50:
            record_sms(network, KIM, "C1 an ordinary reply in the middle of the flood")
    record_sms(network, LEE, "STOP")
    run_worker(network)

    lee = collections.Counter(_outcomes(network, LEE))
    kim = _outcomes(network, KIM)
    relayed = [m for m in sms.sent if ": flood " in m.body]
    throttle_notes = [m for m in sms.sent if m.to == LEE and "more than" in m.body]
    report("inbound_flood", sent=100, limit=limit, posted=lee["posted"], throttled=lee["throttled"],
           relayed_sms=len(relayed), told=len(throttle_notes), other_member=kim)
    assert lee["posted"] == limit and lee["throttled"] == 100 - limit  # every message kept, with its outcome
    assert lee["command:stop"] == 1  # STOP is never throttled
    assert len(throttle_notes) == 1 and str(limit) in throttle_notes[0].body
    assert kim == ["posted"]
    assert any(m.body.endswith("an ordinary reply in the middle of the flood") for m in sms.sent if m.to == PARK)
    assert len({m.body for m in relayed}) == limit


def test_two_auto_responders_stop_after_one_message(network, sms):
    """Park and Alice auto-answer every SMS with the same text; Lee's post starts it."""
    auto = {PARK: "I am away until Monday, for urgent matters call the ward.",
            ALICE: "Auto-reply: on leave, no access to messages."}
    new_case_notice(network, "C1", ["tft"])  # everyone follows C1
    run_worker(network)
    sms.sent.clear()
    record_sms(network, LEE, "C1 Please review the new CT images")
    answered = collections.Counter()
    for _round in range(6):  # each round, every auto-responder answers what reached it
        run_worker(network)
        incoming = [m for m in sms.sent if m.to in auto]
        sms.sent.clear()
        for message in incoming:
            record_sms(network, message.to, auto[message.to])
            answered[message.to] += 1
    run_worker(network)
    park, alice = collections.Counter(_outcomes(network, PARK)), collections.Counter(_outcomes(network, ALICE))
    report("auto_responder_loop", park=dict(park), alice=dict(alice), answered=dict(answered))
    assert park["posted"] == 1 and alice["posted"] == 1  # one message each reaches the case
    assert sms.sent == [] or all(m.to not in auto for m in sms.sent)  # the loop has ended
    assert sum(answered.values()) < 12
