"""Bounce and complaint parsing (relay.inbound.bounces) over the samples in tests/data/bounces/.

Each sample is read three ways: as raw MIME bytes, as an InboundEmail the way a provider adapter
hands it over (headers, decoded text, the other parts as attachments), and as an InboundEmail with
the text only (an adapter that dropped the attachments)."""
from __future__ import annotations

import base64
import email
from email.message import Message
from email.utils import getaddresses, parseaddr
from types import SimpleNamespace

import pytest

from relay.inbound.bounces import (
    FLUFL_DIAGNOSTIC,
    FLUFL_LOST_REPORT_DIAGNOSTIC,
    BounceReport,
    parse_report,
    rebuild_mime,
    recipient_from_verp,
    verp_address,
)
from relay.model.messages import Attachment, InboundEmail
from relay.rules.automatic import automatic_reason, envelope_is_null, is_bounce
from tests import paths

DATA = paths.DATA
BOUNCES = paths.DATA / "bounces"
AUTOREPLIES = paths.DATA / "autoreplies"


def inbound_from_eml(data: bytes, *, attachments: bool = True) -> InboundEmail:
    """An InboundEmail as an inbound provider would deliver this message: every header, the first
    text/plain and text/html parts decoded, the other leaf parts (report fields, returned message)
    as attachments with their raw content."""
    msg = email.message_from_bytes(data)
    return_path = msg.get("Return-Path")
    if return_path is not None and envelope_is_null(str(return_path)):
        envelope = ""
    else:
        envelope = parseaddr(str(return_path or msg.get("From", "")))[1].lower()
    text, html, kept = "", "", []

    def visit(part: Message) -> None:
        nonlocal text, html
        content_type = part.get_content_type()
        if part.get_content_maintype() == "multipart":
            for sub in part.get_payload():
                visit(sub)
        elif content_type == "text/plain" and not text:
            text = _decoded(part)
        elif content_type == "text/html" and not html:
            html = _decoded(part)
        else:
            raw = part.as_bytes()
            body = raw.split(b"\n\n", 1)[1] if b"\n\n" in raw else b""
            kept.append(Attachment(part.get_filename() or "", content_type, body))

    visit(msg)
    recipients = tuple(a.lower() for _n, a in getaddresses(msg.get_all("To", []) + msg.get_all("Cc", [])) if a)
    from_name, from_address = parseaddr(str(msg.get("From", "")))
    return InboundEmail(
        provider="test", provider_message_id="", message_id=str(msg.get("Message-ID", "")).strip("<> "),
        envelope_from=envelope, from_address=from_address.lower(), from_name=from_name,
        recipients=recipients, mailbox_hash="", subject=str(msg.get("Subject", "")), text=text, html=html,
        headers=tuple((k, str(v)) for k, v in msg.items()), attachments=tuple(kept) if attachments else ())


def _decoded(part: Message) -> str:
    data = part.get_payload(decode=True) or b""
    return data.decode(part.get_content_charset() or "utf-8", "replace")


def read(name: str) -> bytes:
    return (BOUNCES / name).read_bytes()


def summary(reports: list[BounceReport]) -> list[tuple[str, str, str, str]]:
    return [(r.recipient, r.kind, r.status, r.action) for r in reports]


