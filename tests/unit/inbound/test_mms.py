"""MMS pictures: a member's reply with MediaUrlN files each picture under the case, fetched over
real HTTP from the Twilio stand-in with basic auth, retried with backoff, a final failure shown on
the case page; only Twilio's API is ever fetched from (SSRF guard); nothing is filed twice."""
from __future__ import annotations

import functools
import http.server
import io
import shutil
import socket
import ssl
import subprocess
import threading
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from PIL import Image
from sqlalchemy import func, select

from relay.inbound import mms as mms_media
from relay.inbound.mms import backoff, fetch_case_image, redirect_refusal
from relay.inbound.record import record_inbound
from relay.inbound.sms import process_inbound
from relay.infra.db import transaction
from relay.infra.dispatch import dispatch_safely
from relay.library.media_store import media_store_for
from relay.model.tables import CaseImage, Post
from relay.sweeper import MEDIA_STALE_AFTER, sweep
from tests.conftest import ACCOUNT_SID, make_settings, run_worker
from tests.helpers import post_signed, sms_form
from tests.unit.library.test_images import GPS_IFD, photo
from webhooks.app import create_app

LEE = "+821012345602"


@pytest.fixture
def settings(tmp_path, database_url, twilio_standin):
    return make_settings(tmp_path / "var", database_url, twilio_api_url=twilio_standin.url,
                         twilio_account_sid=ACCOUNT_SID, media_fetch_attempts=3)


def record_mms(services, body: str, urls: list[str], sender: str = LEE, sid: str | None = None) -> int:
    extra = {"NumMedia": str(len(urls))}
    for index, url in enumerate(urls):
        extra[f"MediaUrl{index}"] = url
        extra[f"MediaContentType{index}"] = "image/jpeg"
    form = sms_form(sender, body, sid=sid, **extra)
    with transaction(services.sessions) as session:
        recorded = record_inbound(session, provider="twilio", kind="sms", dedupe_key=form["MessageSid"],
                                  raw=urlencode(form), sender=sender)
    dispatch_safely(services.dispatcher.process_inbound, recorded.event_id)
    return recorded.event_id


def fetch_all(services) -> list:
    """What the fetch_media task does, once per queued image (no retries)."""
    results = []
    while services.dispatcher.media:
        results.append(fetch_case_image(services, services.dispatcher.media.pop(0)))
    return results


def images(services) -> list[CaseImage]:
    with services.sessions() as session:
        return list(session.scalars(select(CaseImage).order_by(CaseImage.id)))


def test_mms_pictures_are_fetched_with_credentials_and_filed_clean(network, twilio_standin):
    from tests.conftest import AUTH_TOKEN

    twilio_standin.media_auth = (ACCOUNT_SID, AUTH_TOKEN)
    urls = [twilio_standin.add_media(ACCOUNT_SID, photo()), twilio_standin.add_media(ACCOUNT_SID, photo("PNG"))]
    record_mms(network, "C1 see the CT", urls)
    run_worker(network)
    assert len(network.dispatcher.media) == 2
    assert [r.status for r in fetch_all(network)] == ["stored", "stored"]
    assert [a for _, a, _ in twilio_standin.media_requests] == [(ACCOUNT_SID, AUTH_TOKEN)] * 2
    rows = images(network)
    with network.sessions() as session:
        post = session.scalar(select(Post).where(Post.channel == "sms"))
    assert [(r.source, r.status, r.post_id) for r in rows] == [("mms", "stored", post.id)] * 2
    stored = Image.open(io.BytesIO(media_store_for(network.settings).get(rows[0].stored_name)))
    assert stored.getexif().get_ifd(GPS_IFD) == {} and dict(stored.getexif()) == {}
    page = create_app(services=network).test_client().get("/library/cases/C1").get_data(as_text=True)
    assert f"/library/cases/C1/images/{rows[0].id}/thumb" in page and f"/images/{rows[1].id}/thumb" in page


def test_a_held_mms_keeps_its_pictures_unfetched_until_its_author_sends_it(network, twilio_standin, sms):
    """Issue 16 with MMS: the guard holds a reply naming a patient; its picture is neither fetched nor filed
    while held (it reaches nobody), and SEND <code> posts the text and files and fetches the picture too."""
    import re

    record_mms(network, "C1 pt RRN 550315-1234567, see the CT", [twilio_standin.add_media(ACCOUNT_SID, photo())])
    run_worker(network)
    assert images(network) == [] and network.dispatcher.media == []  # held: nothing fetched
    code = re.search(r"SEND ([A-Z0-9]{6})", sms.sent[-1].body).group(1)
    record_mms(network, f"SEND {code}", [])
    run_worker(network)
    with network.sessions() as session:
        post = session.scalar(select(Post).where(Post.channel == "sms"))
    assert post is not None and post.body.endswith("see the CT")
    assert [(r.source, r.status, r.post_id) for r in images(network)] == [("mms", "pending", post.id)]
    assert [r.status for r in fetch_all(network)] == ["stored"]


