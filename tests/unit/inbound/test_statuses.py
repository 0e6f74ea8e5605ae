"""Status callbacks move deliveries through the transition table, never backwards."""
from __future__ import annotations

from urllib.parse import urlencode

from relay.inbound.record import record_inbound
from relay.inbound.statuses import apply_status
from relay.infra.db import transaction
from relay.model.delivery_states import FINAL
from relay.outbound.deliveries import TRANSITIONS, can_move
from relay.outbound.fanout import plan
from relay.outbound.sending import send_delivery
from relay.providers.twilio_sms import TWILIO_STATUS
from tests.conftest import run_worker
from tests.helpers import deliveries, event


def record_status(services, sid: str, status: str, error: str | None = None) -> int:
    form = {"MessageSid": sid, "MessageStatus": status}
    if error:
        form["ErrorCode"] = error
    with transaction(services.sessions) as session:
        recorded = record_inbound(session, provider="twilio", kind="status", dedupe_key=f"{sid}:{status}",
                                  raw=urlencode(form))
    return recorded.event_id


def sent_delivery(services) -> tuple[int, str]:
    with transaction(services.sessions) as session:
        [delivery_id] = plan(session, [{"dedupe_key": "t:1", "purpose": "relay", "to_address": "+821012345602",
                                        "body": "hi"}])
    send_delivery(services, delivery_id)
    return delivery_id, deliveries(services)[0].provider_message_id


def test_final_states_have_no_way_out():
    for state in FINAL:  # the one step after a final state: WhatsApp's read receipt after delivered (issue 19)
        assert TRANSITIONS[state] == (frozenset({"read"}) if state == "delivered" else frozenset())
    assert not can_move("delivered", "sent")
    assert can_move("accepted", "delivered")
    assert set(TWILIO_STATUS.values()) <= set(TRANSITIONS)


def test_callbacks_in_order(services):
    _, sid = sent_delivery(services)
    assert apply_status(services, record_status(services, sid, "sent")) == "accepted->sent"
    assert apply_status(services, record_status(services, sid, "delivered")) == "sent->delivered"
    assert deliveries(services)[0].status == "delivered"


def test_out_of_order_callbacks_never_move_backwards(services):
    _, sid = sent_delivery(services)
    assert apply_status(services, record_status(services, sid, "delivered")) == "accepted->delivered"
    late = record_status(services, sid, "sent")
    assert apply_status(services, late).startswith("ignored")
    assert deliveries(services)[0].status == "delivered"
    assert event(services, late).outcome == "ignored"


def test_undelivered_keeps_the_error_code(services):
    _, sid = sent_delivery(services)
    apply_status(services, record_status(services, sid, "undelivered", error="30003"))
    row = deliveries(services)[0]
    assert row.status == "undelivered" and row.error_code == "30003"


def test_the_same_callback_twice_is_applied_once(services):
    _, sid = sent_delivery(services)
    first = record_status(services, sid, "sent")
    again = record_status(services, sid, "sent")
    assert first == again
    assert apply_status(services, first) == "accepted->sent"
    assert apply_status(services, first) == "duplicate"


def test_a_callback_that_races_ahead_of_the_send_is_applied_later(services):
    with transaction(services.sessions) as session:
        [delivery_id] = plan(session, [{"dedupe_key": "t:1", "purpose": "relay", "to_address": "+821012345602",
                                        "body": "hi"}])
    sid = f"SM{delivery_id:032x}"  # what the recording sender will return
    early = record_status(services, sid, "delivered")
    assert apply_status(services, early) == "unmatched"
    assert event(services, early).processed_at is None
    send_delivery(services, delivery_id)
    assert services.dispatcher.statuses == [early]  # the send re-dispatches what was waiting
    run_worker(services)
    assert deliveries(services)[0].status == "delivered"


def test_21610_in_a_callback_opts_the_member_out(network):
    from tests.helpers import member

    lee = member(network, "+821012345602")
    with transaction(network.sessions) as session:
        [delivery_id] = plan(session, [{"dedupe_key": "t:1", "purpose": "relay", "to_address": lee.phone,
                                        "member_id": lee.id, "body": "hi"}])
    send_delivery(network, delivery_id)
    sid = deliveries(network)[0].provider_message_id
    apply_status(network, record_status(network, sid, "failed", error="21610"))
    assert deliveries(network)[0].status == "failed"
    assert member(network, lee.phone).sms_opted_out_at is not None