# (sample, [(recipient, kind, status, action)]) -- exactly what parse_report must find.
CASES = [
    # Original-Recipient (what we sent to) wins over the aliased Final-Recipient.
    ("postfix_user_unknown.eml", [("kim@example.org", "hard", "5.1.1", "failed")]),
    # Exim's DSN says 5.0.0 whatever the remote said.
    ("exim_user_unknown.eml", [("ana.ruiz@example.net", "hard", "5.0.0", "failed")]),
    ("gmail_nosuchuser.eml", [("j.okafor@clinic.example.com", "hard", "5.1.1", "failed")]),
    # Microsoft 365: a two-digit detail code.
    ("m365_recipient_not_found.eml", [("p.novak@hospital.example.net", "hard", "5.1.10", "failed")]),
    ("postfix_delayed.eml", [("r.haddad@slowhost.example", "delayed", "4.4.1", "delayed")]),
    # Gave up after the queue lifetime: failed with a 4.x.x status is a soft bounce.
    ("postfix_expired_soft.eml", [("r.haddad@slowhost.example", "soft", "4.4.1", "failed")]),
    # One failed, one delivered, one relayed: only the failure; address lowercased.
    ("sendmail_multi_recipient.eml", [("louisa.marsh@example.com", "hard", "5.1.1", "failed")]),
    ("yahoo_arf_abuse.eml", [("m.osei@yahoo.example", "complaint", "", "abuse")]),
    # No Original-Rcpt-To: the reported message's To.
    ("arf_abuse_original_to.eml", [("leah.stein@mail.example.net", "complaint", "", "abuse")]),
    # No RFC 3464 part at all: flufl.bounce's qmail (QSBMF) detector.
    ("qmail_no_mailbox.eml", [("t.baker@oldhost.example", "hard", "", "")]),
    # No RFC 3464 part: flufl.bounce's warning detector, a temporary failure -> soft.
    ("googlemail_delay_legacy.eml", [("s.ito@farhost.example", "soft", "", "")]),
]
NAMES = [name for name, _ in CASES]


def test_every_sample_is_in_the_table():
    assert sorted(p.name for p in BOUNCES.glob("*.eml")) == sorted(NAMES)


@pytest.mark.parametrize("name,expected", CASES, ids=NAMES)
def test_raw_mime(name, expected):
    assert summary(parse_report(read(name))) == expected


@pytest.mark.parametrize("name,expected", CASES, ids=NAMES)
def test_raw_mime_as_str_and_message(name, expected):
    assert summary(parse_report(read(name).decode("utf-8"))) == expected
    assert summary(parse_report(email.message_from_bytes(read(name)))) == expected


@pytest.mark.parametrize("name,expected", CASES, ids=NAMES)
def test_inbound_email_with_attachments(name, expected):
    assert summary(parse_report(inbound_from_eml(read(name)))) == expected


# With the report parts gone only flufl.bounce's heuristics are left: what they still find. A
# message that says it is a delivery-status report but lost that part only gets soft bounces: flufl
# reads Postfix's delay warning text as a permanent failure.
TEXT_ONLY = {
    "exim_user_unknown.eml": [("ana.ruiz@example.net", "soft", "", "")],  # X-Failed-Recipients
    "gmail_nosuchuser.eml": [("j.okafor@clinic.example.com", "soft", "", "")],  # X-Failed-Recipients
    "postfix_delayed.eml": [("r.haddad@slowhost.example", "soft", "", "")],  # flufl: "permanent"!
    "sendmail_multi_recipient.eml": [("louisa.marsh@example.com", "soft", "", "")],  # "permanent fatal errors"
    # not reports to begin with: text is all there ever was
    "qmail_no_mailbox.eml": [("t.baker@oldhost.example", "hard", "", "")],
    "googlemail_delay_legacy.eml": [("s.ito@farhost.example", "soft", "", "")],
}


@pytest.mark.parametrize("name", NAMES)
def test_inbound_email_text_only_falls_back_to_flufl(name):
    reports = parse_report(inbound_from_eml(read(name), attachments=False))
    assert summary(reports) == TEXT_ONLY.get(name, [])
    lost = email.message_from_bytes(read(name)).get_content_type() == "multipart/report"
    assert all(r.diagnostic == (FLUFL_LOST_REPORT_DIAGNOSTIC if lost else FLUFL_DIAGNOSTIC) for r in reports)


def test_flufl_alone_reads_the_postfix_delay_warning_text_as_permanent():
    """Why a report without its delivery-status part only gets soft bounces (see TEXT_ONLY)."""
    from flufl.bounce import all_failures

    text_only = email.message_from_bytes(rebuild_mime(inbound_from_eml(read("postfix_delayed.eml"),
                                                                       attachments=False)))
    assert all_failures(text_only) == (frozenset(), frozenset({b"r.haddad@slowhost.example"}))


