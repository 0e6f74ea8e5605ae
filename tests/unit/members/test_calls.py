"""issue 17: the "no calls" preference on the preference page (NO CALLS / CALLS OK by SMS:
tests/unit/inbound/test_coordinator_commands.py), audited, and read by the escalation."""
from __future__ import annotations

from sqlalchemy import select

from relay.model.tables import AuditEvent
from tests.helpers import member
from tests.unit.members.test_preferences import client, page_of  # noqa: F401 (the fixture)

LEE = "+821012345602"


def test_the_page_shows_and_changes_the_call_preference(client, network):  # noqa: F811
    page = client.get(page_of(network, LEE)).get_data(as_text=True)
    assert 'name="calls_ok" value="1" checked' in page
    response = client.post(page_of(network, LEE), data={"calls_shown": "1"})  # the box unticked
    assert response.status_code == 200
    assert member(network, LEE).calls_ok is False
    assert 'name="calls_ok" value="1" >' in response.get_data(as_text=True)
    client.post(page_of(network, LEE), data={"calls_shown": "1", "calls_ok": "1"})
    assert member(network, LEE).calls_ok is True
    with network.sessions() as session:
        audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "member.calls")
                                   .order_by(AuditEvent.id)).all()
    assert [(a.detail["calls_ok"], a.source) for a in audited] == [(False, "web"), (True, "web")]


def test_a_form_without_the_calls_fieldset_changes_nothing(client, network):  # noqa: F811
    client.post(page_of(network, LEE), data={})
    assert member(network, LEE).calls_ok is True
