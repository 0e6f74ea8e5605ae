"""The authorisation matrix (issue 7, point 8), as tables: every state-changing API endpoint and every
SMS and email command x role (anonymous, member, coordinator, admin). Only the allowed cells succeed;
each refused API call answers 401 (anonymous) or 403 (a known role) and changes nothing in the database;
each refused SMS gets a polite reply (or, to STOP from a stranger, silence) and changes nothing either.

The roles come from relay/access/permissions.py through the real API and the real SMS/email processing;
nothing here restates the table, so a change to it that opens a cell makes a test fail."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from relay.access.api_tokens import create_token
from relay.infra.db import transaction
from relay.infra.dispatch import RecordingDispatcher
from relay.library.cases import create_case
from relay.members.directory import find_member, import_members
from relay.model.tables import Base, InboundEvent, Member, Post
from relay.notices.lifecycle import create_notice, send_notice
from relay.services import build_services
from tests.conftest import DEMO_CSV, RecordingSender, make_settings, run_worker
from tests.helpers import deliveries, record_sms
from webhooks.app import create_app

KEY, DOMAIN = "mailgun-signing-key", "relay.example.org"
ANONYMOUS, MEMBER, COORDINATOR, ADMIN = "anonymous", "member", "coordinator", "admin"
ROLES = (ANONYMOUS, MEMBER, COORDINATOR, ADMIN)
STAFF = {COORDINATOR, ADMIN}
MEMBERS = {MEMBER, COORDINATOR, ADMIN}
EVERYONE = set(ROLES)
# Who plays each role (the demo network; Park is made an admin). The anonymous caller is a stranger.
PEOPLE = {
    MEMBER: ("minho@example.org", "+821012345602"),
    COORDINATOR: ("jiwon@example.org", "+821012345601"),
    ADMIN: ("seoyeon@example.org", "+821012345603"),
    ANONYMOUS: ("stranger@example.net", "+821099990000"),
}
GUIDELINE = {"kind": "guideline", "title": "Masks", "body": "FFP2 for every scan", "lists": ["tft"]}


@pytest.fixture
def world(tmp_path, database_url):
    """The demo network (Park an admin), C1 open and public, C2 a draft, a draft notice and a sent one,
    and a token for each role."""
    settings = make_settings(tmp_path / "var", database_url, mailgun_signing_key=KEY, mail_domain=DOMAIN,
                             mail_from=f"cases@{DOMAIN}", secret_key="s3cret")
    services = build_services(settings, dispatcher=RecordingDispatcher(),
                              senders={"sms": RecordingSender(), "email": RecordingSender()})
    with transaction(services.sessions) as session:
        assert not import_members(session, DEMO_CSV).errors
        find_member(session, PEOPLE[ADMIN][0]).roles = "admin"
        create_case(session, "Fever and GGO")
        create_case(session, "Intake to review", draft=True)
        draft = create_notice(session, **GUIDELINE).id
        sent = create_notice(session, **GUIDELINE).id
    send_notice(services, sent)
    run_worker(services)
    tokens = {}
    with transaction(services.sessions) as session:
        for role in (MEMBER, COORDINATOR, ADMIN):
            tokens[role] = create_token(session, find_member(session, PEOPLE[role][0]))[1]
    services.ids = {"draft": draft, "sent": sent}
    services.tokens = tokens
    yield services
    services.dispose()


def snapshot(services, skip: tuple[str, ...] = ()) -> dict[str, list]:
    """Every row of every table (a refused request must leave them all as they were)."""
    with services.engine.connect() as conn:
        return {t.name: sorted(map(repr, conn.execute(select(t)).all()))
                for t in Base.metadata.sorted_tables if t.name not in skip}


# A token's last use is recorded even when its request is refused, so api_tokens is left out.
NOT_THE_REQUEST = ("api_tokens",)

# name, method, path, JSON body, the roles allowed. {draft}/{sent}: notice ids; {self}: the caller.
API_ROWS = [
    ("create a case", "post", "/api/v1/cases", {"title": "Cough after travel"}, STAFF),
    ("publish a case", "post", "/api/v1/cases/C2/publish", None, STAFF),
    ("discard a draft", "post", "/api/v1/cases/C2/discard", None, STAFF),  # issue 15
    ("set a case's visibility", "put", "/api/v1/cases/C1/visibility", {"visibility": "members"}, STAFF),
    ("close a case", "post", "/api/v1/cases/C1/close", None, STAFF),
    ("create a notice", "post", "/api/v1/notices", GUIDELINE, STAFF),
    ("preview a notice", "post", "/api/v1/notices/{draft}/preview", None, STAFF),
    ("send a notice", "post", "/api/v1/notices/{draft}/send", None, STAFF),
    ("schedule a notice", "post", "/api/v1/notices/{draft}/send", {"at": "2099-01-01T00:00:00Z"}, STAFF),
    ("correct a notice", "post", "/api/v1/notices/{sent}/correct", {"text": "FFP3, not FFP2"}, STAFF),
    ("cancel a notice", "post", "/api/v1/notices/{draft}/cancel", None, STAFF),
    ("stop a sent notice", "post", "/api/v1/notices/{sent}/stop", None, STAFF),  # issue 17
    ("read a notice", "get", "/api/v1/notices/{sent}", None, STAFF),
    ("another member's channels", "put", "/api/v1/members/ben@example.org/channels", {"channels": ["sms"]}, STAFF),
    ("own channels", "put", "/api/v1/members/{self}/channels", {"channels": ["sms"]}, MEMBERS),
    ("read another member", "get", "/api/v1/members/ben@example.org", None, STAFF),
    ("rename a member", "patch", "/api/v1/members/ben@example.org", {"name": "Benjamin Carter"}, STAFF),
    ("deactivate a member", "patch", "/api/v1/members/ben@example.org", {"active": False}, STAFF),
    ("grant a role", "patch", "/api/v1/members/ben@example.org", {"roles": ["coordinator", "member"]}, {ADMIN}),
    ("grant oneself a role", "patch", "/api/v1/members/{self}", {"roles": ["admin"]}, {ADMIN}),
    ("read the lists", "get", "/api/v1/lists", None, STAFF),
    ("add to a list", "put", "/api/v1/lists/us/members/minho@example.org", None, STAFF),
    ("remove from a list", "delete", "/api/v1/lists/tft/members/ben@example.org", None, STAFF),
    ("post to a case", "post", "/api/v1/cases/C1/posts", {"text": "Agree: organising pneumonia"}, MEMBERS),
    ("SMS preview", "post", "/api/v1/sms/preview", {"text": "Masks in CT rooms"}, EVERYONE),
    ("notice acknowledgements", "get", "/api/v1/notices/{sent}/acknowledgements", None, STAFF),  # issue 17
    ("read the headline figures", "get", "/api/v1/stats?month=2026-11", None, STAFF),  # issue 20
]
READ_ONLY = {"preview a notice", "read a notice", "notice acknowledgements", "read another member", "read the lists",
             "SMS preview", "read the headline figures",
             "grant oneself a role"}  # an admin granting themselves admin changes nothing


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name,method,path,body,allowed", API_ROWS, ids=[row[0] for row in API_ROWS])
def test_api_matrix(world, name, method, path, body, allowed, role):
    client = create_app(services=world).test_client()
    path = path.format(self=PEOPLE[role][0] if role != ANONYMOUS else PEOPLE[MEMBER][0], **world.ids)
    headers = {"Authorization": f"Bearer {world.tokens[role]}"} if role != ANONYMOUS else {}
    before = snapshot(world, NOT_THE_REQUEST)
    response = getattr(client, method)(path, json=body, headers=headers)
    after = snapshot(world, NOT_THE_REQUEST)
    text = response.get_data(as_text=True)
    if role in allowed:
        assert 200 <= response.status_code < 300, text
        assert (before == after) == (name in READ_ONLY), "an allowed change must change something"
    else:
        assert response.status_code == (401 if role == ANONYMOUS else 403), text
        assert response.get_json()["error"] == ("Unauthorized" if role == ANONYMOUS else "Forbidden")
        if role == ANONYMOUS:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert before == after, "a refused request changed the database"


# The token is checked before anything else a route does, so a few rows of each kind stand for all.
REFUSED_TOKEN_ROWS = [r for r in API_ROWS if r[0] in ("send a notice", "grant a role", "own channels",
                                                       "add to a list", "post to a case", "read a notice")]


@pytest.mark.parametrize("state", ["deactivated", "revoked"])
@pytest.mark.parametrize("name,method,path,body,allowed", REFUSED_TOKEN_ROWS, ids=[r[0] for r in REFUSED_TOKEN_ROWS])
def test_a_deactivated_members_or_revoked_token_is_refused(world, name, method, path, body, allowed, state):
    from relay.access.api_tokens import revoke_token
    from relay.model.tables import ApiToken

    with transaction(world.sessions) as session:
        admin = find_member(session, PEOPLE[ADMIN][0])
        if state == "deactivated":
            admin.active = False
        else:
            revoke_token(session, session.scalar(select(ApiToken.id).where(ApiToken.member_id == admin.id)))
    client = create_app(services=world).test_client()
    before = snapshot(world, NOT_THE_REQUEST)
    response = getattr(client, method)(path.format(self=PEOPLE[ADMIN][0], **world.ids), json=body,
                                       headers={"Authorization": f"Bearer {world.tokens[ADMIN]}"})
    assert response.status_code == 401 and state in response.get_json()["detail"]
    assert before == snapshot(world, NOT_THE_REQUEST)


# ---------------------------------------------------------------- SMS and email commands

# text, roles whose command takes effect, the outcome for them, for a stranger (outcome, reply or None)
SMS_ROWS = [
    ("C1 Looks like organising pneumonia", MEMBERS, "posted", ("rejected", "unknown_sender")),
    ("STOP", MEMBERS, "command:stop", ("rejected", None)),
    ("START", MEMBERS, "command:start", ("rejected", "unknown_sender")),
    ("HELP", EVERYONE, "command:help", ("rejected", "help")),
]


def _effect(services, role: str, text: str):
    """What the SMS changed for its sender: (posts by them, opted out?)."""
    with services.sessions() as session:
        member = find_member(session, PEOPLE[role][0])
        posts = session.scalars(select(Post.body).where(Post.author_id == member.id)
                                .order_by(Post.id)).all() if member else []
        return list(posts), bool(member and member.sms_opted_out_at)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("text,allowed,outcome,stranger", SMS_ROWS, ids=[r[0].split()[0] for r in SMS_ROWS])
def test_sms_matrix(world, text, allowed, outcome, stranger, role):
    phone = PEOPLE[role][1]
    before = snapshot(world, ("inbound_events", "deliveries"))
    event_id = record_sms(world, phone, text)
    run_worker(world)
    with world.sessions() as session:
        event = session.get(InboundEvent, event_id)
    replies = [d.purpose for d in deliveries(world, to_address=phone) if d.purpose not in ("notice",)]
    if role == ANONYMOUS:
        assert event.outcome == stranger[0]
        assert replies == ([stranger[1]] if stranger[1] else [])  # polite, or silent to a STOP
        assert before == snapshot(world, ("inbound_events", "deliveries"))
        return
    assert role in allowed and event.outcome == outcome, (event.outcome, event.detail)
    posts, opted_out = _effect(world, role, text)
    assert posts == (["Looks like organising pneumonia"] if outcome == "posted" else [])
    assert opted_out == (outcome == "command:stop")


# issue 17: coordinator commands by SMS; for anyone else "not authorised", and nothing is created. A member's
# NOTICE/URGENT is no command but the reply it reads as: here it threads into no case, so the answer says only
# coordinators send notices and how to post (not_coordinator); nothing is created either.
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("text", ["NOTICE tft: Masks in CT rooms", "URGENT tft ACK 10m: Masks", "HOLD ALL",
                                  "RESUME ALL", "STATUS {sent}", "SEND ABCDEF", "STAND DOWN {sent}"])
def test_sms_coordinator_command_matrix(world, text, role):
    phone = PEOPLE[role][1]
    text = text.format(**world.ids)
    before = snapshot(world, ("inbound_events", "deliveries"))
    event_id = record_sms(world, phone, text)
    run_worker(world)
    with world.sessions() as session:
        event = session.get(InboundEvent, event_id)
    replies = [d.purpose for d in deliveries(world, to_address=phone) if d.purpose != "notice"]
    if role in STAFF:
        assert event.outcome.startswith("command:"), (event.outcome, event.detail)
        assert "not_authorised" not in replies
        return
    if text == "SEND ABCDEF" and event.outcome.startswith("guard:"):
        # issue 16 reads SEND <code> too: a member who may post may release their own held reply, so a code
        # that is none of theirs gets the guard's answer; still nothing is created or sent
        assert (role, event.outcome, replies) == ("member", "guard:unknown_code", ["guard_unknown_code"])
        assert before == snapshot(world, ("inbound_events", "deliveries")), "a refused command changed something"
        return
    if role == MEMBER and text.startswith(("NOTICE", "URGENT")):
        assert (event.outcome, replies) == ("asked:none", ["not_coordinator"])
        assert before == snapshot(world, ("inbound_events", "deliveries")), "a member's NOTICE changed something"
        return
    assert event.outcome == "rejected"
    assert replies == ["unknown_sender" if role == ANONYMOUS else "not_authorised"]
    assert before == snapshot(world, ("inbound_events", "deliveries")), "a refused command changed something"


@pytest.mark.parametrize("text,outcome,reply", [
    ("C1 Looks like organising pneumonia", "rejected", "not_authorised"),  # refused, politely
    ("HELP", "command:help", "help"),
    ("STOP", "command:stop", None),  # anyone can always stop, even when they may not post
])
@pytest.mark.parametrize("why", ["deactivated", "no posting role"])
def test_sms_from_a_member_who_may_not_post(world, text, outcome, reply, why):
    with transaction(world.sessions) as session:
        member = find_member(session, PEOPLE[MEMBER][0])
        if why == "deactivated":
            member.active = False
        else:
            member.roles = ""
    before = snapshot(world, ("inbound_events", "deliveries"))
    event_id = record_sms(world, PEOPLE[MEMBER][1], text)
    run_worker(world)
    with world.sessions() as session:
        assert session.get(InboundEvent, event_id).outcome == outcome
    replies = [d.purpose for d in deliveries(world, to_address=PEOPLE[MEMBER][1]) if d.purpose != "notice"]
    assert replies == ([reply] if reply else [])
    if outcome in ("rejected", "command:help"):
        assert before == snapshot(world, ("inbound_events", "deliveries"))
    assert _effect(world, MEMBER, text) == ([], outcome == "command:stop")


def _mailgun(client, sender: str, text: str):
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    message_id = f"<{secrets.token_hex(8)}@mail.example.org>"
    # issue 13: a From line proves nothing; Mailgun's SPF pass for the sender's own domain does
    headers = [["From", sender], ["To", f"cases@{DOMAIN}"], ["Subject", "Re: [C1] Fever and GGO"],
               ["Message-Id", message_id], ["X-Mailgun-Spf", "Pass"]]
    form = {"recipient": f"cases@{DOMAIN}", "sender": sender, "from": sender, "subject": "Re: [C1] Fever and GGO",
            "body-plain": text, "message-headers": json.dumps(headers), "Message-Id": message_id,
            "timestamp": timestamp, "token": token,
            "signature": hmac.new(KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()}
    response = client.post("/webhooks/email/mailgun", data=urlencode(form),
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("role", ROLES + ("deactivated member",))
def test_email_reply_matrix(world, role):
    """A reply by email posts for every member role; a stranger's or a deactivated member's is refused
    without a reply (a reply to mail would be backscatter) and changes nothing."""
    who = PEOPLE[MEMBER if role == "deactivated member" else role][0]
    if role == "deactivated member":
        with transaction(world.sessions) as session:
            find_member(session, who).active = False
    client = create_app(services=world).test_client()
    before = snapshot(world, ("inbound_events", "webhook_nonces"))
    _mailgun(client, who, "Agree: organising pneumonia.")
    run_worker(world)
    with world.sessions() as session:
        event = session.scalar(select(InboundEvent).where(InboundEvent.kind == "email"))
        posts = session.scalars(select(Post).join(Member, Post.author_id == Member.id)
                                .where(Member.email == who)).all()
    if role in MEMBERS:
        assert event.outcome == "posted" and [p.body for p in posts] == ["Agree: organising pneumonia."]
    else:
        assert event.outcome == "rejected" and posts == []
        assert before == snapshot(world, ("inbound_events", "webhook_nonces"))