def test_an_attachment_labelled_text_plain_is_still_read_as_delivery_status():
    inbound = inbound_from_eml(read("m365_recipient_not_found.eml"))
    relabelled = tuple(Attachment(a.filename, "text/plain" if a.content_type == "message/delivery-status"
                                  else a.content_type, a.content) for a in inbound.attachments)
    inbound = InboundEmail(**{**inbound.__dict__, "attachments": relabelled})
    assert summary(parse_report(inbound)) == [("p.novak@hospital.example.net", "hard", "5.1.10", "failed")]
    assert b"Content-Type: message/delivery-status" in rebuild_mime(inbound)


def test_diagnostics_are_kept_unfolded():
    (postfix,) = parse_report(read("postfix_user_unknown.eml"))
    assert postfix.diagnostic == ("smtp; 550 5.1.1 <kim.lee@mailhost.example.org>: Recipient address rejected: "
                                  "User unknown in local recipient table")
    (gmail,) = parse_report(read("gmail_nosuchuser.eml"))
    assert "\n" not in gmail.diagnostic and gmail.diagnostic.endswith("- gsmtp")
    (complaint,) = parse_report(read("yahoo_arf_abuse.eml"))
    assert complaint.diagnostic == "Feedback-Type: abuse; User-Agent: Yahoo!-Mail-Feedback/2.0"


def test_only_hard_and_soft_count_as_bounces():
    kinds = {r.kind: r.is_bounce for name in NAMES for r in parse_report(read(name))}
    assert kinds == {"hard": True, "soft": True, "delayed": False, "complaint": False}


def test_a_dsn_reporting_only_successes_gives_nothing_and_no_heuristics():
    # The human-readable part still says "permanent fatal errors"; the DSN part is what counts.
    raw = read("sendmail_multi_recipient.eml").replace(b"Action: failed", b"Action: delivered")
    assert parse_report(raw) == []


@pytest.mark.parametrize("feedback_type", ["auth-failure", "not-spam", "virus", "other"])
def test_feedback_reports_that_are_not_complaints_give_nothing(feedback_type):
    raw = read("yahoo_arf_abuse.eml").replace(b"Feedback-Type: abuse", f"Feedback-Type: {feedback_type}".encode())
    assert parse_report(raw) == []


def test_fraud_is_a_complaint_too():
    raw = read("arf_abuse_original_to.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: fraud")
    assert summary(parse_report(raw)) == [("leah.stein@mail.example.net", "complaint", "", "fraud")]


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_an_encoded_delivery_status_part_is_decoded(encoding):
    raw = read("m365_recipient_not_found.eml").decode()
    start = raw.index("Content-Type: message/delivery-status\n\n")
    end = raw.index("\n--21ec5fc6", start)
    fields = raw[start + len("Content-Type: message/delivery-status\n\n"):end]
    body = base64.encodebytes(fields.encode()).decode() if encoding == "base64" else fields.replace("=", "=3D")
    raw = (raw[:start] + f"Content-Type: message/delivery-status\nContent-Transfer-Encoding: {encoding}\n\n"
           + body + raw[end:])
    assert summary(parse_report(raw.encode())) == [("p.novak@hospital.example.net", "hard", "5.1.10", "failed")]


