"""RFC 8058 one-click unsubscribe: POST unsubscribes at once; GET never does."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from relay.infra.signing import unsubscribe_token
from relay.model.tables import ConsentEvent
from relay.notices.lifecycle import new_case_notice
from tests.conftest import run_worker
from tests.helpers import member
from webhooks.app import create_app

ALICE = "+33612345604"


@pytest.fixture
def client(network):
    return create_app(services=network).test_client()


def token_for(services, phone: str) -> str:
    return unsubscribe_token(services.settings.secret(), member(services, phone).id)


def test_get_shows_a_button_and_never_unsubscribes(client, network):
    response = client.get(f"/unsubscribe/{token_for(network, ALICE)}")
    assert response.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in response.get_data(as_text=True)
    assert member(network, ALICE).email_opted_out_at is None


@pytest.mark.parametrize("as_multipart", [False, True])
def test_one_click_post_unsubscribes_at_once(client, network, mail, as_multipart):
    token = token_for(network, ALICE)
    if as_multipart:
        response = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"},
                               content_type="multipart/form-data")
    else:
        response = client.post(f"/unsubscribe/{token}", data="List-Unsubscribe=One-Click",
                               content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert member(network, ALICE).email_opted_out_at is not None
    assert "Set-Cookie" not in response.headers
    with network.sessions() as session:
        log = session.scalars(select(ConsentEvent)).all()
    assert [(e.channel, e.action, e.source) for e in log] == [("email", "opt_out", "email:one-click")]
    # Effective immediately: the next notice reaches Alice by SMS only; her one email is the confirmation.
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    to_alice = [m for m in mail.sent if m.to == "alice@example.org"]
    assert len(to_alice) == 1 and b"Subject: You are unsubscribed from relay email" in to_alice[0].raw


def test_a_forged_or_foreign_token_is_refused(client, network):
    token = token_for(network, ALICE)
    forged = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert client.post(f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert client.get("/unsubscribe/nonsense").status_code == 404
    assert member(network, ALICE).email_opted_out_at is None


def test_unsubscribing_twice_is_harmless(client, network, mail):
    token = token_for(network, ALICE)
    for _ in range(2):
        assert client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
        run_worker(network)
    with network.sessions() as session:
        assert len(session.scalars(select(ConsentEvent)).all()) == 1
    assert [m.to for m in mail.sent] == ["alice@example.org"]  # confirmed by exactly one email