def test_a_coordinator_releasing_a_held_mms_files_and_fetches_its_picture(network, twilio_standin):
    from relay.discussion import holding
    from relay.infra import audit
    from relay.model.tables import HeldMessage

    record_mms(network, "C1 pt RRN 550315-1234567, see the CT", [twilio_standin.add_media(ACCOUNT_SID, photo())])
    run_worker(network)
    with network.sessions() as session:
        held_id = session.scalar(select(HeldMessage.id))
    decision = holding.decide_as_coordinator(network, held_id, "send", audit.SYSTEM, frozenset({"coordinator"}))
    assert decision.outcome == "guard:released" and network.dispatcher.media == decision.images
    assert [r.status for r in fetch_all(network)] == ["stored"]


def test_a_picture_without_text_is_still_a_post(network, twilio_standin):
    record_mms(network, "C1", [twilio_standin.add_media(ACCOUNT_SID, photo())])
    run_worker(network)
    with network.sessions() as session:
        assert session.scalar(select(Post.body).where(Post.channel == "sms")) == "[1 image]"
    assert [r.status for r in fetch_all(network)] == ["stored"]


def test_failures_are_retried_with_backoff_then_stored(network, twilio_standin):
    record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, photo(), fail_times=2)])
    run_worker(network)
    image_id = network.dispatcher.media[0]
    first, second, third = (fetch_case_image(network, image_id) for _ in range(3))
    assert (first.status, first.retry_in) == ("retry", backoff(1)) == ("retry", 10.0)
    assert (second.status, second.retry_in) == ("retry", 20.0)
    assert third.status == "stored"
    assert [s for _, _, s in twilio_standin.media_requests] == [500, 500, 200]
    assert images(network)[0].attempts == 3


def test_a_final_failure_is_recorded_and_shown(network, twilio_standin):
    record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, photo(), fail_times=99)])
    run_worker(network)
    image_id = network.dispatcher.media[0]
    results = [fetch_case_image(network, image_id) for _ in range(4)]
    assert [r.status for r in results] == ["retry", "retry", "failed", "skipped"]
    assert len(twilio_standin.media_requests) == 3  # the attempts setting, no more
    row = images(network)[0]
    assert row.status == "failed" and "HTTP 500" in row.error and "after 3 attempts" in row.error
    page = create_app(services=network).test_client().get("/library/cases/C1").get_data(as_text=True)
    assert "Image could not be fetched" in page and "HTTP 500" in page


def test_a_404_is_not_retried(network, twilio_standin):
    record_mms(network, "C1 look", [twilio_standin.url + f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME1"])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["failed"]
    assert "HTTP 404" in images(network)[0].error


def test_wrong_credentials_fail_without_retrying(network, twilio_standin):
    twilio_standin.media_auth = (ACCOUNT_SID, "another-token")
    record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, photo())])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["failed"]
    assert "HTTP 401" in images(network)[0].error


@pytest.mark.parametrize("url, reason", [
    ("http://169.254.169.254/latest/meta-data/iam", "fetched only from"),
    ("http://127.0.0.1:1/2010-04-01/Accounts/{sid}/Messages/MM1/Media/ME1", "fetched only from"),
    ("file:///etc/passwd", "fetched only from"),
    ("{base}/2010-04-01/Accounts/AC{other}/Messages/MM1/Media/ME1", "not under"),
    ("{base}/admin", "not under"),
])
def test_only_twilios_api_is_fetched_from(network, twilio_standin, url, reason):
    url = url.format(sid=ACCOUNT_SID, base=twilio_standin.url, other="9" * 32)
    record_mms(network, "C1 look", [url])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["failed"]
    row = images(network)[0]
    assert reason in row.error and row.source_url == url
    assert twilio_standin.media_requests == []


def test_api_twilio_com_urls_go_to_the_configured_api(network, twilio_standin):
    url = twilio_standin.add_media(ACCOUNT_SID, photo())
    record_mms(network, "C1 look", ["https://api.twilio.com" + url[len(twilio_standin.url):]])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["stored"]