@pytest.mark.parametrize("fields,expected", [
    # no address type, angle brackets (seen in the wild; flufl.bounce's DSN detector has the same kludge)
    ("Final-Recipient: <Bare@Example.com>\nAction: failed\nStatus: 5.1.1\n", ("bare@example.com", "hard", "5.1.1")),
    # an action with a comment, and no Status: the class comes from the Diagnostic-Code
    ("Final-Recipient: rfc822; a@example.com\nAction: failed (bad destination mailbox)\n"
     "Diagnostic-Code: smtp; 452 mailbox over quota\n", ("a@example.com", "soft", "")),
    # no status anywhere: a failure is hard
    ("Final-Recipient: rfc822; b@example.com\nAction: failed\n", ("b@example.com", "hard", "")),
    # opensmtpd's non-standard Action: error
    ("Final-Recipient: rfc822; c@example.com\nAction: error\nStatus: 5.0.0\n", ("c@example.com", "hard", "5.0.0")),
    # RFC 6533 utf-8 address type
    ("Final-Recipient: utf-8; d\\x{E9}@example.com\nAction: failed\nStatus: 5.1.1\n",
     ("d\u00e9@example.com", "hard", "5.1.1")),
])
def test_recipient_block_variants(fields, expected):
    raw = ("From: MAILER-DAEMON@example.com\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\n"
           "\n--B\nContent-Type: text/plain\n\nfailed\n--B\nContent-Type: message/delivery-status\n\n"
           "Reporting-MTA: dns; mx.example.com\n\n" + fields + "\n--B--\n")
    (report,) = parse_report(raw.encode())
    assert (report.recipient, report.kind, report.status) == expected


def test_raw_non_ascii_headers_do_not_break_the_flufl_fallback():
    # Unencoded UTF-8 in headers: the email package hands flufl.bounce Header objects, not str.
    raw = (read("qmail_no_mailbox.eml")
           .replace(b"Subject: failure notice", "Subject: \u00e9chec de livraison".encode())
           .replace(b"From: MAILER-DAEMON@", "From: D\u00e9mon <MAILER-DAEMON@".encode()).replace(
               b"@mail.oldhost.example\nTo:", b"@mail.oldhost.example>\nTo:"))
    assert summary(parse_report(raw)) == [("t.baker@oldhost.example", "hard", "", "")]


def test_a_non_rfc822_recipient_is_skipped():
    raw = ("Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n--B\n"
           "Content-Type: message/delivery-status\n\nReporting-MTA: dns; gw.example.com\n\n"
           "Final-Recipient: x400; /G=Kim/S=Lee/O=Example/\nAction: failed\nStatus: 5.1.1\n\n--B--\n")
    assert parse_report(raw.encode()) == []


def test_a_bounce_of_a_bounce_reads_only_the_outer_report():
    inner = read("gmail_nosuchuser.eml").decode()
    outer = read("exim_user_unknown.eml").decode()
    start = outer.index("Content-type: message/rfc822\n\n") + len("Content-type: message/rfc822\n\n")
    end = outer.index("\n--1741179751-eximdsn-1804289383--")
    nested = outer[:start] + inner + outer[end:]
    assert summary(parse_report(nested.encode())) == [("ana.ruiz@example.net", "hard", "5.0.0", "failed")]


@pytest.mark.parametrize("name", sorted(p.name for p in AUTOREPLIES.glob("*.eml")))
def test_auto_replies_and_ordinary_mail_are_not_bounces(name):
    assert parse_report((AUTOREPLIES / name).read_bytes()) == []


@pytest.mark.parametrize("name", NAMES)
def test_every_bounce_is_automatic_and_a_bounce(name):
    inbound = inbound_from_eml(read(name))
    assert is_bounce(inbound)
    assert automatic_reason(inbound) is not None


def test_parse_report_rejects_other_input():
    with pytest.raises(TypeError):
        parse_report(42)  # type: ignore[arg-type]


# -- VERP -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("recipient,address", [
    ("kim@example.org", "bounces+kim=example.org@relay.example.org"),
    ("kim.lee+cases@mail.example.org", "bounces+kim.lee+cases=mail.example.org@relay.example.org"),
    ("odd=name@example.org", "bounces+odd=name=example.org@relay.example.org"),
])
def test_verp_round_trip(recipient, address):
    assert verp_address("bounces", "relay.example.org", recipient) == address
    assert recipient_from_verp(address, "bounces", "relay.example.org") == recipient


