"""Accounts, sessions and the coordinator console through the real Flask app: argon2id passwords,
sign-in that answers alike for unknown and wrong, session cookie flags, a fresh session on sign-in,
the idle timeout, rate-limited sign-in, CSRF; compose -> preview -> send with live counts; the
emergency hold (deliveries wait queued, nothing sent, all sent on resume, audited); members posting
from the library page (relayed like an SMS reply, escaped, one post per form submission)."""
from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from relay.access.accounts import PasswordError, authenticate, set_password
from relay.cli import main
from relay.infra.audit import Actor
from relay.infra.db import transaction
from relay.library.cases import create_case
from relay.model.tables import AuditEvent, Delivery, Member, MemberPassword, Notice, Post
from relay.outbound import hold
from relay.sweeper import sweep
from tests.conftest import run_worker
from tests.console_helpers import ADMIN, KIM, LEE, PASSWORD, csrf, give_password, reads_english, sign_in
from tests.helpers import at_once, in_written_order
from webhooks.app import create_app


@pytest.fixture
def app(network):
    give_password(network, KIM)
    give_password(network, LEE)
    return create_app(services=network)


@pytest.fixture
def client(app):
    return reads_english(app.test_client())


def rows(services, query):
    with services.sessions() as session:
        return list(session.scalars(in_written_order(query)))


# ---------------------------------------------------------------- accounts


@pytest.mark.real_password_hashing
def test_passwords_are_argon2id_and_sign_in_answers_alike(network):
    with transaction(network.sessions) as session:
        lee = session.scalar(select(Member).where(Member.email == LEE))
        with pytest.raises(PasswordError):
            set_password(session, lee, "short")
        set_password(session, lee, PASSWORD)
        stored = session.scalar(select(MemberPassword.password_hash))
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
        assert "$m=65536,t=3,p=4$" in stored  # argon2-cffi's recommended cost (RFC 9106's second choice)
        assert authenticate(session, LEE.upper(), PASSWORD).id == lee.id
        assert authenticate(session, LEE, PASSWORD + "x") is None
        assert authenticate(session, "nobody@example.org", PASSWORD) is None
        assert authenticate(session, KIM, PASSWORD) is None  # no password set
        lee.active = False
        assert authenticate(session, LEE, PASSWORD) is None


