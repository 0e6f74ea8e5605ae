"""The API routes that change cases, lists and members: drafts created, published and made members-only;
list memberships put and deleted idempotently; members' fields changed with validation; each change
audited with the token's member as actor."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from relay.access.api_tokens import create_token
from relay.infra.audit import recent
from relay.infra.db import transaction
from relay.members.directory import find_member
from relay.model.tables import Membership
from webhooks.app import create_app


@pytest.fixture
def staff(network):
    """A coordinator's client (Kim Jiwon), and an admin's token (Park, made an admin)."""
    with transaction(network.sessions) as session:
        find_member(session, "seoyeon@example.org").roles = "admin"
        network.coordinator = create_token(session, find_member(session, "jiwon@example.org"))[1]
        network.admin = create_token(session, find_member(session, "seoyeon@example.org"))[1]
    return create_app(services=network).test_client()


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_create_a_draft_publish_it_and_make_it_members_only(staff, network):
    as_kim = auth(network.coordinator)
    created = staff.post("/api/v1/cases", json={"title": "  Cough after\ntravel ", "findings": "GGO",
                                                "visibility": "members"}, headers=as_kim)
    assert created.status_code == 201, created.get_data(as_text=True)
    case = created.get_json()
    assert (case["code"], case["title"], case["status"], case["visibility"]) == ("C2", "Cough after travel", "draft",
                                                                                 "members")
    assert created.headers["Location"] == "/api/v1/cases/C2"
    assert staff.get("/api/v1/cases/C2", headers=as_kim).get_json()["status"] == "draft"  # staff see drafts
    assert staff.get("/api/v1/cases/C2").status_code == 404  # nobody else does
    published = staff.post("/api/v1/cases/C2/publish", headers=as_kim)
    assert published.status_code == 200 and published.get_json()["status"] == "open"
    assert published.get_json()["published_at"]
    again = staff.post("/api/v1/cases/C2/publish", headers=as_kim)
    assert again.status_code == 422 and "already published" in again.get_json()["detail"]
    assert staff.get("/api/v1/cases/C2").status_code == 404  # members-only
    public = staff.put("/api/v1/cases/C2/visibility", json={"visibility": "public"}, headers=as_kim)
    assert public.status_code == 200 and public.get_json()["visibility"] == "public"
    assert staff.get("/api/v1/cases/C2").status_code == 200
    with network.sessions() as session:
        kim = find_member(session, "jiwon@example.org")
        events = {e.action: e for e in recent(session)}
        for action in ("case.create", "case.publish", "case.visibility"):
            assert events[action].actor == f"member:{kim.id}" and events[action].subject == "case:C2"


@pytest.mark.parametrize("method,path,body,status", [
    ("post", "/api/v1/cases", {}, 400),
    ("post", "/api/v1/cases", {"title": "  "}, 400),
    ("post", "/api/v1/cases", {"title": 5}, 400),
    ("post", "/api/v1/cases", {"title": "x", "visibility": "secret"}, 422),
    ("post", "/api/v1/cases", {"title": "x" * 301}, 422),
    ("post", "/api/v1/cases/C99/publish", None, 404),
    ("put", "/api/v1/cases/C1/visibility", {}, 400),
    ("put", "/api/v1/cases/C1/visibility", {"visibility": "everyone"}, 422),
    ("put", "/api/v1/cases/C99/visibility", {"visibility": "public"}, 404),
    ("patch", "/api/v1/members/ben@example.org", {"timezone": "Mars/Olympus"}, 422),
    ("patch", "/api/v1/members/ben@example.org", {"language": "fr"}, 422),
    ("patch", "/api/v1/members/ben@example.org", {"name": ""}, 422),
    ("patch", "/api/v1/members/ben@example.org", {"phone": "+1"}, 422),
    ("patch", "/api/v1/members/ben@example.org", {"active": "no"}, 400),
    ("patch", "/api/v1/members/ben@example.org", {"name": 3}, 400),
    ("patch", "/api/v1/members/ben@example.org", [], 400),
    ("patch", "/api/v1/members/nobody@example.org", {"name": "X"}, 404),
    ("get", "/api/v1/lists/nope", None, 404),
    ("put", "/api/v1/lists/nope/members/ben@example.org", None, 404),
    ("put", "/api/v1/lists/tft/members/nobody@example.org", None, 404),
    ("delete", "/api/v1/lists/nope/members/ben@example.org", None, 404),
])
def test_bad_requests_get_a_reason_and_change_nothing(staff, network, method, path, body, status):
    response = getattr(staff, method)(path, json=body, headers=auth(network.admin))
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["detail"]
    with network.sessions() as session:
        ben = find_member(session, "ben@example.org")
        assert (ben.name, ben.timezone, ben.language, ben.active) == ("Ben Carter", "America/New_York", "en", True)


def test_lists_and_idempotent_memberships(staff, network):
    as_kim = auth(network.coordinator)
    assert staff.get("/api/v1/lists", headers=as_kim).get_json()["lists"] == [
        {"name": "tft", "members": 5, "created_at": staff.get("/api/v1/lists/tft", headers=as_kim).get_json()["created_at"]},
        {"name": "us", "members": 1, "created_at": staff.get("/api/v1/lists/us", headers=as_kim).get_json()["created_at"]}]
    first = staff.put("/api/v1/lists/us/members/minho@example.org", headers=as_kim).get_json()
    second = staff.put("/api/v1/lists/us/members/+821012345602", headers=as_kim).get_json()
    assert (first["changed"], second["changed"]) == (True, False)
    assert second["list"]["members"] == 2 and second["member_of"] is True
    removed = staff.delete("/api/v1/lists/tft/members/ben@example.org", headers=as_kim).get_json()
    again = staff.delete("/api/v1/lists/tft/members/ben@example.org", headers=as_kim).get_json()
    assert (removed["changed"], again["changed"], again["member_of"]) == (True, False, False)
    assert staff.get("/api/v1/lists/tft", headers=as_kim).get_json()["members"] == 4
    with network.sessions() as session:
        assert session.scalar(select(func.count(Membership.id))) == 6
        assert [e.action for e in recent(session) if e.action.startswith("list.")] == ["list.remove", "list.add"]


def test_patch_a_member_and_only_admins_grant_roles(staff, network):
    body = {"name": "Benjamin Carter", "timezone": "Europe/London", "language": "ko", "active": False}
    changed = staff.patch("/api/v1/members/ben@example.org", json=body, headers=auth(network.coordinator))
    assert changed.status_code == 200, changed.get_data(as_text=True)
    assert {k: changed.get_json()[k] for k in ("name", "timezone", "language", "active", "roles")} == {
        "name": "Benjamin Carter", "timezone": "Europe/London", "language": "ko", "active": False, "roles": ["member"]}
    refused = staff.patch("/api/v1/members/ben@example.org", json={"roles": ["admin"]},
                          headers=auth(network.coordinator))
    assert refused.status_code == 403 and "member.roles" in refused.get_json()["detail"]
    granted = staff.patch("/api/v1/members/ben@example.org", json={"roles": ["coordinator", "member", "member"]},
                          headers=auth(network.admin))
    assert granted.status_code == 200
    assert staff.patch("/api/v1/members/ben@example.org", json={"roles": []},
                       headers=auth(network.admin)).status_code == 422
    assert staff.patch("/api/v1/members/ben@example.org", json={"roles": ["king"]},
                       headers=auth(network.admin)).status_code == 422
    with network.sessions() as session:
        ben = find_member(session, "ben@example.org")
        assert (ben.short_name, ben.timezone, ben.language, ben.active, ben.roles) == (
            "Benjamin Carter", "Europe/London", "ko", False, "member;coordinator")
        events = {e.action: e for e in recent(session)}
        assert events["member.active"].detail == {"after": False}
        assert events["member.roles"].detail == {"before": "member", "after": "member;coordinator"}
        assert events["member.edit"].detail["changes"]["language"] == ["en", "ko"]
        assert events["member.edit"].detail["via"] == "api"