@pytest.mark.parametrize("address,expected", [
    ("<bounces+kim=example.org@relay.example.org>", "kim@example.org"),
    ("Bounces <BOUNCES+Kim=Example.ORG@Relay.Example.org>", "kim@example.org"),
    ("bounces@relay.example.org", None),
    ("bounces+kim=example.org@elsewhere.example", None),
    ("replies+kim=example.org@relay.example.org", None),
    ("bounces+kimexample.org@relay.example.org", None),
    ("bounces+=example.org@relay.example.org", None),
    ("bounces+kim=@relay.example.org", None),
    ("", None),
])
def test_recipient_from_verp(address, expected):
    assert recipient_from_verp(address, "bounces", "relay.example.org") == expected


@pytest.mark.parametrize("recipient", ["no-at-sign", "@example.org", "kim@", '"kim lee"@example.org'])
def test_verp_address_refuses_what_it_cannot_encode(recipient):
    with pytest.raises(ValueError):
        verp_address("bounces", "relay.example.org", recipient)


def test_the_verp_address_in_each_sample_names_the_reported_recipient():
    for name, expected in CASES:
        to = parseaddr(str(email.message_from_bytes(read(name)).get("To", "")))[1]
        named = recipient_from_verp(to, "bounces", "relay.example.org")
        if named is not None:
            assert [named] == [r for r, *_ in expected], name


# -- proof (relay.inbound.bounce_proof): which delivery a report is about ------------------------------------

def _proof_settings():
    from types import SimpleNamespace

    return SimpleNamespace(secret=lambda: "s3cret", email_domain="relay.example.org")


def test_returned_headers_are_read_from_rfc822_and_header_parts():
    from relay.inbound.bounces import returned_headers

    [original] = returned_headers(read("postfix_user_unknown.eml"))
    assert original["Message-ID"] == "<c12.p7.9f2e@relay.example.org>" and original["To"] == "kim@example.org"
    assert returned_headers(b"From: a@b\nSubject: hello\n\nplain text\n") == []


def test_an_unsigned_mailman_style_verp_return_path_proves_nothing():
    """The samples' originals carry `Return-Path: <bounces+kim=example.org@relay.example.org>`, which
    anyone can write: no delivery is proven by it."""
    from relay.inbound.bounce_proof import prove

    for name in NAMES:
        assert prove(_proof_settings(), ["cases@relay.example.org"], read(name)).delivery_ids == set()


def test_prove_reads_the_envelope_recipient_and_the_returned_headers():
    from relay.inbound.bounce_proof import prove
    from relay.providers.verp import DELIVERY_HEADER, bounce_address, bounce_token, stamp

    s = _proof_settings()
    assert prove(s, [bounce_address(s, 7)], b"").delivery_ids == {7}
    assert prove(s, ["<BOUNCE+" + bounce_token("s3cret", 7).upper() + "@Relay.Example.org>"], b"").delivery_ids == {7}
    tampered = prove(s, [bounce_address(s, 7).replace("7-", "8-", 1)], b"")
    assert tampered.delivery_ids == set() and tampered.refused == ["bad signature on the bounce address in the "
                                                                   "envelope recipient"]
    assert prove(s, [bounce_address(SimpleNamespace(secret=lambda: "other", email_domain="relay.example.org"), 7)],
                 b"").delivery_ids == set()
    sender, raw = stamp(s, 9, b"From: cases@relay.example.org\r\nSubject: x\r\n\r\nbody\r\n")
    assert sender == bounce_address(s, 9) and raw.startswith(f"{DELIVERY_HEADER}: {bounce_token('s3cret', 9)}\r\n".encode())
    report = (b"From: MAILER-DAEMON@mx.example.net\nMIME-Version: 1.0\n"
              b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n--B\n"
              b"Content-Type: text/plain\n\nfailed\n--B\nContent-Type: text/rfc822-headers\n\n" + raw.split(b"\r\n\r\n")[0]
              + b"\n--B--\n")
    assert prove(s, ["cases@relay.example.org"], report).delivery_ids == {9}


def test_someone_elses_domain_is_no_bounce_address():
    from relay.providers.verp import bounce_token, is_bounce_address

    s = _proof_settings()
    assert not is_bounce_address(s, f"bounce+{bounce_token('s3cret', 1)}@evil.example")
    assert not is_bounce_address(s, "cases@relay.example.org")
