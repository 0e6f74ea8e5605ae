"""Privacy of logs (issue 13, item 11): members' addresses and numbers are masked in relay's own log
lines, and gunicorn's access log never records a signed token, a secret in a path, a ?token= or a
phone number — checked on the atoms gunicorn really builds, through the logger class `relay web`
runs it with."""
from __future__ import annotations

import datetime
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from relay.cli.common import gunicorn_options
from relay.infra.access_log import RedactingLogger
from relay.infra.logs import mask, mask_text, redact_path
from relay.infra.signing import unsubscribe_token
from tests.console_helpers import LEE, csrf, give_password
from webhooks.app import create_app

SECRET_TOKEN = unsubscribe_token("s3cret", 12, "email")  # 12-email-<16 base32>


@pytest.mark.parametrize("value, masked", [
    ("jane.doe@example.org", "j***@example.org"), ("J@x.example", "J***@x.example"), ("@example.org", "***@example.org"),
    ("+821012345602", "+821…02"), ("+1234", "…"), ("", "…")])
def test_one_masking_helper_for_addresses_and_numbers(value, masked):
    assert mask(value) == masked


def test_free_text_is_masked_wherever_an_address_or_number_appears():
    text = mask_text("no member 'jane.doe@example.org'; also +821012345602, and case C12 on 2026-12-06")
    assert text == "no member 'j***@example.org'; also +821…02, and case C12 on 2026-12-06"


def test_a_refused_sign_in_logs_the_address_masked(network, caplog):
    give_password(network, LEE)
    client = create_app(services=network).test_client()
    caplog.set_level(logging.INFO)
    response = client.post("/signin", data={"email": LEE, "password": "wrong wrong wrong", "csrf_token": csrf(client)})
    assert response.status_code == 401
    refused = [r.getMessage() for r in caplog.records if "sign-in refused" in r.getMessage()]
    assert refused and "m***@example.org" in refused[0]
    assert LEE not in caplog.text


def test_an_inbound_sms_logs_the_number_masked(network, caplog):
    from tests.conftest import run_worker
    from tests.unit.inbound.test_mms import record_mms

    caplog.set_level(logging.INFO)
    record_mms(network, "C1 febrile again this morning", [], sender="+821012345602")
    run_worker(network)
    assert "+821012345602" not in caplog.text and "+821…02" in caplog.text


def test_api_refusals_log_no_address_from_the_path(network, caplog):
    client = create_app(services=network).test_client()
    caplog.set_level(logging.INFO)
    client.get("/api/v1/members/minho%40example.org", headers={"Authorization": "Bearer nope"})
    client.get("/api/v1/members/%2B821012345602", headers={"Authorization": "Bearer nope"})
    assert "minho@example.org" not in caplog.text and "821012345602" not in caplog.text
    assert "m***@example.org" in caplog.text


# ---------------------------------------------------------------- gunicorn's access log


def access_line(tmp_path, method: str, uri: str, headers: list[tuple[str, str]] = (), fmt: str | None = None) -> str:
    """One access-log line, written by the logger class `relay web` gives gunicorn, from the environ
    gunicorn's own parser builds for such a request."""
    from gunicorn.http.parser import RequestParser
    from gunicorn.http.wsgi import create

    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    if fmt:
        cfg.set("access_log_format", fmt)
    logger = RedactingLogger(cfg)
    raw = f"{method} {uri} HTTP/1.1\r\nHost: relay.example\r\nUser-Agent: TwilioProxy/1.1\r\n"
    raw += "".join(f"{name}: {value}\r\n" for name, value in headers) + "Content-Length: 0\r\n\r\n"
    request = next(RequestParser(cfg, iter([raw.encode()]), ("203.0.113.9", 55000)))
    sock = SimpleNamespace(family=2, send=lambda data: None)
    _, environ = create(request, sock, ("203.0.113.9", 55000), ("127.0.0.1", 8000), cfg)
    response = SimpleNamespace(status="200 OK", sent=17, headers=[("Content-Type", "text/html")])
    logger.access(response, request, environ, datetime.timedelta(milliseconds=3))
    for handler in logger.access_log.handlers:
        handler.flush()
    return (tmp_path / "access.log").read_text()


SECRET_URIS = [
    (f"/unsubscribe/{SECRET_TOKEN}", SECRET_TOKEN),
    (f"/preferences/{SECRET_TOKEN}?saved=1", SECRET_TOKEN),
    ("/digest/confirm/31-d1g3stc0nf1rmt0ken", "d1g3stc0nf1rmt0ken"),
    ("/p/eyJpZCI6MTJ9.ZxkT9Q.s1gnatur3Abc", "eyJpZCI6MTJ9"),
    ("/u/12-sms-abcdefgh2jklmnop", "abcdefgh2jklmnop"),
    ("/ack/12-3-abcdefghijklmnop", "abcdefghijklmnop"),  # issue 17: all letters, so only its parent tells
    ("/webhooks/twilio/voice/gather/12-3-abcdefghijklmnop", "abcdefghijklmnop"),
    ("/webhooks/email/sendgrid/hunter2-path-secret", "hunter2"),
    ("/signin?next=/preferences/12-email-abcdefgh2jklmnop", "abcdefgh2jklmnop"),
    ("/digest/subscribe?token=opaque&x=1", "opaque"),
    ("/api/v1/members/%2B821012345602", "821012345602"),
    ("/api/v1/members/+821012345602/channels", "821012345602"),
    ("/api/v1/members/minho%40example.org", "minho"),
    ("/library/cases/C1?ref=0123456789abcdef0123456789abcdef", "0123456789abcdef"),
]


