"""The authorisation table of the web pages: every console and library route x role (anonymous,
member, coordinator, admin). Only the cells relay.access.permissions allows succeed — and change something;
every other cell changes nothing (anonymous visitors are sent to sign-in, members get 403). A POST
without a CSRF token is refused for every role and changes nothing either."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from relay.access import permissions
from relay.infra.db import transaction
from relay.library.cases import create_case
from relay.model.tables import AuditEvent, Case, Member, MemberList, Notice, Post
from relay.notices.lifecycle import create_notice
from relay.outbound import hold
from tests.conftest import _empty_tables
from tests.console_helpers import ADMIN, KIM, LEE, csrf, give_password, reads_english, sign_in
from webhooks.app import create_app

ROLES = {"anonymous": None, "member": LEE, "coordinator": KIM, "admin": ADMIN}
CSV = "name,phone,email,timezone,language,lists,roles\nNew Person,,new@example.org,UTC,en,fresh,member\n"

# (method, path, form, action that guards it)
ROUTES = [
    ("POST", "/console/hold", {"action": "on"}, "hold.toggle"),
    ("POST", "/console/notices", {"kind": "announcement", "title": "Hello", "lists": "tft", "channels": "email"},
     "notice.create"),
    ("POST", "/console/notices/1/send", {}, "notice.send"),
    ("POST", "/console/notices/1/cancel", {}, "notice.send"),
    ("POST", "/console/notices/2/stop", {}, "notice.stop"),  # issue 17: notice 2 is sent
    ("POST", "/console/cases/", {"title": "Another case"}, "case.create"),
    ("POST", "/console/cases/C2/publish", {}, "case.publish"),
    ("POST", "/console/cases/C2/discard", {"confirm": "on"}, "case.discard"),  # issue 15: a draft
    ("POST", "/console/cases/C1/visibility", {"visibility": "members"}, "case.edit"),
    ("POST", "/console/cases/C1/close", {}, "case.edit"),
    ("POST", "/console/members/import", {"csv": CSV}, "member.edit"),
    ("POST", "/console/members/3", {"name": "Renamed Person", "phone": "+821012345603", "timezone": "UTC",
                                     "language": "en", "channels": "sms", "active": "on"}, "member.edit"),
    ("POST", "/library/cases/C1/posts", {"text": "my opinion", "submission": "abcdefgh12345678"}, "case.post"),
    ("GET", "/console/", None, "notice.read"),
    ("GET", "/console/notices/new", None, "notice.create"),
    ("GET", "/console/notices/1", None, "notice.read"),
    ("GET", "/console/notices/1/counts", None, "notice.read"),
    ("GET", "/console/notices/1/acknowledgements.csv", None, "notice.acknowledgements"),  # issue 17
    ("GET", "/console/cases/", None, "case.create"),
    ("GET", "/console/cases/C2", None, "case.create"),
    ("GET", "/console/members/", None, "member.read"),
    ("GET", "/console/members/3", None, "member.read"),
    # issue 20: reach
    ("POST", "/console/reach/headline", {"action": "on"}, "reach.publish"),
    ("GET", "/console/reach", None, "reach.read"),
    ("GET", "/console/reach.csv?chart=readers", None, "reach.read"),
    ("GET", "/console/reach/cases/C1", None, "reach.read"),
    ("GET", "/console/reach/notices/1", None, "reach.read"),
]


@pytest.fixture
def database_url(sqlite_url):
    """Authorisation does not depend on the database: this table runs on SQLite only."""
    yield sqlite_url
    _empty_tables(sqlite_url)


@pytest.fixture
def web(network):
    give_password(network, KIM)
    give_password(network, LEE)
    give_password(network, ADMIN, roles="admin;member")
    with transaction(network.sessions) as session:
        create_case(session, "A draft to review", draft=True)
        create_notice(session, kind="announcement", title="Draft notice", lists=["tft"], channels="email")
        sent = create_notice(session, kind="announcement", title="Sent notice", lists=["tft"], channels="email")
        sent.status, sent.sent_at = "sent", sent.created_at
    return network


def snapshot(services) -> tuple:
    with services.sessions() as session:
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        return (count(Notice), count(Case), count(Post), count(AuditEvent), count(MemberList), count(Member),
                hold.is_on(session), session.get(Member, 3).name,
                session.scalar(select(Notice.status).where(Notice.id == 1)),
                session.scalar(select(Case.visibility).where(Case.number == 1)))


def roles_of(role: str) -> frozenset[str]:
    return frozenset() if role == "anonymous" else frozenset({"member"} | ({role} if role != "member" else set()))


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("method,path,form,action", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_route_by_role(web, role, method, path, form, action):
    client = reads_english(create_app(services=web).test_client())
    if ROLES[role]:
        sign_in(client, ROLES[role])
    allowed = permissions.allowed(roles_of(role), action)
    before = snapshot(web)
    if method == "GET":
        response = client.get(path)
    else:
        response = client.post(path, data=dict(form, csrf_token=csrf(client)))
    after = snapshot(web)
    if allowed:
        assert response.status_code in (200, 302), response.get_data(as_text=True)[:500]
        assert not response.headers.get("Location", "").startswith("/signin")
        if method == "POST":
            assert after != before, "an allowed change changed nothing"
    else:
        assert after == before
        if role == "anonymous":
            assert response.status_code == 302 and response.headers["Location"].startswith("/signin")
        else:
            assert response.status_code == 403
            assert "Not allowed" in response.get_data(as_text=True)


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("method,path,form,action", [r for r in ROUTES if r[0] == "POST"] + [
    ("POST", "/signout", {}, None), ("POST", "/signin", {"email": KIM, "password": "correct horse battery"}, None)],
    ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None)
def test_posts_without_csrf_are_refused(web, role, method, path, form, action):
    client = reads_english(create_app(services=web).test_client())
    if ROLES[role]:
        sign_in(client, ROLES[role])
    before = snapshot(web)
    response = client.post(path, data=form)
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert snapshot(web) == before
    foreign = client.post(path, data=dict(form, csrf_token="forged.token.value"))
    assert foreign.status_code == 400 and snapshot(web) == before
