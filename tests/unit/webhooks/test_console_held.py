"""Issue 16 in the console: coordinators see members' held messages masked and release or drop them, audited;
a member cannot."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from relay.access.permissions import Forbidden
from relay.discussion import holding
from relay.infra.audit import Actor
from relay.model.tables import AuditEvent, HeldMessage, Post
from relay.notices.lifecycle import new_case_notice
from tests.conftest import run_worker
from tests.console_helpers import KIM, LEE, csrf, give_password, reads_english, sign_in
from tests.helpers import record_sms
from webhooks.app import create_app

RRN = "550315-1234567"


@pytest.fixture
def held(network, sms):
    give_password(network, KIM)
    give_password(network, LEE)
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    record_sms(network, "+821012345602", f"C1 pt RRN {RRN} GGO")
    run_worker(network)
    sms.sent.clear()
    with network.sessions() as session:
        return session.scalar(select(HeldMessage.id))


def test_coordinators_see_held_messages_masked_and_release_them_audited(network, sms, held):
    client = reads_english(create_app(services=network).test_client())
    sign_in(client, KIM)
    page = client.get("/console/held").get_data(as_text=True)
    assert "[resident_number]" in page and RRN not in page and "550315" not in page
    answer = client.post(f"/console/held/{held}", data={"decision": "send", "csrf_token": csrf(client)})
    assert answer.status_code == 200 and "Released" in answer.get_data(as_text=True)
    again = client.post(f"/console/held/{held}", data={"decision": "send", "csrf_token": csrf(client)})
    assert again.status_code == 404
    with network.sessions() as session:
        assert len(session.scalars(select(Post).where(Post.kind == "reply")).all()) == 1
        audit = session.scalar(select(AuditEvent).where(AuditEvent.action == "guard.release"))
        assert audit.source == "console" and audit.actor.startswith("member:")
    run_worker(network)
    assert len(sms.sent) == 4


def test_coordinators_drop(network, held):
    client = create_app(services=network).test_client()
    sign_in(client, KIM)
    client.post(f"/console/held/{held}", data={"decision": "drop", "csrf_token": csrf(client)})
    with network.sessions() as session:
        assert session.scalar(select(HeldMessage.status)) == "dropped"
        assert session.scalar(select(AuditEvent.action).where(AuditEvent.action == "guard.drop"))


def test_a_member_cannot_see_or_decide(network, held):
    client = create_app(services=network).test_client()
    sign_in(client, LEE)
    assert client.get("/console/held").status_code == 403
    assert client.post(f"/console/held/{held}", data={"decision": "send", "csrf_token": csrf(client)}).status_code == 403
    with pytest.raises(Forbidden):  # the core checks too, whoever calls it
        holding.decide_as_coordinator(network, held, "send", Actor("member:2", "api", 2), frozenset({"member"}))
    with network.sessions() as session:
        assert session.scalar(select(HeldMessage.status)) == "held"
