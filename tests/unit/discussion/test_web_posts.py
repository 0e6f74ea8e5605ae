"""Issue 16 from the library page: a post carrying a patient identifier is held, its author shown what was
found and where (never the value) with buttons to send it as written (once) or drop it; a corrected post
goes through."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from relay.model.tables import HeldMessage, InboundEvent, Post
from relay.notices.lifecycle import new_case_notice
from tests.conftest import run_worker
from tests.console_helpers import LEE, csrf, give_password, sign_in
from webhooks.app import create_app

TEXT = "C1 follow-up: patient Jane Doe, DOB 1955-03-15, GGO improved"


@pytest.fixture
def client(network, sms):
    give_password(network, LEE)
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    sms.sent.clear()
    client = create_app(services=network).test_client()
    sign_in(client, LEE)
    return client


def _post(client, text):
    page = client.get("/library/cases/C1").get_data(as_text=True)
    submission = re.search(r'name="submission" value="([^"]+)"', page).group(1)
    form = {"text": text, "submission": submission, "csrf_token": csrf(client)}
    return client.post("/library/cases/C1/posts", data=form), form


def _posts(network):
    with network.sessions() as session:
        return list(session.scalars(select(Post.body).where(Post.kind == "reply")))


def test_a_post_with_identifiers_is_held_and_the_author_shown_kinds_not_values(client, network, sms):
    response, form = _post(client, TEXT)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "not relayed" in page
    assert "a patient&#39;s name" in page and "a date of birth" in page
    held_panel = page[page.index('id="held"'):page.index("</form>", page.index('id="held"'))]
    assert "Jane" not in held_panel and "1955" not in held_panel
    assert _posts(network) == []
    run_worker(network)
    assert sms.sent == []
    again = client.post("/library/cases/C1/posts", data=form)  # a double submit: the same hold, no second
    assert "not relayed" in again.get_data(as_text=True)
    with network.sessions() as session:
        assert len(session.scalars(select(HeldMessage)).all()) == 1
        event = session.scalar(select(InboundEvent).where(InboundEvent.provider == "web"))
        assert event.outcome == "held" and event.guard_kinds == ["birth_date", "patient_name"]


def test_send_as_written_releases_once_and_drop_drops(client, network, sms):
    response, _ = _post(client, TEXT)
    code = re.search(r'/held/([A-Z0-9]{6})"', response.get_data(as_text=True)).group(1)
    token = csrf(client)
    first = client.post(f"/library/cases/C1/held/{code}", data={"decision": "send", "csrf_token": token})
    second = client.post(f"/library/cases/C1/held/{code}", data={"decision": "send", "csrf_token": token})
    assert first.status_code == 302 and second.status_code == 404
    assert _posts(network) == [TEXT]
    run_worker(network)
    assert len(sms.sent) == 4
    response, _ = _post(client, TEXT + " again")
    code = re.search(r'/held/([A-Z0-9]{6})"', response.get_data(as_text=True)).group(1)
    dropped = client.post(f"/library/cases/C1/held/{code}", data={"decision": "drop", "csrf_token": csrf(client)})
    assert dropped.status_code == 200 and "dropped" in dropped.get_data(as_text=True)
    assert _posts(network) == [TEXT]


def test_a_corrected_post_goes_through(client, network):
    _post(client, TEXT)
    response, _ = _post(client, "C1 follow-up: GGO improved")
    assert response.status_code == 302
    assert _posts(network) == ["C1 follow-up: GGO improved"]
    with network.sessions() as session:
        assert session.scalar(select(HeldMessage.status)) == "dropped"


def test_another_members_code_is_refused(client, network):
    response, _ = _post(client, TEXT)
    code = re.search(r'/held/([A-Z0-9]{6})"', response.get_data(as_text=True)).group(1)
    from tests.console_helpers import KIM

    give_password(network, KIM)
    other = create_app(services=network).test_client()
    sign_in(other, KIM)
    answer = other.post(f"/library/cases/C1/held/{code}", data={"decision": "send", "csrf_token": csrf(other)})
    assert answer.status_code == 404 and _posts(network) == []
