"""The audit trail: broadcasts, publications, visibility and consent changes each leave one record with
actor, time and source, in the same transaction as the change; PostgreSQL refuses edits to it."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from relay.infra import audit
from relay.infra.db import transaction
from relay.library.cases import create_case, publish_case, set_visibility
from relay.members import consent
from relay.members.directory import find_member
from relay.model.tables import AuditEvent
from relay.notices.lifecycle import create_notice, send_notice
from tests.conftest import run_worker
from tests.helpers import record_sms


def events(services, action=None):
    with services.sessions() as session:
        return [(e.action, e.subject, e.actor, e.source, e.detail) for e in reversed(audit.recent(session, 100, action))]


def test_broadcast_is_recorded_with_actor_and_counts(network):
    coordinator = audit.Actor("member:1", "console", 1)
    with transaction(network.sessions) as session:
        notice_id = create_notice(session, kind="announcement", title="Masks", body="N95 in CT rooms",
                                  lists=["tft"]).id
    send_notice(network, notice_id, actor=coordinator)
    [(action, subject, actor, source, detail)] = events(network, "notice.send")
    assert (action, subject, actor, source) == ("notice.send", f"notice:{notice_id}", "member:1", "console")
    assert detail == {"kind": "announcement", "lists": "tft", "channels": "sms;email;whatsapp", "severity": "routine"}


def test_a_refused_broadcast_leaves_no_record(network):
    from relay.notices.lifecycle import NoticeStateError

    with transaction(network.sessions) as session:
        notice_id = create_notice(session, kind="announcement", title="Once", lists=["tft"]).id
    send_notice(network, notice_id)
    with pytest.raises(NoticeStateError):
        send_notice(network, notice_id)
    assert len(events(network, "notice.send")) == 1


def test_publication_and_visibility_are_recorded(services):
    actor = audit.Actor("cli:root", "cli")
    with transaction(services.sessions) as session:
        create_case(session, "Draft", draft=True)
    with transaction(services.sessions) as session:
        publish_case(session, "C1", actor=actor)
        set_visibility(session, "C1", "members", actor=actor)
        set_visibility(session, "C1", "members", actor=actor)  # no change, no record
    assert [(a, s, who, src) for a, s, who, src, _ in events(services)] == [
        ("case.publish", "case:C1", "cli:root", "cli"), ("case.visibility", "case:C1", "cli:root", "cli")]


def test_opt_out_by_sms_and_by_provider_name_different_actors(network, sms):
    with transaction(network.sessions) as session:
        member = find_member(session, "+821012345602")
        consent.opt_out_sms(session, member, source="sms:STOP")
        consent.opt_in_sms(session, member, source="sms:START")
        consent.opt_out_sms(session, member, source="provider:21610")
        member_id = member.id
    recorded = [(a, s, who, src, d["how"]) for a, s, who, src, d in events(network) if a.startswith("consent.")]
    assert recorded == [
        ("consent.opt_out", f"member:{member_id}", f"member:{member_id}", "sms", "sms:STOP"),
        ("consent.opt_in", f"member:{member_id}", f"member:{member_id}", "sms", "sms:START"),
        ("consent.opt_out", f"member:{member_id}", "provider:21610", "provider", "provider:21610"),
    ]


def test_stop_by_sms_end_to_end_is_audited(network):
    record_sms(network, "+821012345603", "STOP")
    run_worker(network)
    [(action, _, actor, source, detail)] = events(network, "consent.opt_out")
    assert action == "consent.opt_out" and actor.startswith("member:") and source == "sms"
    assert detail == {"channel": "sms", "how": "sms:STOP"}


def test_postgres_refuses_to_edit_or_delete_the_trail(postgres_only_url, tmp_path):
    from relay.services import build_services
    from tests.conftest import make_settings

    services = build_services(make_settings(tmp_path, postgres_only_url))
    try:
        with transaction(services.sessions) as session:
            audit.record(session, "hold.on", "relay", audit.Actor("member:9", "console", 9))
        for statement in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"):
            with pytest.raises(DBAPIError, match="append-only"):
                with transaction(services.sessions) as session:
                    session.execute(text(statement))
        with services.sessions() as session:
            assert session.scalars(select(AuditEvent.actor)).all() == ["member:9"]
    finally:
        services.dispose()


def test_cli_prints_the_trail(network, monkeypatch, settings):
    actor = audit.Actor("cli:root", "cli")
    with transaction(network.sessions) as session:
        create_case(session, "Draft", draft=True)
    with transaction(network.sessions) as session:
        publish_case(session, "C2", actor=actor)
    from relay.cli import main

    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    result = CliRunner().invoke(main, ["audit", "--action", "case.publish"])
    assert result.exit_code == 0, result.output
    assert "case.publish case:C2 by cli:root via cli" in result.output


def test_cli_names_an_unknown_action_and_says_when_there_is_nothing(network, monkeypatch, settings):
    """Issue 15, item 7: `relay audit --action bogus` is an error listing the known actions; a known action
    with no events says so instead of printing nothing."""
    from relay.cli import main

    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    result = CliRunner().invoke(main, ["audit", "--action", "bogus"])
    assert result.exit_code == 1
    assert "unknown action 'bogus'; the known actions are: case.close, case.create" in result.output
    assert "notice.send" in result.output
    result = CliRunner().invoke(main, ["audit", "--action", "token.revoke"])
    assert result.exit_code == 0 and result.output.strip() == "no audit events for action token.revoke"


def test_every_recorded_action_is_known():
    """audit.ACTIONS lists every action the code records (a new one must be added there, or `relay audit
    --action` calls it unknown)."""
    import re
    from pathlib import Path

    import relay
    import webhooks

    recorded = set()
    for package in (relay, webhooks):
        for path in Path(package.__file__).parent.rglob("*.py"):
            for call in re.findall(r"audit\.record\(\s*\w+,\s*([^\n]*)", path.read_text(encoding="utf-8")):
                recorded.update(re.findall(r'"([a-z_]+\.[a-z_]+)"', call.split(", f\"")[0]))
                recorded.update(f"{prefix}.{name}" for prefix, names in re.findall(
                    r"f\"([a-z_]+)\.\{'([a-z_]+)'", call) for name in [names])
    recorded |= {"consent.opt_in"}  # the other arm of consent.py's f-string
    missing = sorted(recorded - set(audit.ACTIONS))
    assert not missing, f"add {missing} to relay.infra.audit.ACTIONS"
    assert {"case.publish", "member.create", "hold.off", "consent.opt_out"} <= recorded
