"""Stale work is not sent late: a relayed reply older than RELAY_RELAY_MAX_AGE (a backlog after an
outage) is dropped with its record kept; fresh relays and other messages of the same age still go.
(A notice past its expiry while queued:
tests/unit/notices/test_lifecycle.py::test_expired_notice_is_never_sent_late.)"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from relay.infra.db import transaction
from relay.model.tables import Delivery, utcnow
from relay.outbound.fanout import plan
from relay.outbound.sending import send_delivery
from tests.helpers import deliveries

from .conftest import report

LEE = "+821012345602"


def test_a_relay_older_than_its_limit_is_dropped_with_a_record(network, sms):
    with transaction(network.sessions) as session:
        old, fresh, confirmation = plan(session, [
            {"dedupe_key": "t:old", "purpose": "relay", "to_address": LEE, "body": "C1 Kim: six hours ago"},
            {"dedupe_key": "t:fresh", "purpose": "relay", "to_address": LEE, "body": "C1 Kim: just now"},
            {"dedupe_key": "t:confirm", "purpose": "confirmation", "to_address": LEE, "body": "Posted to C1"},
        ])
        session.execute(update(Delivery).where(Delivery.id.in_([old, confirmation]))
                        .values(created_at=utcnow() - network.settings.relay_max_age - timedelta(minutes=1)))
    outcomes = [send_delivery(network, i).result for i in (old, fresh, confirmation)]
    rows = {d.id: d for d in deliveries(network)}
    report("stale_relay", outcomes=outcomes, sent=len(sms.sent), dropped=sum(d.error_code == "stale"
                                                                            for d in rows.values()))
    assert outcomes == ["stale", "sent", "sent"]
    assert [m.body for m in sms.sent] == ["C1 Kim: just now", "Posted to C1"]
    assert (rows[old].status, rows[old].error_code) == ("failed", "stale")
    assert "RELAY_RELAY_MAX_AGE" in rows[old].error_message
    assert send_delivery(network, old).result == "skipped"  # a redelivered task does not revive it
