"""Outbound email through a real SMTP server (aiosmtpd on loopback): list-grade headers, the case
thread's In-Reply-To/References chain, one SMTP session for many messages, 4xx/5xx handling."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from relay.infra.db import transaction
from relay.infra.dispatch import RecordingDispatcher
from relay.infra.signing import post_of_message_id, read_reply_token, read_signed_id, read_unsubscribe_token
from relay.library.cases import create_case
from relay.members.directory import import_members
from relay.model.tables import Delivery
from relay.notices.lifecycle import new_case_notice
from relay.providers.smtp_email import SmtpEmailSender, parse_smtp_url
from relay.render.mail import compose
from relay.services import build_services
from tests.conftest import DEMO_CSV, RecordingSender, make_settings, run_worker
from tests.helpers import deliveries, record_sms
from tests.standins.smtp_sink import SmtpSink

LEE = "+821012345602"


@pytest.fixture
def smtp_sink():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def mail_services(tmp_path, database_url, smtp_sink):
    settings = make_settings(tmp_path / "var", database_url, smtp_url=smtp_sink.url,
                             mail_from="cases@relay.example.org", mail_domain="relay.example.org",
                             secret_key="test-secret", network_name="KSTR")
    services = build_services(settings, dispatcher=RecordingDispatcher(), senders={
        "sms": RecordingSender(), "email": SmtpEmailSender(settings)})
    with transaction(services.sessions) as session:
        import_members(session, DEMO_CSV)
        create_case(session, "Fever and <b>ground-glass</b> opacities")
    yield services
    services.sender("email").close()
    services.dispose()


def by_recipient(sink: SmtpSink) -> dict[str, list]:
    found: dict[str, list] = {}
    for received in sink.received:
        found.setdefault(received.rcpt_tos[0], []).append(received.message)
    return found


def test_smtp_urls():
    target = parse_smtp_url("smtp://user%40x:p%3Ass@mail.example.org:587?starttls=1")
    assert (target.hostname, target.port, target.username, target.password, target.start_tls) == \
        ("mail.example.org", 587, "user@x", "p:ss", True)
    assert parse_smtp_url("smtps://mail.example.org").port == 465
    with pytest.raises(ValueError, match="RELAY_SMTP_URL"):
        parse_smtp_url("http://mail.example.org")


def test_notice_and_reply_are_threaded_list_mail(mail_services, smtp_sink):
    settings = mail_services.settings
    new_case_notice(mail_services, "C1", ["tft"])
    run_worker(mail_services)
    record_sms(mail_services, LEE, "C1 looks like <script>alert(1)</script> organising pneumonia")
    run_worker(mail_services)

    mail = by_recipient(smtp_sink)
    assert sorted(mail) == sorted(["jiwon@example.org", "minho@example.org", "seoyeon@example.org",
                                   "alice@example.org", "ben@example.org"])
    assert len(mail["minho@example.org"]) == 1  # the author gets the notice, not his own reply
    notice, reply = mail["alice@example.org"]

    # The notice: a stable Message-ID per post, list headers, marked automatic.
    assert notice["Subject"] == "[C1] Fever and <b>ground-glass</b> opacities"
    notice_id = notice["Message-ID"].strip("<>")
    assert post_of_message_id(settings.secret(), notice_id) is not None
    assert notice["In-Reply-To"] is None and notice["Auto-Submitted"] == "auto-generated"
    assert {m["Message-ID"] for ms in mail.values() for m in ms[:1]} == {notice["Message-ID"]}

    # The reply: threaded under the notice, from the author "via" the network, a reply address of her own.
    assert reply["Subject"] == "Re: [C1] Fever and <b>ground-glass</b> opacities"
    assert reply["In-Reply-To"] == f"<{notice_id}>"
    assert reply["References"] == f"<{notice_id}>"
    assert reply["From"] == "Lee Minho via KSTR <cases@relay.example.org>"
    assert reply["Auto-Submitted"] is None
    reply_to = reply["Reply-To"].addresses[0].addr_spec
    local, domain = reply_to.split("@")
    assert domain == "relay.example.org" and local.startswith("reply+")
    token = read_reply_token(settings.secret(), local.split("+", 1)[1])
    alice_id = next(d.member_id for d in deliveries(mail_services) if d.to_address == "alice@example.org")
    assert token is not None and token.member_id == alice_id
    assert reply["List-Id"] == "KSTR cases <cases.relay.example.org>"
    https, mailto = [u.strip(" <>") for u in reply["List-Unsubscribe"].split(",")]
    assert https.startswith("https://relay.example.org/unsubscribe/") and mailto.startswith("mailto:unsubscribe+")
    assert read_unsubscribe_token(settings.secret(), https.rsplit("/", 1)[1]) == (alice_id, "email")
    assert reply["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert reply["Archived-At"] == "<https://relay.example.org/library/cases/C1>"
    assert reply["X-Relay-Loop"] == "relay.example.org"

    # Text and HTML parts; the HTML escapes what members wrote.
    text = reply.get_body(("plain",)).get_content()
    html = reply.get_body(("html",)).get_content()
    assert "Lee Minho wrote on C1" in text and "<script>alert(1)</script>" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html

    # The envelope sender is ours (a VERP address per delivery: test_every_email_carries_its_own_verp_...);
    # the same post always composes to the same Message-ID.
    assert {r.mail_from.rpartition("@")[2] for r in smtp_sink.received} == {"relay.example.org"}
    with mail_services.sessions() as session:
        delivery = session.scalars(select(Delivery).where(Delivery.channel == "email",
                                                          Delivery.purpose == "relay")).first()
        assert compose(session, settings, delivery)["Message-ID"] == compose(session, settings, delivery)["Message-ID"]


def test_every_email_carries_its_own_verp_envelope_sender(mail_services, smtp_sink):
    """Issue 13: bounces come back to bounce+<signed delivery token>@RELAY_MAIL_DOMAIN, and the message
    carries the same token, so a report can be believed for exactly that delivery's recipient."""
    from relay.providers.verp import DELIVERY_HEADER, bounce_address, bounce_token

    new_case_notice(mail_services, "C1", ["tft"])
    run_worker(mail_services)
    record_sms(mail_services, LEE, "Agree, organising pneumonia")
    run_worker(mail_services)
    settings = mail_services.settings
    sent = {(d.to_address, d.id) for d in deliveries(mail_services) if d.channel == "email"}
    assert len(smtp_sink.received) == len(sent) == 9
    seen = set()
    for received in smtp_sink.received:
        local, _, domain = received.mail_from.partition("@")
        assert domain == "relay.example.org" and local.startswith("bounce+")
        delivery_id = read_signed_id(settings.secret(), "bounce", local.split("+", 1)[1])
        assert received.mail_from == bounce_address(settings, delivery_id)
        assert received.message[DELIVERY_HEADER] == bounce_token(settings.secret(), delivery_id)
        seen.add((received.rcpt_tos[0], delivery_id))
    assert seen == sent  # one address per delivery, each for its own recipient