@pytest.mark.parametrize("uri, secret", SECRET_URIS)
def test_the_access_log_never_records_a_token_a_secret_or_a_number(tmp_path, uri, secret):
    line = access_line(tmp_path, "GET", uri, headers=[("Referer", f"https://relay.example{uri}")])
    assert secret not in line
    assert "[redacted]" in line or "…" in line or "***@" in line
    assert '"GET /' in line and " 200 17 " in line and "203.0.113.9" in line  # still a useful line


def wsgi_access_line(method: str, uri: str, headers: list[tuple[str, str]] = ()) -> str:
    """One line of relay's own access log (`relay web --server granian`: webhooks/access_log.py), written
    by its WSGI middleware around an app that answers 200 with 17 bytes."""
    import logging

    from werkzeug.test import EnvironBuilder

    from webhooks.access_log import AccessLog

    lines: list[str] = []
    log = logging.getLogger(f"test.access.{id(lines)}")
    log.propagate, log.level = False, logging.INFO
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", "17")])
        return [b"x" * 17]

    environ = EnvironBuilder(path=uri, method=method, headers=[("User-Agent", "TwilioProxy/1.1"), *headers],
                             environ_base={"REMOTE_ADDR": "203.0.113.9"}).get_environ()
    body = AccessLog(app, log)(environ, lambda status, headers, exc_info=None: None)
    assert b"".join(body) == b"x" * 17
    return "\n".join(lines)


@pytest.mark.parametrize("uri, secret", SECRET_URIS)
def test_relays_own_access_log_never_records_a_token_a_secret_or_a_number(uri, secret):
    line = wsgi_access_line("GET", uri, headers=[("Referer", f"https://relay.example{uri}"),
                                                 ("Authorization", "Basic cG9zdG1hcms6aHVudGVyMg==")])
    assert secret not in line and "cG9zdG1hcms6aHVudGVyMg==" not in line
    assert "[redacted]" in line or "…" in line or "***@" in line
    assert '"GET /' in line and " 200 17 " in line and line.startswith("203.0.113.9 - [redacted] [")


def test_relays_own_access_log_reads_like_gunicorns(tmp_path):
    uri = "/library/guidelines/chest-pain-2024/v3?page=2"
    ours, theirs = wsgi_access_line("GET", uri), access_line(tmp_path, "GET", uri).strip()
    assert '"GET /library/guidelines/chest-pain-2024/v3?page=2 HTTP/1.1" 200 17 "-" "TwilioProxy/1.1"' in ours
    assert ours.split("]", 1)[1] == theirs.split("]", 1)[1]  # the same line but for the time


def test_routes_ids_and_slugs_stay_readable(tmp_path):
    line = access_line(tmp_path, "GET", "/library/guidelines/chest-pain-2024/v3?page=2")
    assert '"GET /library/guidelines/chest-pain-2024/v3?page=2 HTTP/1.1" 200' in line
    line = access_line(tmp_path, "POST", "/webhooks/twilio/sms")
    assert '"POST /webhooks/twilio/sms HTTP/1.1" 200' in line


def test_credentials_are_redacted_whatever_the_format(tmp_path):
    fmt = '%(u)s %(U)s %(q)s {authorization}i {x-twilio-signature}i {cookie}i {raw_uri}e {query_string}e'
    line = access_line(tmp_path, "POST", f"/unsubscribe/{SECRET_TOKEN}?token=abc",
                       headers=[("Authorization", "Basic cG9zdG1hcms6aHVudGVyMg=="),
                                ("X-Twilio-Signature", "sigsigsig"), ("Cookie", "session=abc.def")], fmt=fmt)
    for secret in (SECRET_TOKEN, "cG9zdG1hcms6aHVudGVyMg==", "postmark", "sigsigsig", "session=abc", "token=abc"):
        assert secret not in line, (secret, line)


def test_relay_web_runs_gunicorn_with_the_redacting_logger():
    options = gunicorn_options(3, 1)
    cfg = Config()
    cfg.set("logger_class", options[options.index("--logger-class") + 1])
    assert cfg.logger_class is RedactingLogger


def test_paths_in_relays_own_log_lines_are_redacted_too():
    assert redact_path(f"/unsubscribe/{SECRET_TOKEN}") == "/unsubscribe/[redacted]"