def test_processing_twice_or_resending_files_nothing_twice(network, twilio_standin):
    url = twilio_standin.add_media(ACCOUNT_SID, photo())
    event_id = record_mms(network, "C1 look", [url])
    run_worker(network)
    process_inbound(network, event_id)  # a redelivered task
    assert len(network.dispatcher.media) == 1
    image_id = network.dispatcher.media[0]
    assert [r.status for r in fetch_all(network)] == ["stored"]
    assert fetch_case_image(network, image_id).status == "skipped"  # the task run again
    record_mms(network, "C1 the same picture again", [twilio_standin.add_media(ACCOUNT_SID, photo())])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["duplicate"]
    with network.sessions() as session:
        assert session.scalar(select(func.count(CaseImage.id)).where(CaseImage.status == "stored")) == 1


def test_a_picture_that_is_not_an_image_is_recorded_as_failed(network, twilio_standin):
    record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, b"%PDF-1.4 not a picture",
                                                               content_type="image/jpeg")])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["failed"]
    assert "not an image" in images(network)[0].error


def test_the_sweeper_requeues_a_lost_fetch(network, twilio_standin):
    from datetime import timedelta

    from relay.model.tables import utcnow

    event_id = record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, photo())])
    network.dispatcher.inbound.clear()
    network.dispatcher.fail = True  # the broker is down when processing dispatches the fetch
    process_inbound(network, event_id)
    network.dispatcher.fail = False
    assert network.dispatcher.media == [] and images(network)[0].status == "pending"
    with transaction(network.sessions) as session:
        for row in session.scalars(select(CaseImage)):
            row.updated_at = utcnow() - MEDIA_STALE_AFTER - timedelta(minutes=1)
    assert sweep(network).media == 1
    assert [r.status for r in fetch_all(network)] == ["stored"]


def test_through_the_signed_webhook(network, twilio_standin):
    client = create_app(services=network).test_client()
    form = sms_form(LEE, "C1 from my phone", NumMedia="1", MediaUrl0=twilio_standin.add_media(ACCOUNT_SID, photo()),
                    MediaContentType0="image/jpeg")
    assert post_signed(client, "/webhooks/twilio/sms", form).status_code == 200
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["stored"]


def test_redirects_within_the_api_are_followed_with_credentials(network, twilio_standin):
    from tests.conftest import AUTH_TOKEN

    twilio_standin.media_auth = (ACCOUNT_SID, AUTH_TOKEN)
    target = twilio_standin.add_media(ACCOUNT_SID, photo())
    record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, b"", redirect_to=target)])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["stored"]
    assert [s for _, _, s in twilio_standin.media_requests] == [307, 200]


@pytest.mark.parametrize("location", [
    "http://127.0.0.1:9/secret", "http://169.254.169.254/latest/meta-data", "https://10.0.0.1/x",
    "https://localhost/x", "file:///etc/passwd",
    # issue 13: addresses in every spelling the resolver accepts, IPv6 loopback and mapped forms
    "https://127.1/x", "https://2130706433/x", "https://0x7f.1/x", "https://0177.0.0.1/x", "https://0x7f000001/x",
    "https://[::1]/x", "https://[::ffff:127.0.0.1]/x", "https://0.0.0.0/x", "https://[::]/x",
    "https://224.0.0.1/x", "https://169.254.169.254/latest/meta-data", "https://localhost./x",
    "https://media.localhost/x"])
def test_redirects_to_internal_or_plain_http_addresses_are_refused(network, twilio_standin, location):
    record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, b"", redirect_to=location)])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["failed"]
    assert "refused a redirect" in images(network)[0].error
    assert len(twilio_standin.media_requests) == 1  # the redirect was not followed, nor retried


