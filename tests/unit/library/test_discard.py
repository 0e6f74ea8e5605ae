"""Issue 15, item 1: a draft is published or DISCARDED. Discarding marks a never-published draft
`discarded` (the row, its number and the audit trail stay, so intake mail stays explainable); only staff
may do it (checked in the core), it is audited (`case.discard`), and the case is then nowhere: not in the
library, its search, the API, the console's lists, nor an SMS reply's thread. Its number is never reused.
A case that is not a draft cannot be discarded, and discarding twice says so. The same rule through
the core, `relay cases discard`, the console and `POST /api/v1/cases/<code>/discard`."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from relay.access.permissions import Forbidden
from relay.cli import main
from relay.infra.audit import Actor
from relay.infra.db import transaction
from relay.library.cases import (
    CaseNotFound,
    CaseStateError,
    close_case,
    create_case,
    discard_case,
    get_case,
    publish_case,
    search_cases,
    set_visibility,
)
from relay.model.tables import AuditEvent, Case
from tests.conftest import run_worker
from tests.console_helpers import KIM, LEE, csrf, give_password, reads_english, sign_in
from tests.helpers import event, record_sms
from webhooks.app import create_app

STAFF = frozenset({"coordinator", "member"})
KIM_ACTOR = Actor("member:1", "console", 1)
AUTH = {"Authorization": "Bearer d1scard"}  # the service token (admin rights)


def add_draft(services, title: str = "Intake nobody reviewed", **kwargs) -> str:
    with transaction(services.sessions) as session:
        return create_case(session, title, draft=True, **kwargs).code


def status_of(services, code: str) -> str:
    with services.sessions() as session:
        return get_case(session, code, include_discarded=True).status


def discard_events(services) -> list[AuditEvent]:
    with services.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "case.discard")))


def listed(client, **args) -> list[str]:
    response = client.get("/library/", query_string=args)
    assert response.status_code == 200
    return re.findall(r'href="/library/cases/(C\d+)"', response.get_data(as_text=True))


@pytest.fixture
def client(network):
    return create_app(services=network).test_client()


# ---------------------------------------------------------------- the core


def test_a_discarded_draft_is_nowhere_and_its_number_is_not_reused(client, network):
    add_draft(network, findings="tree-in-bud from the intake mail")  # C2
    with transaction(network.sessions) as session:
        case = discard_case(session, "c2", roles=STAFF, actor=KIM_ACTOR)
        assert (case.code, case.status, case.published_at) == ("C2", "discarded", None)
    [recorded] = discard_events(network)
    assert (recorded.subject, recorded.actor, recorded.source, recorded.actor_member_id) == (
        "case:C2", "member:1", "console", 1)
    assert recorded.detail == {"before": "draft"}  # no title: the trail is append-only, a subject may name a patient
    with network.sessions() as session:
        with pytest.raises(CaseNotFound, match="no case C2"):
            get_case(session, "C2")  # to every caller, exactly like a case that never existed
        assert get_case(session, "C2", include_discarded=True).status == "discarded"  # the row stays
        assert search_cases(session, include_member_only=True).total == 1
        assert search_cases(session, "tree-in-bud", include_member_only=True).total == 0
    assert listed(client) == ["C1"] and listed(client, q="C2") == [] and listed(client, q="intake") == []
    response = client.get("/library/cases/C2")
    assert response.status_code == 404
    assert response.get_data(as_text=True) == client.get("/library/cases/C99").get_data(as_text=True).replace(
        "C99", "C2")
    with transaction(network.sessions) as session:
        assert create_case(session, "The next case").code == "C3"  # C2 is never handed out again


def test_a_discarded_case_cannot_be_discarded_again_published_closed_or_changed(network):
    add_draft(network)  # C2
    with transaction(network.sessions) as session:
        discard_case(session, "C2", roles=STAFF, actor=KIM_ACTOR)
    for change in (lambda s: publish_case(s, "C2"), lambda s: close_case(s, "C2"),
                   lambda s: close_case(s, "C2", reopen=True), lambda s: set_visibility(s, "C2", "members")):
        with transaction(network.sessions) as session, pytest.raises(CaseStateError, match="C2 was discarded"):
            change(session)
    with transaction(network.sessions) as session, pytest.raises(CaseStateError, match="already discarded"):
        discard_case(session, "C2", roles=STAFF, actor=KIM_ACTOR)
    assert status_of(network, "C2") == "discarded" and len(discard_events(network)) == 1


def test_only_a_draft_that_was_never_published_can_be_discarded(network):
    add_draft(network)  # C2, published below
    add_draft(network)  # C3, closed below
    add_draft(network, title="Closed as a draft by an older relay")  # C4: closed, never published
    with transaction(network.sessions) as session:
        publish_case(session, "C2")
        publish_case(session, "C3")
        close_case(session, "C3")
        get_case(session, "C4").status = "closed"
    for code, message in (("C1", "C1 is open, not a draft"), ("C2", "C2 is open, not a draft"),
                          ("C3", "C3 is closed, not a draft"), ("C4", "C4 is closed, not a draft")):
        with transaction(network.sessions) as session, pytest.raises(CaseStateError, match=message):
            discard_case(session, code, roles=STAFF, actor=KIM_ACTOR)
    assert [status_of(network, c) for c in ("C1", "C2", "C3", "C4")] == ["open", "open", "closed", "closed"]
    with transaction(network.sessions) as session, pytest.raises(CaseNotFound, match="no case C9"):
        discard_case(session, "C9", roles=STAFF, actor=KIM_ACTOR)
    assert discard_events(network) == []


@pytest.mark.parametrize("roles", [frozenset(), frozenset({"member"}), frozenset({"contributor", "member"})])
def test_only_coordinators_and_admins_may_discard_checked_in_the_core(network, roles):
    add_draft(network)  # C2
    with transaction(network.sessions) as session, pytest.raises(Forbidden, match="case.discard"):
        discard_case(session, "C2", roles=roles, actor=Actor("member:2", "api", 2))
    assert status_of(network, "C2") == "draft" and discard_events(network) == []
    with transaction(network.sessions) as session:
        assert discard_case(session, "C2", roles={"admin"}, actor=KIM_ACTOR).status == "discarded"


def test_an_sms_reply_to_a_discarded_case_is_told_there_is_no_such_case(network, sms):
    add_draft(network)  # C2
    with transaction(network.sessions) as session:
        discard_case(session, "C2", roles=STAFF, actor=KIM_ACTOR)
    event_id = record_sms(network, "+821012345602", "C2 is this the intake case?")
    run_worker(network)
    assert event(network, event_id).outcome == "unknown_case"
    assert sms.sent[-1].body.endswith("there is no case C2. Check the code in the notice and send again.")


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli(settings, network, monkeypatch):
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    return CliRunner()


def test_cli_discards_a_draft_after_confirmation(cli, network, client):
    add_draft(network)  # C2
    add_draft(network, title="Second intake")  # C3
    result = cli.invoke(main, ["cases", "discard", "C2"], input="n\n")
    assert result.exit_code == 1 and "Discard draft C2 (Intake nobody reviewed)?" in result.output
    assert status_of(network, "C2") == "draft"
    result = cli.invoke(main, ["cases", "discard", "C2"], input="y\n")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "C2 is discarded"
    result = cli.invoke(main, ["cases", "discard", "C3", "--yes"])
    assert result.exit_code == 0 and result.output.strip() == "C3 is discarded"
    assert [(e.subject, e.source) for e in discard_events(network)] == [("case:C2", "cli"), ("case:C3", "cli")]
    assert all(e.actor.startswith("cli:") for e in discard_events(network))
    for args, message in ((["cases", "discard", "C2", "--yes"], "C2 is already discarded"),
                          (["cases", "discard", "C1", "--yes"], "C1 is open, not a draft"),
                          (["cases", "discard", "C9", "--yes"], "no case C9"),
                          (["cases", "publish", "C2"], "C2 was discarded"),
                          (["cases", "close", "C2"], "C2 was discarded")):
        result = cli.invoke(main, args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
    assert cli.invoke(main, ["cases", "drafts"]).output.strip() == "no draft cases"
    assert listed(client) == ["C1"] and client.get("/library/cases/C2").status_code == 404
    assert cli.invoke(main, ["cases", "add", "--title", "Next"]).output.strip() == "C4"


# ---------------------------------------------------------------- console


@pytest.fixture
def web(network):
    give_password(network, KIM)
    give_password(network, LEE)
    return network


def test_console_discards_a_draft_only_with_the_confirmation_box(web):
    add_draft(web)  # C2
    kim = reads_english(create_app(services=web).test_client())
    sign_in(kim, KIM)
    token = csrf(kim)
    page = kim.get("/console/cases/C2").get_data(as_text=True)
    assert 'action="/console/cases/C2/discard"' in page and 'name="confirm"' in page
    assert 'action="/console/cases/C1/discard"' not in kim.get("/console/cases/C1").get_data(as_text=True)
    assert "/console/cases/C2" in kim.get("/console/").get_data(as_text=True)  # on the drafts list
    response = kim.post("/console/cases/C2/discard", data={"csrf_token": token})
    assert response.status_code == 400 and "Tick the box" in response.get_data(as_text=True)
    assert status_of(web, "C2") == "draft" and discard_events(web) == []
    response = kim.post("/console/cases/C2/discard", data={"csrf_token": token, "confirm": "on"})
    assert response.status_code == 302 and response.headers["Location"] == "/console/"
    assert status_of(web, "C2") == "discarded"
    assert [(e.actor, e.source) for e in discard_events(web)] == [("member:1", "console")]
    assert kim.get("/console/cases/C2").status_code == 404
    assert "/console/cases/C2" not in kim.get("/console/").get_data(as_text=True)
    assert "/console/cases/C2" not in kim.get("/console/cases/").get_data(as_text=True)
    response = kim.post("/console/cases/C2/discard", data={"csrf_token": token, "confirm": "on"})
    assert response.status_code == 409 and "C2 is already discarded" in response.get_data(as_text=True)
    response = kim.post("/console/cases/C1/discard", data={"csrf_token": token, "confirm": "on"})
    assert response.status_code == 409 and "C1 is open, not a draft" in response.get_data(as_text=True)
    for action in ("publish", "close"):  # a page opened before the discard: the core refuses, saying why
        response = kim.post(f"/console/cases/C2/{action}", data={"csrf_token": token})
        assert response.status_code == 409 and "C2 was discarded" in response.get_data(as_text=True)
    assert len(discard_events(web)) == 1 and status_of(web, "C1") == "open"


def test_a_member_cannot_discard_from_the_console(web):
    add_draft(web)  # C2
    lee = reads_english(create_app(services=web).test_client())
    sign_in(lee, LEE)
    response = lee.post("/console/cases/C2/discard", data={"csrf_token": csrf(lee), "confirm": "on"})
    assert response.status_code == 403
    anonymous = create_app(services=web).test_client()
    response = anonymous.post("/console/cases/C2/discard", data={"confirm": "on"})
    assert response.status_code == 400  # no CSRF token: refused before anything else
    assert status_of(web, "C2") == "draft" and discard_events(web) == []


# ---------------------------------------------------------------- API


@pytest.fixture
def api(network):
    network.settings = network.settings.replace(api_token="d1scard")
    return create_app(services=network).test_client()


def token_of(services, email: str) -> dict[str, str]:
    from relay.access.api_tokens import create_token
    from relay.members.directory import find_member

    with transaction(services.sessions) as session:
        return {"Authorization": "Bearer " + create_token(session, find_member(session, email))[1]}


def test_api_discards_a_draft_for_a_coordinator_token(api, network):
    add_draft(network)  # C2
    kim = token_of(network, KIM)
    assert api.get("/api/v1/cases/C2", headers=kim).status_code == 200  # staff read drafts to review them
    response = api.post("/api/v1/cases/C2/discard", headers=kim)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert {k: response.get_json()[k] for k in ("code", "status", "published_at")} == {
        "code": "C2", "status": "discarded", "published_at": None}
    assert [(e.actor, e.source) for e in discard_events(network)] == [("member:1", "api")]
    for headers in (kim, AUTH, {}):
        for path in ("/api/v1/cases/C2", "/api/v1/cases/2/posts"):
            response = api.get(path, headers=headers)
            assert response.status_code == 404 and response.get_json()["detail"] == "no case C2", path
        assert [c["code"] for c in api.get("/api/v1/cases", headers=headers).get_json()["cases"]] == ["C1"]
    for path, detail in (("/api/v1/cases/C2/discard", "C2 is already discarded"),
                         ("/api/v1/cases/C1/discard", "C1 is open, not a draft")):
        response = api.post(path, headers=kim)
        assert response.status_code == 422 and detail in response.get_json()["detail"]
    assert api.post("/api/v1/cases/C9/discard", headers=kim).status_code == 404
    assert api.post("/api/v1/cases/C2/publish", headers=AUTH).status_code == 404
    assert api.post("/api/v1/cases/C2/close", headers=AUTH).status_code == 404
    assert len(discard_events(network)) == 1
    with network.sessions() as session:
        assert session.scalar(select(func.count(Case.id))) == 2


def test_a_member_token_or_no_token_cannot_discard(api, network):
    add_draft(network)  # C2
    response = api.post("/api/v1/cases/C2/discard", headers=token_of(network, LEE))
    assert response.status_code == 403 and "case.discard" in response.get_json()["detail"]
    response = api.post("/api/v1/cases/C2/discard")
    assert response.status_code == 401
    assert status_of(network, "C2") == "draft" and discard_events(network) == []


# ---------------------------------------------------------------- the purge


def test_the_sweeper_purges_a_discarded_drafts_text_and_images(network):
    """A discarded draft is shown nowhere and cannot come back, so what it holds (intake mail sent by mistake may
    name a patient) is not kept: the sweeper empties its text and deletes its images, files included; its number
    and the audit trail stay. Another case's images and a draft still waiting are left alone."""
    import io

    from PIL import Image

    from relay.library.images import add_case_image
    from relay.library.media_store import media_store_for
    from relay.library.purge import purge_discarded
    from relay.model.tables import CaseImage
    from relay.sweeper import sweep

    def picture(shade: int) -> bytes:
        out = io.BytesIO()
        Image.new("L", (120, 100), shade).save(out, "PNG")
        return out.getvalue()

    code = add_draft(network, title="홍길동 환자 CT", findings="MRN 12345678: GGO", symptoms="fever")
    waiting = add_draft(network, title="Still to review", findings="consolidation")
    with transaction(network.sessions) as session:
        mine = add_case_image(session, network.settings, get_case(session, code), picture(10), "a.png", "intake")
        shared = add_case_image(session, network.settings, get_case(session, code), picture(20), "b.png", "intake")
        kept = add_case_image(session, network.settings, get_case(session, "C1"), picture(20), "b.png", "console")
        files = {"mine": (mine.stored_name, mine.thumbnail_name), "shared": (shared.stored_name, kept.thumbnail_name)}
        discard_case(session, code, roles=STAFF, actor=KIM_ACTOR)
    store = media_store_for(network.settings)
    sweep(network)
    with network.sessions() as session:
        case = get_case(session, code, include_discarded=True)
        assert (case.status, case.title, case.findings, case.symptoms) == ("discarded", "", "", "")
        assert session.scalars(select(CaseImage).where(CaseImage.case_id == case.id)).all() == []
        assert get_case(session, waiting).findings == "consolidation"  # a draft not discarded keeps its text
        assert session.get(CaseImage, kept.id) is not None
        purged = session.scalars(select(AuditEvent).where(AuditEvent.action == "case.purge")).all()
        assert [(e.subject, e.detail) for e in purged] == [(f"case:{code}", {"images": 2})]
    assert not any(store.exists(name) for name in files["mine"])
    assert all(store.exists(name) for name in files["shared"])  # the same picture filed under C1 stays
    assert purge_discarded(network) == 0  # nothing left: the next sweep does nothing, audits nothing
