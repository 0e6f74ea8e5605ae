"""issue 17: acknowledgement requests from the API and the CLI, the SMS instruction, the signed email link
(GET shows a button, only POST records), idempotence, and GET /api/v1/notices/<id>/acknowledgements."""
from __future__ import annotations

import re
from datetime import timedelta
from email import message_from_bytes
from email.policy import default

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from relay.infra.db import transaction
from relay.infra.signing import ack_token
from relay.model.tables import Notice
from relay.model.urgent import Acknowledgement
from relay.notices import acks
from relay.notices.lifecycle import NoticeError, create_notice, send_notice
from tests.conftest import run_worker
from tests.helpers import member, record_sms
from webhooks.app import create_app

AUTH = {"Authorization": "Bearer t0ken"}
LEE, PARK, ALICE = "+821012345602", "+821012345603", "+33612345604"
URGENT = {"kind": "announcement", "title": "Isolation guideline changed", "body": "N95 in every room",
          "lists": ["tft"], "severity": "urgent", "ack_within": "10m"}


@pytest.fixture
def api(network):
    network.settings = network.settings.replace(api_token="t0ken")
    return create_app(services=network).test_client()


def _sent(api, network, **fields) -> int:
    response = api.post("/api/v1/notices", json={**URGENT, **fields}, headers=AUTH)
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["ack_within_s"] == (600 if "ack_within" not in fields else created["ack_within_s"])
    assert api.post(f"/api/v1/notices/{created['id']}/send", headers=AUTH).status_code in (200, 202)
    run_worker(network)
    return created["id"]


def _text(mail, email: str) -> str:
    raw = next(m for m in mail.sent if m.to == email).raw
    return message_from_bytes(raw, policy=default).get_body(("plain",)).get_content()


def _link(mail, email: str) -> str:
    return re.search(r"https://relay\.example\.org(/ack/[a-z0-9-]+)", _text(mail, email)).group(1)


def test_the_sms_ends_with_the_instruction_and_the_email_carries_a_signed_link(api, network, sms, mail):
    notice_id = _sent(api, network)
    lee = next(m.body for m in sms.sent if m.to == LEE)
    assert lee.endswith(f"Reply ACK {notice_id} to confirm.")
    assert f"(or reply ACK {notice_id})" in _text(mail, "minho@example.org")
    assert _link(mail, "minho@example.org") != _link(mail, "seoyeon@example.org")  # bound to the member


def test_a_notice_without_a_request_has_neither(api, network, sms, mail):
    _sent(api, network, ack_within=None)
    assert "ACK" not in next(m.body for m in sms.sent if m.to == LEE)
    assert "/ack/" not in _text(mail, "minho@example.org")


def test_get_shows_a_button_and_only_post_records_once(api, network, mail):
    notice_id = _sent(api, network)
    link = _link(mail, "minho@example.org")
    page = api.get(link)
    assert page.status_code == 200 and f'action="{link}"' in page.get_data(as_text=True)
    assert not acks.acknowledged(network.sessions(), notice_id, member(network, LEE).id)
    assert api.post(link).status_code == 200
    assert api.post(link).status_code == 200  # again: nothing changes
    with network.sessions() as session:
        rows = session.scalars(select(Acknowledgement)).all()
    assert [(r.member_id, r.channel) for r in rows] == [(member(network, LEE).id, "email")]
    assert "is acknowledged" in api.get(link).get_data(as_text=True)


def test_forged_or_foreign_links_are_refused(api, network, mail):
    notice_id = _sent(api, network)
    secret = network.settings.secret()
    assert api.post(f"/ack/{notice_id}-{member(network, LEE).id}-aaaaaaaaaaaaaaaa").status_code == 404
    assert api.post(f"/ack/{ack_token('other-secret', notice_id, member(network, LEE).id)}").status_code == 404
    assert api.post(f"/ack/{ack_token(secret, notice_id + 1, member(network, LEE).id)}").status_code == 404
    with network.sessions() as session:
        assert session.scalars(select(Acknowledgement)).all() == []


def test_the_acknowledgements_route_counts_and_lists_members(api, network, mail):
    notice_id = _sent(api, network)
    api.post(_link(mail, "minho@example.org"))
    record_sms(network, PARK, f"ACK {notice_id}")
    run_worker(network)
    body = api.get(f"/api/v1/notices/{notice_id}/acknowledgements", headers=AUTH).get_json()
    assert body["counts"]["acknowledged"] == 2 and body["counts"]["waiting"] == 3 and body["counts"]["total"] == 5
    by_id = {m["member_id"]: m for m in body["members"]}
    assert by_id[member(network, LEE).id]["channel"] == "email"
    assert by_id[member(network, PARK).id]["channel"] == "sms" and by_id[member(network, PARK).id]["acknowledged_at"]
    assert by_id[member(network, ALICE).id]["state"] == "waiting"
    assert api.get("/api/v1/notices/999/acknowledgements", headers=AUTH).status_code == 404


def test_an_acknowledgement_is_stored_once_in_the_database(network):
    with transaction(network.sessions) as session:
        notice = create_notice(session, kind="announcement", title="x", lists=["tft"], severity="urgent",
                               ack_within=timedelta(minutes=5))
        notice_id = notice.id
    send_notice(network, notice_id)
    lee = member(network, LEE).id
    with transaction(network.sessions) as session:
        assert acks.record(session, notice_id, lee, "sms") is True
        assert acks.record(session, notice_id, lee, "email") is False
    with transaction(network.sessions) as session:
        session.add(Acknowledgement(notice_id=notice_id, member_id=lee, channel="web"))
        with pytest.raises(Exception):  # the unique constraint, not a check in Python
            session.flush()
        session.rollback()


def test_the_cli_asks_for_acknowledgement(settings, network, monkeypatch):
    from relay.cli import main

    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    result = CliRunner().invoke(main, ["notice", "create", "--kind", "announcement", "--title", "Masks",
                                       "--list", "tft", "--severity", "urgent", "--ack-within", "30m"])
    assert result.exit_code == 0, result.output
    with network.sessions() as session:
        assert session.get(Notice, int(result.output)).ack_within_s == 1800
    status = CliRunner().invoke(main, ["notice", "send", result.output.strip()])
    assert status.exit_code == 0, status.output
    status = CliRunner().invoke(main, ["notice", "status", result.output.strip()])
    assert "acknowledged 0 of 5; waiting 5; escalated 0 (none); unreachable 0" in status.output, status.output
    bad = CliRunner().invoke(main, ["notice", "create", "--kind", "announcement", "--title", "Masks",
                                    "--list", "tft", "--ack-within", "soon"])
    assert bad.exit_code != 0 and "30m or 2h" in bad.output


def test_windows_are_validated():
    with pytest.raises(NoticeError):
        create_notice(None, kind="announcement", title="x", lists=["tft"],  # type: ignore[arg-type]
                      escalation_step=timedelta(minutes=5))
