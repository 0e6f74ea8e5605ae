"""Per-member API tokens: `relay tokens create|list|revoke`, only a hash stored, bearer auth that reads
the member's roles on every request, 401 (with a challenge) for missing, unknown, revoked or deactivated
tokens, 403 for a known caller without the role, and the audit actor each request is recorded as."""
from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from relay.access.api_tokens import PREFIX_CHARS, TOKEN_PREFIX, authenticate, create_token, revoke_token
from relay.cli import main
from relay.infra.audit import recent
from relay.infra.db import transaction
from relay.members.directory import find_member
from relay.model.tables import ApiToken, AuditEvent, Member, Notice
from webhooks.app import create_app

GUIDELINE = {"kind": "guideline", "title": "Masks", "body": "FFP2 for every scan", "lists": ["tft"]}


@pytest.fixture
def client(network):
    network.settings = network.settings.replace(api_token="serv1ce")
    return create_app(services=network).test_client()


def token_for(services, who: str, name: str = "") -> str:
    with transaction(services.sessions) as session:
        return create_token(session, find_member(session, who), name)[1]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def set_member(services, who: str, **fields) -> None:
    with transaction(services.sessions) as session:
        member = find_member(session, who)
        for key, value in fields.items():
            setattr(member, key, value)


def test_cli_creates_lists_and_revokes_tokens_and_keeps_only_a_hash(settings, network, monkeypatch):
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    runner = CliRunner()
    created = runner.invoke(main, ["tokens", "create", "--member", "jiwon@example.org", "--name", "nightly export"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert "not shown again" in created.stderr and "coordinator" in created.stderr
    with network.sessions() as session:
        row = session.scalar(select(ApiToken))
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.prefix == token[:12] and row.name == "nightly export" and row.revoked_at is None
        stored = [str(v) for v in (row.token_hash, row.prefix, row.name)]
        assert token not in stored  # the token itself is nowhere
        assert recent(session, action="token.create")[0].subject == f"token:{row.id}"
    listed = runner.invoke(main, ["tokens", "list", "--member", "jiwon@example.org"])
    assert listed.exit_code == 0 and token[:12] in listed.output and token not in listed.output
    assert "active" in listed.output and "nightly export" in listed.output
    assert runner.invoke(main, ["tokens", "list", "--member", "ben@example.org"]).output.strip() == "no tokens"
    revoked = runner.invoke(main, ["tokens", "revoke", str(row.id)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "revoked" in runner.invoke(main, ["tokens", "list"]).output
    assert runner.invoke(main, ["tokens", "revoke", "999"]).exit_code != 0
    missing = runner.invoke(main, ["tokens", "create", "--member", "nobody@example.org"])
    assert missing.exit_code != 0 and "no member" in missing.output


def test_a_member_token_reads_but_cannot_broadcast(client, network):
    token = token_for(network, "minho@example.org")
    assert client.get("/api/v1/cases/C1", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/members/minho@example.org",
                      headers={"Authorization": f"bearer {token}"}).status_code == 200  # any case of "Bearer"
    response = client.post("/api/v1/notices", json=GUIDELINE, headers=bearer(token))
    assert response.status_code == 403
    assert set(response.get_json()) == {"error", "detail", "message"}  # message: in the caller's language (issue 21)
    assert response.get_json()["error"] == "Forbidden"
    assert "notice.create" in response.get_json()["detail"]
    with network.sessions() as session:
        assert session.scalar(select(Notice)) is None


def test_role_changes_and_deactivation_take_effect_at_once(client, network):
    token = token_for(network, "minho@example.org")
    assert client.post("/api/v1/notices", json=GUIDELINE, headers=bearer(token)).status_code == 403
    set_member(network, "minho@example.org", roles="coordinator;member")
    assert client.post("/api/v1/notices", json=GUIDELINE, headers=bearer(token)).status_code == 201
    set_member(network, "minho@example.org", roles="member")
    assert client.post("/api/v1/notices", json=GUIDELINE, headers=bearer(token)).status_code == 403
    set_member(network, "minho@example.org", active=False)
    response = client.get("/api/v1/cases", headers=bearer(token))
    assert response.status_code == 401 and "deactivated" in response.get_json()["detail"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_revoked_unknown_and_malformed_tokens_get_401_with_a_challenge(client, network):
    token = token_for(network, "jiwon@example.org")
    assert client.get("/api/v1/notices/1", headers=bearer(token)).status_code == 404  # known, allowed
    with transaction(network.sessions) as session:
        revoke_token(session, session.scalar(select(ApiToken.id)))
    for headers in (bearer(token), bearer(token + "x"), bearer(TOKEN_PREFIX + "guess"), bearer("serv1cE"), bearer("serv1ce2"),
                    {"Authorization": f"Basic {token}"}, {}):
        response = client.get("/api/v1/notices/1", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="relay"')
        body = response.get_json()
        assert body["error"] == "Unauthorized" and body["detail"]
    assert "revoked" in client.get("/api/v1/notices/1", headers=bearer(token)).get_json()["detail"]


def test_refusals_are_logged_without_the_token(client, network, caplog):
    token = token_for(network, "minho@example.org")
    with transaction(network.sessions) as session:
        revoke_token(session, session.scalar(select(ApiToken.id)))
    client.get("/api/v1/cases", headers=bearer(token))
    client.post("/api/v1/notices", json=GUIDELINE, headers=bearer(token_for(network, "ben@example.org")))
    lines = [r.getMessage() for r in caplog.records if r.name == "relay.web.api"]
    assert any("401" in line and "revoked" in line for line in lines)
    assert any("403" in line and "notice.create" in line for line in lines)
    assert not any(token in line for line in lines)


def test_actions_are_audited_as_the_tokens_member_or_the_service_token(client, network):
    token = token_for(network, "jiwon@example.org")  # a coordinator
    first = client.post("/api/v1/notices", json=GUIDELINE, headers=bearer(token)).get_json()
    assert client.post(f"/api/v1/notices/{first['id']}/send", headers=bearer(token)).status_code == 202
    second = client.post("/api/v1/notices", json=GUIDELINE, headers=bearer("serv1ce")).get_json()
    assert client.post(f"/api/v1/notices/{second['id']}/send", headers=bearer("serv1ce")).status_code == 202
    with network.sessions() as session:
        jiwon = find_member(session, "jiwon@example.org")
        sends = {e.subject: e for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "notice.send"))}
        assert (sends[f"notice:{first['id']}"].actor, sends[f"notice:{first['id']}"].source) == (f"member:{jiwon.id}", "api")
        assert sends[f"notice:{first['id']}"].actor_member_id == jiwon.id
        assert (sends[f"notice:{second['id']}"].actor, sends[f"notice:{second['id']}"].source) == ("api-token", "api")
        assert session.get(Notice, first["id"]).created_by == jiwon.id
        assert session.get(Notice, second["id"]).created_by is None


def test_last_use_is_recorded_at_most_once_a_minute(network):
    from datetime import timedelta

    from relay.model.tables import utcnow

    token = token_for(network, "minho@example.org")
    now = utcnow()
    for offset in (0, 30, 61):
        with transaction(network.sessions) as session:
            caller = authenticate(session, token, now=now + timedelta(seconds=offset))
            assert caller.roles == {"member"} and caller.actor.label.startswith("member:")
    with network.sessions() as session:
        used = session.scalar(select(ApiToken.last_used_at))
    assert used == now + timedelta(seconds=61)


def test_members_read_their_own_record_but_not_others(client, network):
    token = token_for(network, "minho@example.org")
    own = client.get("/api/v1/members/minho@example.org", headers=bearer(token))
    assert own.status_code == 200 and own.get_json()["email"] == "minho@example.org"
    put = client.put("/api/v1/members/minho@example.org/channels", json={"channels": ["sms"]}, headers=bearer(token))
    assert put.status_code == 200 and put.get_json()["channels"] == ["sms"]
    # another member, or one that does not exist: the same 403, revealing nothing
    for who in ("ben@example.org", "nobody@example.org"):
        assert client.get(f"/api/v1/members/{who}", headers=bearer(token)).status_code == 403
        assert client.put(f"/api/v1/members/{who}/channels", json={"channels": []},
                          headers=bearer(token)).status_code == 403
    with network.sessions() as session:
        ben = session.scalar(select(Member).where(Member.email == "ben@example.org"))
        assert ben.channels == ("sms", "email")


def test_a_refused_tokens_reason_has_a_message_in_the_callers_language(client, network):
    """The 401 reasons about a presented token (unknown, revoked, a deactivated member's, a malformed header):
    `detail` stays English for programs, `message` is the caller's language (Accept-Language), as every API
    error's (issue 21)."""
    import re

    korean = {"Accept-Language": "ko-KR,ko;q=0.9"}
    revoked, deactivated = token_for(network, "jiwon@example.org"), token_for(network, "minho@example.org")
    with transaction(network.sessions) as session:
        revoke_token(session, session.scalar(select(ApiToken.id).order_by(ApiToken.id)))
    set_member(network, "minho@example.org", active=False)
    prefix = revoked[:PREFIX_CHARS]
    asked = [(bearer(TOKEN_PREFIX + "guess"), "unknown token"),
             (bearer(revoked), f"token {prefix}... was revoked"),
             (bearer(deactivated), f"token {deactivated[:len(prefix)]}...: its member is deactivated"),
             ({"Authorization": f"Basic {revoked}"}, "the Authorization header must be 'Bearer <token>'")]
    for headers, detail in asked:
        english = client.get("/api/v1/notices/1", headers={**headers, "Accept-Language": "en"}).get_json()
        answer = client.get("/api/v1/notices/1", headers={**headers, **korean})
        assert answer.status_code == 401
        body = answer.get_json()
        assert body["detail"] == detail and english["detail"] == detail and english["message"] == detail, body
        assert re.search(r"[\uac00-\ud7a3]", body["message"]), body
        if "..." in detail:
            assert detail.split()[1] in body["message"]  # the token's prefix, which says which token