def _resolving(monkeypatch, names: dict[str, list[str]]) -> None:
    """DNS as the attacker sets it up: these names answer these addresses (the rest as usual)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (a, port) if ":" not in a else (a, port, 0, 0)) for a in names[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["10.1.2.3"], ["93.184.216.34", "192.168.0.10"],
                                       ["::1"], ["::ffff:127.0.0.1"], ["fe80::1"], ["100.64.0.1"]])
def test_a_public_looking_name_that_resolves_inward_is_refused(network, twilio_standin, monkeypatch, addresses):
    _resolving(monkeypatch, {"media.example.com": addresses})
    location = f"https://media.example.com:{twilio_standin.url.rsplit(':', 1)[1]}/x"
    record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, b"", redirect_to=location)])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["failed"]
    assert "non-public address" in images(network)[0].error
    assert len(twilio_standin.media_requests) == 1


def test_a_name_that_resolves_to_public_addresses_only_may_be_followed(monkeypatch):
    _resolving(monkeypatch, {"media.twiliocdn.example": ["93.184.216.34", "2606:2800:220:1::1"]})
    assert redirect_refusal("https://media.twiliocdn.example/ME1") is None
    assert "does not resolve" in redirect_refusal("https://no-such-host.invalid/x")


@pytest.fixture
def tls_media(tmp_path):
    """An https media host on loopback with a certificate for media.example.test from a CA of its own;
    it records the SNI, Host and path of each request it answers."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make the test certificates")
    ca, key, csr, cert, leaf_key = (str(tmp_path / n) for n in ("ca.pem", "ca.key", "leaf.csr", "leaf.pem", "leaf.key"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run(["openssl", "req", "-x509", *ec, "-keyout", key, "-out", ca, "-days", "2", "-subj", "/CN=relay test CA"])
    run(["openssl", "req", *ec, "-keyout", leaf_key, "-out", csr, "-subj", "/CN=media.example.test"])
    (tmp_path / "san.ext").write_text("subjectAltName=DNS:media.example.test\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", str(tmp_path / "san.ext")])
    seen, names = [], []
    body = photo()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((names[-1] if names else None, self.headers.get("Host"), self.path))
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, leaf_key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(port=server.server_address[1], ca=ca, seen=seen)
    server.shutdown()
    server.server_close()


def _rebinding(monkeypatch, name: str) -> list[str]:
    """DNS under the attacker's control: the first answer for name is the media host (standing in for
    a public address here), every later one an internal address (127.0.0.2, where nothing listens)."""
    real, calls = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        if host == name:
            calls.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1" if len(calls) == 1 else "127.0.0.2", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(mms_media, "_public", lambda address: address == "127.0.0.1")  # this test's internet
    return calls


def test_a_redirect_off_the_api_connects_to_the_address_that_was_checked(network, twilio_standin, tls_media,
                                                                          monkeypatch):
    calls = _rebinding(monkeypatch, "media.example.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_media.ca)
    location = f"https://media.example.test:{tls_media.port}/ME1"
    record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, b"", redirect_to=location)])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["stored"]
    assert calls == ["media.example.test"]  # resolved once, by the guard: a second answer is never used
    assert tls_media.seen == [("media.example.test", f"media.example.test:{tls_media.port}", "/ME1")]  # SNI, Host


def test_the_pinned_connection_still_verifies_the_certificate_for_the_name(network, twilio_standin, tls_media,
                                                                          monkeypatch):
    _rebinding(monkeypatch, "other.example.test")  # the same server, whose certificate is not for this name
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_media.ca)
    location = f"https://other.example.test:{tls_media.port}/ME1"
    record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, b"", redirect_to=location)])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["retry"]
    assert tls_media.seen == [] and images(network)[0].status == "pending"


def test_media_larger_than_the_limit_is_not_downloaded_whole(network, twilio_standin):
    network.settings = network.settings.replace(max_image_bytes=4096)
    big = photo(size=(2000, 2000), color=(5, 5, 5)) + b"\0" * 200_000
    record_mms(network, "C1 look", [twilio_standin.add_media(ACCOUNT_SID, big)])
    run_worker(network)
    assert [r.status for r in fetch_all(network)] == ["failed"]
    assert "larger than 4,096 bytes" in images(network)[0].error


def test_the_author_is_told_by_sms_when_a_picture_of_their_mms_is_held(network, twilio_standin, sms):
    """Issue 16: an MMS picture whose pixels seem to name a patient is held for the coordinators when it is
    fetched; its author is told by one SMS, in their language, with the kind found and never the value."""
    import os

    from relay.guard import ocr
    from tests.unit.guard.test_ocr import radiograph

    if not ocr.available() and os.environ.get("CI") != "true":
        pytest.skip("tesseract-ocr is not installed (.ci/run installs it)")
    record_mms(network, "C1 see the CXR", [twilio_standin.add_media(ACCOUNT_SID, radiograph(["PATIENT ID 12345678"]))])
    run_worker(network)
    sms.sent.clear()
    assert [r.status for r in fetch_all(network)] == ["held"]
    run_worker(network)
    told = [m.body for m in sms.sent if m.to == LEE]
    assert len(told) == 1 and "C1" in told[0] and "12345678" not in told[0], told
    assert "a record or chart number" in told[0]  # the kind, by name, in Lee's language (English)
    [image] = images(network)
    assert fetch_case_image(network, image.id).status == "skipped"  # fetched again: nothing, nobody told again
    run_worker(network)
    assert len([m for m in sms.sent if m.to == LEE]) == 1
