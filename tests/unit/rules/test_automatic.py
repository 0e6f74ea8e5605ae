"""Recognising automatic mail (relay.rules.automatic) over the samples in tests/data/autoreplies/ and
one header at a time."""
from __future__ import annotations

import pytest

from relay.model.messages import InboundEmail
from relay.rules import automatic as autoreplies
from relay.rules.automatic import automatic_reason, envelope_is_null, is_bounce
from tests import paths
from tests.unit.inbound.test_bounces import NAMES as BOUNCE_NAMES
from tests.unit.inbound.test_bounces import inbound_from_eml

AUTOREPLIES = paths.DATA / "autoreplies"
BOUNCES = paths.DATA / "bounces"
OUR_LIST_IDS = ("Case discussions <cases.relay.example.org>",)
OUR_DOMAIN = "relay.example.org"

# (sample, the reason automatic_reason gives; None = a person's mail, to be relayed)
CASES = [
    ("gmail_vacation.eml", "Auto-Submitted: auto-replied"),
    # Checked before the null sender, so the reason names the more specific signal.
    ("outlook_ooo.eml", "Auto-Submitted: auto-generated"),
    ("x_autoreply.eml", "X-Autoreply header"),
    # "Precedence: Bulk": values compare case-insensitively.
    ("newsletter_bulk.eml", "Precedence: bulk"),
    # Outlook puts X-Auto-Response-Suppress on mail people write: not a signal.
    ("human_reply_outlook.eml", None),
    # List-Id ids compare case-insensitively (RFC 2919).
    ("own_list_id.eml", "our own List-Id cases.relay.example.org"),
    ("own_loop_header.eml", "our own X-Relay-Loop header"),
    ("exchange_rule_forward.eml", "Exchange inbox-rule loop header"),
]
NAMES = [name for name, _ in CASES]


def sample(name: str) -> InboundEmail:
    return inbound_from_eml((AUTOREPLIES / name).read_bytes())


def mail(*headers: tuple[str, str], envelope_from: str = "kim@example.org") -> InboundEmail:
    base = (("From", "Kim <kim@example.org>"), ("To", "reply+c12.abc@relay.example.org"),
            ("Subject", "Re: [C12] Post-op fever"), ("Message-ID", "<m1@example.org>"))
    return InboundEmail(provider="test", provider_message_id="", message_id="m1@example.org",
                        envelope_from=envelope_from, from_address="kim@example.org", from_name="Kim",
                        recipients=("reply+c12.abc@relay.example.org",), mailbox_hash="c12.abc",
                        subject="Re: [C12] Post-op fever", text="Agreed.", html="", headers=base + headers)


def reason(email: InboundEmail) -> str | None:
    return automatic_reason(email, own_list_ids=OUR_LIST_IDS, own_domain=OUR_DOMAIN)


def test_every_sample_is_in_the_table():
    assert sorted(p.name for p in AUTOREPLIES.glob("*.eml")) == sorted(NAMES)


@pytest.mark.parametrize("name,expected", CASES, ids=NAMES)
def test_samples(name, expected):
    assert reason(sample(name)) == expected


@pytest.mark.parametrize("name", NAMES)
def test_auto_replies_are_not_bounces(name):
    assert not is_bounce(sample(name))


@pytest.mark.parametrize("name", BOUNCE_NAMES)
def test_every_bounce_and_complaint_is_automatic(name):
    got = reason(inbound_from_eml((BOUNCES / name).read_bytes()))
    expected = {"qmail_no_mailbox.eml": "null envelope sender <>",
                "googlemail_delay_legacy.eml": "null envelope sender <>"}
    kind = "feedback-report" if "arf" in name else "delivery-status"
    assert got == expected.get(name, f"multipart/report ({kind})")


def test_a_plain_reply_is_relayed():
    assert reason(mail()) is None


@pytest.mark.parametrize("value,expected", [
    ("auto-replied", "Auto-Submitted: auto-replied"),
    ("Auto-Replied", "Auto-Submitted: auto-replied"),
    ('auto-replied; owner-email="kim@example.org"', "Auto-Submitted: auto-replied"),
    ("auto-generated (failure)", "Auto-Submitted: auto-generated"),
    ("auto-notified", "Auto-Submitted: auto-notified"),
    ("\r\n auto-generated", "Auto-Submitted: auto-generated"),
    ("", "Auto-Submitted: empty"),
    ("no", None),
    ("No", None),
    ("no (sent by a person)", None),
    (" no ; x=y", None),
])
def test_auto_submitted(value, expected):
    assert reason(mail(("Auto-Submitted", value))) == expected


@pytest.mark.parametrize("value,expected", [
    ("bulk", "Precedence: bulk"), ("list", "Precedence: list"), ("JUNK", "Precedence: junk"),
    ("auto_reply", "Precedence: auto_reply"), ("bulk (newsletter)", "Precedence: bulk"),
    ("first-class", None), ("normal", None), ("urgent", None),
])
def test_precedence(value, expected):
    assert reason(mail(("Precedence", value))) == expected


@pytest.mark.parametrize("name", ["X-Autoreply", "X-Autorespond", "X-Autoresponder", "x-autoreply"])
def test_autoreply_headers(name):
    assert reason(mail((name, "yes"))) == f"{name if name[0] == 'X' else 'X-Autoreply'} header"


