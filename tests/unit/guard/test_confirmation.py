"""Issue 16, item 4: a coordinator's notice, correction or new case whose text holds a patient identifier is
not sent or published until edited or confirmed — in the core, the CLI (--confirm-identifiers), the API (409
with the findings) and the console (a confirmation box; the preview highlights the findings)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from relay.cli import main
from relay.guard.confirmation import IdentifiersFound
from relay.infra.db import transaction
from relay.library.cases import create_case, publish_case
from relay.model.tables import AuditEvent, Case, Delivery, Notice
from relay.notices.corrections import correct_notice
from relay.notices.lifecycle import create_notice, new_case_notice, send_notice
from tests.conftest import run_worker
from tests.console_helpers import KIM, csrf, give_password, reads_english, sign_in
from webhooks.app import create_app

BODY = "Reminder: the patient in C1, RRN 550315-1234567, was transferred."


def _draft(network, body=BODY) -> int:
    with transaction(network.sessions) as session:
        return create_notice(session, kind="announcement", title="Transfer", body=body, lists=["tft"]).id


def _status(network, notice_id) -> str:
    with network.sessions() as session:
        return session.get(Notice, notice_id).status


def _deliveries(network) -> int:
    with network.sessions() as session:
        return len(session.scalars(select(Delivery)).all())


def test_a_notice_with_an_identifier_is_refused_until_confirmed(network):
    notice_id = _draft(network)
    with pytest.raises(IdentifiersFound) as refused:
        send_notice(network, notice_id)
    assert refused.value.findings == [{"field": "body", "kind": "resident_number", "start": 33, "end": 47,
                                       "confidence": 0.8}]
    assert "550315" not in str(refused.value)
    assert _status(network, notice_id) == "draft" and _deliveries(network) == 0
    send_notice(network, notice_id, confirm_identifiers=True)
    assert _status(network, notice_id) in ("sending", "sent") and _deliveries(network) > 0
    with network.sessions() as session:
        assert session.scalar(select(AuditEvent.detail).where(AuditEvent.action == "guard.confirm")) == {
            "kinds": "resident_number"}


def test_an_edited_notice_goes_out_without_confirmation(network):
    notice_id = _draft(network, "Reminder: the patient in C1 was transferred.")
    send_notice(network, notice_id)
    assert _status(network, notice_id) in ("sending", "sent")


def test_a_correction_with_an_identifier_is_refused_and_not_left_behind(network):
    first = _draft(network, "Meeting at 3 pm")
    send_notice(network, first)
    run_worker(network)
    with pytest.raises(IdentifiersFound):
        correct_notice(network, first, "Correction: call 010-2345-6789 instead")
    with network.sessions() as session:
        assert session.scalar(select(Notice.status).where(Notice.corrects_notice_id == first)) == "cancelled"
    correct_notice(network, first, "Correction: call 010-2345-6789 instead", confirm_identifiers=True)


def test_a_case_with_an_identifier_is_neither_published_nor_noticed_until_confirmed(network):
    with pytest.raises(IdentifiersFound):
        with transaction(network.sessions) as session:
            create_case(session, "Mr. Park, 72, cavitation")  # published at once: checked now
    with transaction(network.sessions) as session:
        code = create_case(session, "Cavitation", findings="patient Jane Doe, MRN 12345678", draft=True).code
    with pytest.raises(IdentifiersFound):
        with transaction(network.sessions) as session:
            publish_case(session, code)
    with transaction(network.sessions) as session:
        publish_case(session, code, confirm_identifiers=True)
    with pytest.raises(IdentifiersFound):
        new_case_notice(network, code, ["tft"])
    with network.sessions() as session:
        assert session.scalar(select(Case.status).where(Case.number == int(code[1:]))) == "open"
        assert set(session.scalars(select(Notice.status))) == {"cancelled"}


def test_cli_needs_confirm_identifiers(settings, network, monkeypatch):
    for name, value in (("DATABASE_URL", settings.database_url), ("BROKER_URL", "memory://"),
                        ("VAR_DIR", str(settings.var_dir)), ("PUBLIC_BASE_URL", "https://relay.example.org")):
        monkeypatch.setenv(f"RELAY_{name}", value)
    notice_id = _draft(network)
    runner = CliRunner()
    preview = runner.invoke(main, ["notice", "preview", str(notice_id)])
    assert preview.exit_code == 0 and "resident_number in the body" in preview.output
    refused = runner.invoke(main, ["notice", "send", str(notice_id)])
    assert refused.exit_code == 1 and "--confirm-identifiers" in refused.output
    assert _status(network, notice_id) == "draft"
    sent = runner.invoke(main, ["notice", "send", str(notice_id), "--confirm-identifiers"])
    assert sent.exit_code == 0, sent.output


def test_api_answers_409_with_the_findings(network):
    network.settings = network.settings.replace(api_token="c4ses")
    api = create_app(services=network).test_client()
    auth = {"Authorization": "Bearer c4ses"}
    notice_id = _draft(network)
    refused = api.post(f"/api/v1/notices/{notice_id}/send", headers=auth)
    assert refused.status_code == 409
    body = refused.get_json()
    assert body["findings"][0]["kind"] == "resident_number" and "550315" not in refused.get_data(as_text=True)
    sent = api.post(f"/api/v1/notices/{notice_id}/send", headers=auth, json={"confirm_identifiers": True})
    assert sent.status_code == 202


def test_console_preview_highlights_and_send_needs_the_box(network):
    give_password(network, KIM)
    client = reads_english(create_app(services=network).test_client())  # Kim reads Korean: test_i18n.py
    sign_in(client, KIM)
    notice_id = _draft(network)
    page = client.get(f"/console/notices/{notice_id}").get_data(as_text=True)
    assert '<mark title="resident_number">550315-1234567</mark>' in page and 'name="confirm_identifiers"' in page
    refused = client.post(f"/console/notices/{notice_id}/send", data={"csrf_token": csrf(client)})
    assert refused.status_code == 409 and "patient identifiers" in refused.get_data(as_text=True)
    assert _status(network, notice_id) == "draft"
    sent = client.post(f"/console/notices/{notice_id}/send",
                       data={"csrf_token": csrf(client), "confirm_identifiers": "on"})
    assert sent.status_code == 302 and _status(network, notice_id) in ("sending", "sent")


def test_an_api_post_with_an_identifier_is_refused_409_until_confirmed(network):
    from relay.access.api_tokens import create_token
    from relay.members.directory import find_member
    from relay.model.tables import InboundEvent, Post

    with transaction(network.sessions) as session:
        token = create_token(session, find_member(session, "minho@example.org"))[1]
    api = create_app(services=network).test_client()
    auth = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k1"}
    text = "patient Jane Doe, MRN 12345678: agree"
    refused = api.post("/api/v1/cases/1/posts", headers=auth, json={"text": text})
    assert refused.status_code == 409 and {f["kind"] for f in refused.get_json()["findings"]} == {
        "patient_name", "record_number"}
    assert "12345678" not in refused.get_data(as_text=True)
    with network.sessions() as session:
        assert session.scalars(select(Post)).all() == []
    posted = api.post("/api/v1/cases/1/posts", headers=auth, json={"text": text, "confirm_identifiers": True})
    assert posted.status_code == 201
    with network.sessions() as session:
        assert session.scalar(select(InboundEvent.guard_verdict).where(InboundEvent.provider == "api")) == "warn"


def test_the_apis_409_says_what_was_found_in_the_callers_language(network):
    """Every API error has a `message` in the caller's language (issue 21); the 409 names each finding's kind
    and field, never the value, and the way on (`confirm_identifiers`), which a script reads as written."""
    import re

    network.settings = network.settings.replace(api_token="c4ses")
    api = create_app(services=network).test_client()
    notice_id = _draft(network)
    answers = {language: api.post(f"/api/v1/notices/{notice_id}/send",
                                  headers={"Authorization": "Bearer c4ses", "Accept-Language": language})
               for language in ("ko-KR,ko;q=0.9", "en")}
    korean, english = answers["ko-KR,ko;q=0.9"].get_json(), answers["en"].get_json()
    assert answers["en"].status_code == 409 and korean["detail"] == english["detail"]
    assert "resident registration number" in english["message"] and "confirm_identifiers" in english["message"]
    assert re.search(r"[\uac00-\ud7a3]", korean["message"]) and "confirm_identifiers" in korean["message"], korean
    assert "주민등록번호" in korean["message"]
    assert "550315" not in answers["ko-KR,ko;q=0.9"].get_data(as_text=True) + answers["en"].get_data(as_text=True)
