"""POST /webhooks/twilio/sms and /status: signatures, persistence before ack, dedup, bad input."""
from __future__ import annotations

import logging
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from relay.infra.dispatch import RecordingDispatcher
from relay.model.tables import InboundEvent
from relay.providers.twilio_sms import EMPTY_TWIML, sign, signed_url, verify
from relay.services import build_services
from tests.conftest import AUTH_TOKEN, OUR_NUMBER, PUBLIC_BASE, make_settings
from tests.helpers import post_signed, sms_form
from webhooks.app import create_app

SMS = "/webhooks/twilio/sms"
STATUS = "/webhooks/twilio/status"


@pytest.fixture
def client(services):
    app = create_app(services=services)
    return app.test_client()


def count_events(services) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).select_from(InboundEvent))


# ---- signature vectors made by twilio's own validator


def test_twilio_reference_vector():
    # From twilio-python's own tests (tests/unit/test_request_validator.py).
    params = {"From": "+14158675309", "To": "+18005551212", "CallSid": "CA1234567890ABCDE",
              "Caller": "+14158675309", "Digits": "1234"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert sign("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert verify("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not verify("12345", url, dict(params, Digits="1235"), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_a_signature_over_the_url_with_its_default_port_is_accepted_too():
    # verify() tries the URL as configured first; twilio's validator (with and without :443) follows.
    params = {"From": "+821012345602", "Body": "C1 hello"}
    with_port = sign("12345", "https://relay.example.org:443/webhooks/twilio/sms", params)
    assert verify("12345", "https://relay.example.org/webhooks/twilio/sms", params, with_port)
    assert not verify("12345", "https://relay.example.org/webhooks/twilio/sms", params, with_port[:-2] + "x=")


@pytest.mark.parametrize("signature", ["\u2603\u00ff", "\u00e9" * 28, "", "not base64 at all"])
def test_a_malformed_signature_is_refused_not_an_error(signature):
    params = {"From": "+821012345602", "Body": "C1 hello"}
    assert verify("12345", "https://relay.example.org/webhooks/twilio/sms", params, signature) is False


def test_a_webhook_neither_opens_nor_refreshes_the_session_cookie(services):
    app = create_app(services=services)
    client = app.test_client()
    # a valid, permanent session: a page would refresh it (SESSION_REFRESH_EACH_REQUEST); a webhook must not
    cookie = app.session_interface.get_signing_serializer(app).dumps({"member_id": 1, "_permanent": True})
    client.set_cookie("relay_session", cookie, domain="localhost")
    response = post_signed(client, SMS, sms_form("+821012345602", "C1 hello"))
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert count_events(services) == 1
    assert "Set-Cookie" in client.get("/library/").headers  # the same cookie on a page is opened and refreshed


def test_signed_url_uses_public_base_and_raw_query():
    assert signed_url("https://relay.example.org/", "/webhooks/twilio/sms", b"a=1&b=%20x") == \
        "https://relay.example.org/webhooks/twilio/sms?a=1&b=%20x"
    assert signed_url("https://relay.example.org", "/webhooks/twilio/sms", b"") == \
        "https://relay.example.org/webhooks/twilio/sms"


def test_signed_for_public_url_is_accepted_behind_a_proxy(client, services):
    # The test client talks to http://localhost/ (the internal URL); Twilio signed the public one.
    response = post_signed(client, SMS, sms_form("+821012345602", "C1 hello"))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    assert response.get_data(as_text=True) == EMPTY_TWIML
    assert count_events(services) == 1


def test_signed_for_internal_url_is_refused(client, services, caplog):
    form = sms_form("+821012345602", "C1 hello")
    with caplog.at_level(logging.WARNING):
        response = post_signed(client, SMS, form, base="http://localhost")
    assert response.status_code == 403
    assert count_events(services) == 0
    assert "invalid X-Twilio-Signature" in caplog.text


def test_missing_signature_is_403(client, services):
    response = client.post(SMS, data=sms_form("+821012345602", "hi"))
    assert response.status_code == 403
    assert count_events(services) == 0


def test_wrong_token_is_403(client, services):
    response = post_signed(client, SMS, sms_form("+821012345602", "hi"), token="not-the-token")
    assert response.status_code == 403


def test_in_dev_mode_another_accountsid_is_refused(services):
    """Issue 15, item 11: without a Twilio account (the dev outbox mode) the webhook takes only the AccountSid
    `relay demo` prints, as the README says; a signed request for another account is a 403 and kept nowhere."""
    from relay.infra.settings import DEV_ACCOUNT_SID

    services.settings = services.settings.replace(twilio_auth_token="", twilio_account_sid="")
    client = create_app(services=services).test_client()
    token = services.settings.signing_token()  # the dev token in var/, as `relay demo` signs with
    other = post_signed(client, SMS, sms_form("+821012345602", "hi", AccountSid="AC" + "1" * 32), token=token)
    assert other.status_code == 403 and count_events(services) == 0
    demo = post_signed(client, SMS, sms_form("+821012345602", "hi", AccountSid=DEV_ACCOUNT_SID), token=token)
    assert demo.status_code == 200 and count_events(services) == 1


def test_every_param_is_signed_including_unknown_ones(client, services):
    form = sms_form("+821012345602", "hi", AddOns='{"status":"successful"}', NewParam="x")
    assert post_signed(client, SMS, form).status_code == 200
    # Tampering with a param Twilio added must break the signature.
    signature = sign(AUTH_TOKEN, PUBLIC_BASE + SMS, form)
    tampered = dict(form, NewParam="y")
    response = client.post(SMS, data=urlencode(tampered), headers={
        "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 403


# ---- persistence, dedup, enqueue after commit


def test_event_is_persisted_then_enqueued_once(client, services):
    form = sms_form("+821012345602", "C1 hello")
    assert post_signed(client, SMS, form).status_code == 200
    assert post_signed(client, SMS, form).status_code == 200  # Twilio retry / replay
    assert count_events(services) == 1
    assert len(services.dispatcher.inbound) == 1
    with services.sessions() as session:
        stored = session.scalar(select(InboundEvent))
    assert stored.dedupe_key == form["MessageSid"]
    assert "Body=C1+hello" in stored.raw


def test_broker_down_still_acknowledges_what_was_kept(client, services):
    services.dispatcher.fail = True
    response = post_signed(client, SMS, sms_form("+821012345602", "C1 hello"))
    assert response.status_code == 200
    assert count_events(services) == 1
    assert services.dispatcher.inbound == []  # the sweeper re-enqueues it (test_sweeper)


DOWN = "postgresql+psycopg://nobody@127.0.0.1:1/none"  # nothing listens on port 1: refused at once


@pytest.fixture
def down(tmp_path):
    """A web app whose database is unreachable, its spool under tmp_path/var/spool."""
    services = build_services(make_settings(tmp_path / "var", DOWN), dispatcher=RecordingDispatcher(), senders={})
    yield services
    services.dispose()


def test_database_down_spools_and_answers_200(down, caplog):
    """Twilio retries only when it cannot connect: a 503 would lose the text. The verified webhook
    is kept in the local spool and acknowledged as usual."""
    client = create_app(services=down).test_client()
    down.replayer.stop()  # no background replay here: the test looks at the spool itself
    sms = sms_form("+821012345602", "C1 hello")
    with caplog.at_level(logging.WARNING):
        response = post_signed(client, SMS, sms)
        status = post_signed(client, STATUS, status_form(sms["MessageSid"], "delivered"))
    assert (response.status_code, status.status_code) == (200, 200)
    assert response.get_data(as_text=True) == EMPTY_TWIML
    assert "kept in the spool" in caplog.text
    spooled = [down.spool.read(path) for path in down.spool.entries()]
    assert [(e.kind, e.dedupe_key) for e in spooled] == [("sms", sms["MessageSid"]),
                                                          ("status", f"{sms['MessageSid']}:delivered")]
    assert spooled[0].raw == urlencode(sms) and spooled[0].sender == "+821012345602"
    assert down.dispatcher.inbound == [] and down.dispatcher.statuses == []


def test_a_forged_webhook_is_never_spooled(down):
    client = create_app(services=down).test_client()
    down.replayer.stop()
    assert post_signed(client, SMS, sms_form("+821012345602", "C1 hello"), token="wrong").status_code == 403
    assert post_signed(client, SMS, sms_form("+821012345602", "hi", to="+15005550001")).status_code == 400
    assert down.spool.entries() == []


def test_database_down_and_spool_full_answers_503(tmp_path, caplog):
    settings = make_settings(tmp_path / "var", DOWN, spool_max_files=1)
    services = build_services(settings, dispatcher=RecordingDispatcher(), senders={})
    services.replayer.stop()
    client = create_app(services=services).test_client()
    try:
        assert post_signed(client, SMS, sms_form("+821012345602", "first")).status_code == 200
        with caplog.at_level(logging.ERROR):
            response = post_signed(client, SMS, sms_form("+821012345602", "second"))
    finally:
        services.dispose()
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "the spool refused it (SpoolFull" in caplog.text
    assert len(services.spool.entries()) == 1


def test_database_down_and_spool_unwritable_answers_503(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the spool directory should be")
    settings = make_settings(tmp_path / "var", DOWN, spool_dir=str(blocker / "spool"))
    services = build_services(settings, dispatcher=RecordingDispatcher(), senders={})
    services.replayer.stop()
    client = create_app(services=services).test_client()
    try:
        with caplog.at_level(logging.ERROR):
            response = post_signed(client, SMS, sms_form("+821012345602", "C1 hello"))
    finally:
        services.dispose()
    assert response.status_code == 503
    assert "the spool refused it" in caplog.text


def test_spooled_webhooks_are_stored_once_when_the_database_returns(tmp_path, database_url):
    """Spooled during the outage (one of them twice, as a retry), then the database is back: the
    next webhook (or /healthz) starts the replay; each is stored once and handed over once."""
    down = build_services(make_settings(tmp_path / "var", DOWN), dispatcher=RecordingDispatcher(), senders={})
    down.replayer.stop()
    client = create_app(services=down).test_client()
    forms = [sms_form("+821012345602", f"C1 during the outage {n}") for n in range(3)]
    try:
        for form in forms + forms[:1]:
            assert post_signed(client, SMS, form).status_code == 200
    finally:
        down.dispose()
    assert len(down.spool.entries()) == 4

    services = build_services(make_settings(tmp_path / "var", database_url), dispatcher=RecordingDispatcher(),
                              senders={})
    try:
        client = create_app(services=services).test_client()
        health = client.get("/healthz").get_json()
        assert health["status"] in ("degraded", "ok")  # degraded until the replay it started is done
        after = sms_form("+821012345603", "C1 after the outage")
        assert post_signed(client, SMS, after).status_code == 200
        assert services.replayer.wait(timeout=30)
        assert services.spool.entries() == []
        assert client.get("/healthz").get_json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
        with services.sessions() as session:
            keys = list(session.scalars(select(InboundEvent.dedupe_key).order_by(InboundEvent.id)))
        assert sorted(keys) == sorted([f["MessageSid"] for f in forms] + [after["MessageSid"]])
        assert len(services.dispatcher.inbound) == len(set(services.dispatcher.inbound)) == 4
    finally:
        services.dispose()


def test_spool_depth_is_in_metrics_and_healthz_says_degraded(tmp_path, database_url):
    settings = make_settings(tmp_path / "var", database_url)
    services = build_services(settings, dispatcher=RecordingDispatcher(), senders={})
    services.replayer.stop()  # the spool stays as it is while the test looks
    try:
        from relay.infra.spool import Entry
        from relay.model.tables import utcnow

        services.spool.append(Entry(provider="twilio", kind="sms", dedupe_key="SM1", raw="Body=x", sender="",
                                    received_at=utcnow()))
        client = create_app(services=services).test_client()
        health = client.get("/healthz")
        metrics = client.get("/metrics").get_data(as_text=True)
    finally:
        services.dispose()
    assert health.status_code == 200
    body = health.get_json()
    assert body["status"] == "degraded" and body["checks"]["spool"]["files"] == 1
    assert "relay_spool_files 1.0" in metrics and "relay_spool_bytes" in metrics
    assert "relay_spool_oldest_seconds" in metrics


# ---- bad input: a clear 4xx and a log line, never a 500


@pytest.mark.parametrize("drop", ["MessageSid", "From", "To"])
def test_missing_field_is_400(client, services, drop, caplog):
    form = sms_form("+821012345602", "hello")
    del form[drop]
    with caplog.at_level(logging.WARNING):
        response = post_signed(client, SMS, form)
    assert response.status_code == 400
    assert f"missing field {drop}" in response.get_data(as_text=True)
    assert f"missing field {drop}" in caplog.text
    assert count_events(services) == 0


def test_unknown_to_is_400(client, services):
    response = post_signed(client, SMS, sms_form("+821012345602", "hello", to="+15005550001"))
    assert response.status_code == 400
    assert "not one of this relay's numbers" in response.get_data(as_text=True)


def test_bad_message_sid_is_400(client):
    response = post_signed(client, SMS, sms_form("+821012345602", "hello", sid="XX123"))
    assert response.status_code == 400


def test_100_kb_body_is_refused_early(client, services):
    form = sms_form("+821012345602", "x" * 100_000)
    response = post_signed(client, SMS, form)
    assert response.status_code == 413
    assert count_events(services) == 0


def test_invalid_utf8_is_handled(client, services):
    form = sms_form("+821012345602", "placeholder")
    body = urlencode(form).replace("Body=placeholder", "Body=%FF%FEbad").encode() + b"&X=\xff\xfe"
    response = client.post(SMS, data=body, headers={"X-Twilio-Signature": "bogus",
                                                    "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 403


def test_invalid_utf8_correctly_signed_is_kept(client, services):
    form = sms_form("+821012345602", "placeholder")
    raw = urlencode(form).replace("Body=placeholder", "Body=%FF%FEok")
    # Werkzeug leaves percent-escapes that are not UTF-8 as they were; sign what it decodes.
    decoded = dict(form, Body="%FF%FEok")
    response = client.post(SMS, data=raw, headers={
        "X-Twilio-Signature": sign(AUTH_TOKEN, PUBLIC_BASE + SMS, decoded),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert count_events(services) == 1
    from relay.inbound.sms import process_inbound

    assert process_inbound(services, services.dispatcher.inbound[0]).outcome == "rejected"  # not a member


def test_not_a_form_is_refused(client):
    response = client.post(SMS, data=b'{"json": true}', headers={"Content-Type": "application/json",
                                                                  "X-Twilio-Signature": "x"})
    assert response.status_code == 403


def test_get_is_405(client):
    assert client.get(SMS).status_code == 405


# ---- status callbacks


def status_form(sid: str, status: str, error: str | None = None) -> dict[str, str]:
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "1" * 32,
            "From": OUR_NUMBER, "To": "+821012345602", "ApiVersion": "2010-04-01"}
    if error:
        form["ErrorCode"] = error
    return form


def test_status_callbacks_dedupe_on_sid_and_status(client, services):
    sid = "SM" + "a" * 32
    assert post_signed(client, STATUS, status_form(sid, "sent")).status_code == 200
    assert post_signed(client, STATUS, status_form(sid, "sent")).status_code == 200
    assert post_signed(client, STATUS, status_form(sid, "delivered")).status_code == 200
    assert count_events(services) == 2
    assert len(services.dispatcher.statuses) == 2


def test_status_callback_needs_a_signature(client, services):
    response = client.post(STATUS, data=status_form("SM" + "a" * 32, "sent"))
    assert response.status_code == 403


def test_status_callback_with_unknown_status_is_400(client):
    response = post_signed(client, STATUS, status_form("SM" + "a" * 32, "exploded"))
    assert response.status_code == 400


# ---- the fast path (webhooks/fast_path.py): Twilio's webhooks are answered ahead of Flask


def test_twilio_webhooks_skip_flask_s_request_machinery_and_the_rest_does_not(services):
    app = create_app(services=services)
    seen = []
    app.before_request(lambda: seen.append(request_path()))
    client = app.test_client()
    assert post_signed(client, SMS, sms_form("+821012345602", "C1 hello")).status_code == 200
    assert client.get(SMS).status_code == 405  # not a POST: Flask's routing answers
    assert client.get("/healthz").status_code in (200, 503)
    assert seen == [SMS, "/healthz"]
    assert count_events(services) == 1


def request_path():
    from flask import request

    return request.path


def test_an_unexpected_error_in_a_webhook_is_a_500_with_a_log_line(services, monkeypatch, caplog):
    from webhooks import twilio

    def broken(_services, _request):
        raise RuntimeError("a bug")

    monkeypatch.setitem(twilio.HANDLERS, SMS, broken)
    client = create_app(services=services).test_client()
    with caplog.at_level(logging.ERROR, logger="relay.web"):
        response = post_signed(client, SMS, sms_form("+821012345602", "C1 hello"))
    assert response.status_code == 500
    assert response.get_data(as_text=True).startswith("500 Internal Server Error")
    assert "unhandled error" in caplog.text and "a bug" in caplog.text


def test_a_database_that_does_not_answer_is_spooled_before_twilio_gives_up(tmp_path):
    """A database host that accepts the connection and then says nothing (a hung server, a
    half-open network): psycopg's default connect timeout is 130 s, far past Twilio's 15 s, so the
    text would be lost while the webhook waits. relay's engines give up connecting after 5 s
    (relay/infra/db.py), and the webhook is spooled and answered in time."""
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever answers
    url = f"postgresql+psycopg://nobody@127.0.0.1:{silent.getsockname()[1]}/none"
    services = build_services(make_settings(tmp_path / "var", url), dispatcher=RecordingDispatcher(), senders={})
    services.replayer.stop()
    client = create_app(services=services).test_client()
    answers = []
    poster = threading.Thread(target=lambda: answers.append(post_signed(client, SMS, sms_form("+821012345602", "hi"))),
                              daemon=True)
    try:
        poster.start()
        poster.join(timeout=12)
    finally:
        silent.close()
    assert answers, "the webhook was still waiting for the database after 12 s (Twilio gives up at 15 s)"
    assert answers[0].status_code == 200
    assert len(services.spool.entries()) == 1
    services.dispose()
