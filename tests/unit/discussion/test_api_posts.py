"""POST /api/v1/cases/<number>/posts: a member's reply through the API is posted with channel "web" and
relayed to the case's followers like an SMS or email reply; an Idempotency-Key makes a retry answer with
the first post instead of posting twice."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from relay.access.api_tokens import create_token
from relay.infra.db import transaction
from relay.library.cases import get_case
from relay.members.directory import find_member
from relay.model.tables import Delivery, Post
from relay.notices.lifecycle import new_case_notice
from tests.conftest import run_worker
from webhooks.app import create_app


@pytest.fixture
def client(network):
    network.settings = network.settings.replace(api_token="serv1ce")
    with transaction(network.sessions) as session:
        network.lee = create_token(session, find_member(session, "minho@example.org"))[1]
    new_case_notice(network, "C1", ["tft"])  # everyone on tft follows C1
    run_worker(network)
    return create_app(services=network).test_client()


def as_lee(network, key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {network.lee}"}
    if key:
        headers["Idempotency-Key"] = key
    return headers


def counts(network) -> tuple[int, int]:
    with network.sessions() as session:
        return (session.scalar(select(func.count(Post.id)).where(Post.kind == "reply")),
                session.scalar(select(func.count(Delivery.id)).where(Delivery.purpose == "relay")))


def test_a_members_reply_is_posted_and_relayed_once(client, network):
    first = client.post("/api/v1/cases/C1/posts", json={"text": "  Looks like OP.\x07 CT in 2 weeks?  "},
                        headers=as_lee(network, "k-1"))
    assert first.status_code == 201, first.get_data(as_text=True)
    body = first.get_json()
    assert (body["case"], body["text"], body["author"], body["channel"], body["kind"]) == (
        "C1", "Looks like OP. CT in 2 weeks?", "Lee Minho", "web", "reply")
    assert body["relayed_to"] == 4
    assert counts(network) == (1, 8)  # four followers, each on SMS and email
    retry = client.post("/api/v1/cases/C1/posts", json={"text": "Looks like OP. CT in 2 weeks?"},
                        headers=as_lee(network, "k-1"))
    assert retry.status_code == 200 and retry.get_json()["id"] == body["id"]
    assert retry.get_json() == body  # issue 15, item 9: the retry answers what the first call answered
    assert counts(network) == (1, 8)  # nothing doubled
    run_worker(network)
    assert network.sender("sms").sent and any("Looks like OP." in m.body for m in network.sender("sms").sent)
    posts = client.get("/api/v1/cases/C1/posts").get_json()["posts"]
    assert [p["text"] for p in posts if p["kind"] == "reply"] == ["Looks like OP. CT in 2 weeks?"]
    other = client.post("/api/v1/cases/C1/posts", json={"text": "Second thought"}, headers=as_lee(network))
    assert other.status_code == 201 and counts(network)[0] == 2


def test_refusals(client, network):
    text = {"text": "hello"}
    assert client.post("/api/v1/cases/C1/posts", json=text).status_code == 401
    service = client.post("/api/v1/cases/C1/posts", json=text, headers={"Authorization": "Bearer serv1ce"})
    assert service.status_code == 403 and "names no member" in service.get_json()["detail"]
    assert client.post("/api/v1/cases/C1/posts", json={"text": " \n "}, headers=as_lee(network)).status_code == 422
    assert client.post("/api/v1/cases/C1/posts", json={"text": 5}, headers=as_lee(network)).status_code == 400
    assert client.post("/api/v1/cases/C1/posts", json=text, headers=as_lee(network, "é")).status_code == 400
    assert client.post("/api/v1/cases/C9/posts", json=text, headers=as_lee(network)).status_code == 404
    with transaction(network.sessions) as session:
        get_case(session, "C1").status = "closed"
    closed = client.post("/api/v1/cases/C1/posts", json=text, headers=as_lee(network))
    assert closed.status_code == 422 and "closed" in closed.get_json()["detail"]
    assert counts(network) == (0, 0)
