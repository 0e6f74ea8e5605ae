"""One case thread across SMS and email, end to end: gunicorn and a Celery worker as separate
processes on PostgreSQL and Redis, sending SMS to the Twilio stand-in over HTTP and email to a real
SMTP server on loopback (the aiosmtpd sink, in this process).

The new-case notice reaches everyone by SMS and by email (one Message-ID, list headers,
Auto-Submitted); Alice answers the email from Gmail (a signed Mailgun webhook, her text on top of
the quoted notice) and only her text is relayed, by SMS and as an email in reply to the notice;
Lee answers by SMS and the email followers get it in reply to Alice's post, over the worker's kept
SMTP connections; Mailgun retrying Alice's webhook changes nothing."""
from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime

import pytest
from sqlalchemy import select

from relay.model.tables import InboundEvent, Post
from relay.providers.smtp_email import SMTP_POOL_SIZE
from tests.standins.smtp_sink import Received
from tests.unit.inbound.test_mail import mailgun_form

from .processes import stays, wait_for_log
from .shared_cluster import SharedCluster, logs_on_failure, shared_cluster  # noqa: F401  (the fixture)
from .test_distributed import (
    ALICE,
    BEN,
    EVERYONE,
    KIM,
    LEE,
    PARK,
    assert_empty_twiml,
    assert_sent_properly,
)

pytestmark = pytest.mark.e2e

DOMAIN = "relay.example.org"
MAIL_FROM = f"cases@{DOMAIN}"
EMAIL = {KIM: "jiwon@example.org", LEE: "minho@example.org", PARK: "seoyeon@example.org",
         ALICE: "alice@example.org", BEN: "ben@example.org"}  # tests.conftest.DEMO_CSV
TITLE = "Fever and ground-glass opacities"
WORKER_CONCURRENCY = 2  # pool processes, each keeping a few SMTP connections open (SMTP_POOL_SIZE)
ALICE_TEXT = "Agree: organising pneumonia pattern. Suggest follow-up CT in 4 weeks."
LEE_TEXT = "Looks like organising pneumonia"
POST_MESSAGE_ID = re.compile(rf"^<post-\d+\.[a-z2-7]+@{re.escape(DOMAIN)}>$")


EmailCluster = SharedCluster


@pytest.fixture
def cluster(shared_cluster: SharedCluster, request):
    """The shared cluster (tests/e2e/shared_cluster.py), reset: it is the one the browser tests use."""
    shared_cluster.reset()
    yield shared_cluster
    logs_on_failure(request, shared_cluster)


def gmail_reply(text: str, original: EmailMessage) -> str:
    """`text` typed above Gmail's attribution line and the original's text part quoted with "> "."""
    when = parsedate_to_datetime(original["Date"])
    name, address = parseaddr(original["From"])
    attribution = f"On {when:%a, %b %-d, %Y at %-I:%M %p} {name} <{address}> wrote:"
    quoted = original.get_body(("plain",)).get_content()
    lines = [f"> {line}" if line.strip() else ">" for line in quoted.rstrip("\n").splitlines()]
    return "\r\n".join([text, "", attribution, *lines, ""])


def by_recipient(mails: list[Received]) -> dict[str, EmailMessage]:
    """{envelope recipient: message}; every message went to exactly one recipient, from us (its own
    VERP envelope sender, bounce+<signed delivery token>@DOMAIN: relay/inbound/bounce_proof.py)."""
    for mail in mails:
        assert len(mail.rcpt_tos) == 1, mail
        assert mail.mail_from.startswith("bounce+") and mail.mail_from.endswith(f"@{DOMAIN}"), mail
    found = {mail.rcpt_tos[0]: mail.message for mail in mails}
    assert len(found) == len(mails), "some member got the same post twice"
    return found


def the_one(messages, header: str) -> str:
    values = {str(m[header]) for m in messages}
    assert len(values) == 1, f"{header} differs between recipients: {values}"
    return values.pop()