def test_references_carry_the_whole_thread(mail_services, smtp_sink):
    new_case_notice(mail_services, "C1", ["tft"])
    record_sms(mail_services, LEE, "C1 first")
    record_sms(mail_services, "+821012345603", "C1 second")
    run_worker(mail_services)
    alice = by_recipient(smtp_sink)["alice@example.org"]
    ids = [m["Message-ID"] for m in alice]
    assert len(ids) == 3
    assert alice[2]["References"] == f"{ids[0]} {ids[1]}"
    assert alice[2]["In-Reply-To"] == ids[1]


def test_one_smtp_session_carries_many_messages(mail_services, smtp_sink):
    new_case_notice(mail_services, "C1", ["tft"])
    record_sms(mail_services, LEE, "C1 first")
    run_worker(mail_services)
    assert len(smtp_sink.received) == 5 + 4
    assert smtp_sink.sessions == 1
    assert {r.session for r in smtp_sink.received} == {1}


def test_smtp_4xx_retries_and_5xx_fails_with_the_reply(mail_services, smtp_sink):
    smtp_sink.refuse["alice@example.org"] = "451 4.3.0 Mailbox busy, try later"
    smtp_sink.refuse["ben@example.org"] = "550 5.1.1 No such user here"
    new_case_notice(mail_services, "C1", ["tft"])
    run_worker(mail_services)
    rows = {d.to_address: d for d in deliveries(mail_services, channel="email")}
    assert rows["alice@example.org"].status == "queued" and rows["alice@example.org"].error_code == "451"
    assert rows["ben@example.org"].status == "failed" and rows["ben@example.org"].error_code == "550"
    assert "5.1.1 No such user here" in rows["ben@example.org"].error_message
    assert rows["jiwon@example.org"].status == "accepted"
    assert len(smtp_sink.received) == 3


def test_members_receive_a_case_by_the_channels_they_chose(services, sms, mail):
    csv = DEMO_CSV.replace("name,phone,email,timezone,language,lists,roles",
                           "name,phone,email,timezone,language,lists,roles,channels")
    lines = csv.strip().splitlines()
    lines[1] += ",sms"          # Kim: SMS only
    lines[2] += ",email"        # Lee: email only
    lines[3] += ",sms;email"    # Park: both
    lines[4] += ","             # Alice: default, every channel she has an address for
    lines[5] += ",email"        # Ben
    with transaction(services.sessions) as session:
        report = import_members(session, "\n".join(lines) + "\n")
        assert not report.errors, report.errors
        create_case(session, "A case")
    new_case_notice(services, "C1", ["tft"])
    run_worker(services)
    assert sorted(m.to for m in sms.sent) == sorted(["+821012345601", "+821012345603", "+33612345604"])
    assert sorted(m.to for m in mail.sent) == sorted(["minho@example.org", "seoyeon@example.org",
                                                      "alice@example.org", "ben@example.org"])


def test_list_unsubscribe_is_never_encoded_even_for_long_urls(tmp_path, database_url, smtp_sink):
    settings = make_settings(tmp_path / "var", database_url, smtp_url=smtp_sink.url,
                             public_base_url="https://relay.thoracic-network-of-a-long-name.example.org",
                             mail_domain="relay.thoracic-network-of-a-long-name.example.org", secret_key="k")
    services = build_services(settings, dispatcher=RecordingDispatcher(),
                              senders={"sms": RecordingSender(), "email": SmtpEmailSender(settings)})
    with transaction(services.sessions) as session:
        import_members(session, DEMO_CSV)
        create_case(session, "A case")
    new_case_notice(services, "C1", ["tft"])
    run_worker(services)
    services.sender("email").close()
    raw = smtp_sink.received[0].data.decode()
    header = raw.split("List-Unsubscribe:", 1)[1].split("\r\nList-Unsubscribe-Post", 1)[0]
    assert "=?" not in header
    urls = [u.strip(" <>\r\n") for u in header.split(",")]
    assert urls[0].startswith("https://relay.thoracic-network-of-a-long-name.example.org/unsubscribe/")
    assert urls[1].startswith("mailto:unsubscribe+")
    services.dispose()
