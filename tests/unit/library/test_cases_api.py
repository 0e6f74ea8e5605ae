"""GET /api/v1/cases, /api/v1/cases/<number> and /api/v1/cases/<number>/posts: a bearer token counts
as a member (members-only cases are readable, drafts are not); each post with its cleaned text,
author, channel, kind and ISO 8601 time."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from relay.infra.db import transaction
from relay.library.cases import create_case, get_case, publish_case
from relay.model.tables import Member, Post
from relay.notices.lifecycle import new_case_notice
from tests.conftest import run_worker
from tests.helpers import record_sms
from webhooks.app import create_app

AUTH = {"Authorization": "Bearer c4ses"}
LEE = "+821012345602"


@pytest.fixture
def api(network):
    network.settings = network.settings.replace(api_token="c4ses")
    return create_app(services=network).test_client()


def add(services, title: str, **kwargs) -> str:
    with transaction(services.sessions) as session:
        return create_case(session, title, **kwargs).code


def member_token(services, email: str) -> str:
    from relay.access.api_tokens import create_token
    from relay.members.directory import find_member

    with transaction(services.sessions) as session:
        return create_token(session, find_member(session, email))[1]


def codes(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [c["code"] for c in response.get_json()["cases"]]


def test_anonymous_callers_read_public_cases_but_a_bad_token_is_refused(api, network):
    add(network, "Staff cluster", visibility="members")  # C2
    assert codes(api.get("/api/v1/cases")) == ["C1"]  # no token: public cases only
    assert api.get("/api/v1/cases/1").status_code == 200
    assert api.get("/api/v1/cases/C1/posts").status_code == 200
    for path in ("/api/v1/cases", "/api/v1/cases/1", "/api/v1/cases/C1/posts"):
        for header in ("Bearer nope", "c4ses", "Bearer "):
            response = api.get(path, headers={"Authorization": header})
            assert response.status_code == 401, (path, header)
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="relay"')
    network.settings = network.settings.replace(api_token="")  # no service token: anonymous reads still work
    assert codes(create_app(services=network).test_client().get("/api/v1/cases")) == ["C1"]


def test_list_cases_with_search_filters_and_pages(api, network):
    add(network, "Cough after travel", findings="peripheral consolidation")  # C2
    add(network, "Closed one")  # C3
    with transaction(network.sessions) as session:
        get_case(session, "C3").status = "closed"
    body = api.get("/api/v1/cases", headers=AUTH).get_json()
    assert [c["code"] for c in body["cases"]] == ["C3", "C2", "C1"]
    assert (body["total"], body["page"], body["pages"], body["per_page"]) == (3, 1, 1, 50)
    c1 = body["cases"][2]
    assert c1 == {
        "number": 1, "code": "C1", "title": "Fever and ground-glass opacities", "status": "open",
        "visibility": "public", "chief_complaint": "fever", "symptoms": "", "exposure_history": "",
        "findings": "", "views": 0, "created_at": c1["created_at"], "published_at": c1["published_at"],
        "url": "https://relay.example.org/library/cases/C1"}
    assert datetime.fromisoformat(c1["created_at"]).tzinfo is not None
    assert codes(api.get("/api/v1/cases?q=CONSOLIDATION", headers=AUTH)) == ["C2"]
    assert codes(api.get("/api/v1/cases?q=c2", headers=AUTH)) == ["C2"]
    assert codes(api.get("/api/v1/cases?q=2", headers=AUTH)) == ["C2"]
    assert codes(api.get("/api/v1/cases?status=closed", headers=AUTH)) == ["C3"]
    assert codes(api.get("/api/v1/cases?status=open&q=ground", headers=AUTH)) == ["C1"]
    today = datetime.now(timezone.utc).date().isoformat()
    assert codes(api.get(f"/api/v1/cases?from={today}&to={today}", headers=AUTH)) == ["C3", "C2", "C1"]
    assert codes(api.get("/api/v1/cases?to=2020-01-01", headers=AUTH)) == []
    assert codes(api.get("/api/v1/cases?q=%25", headers=AUTH)) == []  # a literal %
    assert codes(api.get("/api/v1/cases?q=%27%20OR%201%3D1%20--", headers=AUTH)) == []
    assert api.get("/api/v1/cases?page=2", headers=AUTH).get_json()["cases"] == []


def test_list_pages_of_fifty(api, network):
    with transaction(network.sessions) as session:
        for n in range(2, 53):
            create_case(session, f"Case {n}")
    body = api.get("/api/v1/cases?page=2", headers=AUTH).get_json()
    assert [c["code"] for c in body["cases"]] == ["C2", "C1"]
    assert (body["total"], body["page"], body["pages"]) == (52, 2, 2)


@pytest.mark.parametrize("query", ["status=draft", "from=2020-02-30", "to=soon", "page=0", "page=x",
                                   "from=2020-03-02&to=2020-03-01"])
def test_bad_search_parameters_are_a_400(api, query):
    response = api.get(f"/api/v1/cases?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["detail"]


def test_members_only_cases_are_readable_with_the_token_but_drafts_are_not(api, network):
    add(network, "Staff cluster", visibility="members")  # C2
    add(network, "Intake waiting for review", draft=True)  # C3
    assert codes(api.get("/api/v1/cases", headers=AUTH)) == ["C2", "C1"]
    assert codes(api.get("/api/v1/cases?q=staff", headers=AUTH)) == ["C2"]
    assert codes(api.get("/api/v1/cases?q=review", headers=AUTH)) == []
    case = api.get("/api/v1/cases/C2", headers=AUTH)
    assert case.status_code == 200 and case.get_json()["visibility"] == "members"
    assert api.get("/api/v1/cases/C2/posts", headers=AUTH).status_code == 200
    # signed out on the web, the same case is not there
    assert api.get("/library/cases/C2").status_code == 404
    assert "C2" not in api.get("/library/").get_data(as_text=True)
    # a draft is not in the library yet: a member's token, or none, finds nothing; staff read it to review
    member = {"Authorization": "Bearer " + member_token(network, "minho@example.org")}
    for path in ("/api/v1/cases/C3", "/api/v1/cases/3/posts"):
        for headers in (member, {}):
            response = api.get(path, headers=headers)
            assert response.status_code == 404 and response.get_json()["detail"] == "no case C3"
        assert api.get(path, headers=AUTH).status_code == 200  # the service token is admin
    assert codes(api.get("/api/v1/cases", headers=member)) == ["C2", "C1"]  # members-only, not drafts
    assert codes(api.get("/api/v1/cases")) == ["C1"]  # anonymous: public only
    for path in ("/api/v1/cases/C2", "/api/v1/cases/C2/posts"):
        response = api.get(path)
        assert response.status_code == 404 and response.get_json()["detail"] == "no case C2"
    with transaction(network.sessions) as session:
        publish_case(session, "C3")
    assert api.get("/api/v1/cases/3", headers=AUTH).get_json()["status"] == "open"


@pytest.mark.parametrize("number", ["1", "C1", "c1", "%231"])
def test_get_a_case_by_number_or_code(api, number):
    response = api.get(f"/api/v1/cases/{number}", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["code"] == "C1"


@pytest.mark.parametrize("number", ["C99", "99", "abc", "C-1", "1x"])
def test_an_unknown_case_is_a_404(api, number):
    for path in (f"/api/v1/cases/{number}", f"/api/v1/cases/{number}/posts"):
        response = api.get(path, headers=AUTH)
        assert response.status_code == 404
        assert response.get_json()["error"] == "Not Found"


def test_the_api_does_not_count_views(api, network):
    api.get("/api/v1/cases/C1", headers=AUTH)
    api.get("/api/v1/cases/C1/posts", headers=AUTH)
    assert api.get("/api/v1/cases/C1", headers=AUTH).get_json()["views"] == 0
    api.get("/library/cases/C1")
    assert api.get("/api/v1/cases/C1", headers=AUTH).get_json()["views"] == 1


def test_posts_in_order_with_cleaned_text_author_channel_and_time(api, network):
    assert api.get("/api/v1/cases/C1/posts", headers=AUTH).get_json() == {"case": "C1", "posts": []}
    new_case_notice(network, "C1", ["tft"])
    record_sms(network, LEE, "c1   <b>looks like</b> organising pneumonia  ")
    run_worker(network)
    with transaction(network.sessions) as session:
        alice = session.scalar(select(Member).where(Member.email == "alice@example.org"))
        thread_id = get_case(session, "C1").thread.id
        session.add(Post(thread_id=thread_id, author_id=alice.id, channel="email", body="Agree.\nCT in 2 weeks?"))
    body = api.get("/api/v1/cases/C1/posts", headers=AUTH).get_json()
    assert body["case"] == "C1"
    notice, sms, email = body["posts"]
    with network.sessions() as session:
        stored = {p.id: p for p in session.scalars(select(Post).order_by(Post.id))}
    assert [p["id"] for p in body["posts"]] == sorted(stored)
    assert notice["kind"] == "notice" and notice["text"] == stored[notice["id"]].body
    assert set(sms) == {"id", "text", "author", "channel", "kind", "created_at"}
    assert (sms["kind"], sms["channel"], sms["author"]) == ("reply", "sms", "Lee Minho")
    assert sms["text"] == stored[sms["id"]].body  # the cleaned text: without the case code
    assert "c1" not in sms["text"].lower() and "<b>looks like</b> organising pneumonia" in sms["text"]
    assert (email["channel"], email["author"], email["text"]) == ("email", "Alice Moreau", "Agree.\nCT in 2 weeks?")
    times = [datetime.fromisoformat(p["created_at"]) for p in body["posts"]]
    assert all(t.utcoffset() is not None and t.utcoffset().total_seconds() == 0 for t in times)
    assert times == sorted(times)
    assert times[1] == stored[sms["id"]].created_at
    assert api.get("/api/v1/cases/C1/posts", headers=AUTH).headers["Content-Type"] == "application/json"


def test_close_and_reopen_but_never_a_draft(api, network):
    """Issue 15, item 1: POST /api/v1/cases/<number>/close follows the core's rule — a draft is refused
    (422, nothing changes) and stays out of the library; a published case closes and reopens (audited)."""
    add(network, "Intake nobody reviewed", draft=True)  # C2
    for body in (None, {"reopen": True}):
        response = api.post("/api/v1/cases/C2/close", json=body, headers=AUTH)
        assert response.status_code == 422, response.get_data(as_text=True)
        assert "C2 is a draft: publish it first" in response.get_json()["detail"]
    assert api.get("/api/v1/cases/C2").status_code == 404 and codes(api.get("/api/v1/cases")) == ["C1"]
    with network.sessions() as session:
        assert get_case(session, "C2").status == "draft"
    response = api.post("/api/v1/cases/C1/close", headers=AUTH)
    assert response.status_code == 200 and response.get_json()["status"] == "closed"
    response = api.post("/api/v1/cases/C1/close", json={"reopen": True}, headers=AUTH)
    assert response.status_code == 200 and response.get_json()["status"] == "open"
    assert api.post("/api/v1/cases/C1/close", json={"reopen": "yes"}, headers=AUTH).status_code == 400
    assert api.post("/api/v1/cases/C9/close", headers=AUTH).status_code == 404