@pytest.mark.parametrize("value", ["All", "OOF, AutoReply", "DR, NDR, RN, NRN, OOF, AutoReply"])
def test_x_auto_response_suppress_is_not_a_signal(value):
    assert reason(mail(("X-Auto-Response-Suppress", value))) is None


def test_exchange_inbox_rules_loop():
    assert reason(mail(("X-MS-Exchange-Inbox-Rules-Loop", "kim@example.org"))) == "Exchange inbox-rule loop header"


def test_null_envelope_sender():
    assert reason(mail(envelope_from="")) == "null envelope sender <>"


def test_subjects_are_not_used():
    ooo = InboundEmail(**{**mail().__dict__, "subject": "Out of Office: [C12] Post-op fever",
                          "headers": (("Subject", "Automatic reply: [C12] Post-op fever"),)})
    assert reason(ooo) is None


@pytest.mark.parametrize("content_type,expected", [
    ("multipart/report; report-type=delivery-status; boundary=x", "multipart/report (delivery-status)"),
    ('Multipart/Report; report-type="feedback-report";\r\n\tboundary="x"', "multipart/report (feedback-report)"),
    ("multipart/report; report-type=disposition-notification; boundary=x",
     "multipart/report (disposition-notification)"),
    ("multipart/report", "multipart/report"),
    ("multipart/mixed; boundary=x", None),
    ("text/plain; charset=utf-8", None),
])
def test_report_content_type(content_type, expected):
    assert reason(mail(("Content-Type", content_type))) == expected


@pytest.mark.parametrize("own,header,expected", [
    (("cases.relay.example.org",), "Case discussions <cases.relay.example.org>", True),
    (("<cases.relay.example.org>",), "<CASES.relay.example.org>", True),
    (("Cases <cases.relay.example.org>",), "cases.relay.example.org", True),
    (("cases.relay.example.org",), "Ward 7 <ward7.lists.hospital.example.net>", False),
    (("cases.relay.example.org",), "<other.cases.relay.example.org>", False),
    ((), "Case discussions <cases.relay.example.org>", False),
    (("",), "", False),
])
def test_own_list_id(own, header, expected):
    got = automatic_reason(mail(("List-Id", header)), own_list_ids=own)
    assert (got is not None) == expected


def test_a_foreign_list_id_alone_is_not_automatic():
    # People reply to case mail from mailing lists they are on; only our own List-Id means a loop.
    assert reason(mail(("List-Id", "Ward 7 <ward7.lists.hospital.example.net>"))) is None


@pytest.mark.parametrize("header,value,own_domain,expected", [
    ("X-Relay-Loop", "relay.example.org", "relay.example.org", True),
    ("x-relay-loop", "RELAY.example.org", "relay.example.org", True),
    ("X-Relay-Loop", "cases@relay.example.org", "relay.example.org", True),
    ("X-Relay-Loop", "other-relay.example.net", "relay.example.org", False),
    ("X-Relay-Loop", "notrelay.example.org", "relay.example.org", False),
    ("X-Relay-Loop", "anything", "", True),  # no domain given: the header alone counts
    ("X-Relay-Loop-Note", "relay.example.org", "relay.example.org", False),
])
def test_loop_header(header, value, own_domain, expected):
    got = automatic_reason(mail((header, value)), own_domain=own_domain)
    assert (got == "our own X-Relay-Loop header") == expected


def test_loop_header_name_is_configurable():
    email = mail(("X-Case-Relay", "relay.example.org"))
    assert automatic_reason(email, loop_header="X-Case-Relay", own_domain=OUR_DOMAIN) == "our own X-Case-Relay header"
    assert automatic_reason(email, own_domain=OUR_DOMAIN) is None


def test_every_matching_header_is_looked_at_not_just_the_first():
    email = mail(("Auto-Submitted", "no"), ("Auto-Submitted", "auto-replied"))
    assert reason(email) == "Auto-Submitted: auto-replied"


@pytest.mark.parametrize("headers,envelope_from,expected", [
    ((("Content-Type", "multipart/report; report-type=delivery-status; boundary=b"),), "", True),
    ((("Content-Type", "multipart/report; report-type=feedback-report; boundary=b"),), "", True),
    # a read receipt (RFC 8098) is a report, automatic, but no bounce
    ((("Content-Type", "multipart/report; report-type=disposition-notification; boundary=b"),), "", False),
    ((("X-Failed-Recipients", "kim@example.org"),), "", True),
    # an auto-reply sent with the null sender, as RFC 3834 suggests, is no bounce
    ((("Auto-Submitted", "auto-replied"),), "", False),
    ((), "kim@example.org", False),
])
def test_is_bounce(headers, envelope_from, expected):
    assert is_bounce(mail(*headers, envelope_from=envelope_from)) == expected


def test_is_bounce_from_mailer_daemon_with_null_sender():
    daemon = InboundEmail(**{**mail(envelope_from="").__dict__, "from_address": "mailer-daemon@mx.example.org"})
    assert is_bounce(daemon)
    spoof = InboundEmail(**{**daemon.__dict__, "envelope_from": "someone@example.org"})
    assert not is_bounce(spoof)


@pytest.mark.parametrize("value,expected", [("<>", True), (" < > ", True), ("<kim@example.org>", False), ("", False)])
def test_envelope_is_null(value, expected):
    assert envelope_is_null(value) == expected


def test_module_describes_itself_like_a_rule():
    assert autoreplies.NAME == "automatic" and autoreplies.DESCRIPTION