def test_cli_sets_a_password_from_stdin(network, monkeypatch):
    monkeypatch.setenv("RELAY_DATABASE_URL", network.settings.database_url)
    monkeypatch.setenv("RELAY_VAR_DIR", str(network.settings.var_dir))
    result = CliRunner().invoke(main, ["members", "password", LEE, "--password-stdin"], input="a long new secret\n")
    assert result.exit_code == 0, result.output
    with network.sessions() as session:
        assert authenticate(session, LEE, "a long new secret") is not None
    refused = CliRunner().invoke(main, ["members", "password", "nobody@example.org", "--password-stdin"],
                                 input="a long new secret\n")
    assert refused.exit_code != 0 and "no member" in refused.output
    short = CliRunner().invoke(main, ["members", "password", LEE, "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "at least" in short.output


def test_sign_in_cookie_flags_fresh_session_and_same_answer(client):
    wrong = client.post("/signin", data={"email": LEE, "password": "nope nope nope", "csrf_token": csrf(client)})
    unknown = client.post("/signin", data={"email": "x@example.org", "password": "nope nope nope",
                                           "csrf_token": csrf(client)})
    assert wrong.status_code == unknown.status_code == 401
    assert "Unknown email or wrong password." in wrong.get_data(as_text=True)
    def page(response, email):
        return re.sub(r'name="csrf_token" value="[^"]+"', "", response.get_data(as_text=True).replace(email, "X"))

    assert page(wrong, LEE) == page(unknown, "x@example.org")

    before = csrf(client)
    response = sign_in(client, KIM)
    assert response.headers["Location"] == "/console/"
    cookie = response.headers["Set-Cookie"]
    assert "relay_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie  # the public base is https://
    # A fresh session: the token from before sign-in no longer works.
    stale = client.post("/console/hold", data={"action": "on", "csrf_token": before})
    assert stale.status_code == 400
    assert client.get("/console/").status_code == 200


def test_cookie_is_not_secure_for_a_plain_http_base(network):
    give_password(network, KIM)
    network.settings = network.settings.replace(public_base_url="http://127.0.0.1:8000")
    client = create_app(services=network).test_client()
    assert "Secure" not in sign_in(client, KIM).headers["Set-Cookie"]


def test_next_is_followed_only_on_this_site(client):
    token = csrf(client)
    response = client.post("/signin", data={"email": LEE, "password": PASSWORD, "csrf_token": token,
                                            "next": "//evil.example/x"})
    assert response.headers["Location"] == "/library/"
    client.post("/signout", data={"csrf_token": csrf(client)})
    response = client.post("/signin", data={"email": LEE, "password": PASSWORD, "csrf_token": csrf(client),
                                            "next": "/library/cases/C1"})
    assert response.headers["Location"] == "/library/cases/C1"


def test_idle_sessions_end_and_password_changes_end_sessions(network):
    give_password(network, KIM)
    network.settings = network.settings.replace(session_idle_timeout=timedelta(seconds=1))
    client = create_app(services=network).test_client()
    sign_in(client, KIM)
    assert client.get("/console/").status_code == 200
    time.sleep(1.3)
    assert client.get("/console/").status_code == 302  # idle too long: back to sign-in

    network.settings = network.settings.replace(session_idle_timeout=timedelta(minutes=30))
    client = create_app(services=network).test_client()
    sign_in(client, KIM)
    give_password(network, KIM, "another long password")
    response = client.get("/console/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/signin")


def test_sign_out_ends_the_session(client):
    sign_in(client, KIM)
    assert client.post("/signout", data={"csrf_token": csrf(client)}).status_code == 302
    assert client.get("/console/").status_code == 302


def test_a_copied_session_cookie_fails_after_sign_out(app, client):
    sign_in(client, KIM)
    cookie = client.get_cookie("relay_session").value
    thief = app.test_client()
    thief.set_cookie("relay_session", cookie)
    assert thief.get("/console/").status_code == 200  # the copy works while the session lives
    assert client.post("/signout", data={"csrf_token": csrf(client)}).status_code == 302
    refused = thief.get("/console/")
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/signin")
    sign_in(client, KIM)  # signing in again works, with a fresh session
    assert client.get("/console/").status_code == 200


def test_sign_in_is_rate_limited(network):
    give_password(network, LEE)
    network.settings = network.settings.replace(signin_rate_limit="3/minute")
    client = create_app(services=network).test_client()
    codes = [client.post("/signin", data={"email": LEE, "password": "wrong wrong wrong",
                                          "csrf_token": csrf(client)}).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_anonymous_is_sent_to_sign_in_and_members_get_a_clear_403(client):
    response = client.get("/console/notices/new")
    assert response.status_code == 302 and response.headers["Location"] == "/signin?next=/console/notices/new"
    sign_in(client, LEE)
    refused = client.get("/console/")
    assert refused.status_code == 403
    assert "Not allowed" in refused.get_data(as_text=True)


# ---------------------------------------------------------------- compose, preview, send


def test_compose_preview_send_and_live_counts(app, client, network, sms, mail):
    sign_in(client, KIM)
    token = csrf(client)
    refused = client.post("/console/notices", data={"kind": "new_case", "case": "C1", "csrf_token": token})
    assert refused.status_code == 400 and "at least one target list" in refused.get_data(as_text=True)
    response = client.post("/console/notices", data={
        "kind": "new_case", "case": "C1", "lists": ["tft"], "channels": ["sms", "email"], "severity": "urgent",
        "title": "새 증례: 발열과 간유리 음영", "expires": "2d", "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    notice = rows(network, select(Notice))[0]
    assert response.headers["Location"] == f"/console/notices/{notice.id}"
    assert (notice.status, notice.severity, notice.created_by) == ("draft", "urgent", 1)

    page = client.get(f"/console/notices/{notice.id}").get_data(as_text=True)
    assert "UCS-2" in page and 'class="segments"' in page  # the Korean title makes the SMS UCS-2
    assert "5</b> recipients" in page and "Estimated SMS cost" in page
    assert "Subject:" in page

    sent = client.post(f"/console/notices/{notice.id}/send", data={"csrf_token": token})
    assert sent.status_code == 302
    counts = client.get(f"/console/notices/{notice.id}/counts").get_json()
    assert counts["queued"] == counts["total"] == 10 and counts["sent"] == 0
    run_worker(network)
    counts = client.get(f"/console/notices/{notice.id}/counts").get_json()
    assert (counts["queued"], counts["sent"], counts["failed"], counts["status"]) == (0, 10, 0, "sent")
    assert len(sms.sent) == 5 and len(mail.sent) == 5
    again = client.post(f"/console/notices/{notice.id}/send", data={"csrf_token": token})
    assert again.status_code == 409  # a second click sends nothing
    assert len(rows(network, select(Delivery))) == 10
    event = rows(network, select(AuditEvent).where(AuditEvent.action == "notice.send"))[0]
    assert (event.actor, event.source, event.actor_member_id) == ("member:1", "console", 1)


def test_failed_deliveries_are_listed_with_the_provider_error(client, network):
    sign_in(client, KIM)
    token = csrf(client)
    client.post("/console/notices", data={"kind": "announcement", "title": "Meeting", "body": "Tonight",
                                          "lists": ["tft"], "channels": ["sms"], "csrf_token": token})
    notice = rows(network, select(Notice))[0]
    client.post(f"/console/notices/{notice.id}/send", data={"csrf_token": token})
    with transaction(network.sessions) as session:
        delivery = session.scalars(select(Delivery).order_by(Delivery.id)).first()
        delivery.status, delivery.error_code, delivery.error_message = "failed", "30003", "Unreachable handset"
    page = client.get(f"/console/notices/{notice.id}").get_data(as_text=True)
    assert "30003" in page and "Unreachable handset" in page
    assert client.get(f"/console/notices/{notice.id}/counts").get_json()["failed"] == 1


def test_schedule_from_the_console(client, network):
    sign_in(client, KIM)
    token = csrf(client)
    client.post("/console/notices", data={"kind": "announcement", "title": "Later", "lists": ["tft"],
                                          "channels": ["email"], "csrf_token": token})
    notice = rows(network, select(Notice))[0]
    response = client.post(f"/console/notices/{notice.id}/send",
                           data={"at": "2099-01-01T09:00", "tz": "+09:00", "csrf_token": token})
    assert response.status_code == 302
    notice = rows(network, select(Notice))[0]
    assert notice.status == "scheduled" and notice.scheduled_for.isoformat() == "2099-01-01T00:00:00+00:00"
    bad = client.post(f"/console/notices/{notice.id}/send", data={"at": "yesterday", "csrf_token": token})
    assert bad.status_code == 400 and "ISO 8601" in bad.get_data(as_text=True)


# ---------------------------------------------------------------- cases and members


def test_create_review_publish_and_visibility(client, network):
    sign_in(client, KIM)
    token = csrf(client)
    response = client.post("/console/cases/", data={"title": "Rash after travel", "chief_complaint": "rash",
                                                    "findings": "maculopapular", "visibility": "members",
                                                    "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/console/cases/C2"
    anonymous = create_app(services=network).test_client()
    assert anonymous.get("/library/cases/C2").status_code == 404  # a draft
    assert client.post("/console/cases/C2/publish", data={"csrf_token": token}).status_code == 302
    assert client.post("/console/cases/C2/publish", data={"csrf_token": token}).status_code == 409
    assert anonymous.get("/library/cases/C2").status_code == 404  # members only
    assert "C2" in client.get("/library/").get_data(as_text=True)  # a signed-in member sees it
    assert client.get("/library/cases/C2").status_code == 200
    client.post("/console/cases/C2/visibility", data={"visibility": "public", "csrf_token": token})
    assert anonymous.get("/library/cases/C2").status_code == 200
    actions = [e.action for e in rows(network, select(AuditEvent).order_by(AuditEvent.id))]
    assert [a for a in actions if not a.startswith("member.")] == ["case.publish", "case.visibility"]


def test_a_draft_cannot_be_closed_from_the_console(client, network):
    """Issue 15, item 1: the console's close button follows the core's rule: a draft is refused (409)."""
    with transaction(network.sessions) as session:
        create_case(session, "Intake nobody reviewed", draft=True)  # C2
    sign_in(client, KIM)
    token = csrf(client)
    for form in ({}, {"reopen": "1"}):
        response = client.post("/console/cases/C2/close", data={"csrf_token": token, **form})
        assert response.status_code == 409 and "C2 is a draft: publish it first" in response.get_data(as_text=True)
    anonymous = create_app(services=network).test_client()
    assert anonymous.get("/library/cases/C2").status_code == 404
    assert "Close to new posts" not in client.get("/console/cases/C2").get_data(as_text=True)
    assert client.post("/console/cases/C1/close", data={"csrf_token": token}).status_code == 302
    assert "Reopen to new posts" in client.get("/console/cases/C1").get_data(as_text=True)
    assert anonymous.get("/library/", query_string={"status": "closed"}).get_data(as_text=True).count(
        'href="/library/cases/C1"') == 1
    assert client.post("/console/cases/C1/close", data={"csrf_token": token, "reopen": "1"}).status_code == 302
    actions = [e.action for e in rows(network, select(AuditEvent).order_by(AuditEvent.id))]
    assert [a for a in actions if a.startswith("case.")] == ["case.close", "case.reopen"]


def test_cancel_a_notice_from_the_console(client, network):
    """Issue 15, item 3: a notice cannot be edited; the console cancels it (then the coordinator composes
    a new one), and refuses to cancel one that went out."""
    from relay.notices.lifecycle import create_notice

    with transaction(network.sessions) as session:
        notice_id = create_notice(session, kind="announcement", title="Typo", lists=["tft"], channels="email").id
    sign_in(client, KIM)
    token = csrf(client)
    page = client.get(f"/console/notices/{notice_id}").get_data(as_text=True)
    assert f'action="/console/notices/{notice_id}/cancel"' in page
    assert client.post(f"/console/notices/{notice_id}/cancel", data={"csrf_token": token}).status_code == 302
    assert rows(network, select(Notice.status).where(Notice.id == notice_id)) == ["cancelled"]
    response = client.post(f"/console/notices/{notice_id}/send", data={"csrf_token": token})
    assert response.status_code == 409 and "was cancelled before it went out" in response.get_data(as_text=True)
    response = client.post(f"/console/notices/{notice_id}/cancel", data={"csrf_token": token})
    assert response.status_code == 409


def test_import_and_edit_members(client, network):
    sign_in(client, KIM)
    token = csrf(client)
    csv_text = ("name,phone,email,timezone,language,lists,roles\n"
                "Cho Yuna,+821012345609,yuna@example.org,Asia/Seoul,ko,tft;icu,member\n"
                "Bad Row,,,UTC,en,tft,member\n")
    from io import BytesIO
    response = client.post("/console/members/import", data={"csrf_token": token, "file": (BytesIO(csv_text.encode()),
                                                                                           "m.csv")},
                           content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "1 new" in page and "line 3" in page and "icu" in page
    yuna = rows(network, select(Member).where(Member.email == "yuna@example.org"))[0]
    response = client.post(f"/console/members/{yuna.id}", data={
        "name": "Cho Yuna", "phone": "+821012345609", "email": "yuna@example.org", "timezone": "Asia/Seoul",
        "language": "en", "channels": ["email"], "lists": ["icu"], "roles": ["admin"], "active": "on",
        "csrf_token": token})
    assert response.status_code == 302
    yuna = rows(network, select(Member).where(Member.id == yuna.id))[0]
    assert (yuna.language, yuna.sms_discussion, yuna.email_discussion) == ("en", False, True)
    assert yuna.roles == "member"  # a coordinator cannot hand out roles; an admin can
    from relay.model.tables import MemberList, Membership
    assert rows(network, select(MemberList.name).join(Membership).where(Membership.member_id == yuna.id)) == ["icu"]
    clash = client.post(f"/console/members/{yuna.id}", data={
        "name": "Cho Yuna", "email": KIM, "timezone": "UTC", "language": "en", "channels": ["email"],
        "active": "on", "csrf_token": token})
    assert clash.status_code == 409
    edits = rows(network, select(AuditEvent).where(AuditEvent.action == "member.edit"))
    assert [(e.subject, e.actor, e.source, e.detail["changes"]) for e in edits] == [
        (f"member:{yuna.id}", "member:1", "console", {"language": ["ko", "en"], "sms_discussion": [True, False],
                                                        "lists": ["icu;tft", "icu"]})]
    imported = rows(network, select(AuditEvent).where(AuditEvent.action == "member.import"))[-1]
    assert (imported.actor, imported.detail["created"], imported.detail["errors"]) == ("member:1", 1, 1)


def _import(client, csv_text: str):
    return client.post("/console/members/import", data={"csrf_token": csrf(client), "csv": csv_text})


def test_a_coordinators_csv_cannot_grant_or_take_away_roles_an_admins_can(client, network):
    give_password(network, ADMIN, roles="admin;member")
    sign_in(client, KIM)
    attack = ("name,phone,email,timezone,language,lists,roles\n"
              "Kim Jiwon,+821012345601,jiwon@example.org,Asia/Seoul,ko,tft,admin;coordinator;member\n"
              "Ben Carter,+12025550105,ben@example.org,America/New_York,en,tft;us,member\n"
              "New Person,,new@example.org,UTC,en,tft,member\n")
    response = _import(client, attack)
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "line 2: roles" in page and "line 3: roles" in page and "1 new" in page
    with network.sessions() as session:
        roles = dict(session.execute(select(Member.email, Member.roles)).all())
    assert (roles[KIM], roles[ADMIN]) == ("member;coordinator", "admin;member")
    admin = create_app(services=network).test_client()
    sign_in(admin, ADMIN)
    assert _import(admin, "\n".join(attack.splitlines()[:2]) + "\n").status_code == 200
    with network.sessions() as session:
        assert session.scalar(select(Member.roles).where(Member.email == KIM)) == "member;coordinator;admin"


# ---------------------------------------------------------------- the hold


def test_hold_keeps_deliveries_queued_and_resume_sends_them(client, network, sms, mail):
    sign_in(client, KIM)
    token = csrf(client)
    assert client.post("/console/hold", data={"action": "on", "reason": "wrong list", "csrf_token": token}) \
        .status_code == 302
    assert "ON HOLD" in client.get("/console/").get_data(as_text=True)
    client.post("/console/notices", data={"kind": "new_case", "case": "C1", "lists": ["tft"],
                                          "channels": ["sms"], "csrf_token": token})
    notice = rows(network, select(Notice))[0]
    client.post(f"/console/notices/{notice.id}/send", data={"csrf_token": token})
    run_worker(network)
    assert sms.sent == []
    held = rows(network, select(Delivery))
    assert len(held) == 5 and {(d.status, d.error_code, d.attempts) for d in held} == {("queued", "held", 0)}
    assert all(d.next_attempt_at is not None for d in held)
    assert client.get(f"/console/notices/{notice.id}/counts").get_json()["held"] == 5
    assert sweep(network, stale_after=timedelta(0)).deliveries == 0  # the sweeper re-queues nothing

    assert client.post("/console/hold", data={"action": "off", "csrf_token": token}).status_code == 302
    assert sorted(network.dispatcher.deliveries) == sorted(d.id for d in held)
    run_worker(network)
    assert sorted(m.to for m in sms.sent) == sorted(d.to_address for d in held)
    assert {d.status for d in rows(network, select(Delivery))} == {"accepted"}
    events = rows(network, select(AuditEvent).where(AuditEvent.action.like("hold.%")).order_by(AuditEvent.id))
    assert [(e.action, e.actor, e.source, e.detail.get("reason")) for e in events] == [
        ("hold.on", "member:1", "console", "wrong list"), ("hold.off", "member:1", "console", "")]


def test_a_notice_waiting_for_the_rate_limit_says_so_on_its_page(client, network, sms):
    """Deferred by the rate limit (relay/outbound/sending.py _defer): queued, not failed, and counted as waiting."""
    from relay.model.tables import utcnow

    sign_in(client, KIM)
    token = csrf(client)
    client.post("/console/notices", data={"kind": "new_case", "case": "C1", "lists": ["tft"],
                                          "channels": ["sms"], "csrf_token": token})
    notice = rows(network, select(Notice))[0]
    client.post(f"/console/notices/{notice.id}/send", data={"csrf_token": token})
    with transaction(network.sessions) as session:  # three of them waiting for booked slots
        ids = sorted(session.scalars(select(Delivery.id)))[:3]
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(
            error_code="rate_limited", next_attempt_at=utcnow() + timedelta(minutes=5),
            error_message="waiting for the rate limit: slot booked (not counted as an attempt)"))
    counts = client.get(f"/console/notices/{notice.id}/counts").get_json()
    assert (counts["rate_limited"], counts["queued"], counts["failed"]) == (3, 5, 0)
    page = client.get(f"/console/notices/{notice.id}").get_data(as_text=True)
    assert 'id="rate-limited">3 queued waiting for the sender' in page and "not failures" in page


def test_hold_toggles_are_idempotent(network):
    actor = Actor("cli:test", "cli")
    assert hold.hold_on(network, actor) is True
    assert hold.hold_on(network, actor) is False
    assert hold.hold_off(network, actor) == 0
    assert hold.hold_off(network, actor) == 0
    with network.sessions() as session:
        assert not hold.is_on(session)
        assert [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.action.like("hold.%")))] == [
            "hold.on", "hold.off"]


# ---------------------------------------------------------------- posting from the library


def test_member_posts_from_the_library_once_escaped_and_relayed(client, network, sms, mail):
    from relay.notices.lifecycle import new_case_notice

    new_case_notice(network, "C1", ["tft"])  # the list now follows C1
    run_worker(network)
    sms.sent.clear()
    mail.sent.clear()
    sign_in(client, LEE)
    page = client.get("/library/cases/C1").get_data(as_text=True)
    assert 'name="submission"' in page
    import re
    submission = re.search(r'name="submission" value="([^"]+)"', page).group(1)
    token = csrf(client)
    text = "Agree <script>alert(1)</script> & follow up"
    form = {"text": text, "submission": submission, "csrf_token": token}
    first = client.post("/library/cases/C1/posts", data=form)
    second = client.post("/library/cases/C1/posts", data=form)  # a double submit
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    posts = rows(network, select(Post).where(Post.kind == "reply"))
    assert [(p.body, p.channel, p.author_id) for p in posts] == [(text, "web", 2)]
    run_worker(network)
    assert sorted(m.to for m in sms.sent) == ["+12025550105", "+33612345604", "+821012345601", "+821012345603"]
    assert all("Agree <script>" in m.body for m in sms.sent)  # SMS is plain text
    page = client.get("/library/cases/C1").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Web" in page

    no_csrf = client.post("/library/cases/C1/posts", data={"text": "x", "submission": "abcdefgh1234"})
    assert no_csrf.status_code == 400
    empty = client.post("/library/cases/C1/posts", data={"text": "  ", "submission": "abcdefgh1234",
                                                          "csrf_token": token})
    assert empty.status_code == 400 and "write something" in empty.get_data(as_text=True)
    assert len(rows(network, select(Post).where(Post.kind == "reply"))) == 1


def test_signed_out_visitors_cannot_post_or_read_member_only_cases(client, network):
    with transaction(network.sessions) as session:
        create_case(session, "Members only", visibility="members")
    assert client.get("/library/cases/C2").status_code == 404
    assert "C2" not in client.get("/library/").get_data(as_text=True)
    response = client.post("/library/cases/C1/posts", data={"text": "hi", "submission": "abcdefgh1234",
                                                             "csrf_token": csrf(client)})
    assert response.status_code == 302 and response.headers["Location"].startswith("/signin")
    assert rows(network, select(Post)) == []
    sign_in(client, LEE)
    assert client.get("/library/cases/C2").status_code == 200


def test_concurrent_double_submit_makes_one_post(postgres_only_url, tmp_path, sms, mail):
    """Two requests with the same form submission racing on PostgreSQL: the unique inbound-event key
    lets one post through; the other gets the same post back."""
    from relay.discussion.web_posts import post_from_web
    from relay.infra.dispatch import RecordingDispatcher
    from relay.members.directory import import_members
    from relay.services import build_services
    from tests.conftest import DEMO_CSV, make_settings

    services = build_services(make_settings(tmp_path / "var", postgres_only_url), dispatcher=RecordingDispatcher(),
                              senders={"sms": sms, "email": mail})
    try:
        with transaction(services.sessions) as session:
            import_members(session, DEMO_CSV)
            create_case(session, "Race")
        results: list = []
        errors = at_once(lambda: results.append(post_from_web(services, 2, "C1", "same words", "raceKey123456789")), 4)
        assert errors == []
        assert len({r.post_id for r in results}) == 1 and sum(not r.duplicate for r in results) == 1
        assert len(rows(services, select(Post))) == 1
    finally:
        services.dispose()


def test_session_settings_from_the_environment():
    from relay.infra.settings import Settings, SettingsError

    assert Settings.from_env({"RELAY_PUBLIC_BASE_URL": "https://relay.example.org"}).secure_cookies is True
    assert Settings.from_env({"RELAY_PUBLIC_BASE_URL": "http://127.0.0.1:8000"}).secure_cookies is False
    assert Settings.from_env({}).secure_cookies is False  # the embedded default base is http://
    assert Settings.from_env({"RELAY_PUBLIC_BASE_URL": "https://x.org",
                              "RELAY_SESSION_COOKIE_SECURE": "false"}).secure_cookies is False
    assert Settings.from_env({"RELAY_PUBLIC_BASE_URL": "http://x.org",
                              "RELAY_SESSION_COOKIE_SECURE": "yes"}).secure_cookies is True
    settings = Settings.from_env({"RELAY_SESSION_IDLE_TIMEOUT": "8h", "RELAY_SIGNIN_RATE_LIMIT": "5/minute"})
    assert settings.session_idle_timeout == timedelta(hours=8) and settings.signin_rate_limit == "5/minute"
    with pytest.raises(SettingsError, match="RELAY_SESSION_COOKIE_SECURE"):
        Settings.from_env({"RELAY_SESSION_COOKIE_SECURE": "maybe"})
    with pytest.raises(SettingsError, match="RELAY_SESSION_IDLE_TIMEOUT"):
        Settings.from_env({"RELAY_SESSION_IDLE_TIMEOUT": "soon"})


def test_a_case_is_created_with_images_and_more_are_added_metadata_gone(client, network):
    import io

    from PIL import Image

    from relay.model.tables import CaseImage
    from tests.unit.library.test_images import GPS_IFD, photo

    sign_in(client, KIM)
    token = csrf(client)
    response = client.post("/console/cases/", content_type="multipart/form-data", data={
        "title": "CT with images", "csrf_token": token,
        "images": [(io.BytesIO(photo()), "ct-1.jpg"), (io.BytesIO(photo(fmt="PNG", color=(1, 2, 3))), "ct-2.png")]})
    assert response.status_code == 302 and response.headers["Location"] == "/console/cases/C2"
    images = rows(network, select(CaseImage).order_by(CaseImage.id))
    assert [(i.filename, i.source, i.status) for i in images] == [("ct-1.jpg", "console", "stored"),
                                                                   ("ct-2.png", "console", "stored")]
    page = client.get("/console/cases/C2").get_data(as_text=True)
    assert f"/console/cases/C2/images/{images[0].id}/thumb" in page
    full = client.get(f"/console/cases/C2/images/{images[0].id}")  # a draft: only the console serves it
    assert full.status_code == 200 and GPS_IFD not in Image.open(io.BytesIO(full.data)).getexif().get_ifd(GPS_IFD) \
        and not Image.open(io.BytesIO(full.data)).getexif()
    added = client.post("/console/cases/C2/images", content_type="multipart/form-data", data={
        "csrf_token": token, "images": [(io.BytesIO(photo(color=(9, 9, 9))), "ct-3.jpg")]})
    assert added.status_code == 302
    assert len(rows(network, select(CaseImage))) == 3


def test_a_bad_upload_is_refused_and_keeps_no_case(client, network):
    import io

    from relay.model.tables import Case

    sign_in(client, KIM)
    token = csrf(client)
    response = client.post("/console/cases/", content_type="multipart/form-data", data={
        "title": "Not an image", "csrf_token": token, "images": [(io.BytesIO(b"%PDF-1.4 nope"), "scan.pdf")]})
    assert response.status_code == 400 and "scan.pdf" in response.get_data(as_text=True)
    assert [c.title for c in rows(network, select(Case))] == ["Fever and ground-glass opacities"]


def test_admins_read_the_audit_trail_in_the_console_and_coordinators_do_not(client, network):
    sign_in(client, KIM)
    client.post("/console/hold", data={"action": "on", "reason": "drill", "csrf_token": csrf(client)})
    assert client.get("/console/audit").status_code == 403  # Kim is a coordinator
    admin = create_app(services=network).test_client()
    give_password(network, ADMIN, roles="admin;member")
    sign_in(admin, ADMIN)
    page = admin.get("/console/audit?action=hold.on")
    assert page.status_code == 200 and "hold.on" in page.get_data(as_text=True) and "drill" in page.get_data(as_text=True)


HOSTILE_NEXT = ["//evil.example/x", "/\\evil.example", "\\\\evil.example", "/%09/evil.example", "/\t/evil.example",
                "/%5Cevil.example", "/%2F/evil.example", "/%2f%2fevil.example", "https:evil.example",
                "https://evil.example/", "javascript:alert(1)", "/\r\n/evil.example", "/%0d%0a/evil.example",
                " //evil.example", "/\x00/evil.example", "///evil.example", "evil.example",
                "/%5C%5Cevil.example", "%2F%2Fevil.example", "/%7F/evil.example"]


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_a_hostile_next_goes_home(client, target):
    response = client.post("/signin", data={"email": LEE, "password": PASSWORD, "csrf_token": csrf(client),
                                            "next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/library/", target


@pytest.mark.parametrize("target", ["/library/cases/C1", "/console/notices/new?case=C1", "/library/?q=a%2Fb"])
def test_a_next_on_this_site_is_followed(client, target):
    response = client.post("/signin", data={"email": LEE, "password": PASSWORD, "csrf_token": csrf(client),
                                            "next": target})
    assert response.headers["Location"] == target