def raw_header(data: bytes, name: str) -> str:
    """One header as it went over the wire, unfolded but not decoded (RFC 2047 words stay visible)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    lines = re.sub(r"\r\n([ \t])", r"\1", head).split("\r\n")
    values = [line.split(":", 1)[1].strip() for line in lines if line.lower().startswith(name.lower() + ":")]
    assert len(values) == 1, (name, values)
    return values[0]


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def test_a_case_thread_across_sms_and_email(cluster: EmailCluster):
    # 1. The notice: everyone by SMS and by email, one Message-ID, a mailing list's headers.
    cluster.seed_and_notify()
    sms = cluster.wait_for_sent(5, "the new-case notice by SMS")
    assert sorted(r.form["To"] for r in sms) == sorted(EVERYONE)
    for request in sms:
        assert_sent_properly(request, cluster.public_base)
        assert request.status == 201 and f"{cluster.public_base}/library/cases/C1" in request.form["Body"]
    notice_mails = cluster.wait_for_mails(5, "the new-case notice by email")
    notices = by_recipient(notice_mails)
    assert set(notices) == set(EMAIL.values())
    notice_id = the_one(notices.values(), "Message-ID")
    assert POST_MESSAGE_ID.match(notice_id), notice_id
    reply_addresses = set()
    for address, message in notices.items():
        assert parseaddr(message["To"])[1] == address
        assert parseaddr(message["From"])[1] == MAIL_FROM
        assert message["Subject"] == f"[C1] {TITLE}"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["List-Id"] == f"relay cases <cases.{DOMAIN}>"
        unsubscribe = message["List-Unsubscribe"]
        assert f"<{cluster.public_base}/unsubscribe/" in unsubscribe and "<mailto:unsubscribe+" in unsubscribe, unsubscribe
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Archive"] == f"<{cluster.public_base}/library/>"
        assert message["Precedence"] == "list"
        assert message["In-Reply-To"] is None and message["References"] is None
        assert f"C1: {TITLE}" in text_of(message)  # Kim's is in Korean
        reply_to = parseaddr(message["Reply-To"])[1]
        assert re.fullmatch(rf"reply\+[^@\s]+@{re.escape(DOMAIN)}", reply_to), reply_to
        reply_addresses.add(reply_to)
    assert len(reply_addresses) == 5  # one per member
    # RFC 2369 wants bare <URL>s: an RFC 2047 encoded-word is not allowed (nor decoded) in these
    # structured fields. Checked on the bytes (the parser above decodes such words); the outcome is
    # reported at the very end, so a failure here does not hide the rest of the scenario.
    mangled_unsubscribe = sorted(
        mail.rcpt_tos[0] for mail in notice_mails
        if not re.fullmatch(r"<https?://[^\s<>]+>,\s*<mailto:[^\s<>]+>", raw_header(mail.data, "List-Unsubscribe")))
    for mail in notice_mails:
        for name in ("List-Id", "List-Archive", "Archived-At", "List-Unsubscribe-Post"):
            assert "=?" not in raw_header(mail.data, name), (name, raw_header(mail.data, name))

    # 2. Alice answers the notice email from Gmail, her text above the quoted notice.
    alice_notice = notices[EMAIL[ALICE]]
    assert text_of(alice_notice).startswith(f"New case C1: {TITLE}")
    form = mailgun_form("Alice Moreau <alice@example.org>", gmail_reply(ALICE_TEXT, alice_notice),
                        parseaddr(alice_notice["Reply-To"])[1], subject=f"Re: [C1] {TITLE}",
                        in_reply_to=notice_id.strip("<>"), key=cluster.mailgun_key)
    assert "> New case C1" in form["body-plain"]
    response = cluster.post_mailgun(form)
    assert response.status_code == 200, response.text
    assert response.text.strip() == "accepted"

    relayed = {r.form["To"]: r.form["Body"] for r in cluster.wait_for_sent(5 + 4, "Alice's post by SMS")[5:]}
    assert relayed == {phone: f"C1 Alice Moreau: {ALICE_TEXT}" for phone in (KIM, LEE, PARK, BEN)}
    for body in relayed.values():  # nothing of the quoted notice travels with it
        assert "wrote:" not in body and ">" not in body and "New case" not in body, body
    alice_mails = by_recipient(cluster.wait_for_mails(5 + 4, "Alice's post by email")[5:])
    assert set(alice_mails) == {EMAIL[p] for p in (KIM, LEE, PARK, BEN)}
    alice_post_id = the_one(alice_mails.values(), "Message-ID")
    assert POST_MESSAGE_ID.match(alice_post_id) and alice_post_id != notice_id
    for message in alice_mails.values():
        assert message["In-Reply-To"] == notice_id
        assert message["References"] == notice_id
        assert message["Subject"] == f"Re: [C1] {TITLE}"
        assert parseaddr(message["From"]) == ("Alice Moreau via relay", MAIL_FROM)
        assert message["Auto-Submitted"] is None  # a person wrote it: auto-responders may answer
        text = text_of(message)
        assert ALICE_TEXT in text and "> New case" not in text and f"{alice_notice['From']}" not in text, text
    posts = cluster.rows(select(Post).where(Post.kind == "reply"))
    assert [(p.body, p.channel) for p in posts] == [(ALICE_TEXT, "email")]
    assert len(cluster.sent()) == 5 + 4  # no SMS confirmation for a post made by email

    # 3. Lee answers by SMS: the email followers get it in reply to Alice's post.
    form_sms, response = cluster.sms(LEE, f"C1 {LEE_TEXT}")
    assert_empty_twiml(response)
    assert cluster.wait_processed(form_sms["MessageSid"]).outcome == "posted"
    sent = cluster.wait_for_sent(9 + 5, "Lee's post by SMS and his confirmation")[9:]
    for request in sent:
        assert_sent_properly(request, cluster.public_base)
        assert request.status == 201
    assert {r.form["To"]: r.form["Body"] for r in sent if r.form["To"] != LEE} == {
        phone: f"C1 Lee Minho: {LEE_TEXT}" for phone in (KIM, PARK, ALICE, BEN)}
    assert [r.form["Body"] for r in sent if r.form["To"] == LEE] == ["Posted to C1, relayed to 4."]
    lee_mail_list = cluster.wait_for_mails(9 + 4, "Lee's post by email")[9:]
    lee_mails = by_recipient(lee_mail_list)
    assert set(lee_mails) == {EMAIL[p] for p in (KIM, PARK, ALICE, BEN)}
    lee_post_id = the_one(lee_mails.values(), "Message-ID")
    assert POST_MESSAGE_ID.match(lee_post_id) and lee_post_id not in (notice_id, alice_post_id)
    for message in lee_mails.values():
        assert message["In-Reply-To"] == alice_post_id  # the previous post in the thread
        assert str(message["References"]).split() == [notice_id, alice_post_id]  # the thread's start first
        assert parseaddr(message["From"]) == ("Lee Minho via relay", MAIL_FROM)
        assert LEE_TEXT in text_of(message)
    # Thirteen messages, over the connections the worker's pool processes keep open (a broadcast batch
    # sends over up to SMTP_POOL_SIZE at once; one message at a time reuses one).
    assert 1 <= cluster.sink.sessions <= WORKER_CONCURRENCY * SMTP_POOL_SIZE < 13, cluster.sink.sessions
    assert len({m.session for m in lee_mail_list}) <= WORKER_CONCURRENCY * SMTP_POOL_SIZE

    # 4. Mailgun retries Alice's webhook: acknowledged, and nothing else happens.
    sms_before, mails_before = len(cluster.sent()), len(cluster.mails())
    assert (sms_before, mails_before) == (9 + 5, 9 + 4)
    posts_before = cluster.count(Post)
    replay = cluster.post_mailgun(form)
    assert replay.status_code == 200, replay.text
    assert replay.text.strip() == "duplicate"
    wait_for_log(cluster.web, "email webhook mailgun: duplicate of event")
    stays(lambda: (len(cluster.sent()), len(cluster.mails()), cluster.count(Post)) == (sms_before, mails_before,
                                                                                       posts_before),
          2.0, "nothing new after the replayed Mailgun webhook")
    assert cluster.count(InboundEvent, InboundEvent.kind == "email") == 1

    # List-Unsubscribe must reach mail clients as plain URLs, never RFC 2047 encoded-words.
    assert not mangled_unsubscribe, [raw_header(m.data, "List-Unsubscribe") for m in notice_mails
                                     if m.rcpt_tos[0] in mangled_unsubscribe]
