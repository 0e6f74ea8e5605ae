"""issue 17: the Gather callback of an escalation call is checked like the SMS webhook: a missing or wrong
signature, a signature over another URL, another account, or a forged token records nothing; a digit other
than 1 records nothing; hostile signed forms never cause a 500."""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from relay.infra.db import transaction
from relay.infra.signing import ack_token
from relay.model.urgent import Acknowledgement
from relay.notices.escalation import gather_url
from relay.notices.lifecycle import create_notice, send_notice
from relay.providers.twilio_sms import sign
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE, run_worker
from tests.helpers import member
from webhooks.app import create_app

LEE = "+821012345602"


@pytest.fixture
def call(network):
    with transaction(network.sessions) as session:
        notice_id = create_notice(session, kind="announcement", title="Masks", lists=["tft"], severity="urgent",
                                  ack_within=timedelta(minutes=10)).id
    send_notice(network, notice_id)
    run_worker(network)
    url = gather_url(network.settings, notice_id, member(network, LEE).id)
    return create_app(services=network).test_client(), url, notice_id


def _post(client, url: str, form: dict, signed_url: str | None = None, signature: str | None = None):
    signature = signature if signature is not None else sign(AUTH_TOKEN, signed_url or url, form)
    return client.post(url.removeprefix(PUBLIC_BASE), data=form, headers={"X-Twilio-Signature": signature})


def _acks(network) -> int:
    with network.sessions() as session:
        return session.scalar(select(func.count()).select_from(Acknowledgement))


def test_only_a_signed_1_for_our_own_token_records(call, network):
    client, url, notice_id = call
    form = {"AccountSid": ACCOUNT_SID, "CallSid": "CA" + "1" * 32, "Digits": "1"}
    assert _post(client, url, form, signature="").status_code == 403
    assert _post(client, url, form, signature="bad").status_code == 403
    assert _post(client, url, form, signed_url="http://127.0.0.1:8000" + url.removeprefix(PUBLIC_BASE)).status_code == 403
    forged = f"{PUBLIC_BASE}/webhooks/twilio/voice/gather/{ack_token('not-our-secret', notice_id, 1)}"
    assert _post(client, forged, form).status_code == 404
    two = _post(client, url, {**form, "Digits": "2"})
    assert two.status_code == 200 and "Nothing was recorded" in two.get_data(as_text=True)
    assert _acks(network) == 0
    one = _post(client, url, form)
    assert one.status_code == 200 and one.content_type.startswith("text/xml")
    assert _acks(network) == 1 and _post(client, url, form).status_code == 200 and _acks(network) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(min_size=1, max_size=60).filter(lambda t: "/" not in t and "?" not in t and "#" not in t),
       digits=st.text(max_size=20))
def test_hostile_signed_requests_never_fail(call, token, digits):
    client, url, _ = call
    target = f"{PUBLIC_BASE}/webhooks/twilio/voice/gather/{token}"
    response = _post(client, target, {"Digits": digits, "CallSid": "CA1"})
    assert response.status_code in (200, 403, 404, 405), response.status_code
