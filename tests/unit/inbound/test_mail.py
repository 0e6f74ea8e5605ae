"""Email in: the Mailgun/Postmark webhooks, then the worker: threading by reply token, Message-ID and
subject; quotes stripped; relayed to SMS and email followers; loops, auto-replies and bounces dropped."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from relay.infra.dispatch import RecordingDispatcher
from relay.infra.signing import post_message_id, unsubscribe_token
from relay.model.tables import EmailBounce, InboundEvent, Post
from relay.notices.lifecycle import new_case_notice
from relay.render.mail import reply_address
from relay.services import build_services
from tests.conftest import DEMO_CSV, RecordingSender, make_settings, run_worker
from tests.helpers import member
from webhooks.app import create_app

KEY = "mailgun-signing-key"
DOMAIN = "relay.example.org"
KIM, LEE, PARK, ALICE = "+821012345601", "+821012345602", "+821012345603", "+33612345604"


@pytest.fixture
def net(tmp_path, database_url):
    """The demo network with email configured (to recording senders) and C1's notice sent."""
    from relay.infra.db import transaction
    from relay.library.cases import create_case
    from relay.members.directory import import_members

    settings = make_settings(tmp_path / "var", database_url, mailgun_signing_key=KEY, mail_domain=DOMAIN,
                             mail_from=f"cases@{DOMAIN}", secret_key="s3cret", postmark_user="pm",
                             postmark_password="pw")
    services = build_services(settings, dispatcher=RecordingDispatcher(),
                              senders={"sms": RecordingSender(), "email": RecordingSender()})
    with transaction(services.sessions) as session:
        import_members(session, DEMO_CSV)
        create_case(session, "Fever and GGO")
    new_case_notice(services, "C1", ["tft"])
    run_worker(services)
    services.sender("sms").sent.clear()
    services.sender("email").sent.clear()
    yield services
    services.dispose()


@pytest.fixture
def client(net):
    return create_app(services=net).test_client()


def mailgun_form(sender: str, text: str, recipient: str, subject: str = "Re: [C1] Fever and GGO",
                 in_reply_to: str = "", headers: list | None = None, envelope: str | None = None,
                 message_id: str | None = None, timestamp: int | None = None, token: str | None = None,
                 key: str = KEY) -> dict[str, str]:
    timestamp = str(timestamp or int(time.time()))
    token = token or secrets.token_hex(25)
    message_id = message_id or f"{secrets.token_hex(8)}@mail.example.org"
    all_headers = [["From", sender], ["To", f"C1 <{recipient}>"], ["Subject", subject],
                   ["Message-Id", f"<{message_id}>"]]
    if in_reply_to:
        all_headers += [["In-Reply-To", f"<{in_reply_to}>"], ["References", f"<{in_reply_to}>"]]
    all_headers += headers or []
    return {
        "recipient": recipient, "sender": sender if envelope is None else envelope, "from": sender,
        "subject": subject, "body-plain": text, "message-headers": json.dumps(all_headers),
        "Message-Id": f"<{message_id}>", "timestamp": timestamp, "token": token,
        "signature": hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest(),
    }


def post_mailgun(client, form):
    return client.post("/webhooks/email/mailgun", data=urlencode(form),
                       content_type="application/x-www-form-urlencoded")


def alice_reply_address(net) -> str:
    return reply_address(net.settings, member(net, ALICE).id, 1)


QUOTED = """Agree: organising pneumonia pattern. Suggest follow-up CT in 4 weeks.

On Tue, Mar 3, 2020 at 9:00 AM KSTR <cases@relay.example.org> wrote:
> New case C1: Fever and GGO
> Reply to this email to post on C1
"""


def test_an_email_reply_reaches_sms_and_email_followers_without_the_quote(client, net):
    response = post_mailgun(client, mailgun_form("Alice Moreau <alice@example.org>", QUOTED,
                                                 alice_reply_address(net)))
    assert response.status_code == 200
    run_worker(net)
    with net.sessions() as session:
        [post] = session.scalars(select(Post).where(Post.kind == "reply")).all()
    assert post.channel == "email"
    assert post.body == "Agree: organising pneumonia pattern. Suggest follow-up CT in 4 weeks."
    sms = {m.to: m.body for m in net.sender("sms").sent}
    assert sms.keys() == {KIM, LEE, PARK, "+12025550105"}  # every follower but the author
    assert sms[KIM] == f"C1 Alice Moreau: {post.body}"
    assert "alice@example.org" not in {m.to for m in net.sender("email").sent}
    assert len(net.sender("email").sent) == 4


def test_threading_by_in_reply_to_when_there_is_no_token(client, net):
    notice_id = post_message_id(net.settings.secret(), 1, DOMAIN)
    # issue 13: no signed reply address, so the sender is proven by Mailgun's aligned SPF verdict
    form = mailgun_form("alice@example.org", "Agree.", f"cases@{DOMAIN}", subject="Re: something",
                        in_reply_to=notice_id, headers=[["X-Mailgun-Spf", "Pass"]])
    assert post_mailgun(client, form).status_code == 200
    run_worker(net)
    with net.sessions() as session:
        stored = session.scalar(select(InboundEvent).where(InboundEvent.kind == "email"))
    assert stored.outcome == "posted" and "by headers" in stored.detail


def test_threading_by_subject_code(client, net):
    form = mailgun_form("alice@example.org", "Agree.", f"cases@{DOMAIN}", subject="About [C1]",
                        headers=[["X-Mailgun-Spf", "Pass"]])  # issue 13: an aligned SPF pass proves the sender
    post_mailgun(client, form)
    run_worker(net)
    with net.sessions() as session:
        stored = session.scalar(select(InboundEvent).where(InboundEvent.kind == "email"))
    assert stored.outcome == "posted" and "by subject" in stored.detail


def test_a_forwarded_notification_cannot_post_as_someone_else(client, net):
    form = mailgun_form("ben@example.org", "I was forwarded this", alice_reply_address(net))
    post_mailgun(client, form)
    run_worker(net)
    with net.sessions() as session:
        stored = session.scalar(select(InboundEvent).where(InboundEvent.kind == "email"))
        assert stored.outcome == "rejected" and "another member" in stored.detail
        assert session.scalar(select(func.count()).select_from(Post).where(Post.kind == "reply")) == 0


@pytest.mark.parametrize("headers,envelope", [
    ([["Auto-Submitted", "auto-replied"]], None),
    ([["Precedence", "bulk"]], None),
    ([["X-Autoreply", "yes"]], None),
    ([["List-Id", "KSTR cases <cases.relay.example.org>"]], None),
    ([["X-Relay-Loop", "relay.example.org"]], None),
    ([], ""),  # null return path
])
def test_automatic_mail_is_recorded_and_never_relayed(client, net, headers, envelope):
    form = mailgun_form("alice@example.org", "I am out of the office", alice_reply_address(net),
                        headers=headers, envelope=envelope)
    assert post_mailgun(client, form).status_code == 200
    run_worker(net)
    with net.sessions() as session:
        stored = session.scalar(select(InboundEvent).where(InboundEvent.kind == "email"))
    assert stored.outcome in ("discarded", "bounce") and stored.rules_fired
    assert net.sender("sms").sent == [] and net.sender("email").sent == []


def test_a_mail_loop_between_two_relays_stops_after_one_message(client, net):
    """Our own relayed mail coming back (a second relay or an auto-forwarder) is never relayed again."""
    from relay.infra.db import transaction
    from relay.model.tables import Delivery
    from relay.render.mail import compose

    post_mailgun(client, mailgun_form("alice@example.org", "Agree.", alice_reply_address(net)))
    run_worker(net)
    first_round = len(net.sender("email").sent)
    with transaction(net.sessions) as session:
        delivery = session.scalars(select(Delivery).where(Delivery.channel == "email",
                                                          Delivery.purpose == "relay")).first()
        ours = compose(session, net.settings, delivery)
    # The other side sends our message back to us, headers intact, from a member's address.
    headers = [[k, str(v)] for k, v in ours.items() if k not in ("From", "To", "Subject", "Message-ID")]
    post_mailgun(client, mailgun_form("ben@example.org", "Agree.", alice_reply_address(net), headers=headers))
    run_worker(net)
    assert len(net.sender("email").sent) == first_round


def test_replayed_webhook_and_reused_token(client, net):
    form = mailgun_form("alice@example.org", "Agree.", alice_reply_address(net))
    assert post_mailgun(client, form).status_code == 200
    assert post_mailgun(client, form).status_code == 200  # Mailgun retrying: a duplicate, acknowledged
    other = mailgun_form("alice@example.org", "Another", alice_reply_address(net), token=form["token"],
                         timestamp=int(form["timestamp"]))
    assert post_mailgun(client, other).status_code == 406  # same token, another message: a replay
    with net.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundEvent)
                              .where(InboundEvent.kind == "email")) == 1


def test_bad_signature_and_stale_timestamp_are_refused(client, net):
    forged = mailgun_form("alice@example.org", "x", alice_reply_address(net), key="wrong")
    assert post_mailgun(client, forged).status_code == 403
    stale = mailgun_form("alice@example.org", "x", alice_reply_address(net), timestamp=int(time.time()) - 3600)
    assert post_mailgun(client, stale).status_code == 403


def test_mail_that_will_never_be_accepted_is_kept_and_answered_406(client, net):
    form = mailgun_form("alice@example.org", "x", alice_reply_address(net))
    del form["from"], form["message-headers"]
    response = post_mailgun(client, form)
    assert response.status_code == 406
    with net.sessions() as session:
        stored = session.scalar(select(InboundEvent).where(InboundEvent.kind == "email"))
    assert stored.outcome == "invalid" and stored.payload


def test_unsubscribe_by_mailto(client, net):
    token = unsubscribe_token(net.settings.secret(), member(net, ALICE).id)
    post_mailgun(client, mailgun_form("alice@example.org", "unsubscribe", f"unsubscribe+{token}@{DOMAIN}"))
    run_worker(net)
    assert member(net, ALICE).email_opted_out_at is not None


DSN = """From: MAILER-DAEMON@mx.example.net
To: cases@relay.example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system. Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; alice@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <alice@example.org>: Recipient address rejected

--B--
"""


def post_mime(client, raw: str, recipient: str, sender: str = ""):
    """A Mailgun route forward() of a whole MIME message (body-mime) to `recipient`, as Mailgun signs it."""
    form = {"recipient": recipient, "sender": sender, "body-mime": raw}
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    form.update(timestamp=timestamp, token=token,
                signature=hmac.new(KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest())
    return post_mailgun(client, form)


def email_delivery(net, phone: str):
    """The email delivery of C1's notice to the member with this phone number."""
    from relay.model.tables import Delivery

    with net.sessions() as session:
        return session.scalars(select(Delivery).where(Delivery.channel == "email",
                                                      Delivery.member_id == member(net, phone).id)).one()


def dsn(*recipients: str, original: str = "", action: str = "failed") -> str:
    """An RFC 3464 report, one failed block per recipient, with the returned headers when given."""
    blocks = "".join(f"\nFinal-Recipient: rfc822; {r}\nAction: {action}\nStatus: 5.1.1\n"
                     f"Diagnostic-Code: smtp; 550 5.1.1 <{r}>: Recipient address rejected\n" for r in recipients)
    returned = f"\n--B\nContent-Type: text/rfc822-headers\n\n{original}" if original else ""
    return DSN.split("--B\nContent-Type: message/delivery-status", 1)[0] + (
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n"
        f"{blocks}{returned}\n--B--\n")


def arf(*recipients: str, original: str = "") -> str:
    """An RFC 5965 abuse report naming `recipients` (Original-Rcpt-To), with the reported message."""
    rcpts = "".join(f"Original-Rcpt-To: {r}\n" for r in recipients)
    original = original or f"From: cases@{DOMAIN}\nTo: {recipients[0]}\nSubject: [C1] Fever and GGO\n"
    return ("From: fbl@isp.example.net\nTo: cases@relay.example.org\nSubject: FW: abuse report\n"
            "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\n\n"
            "--F\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
            "--F\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: ISP-FBL/1.0\n"
            f"Version: 1\n{rcpts}\n--F\nContent-Type: message/rfc822\n\n{original}\nYou have a new case.\n\n--F--\n")


EMAIL_MEMBERS = ["jiwon@example.org", "minho@example.org", "seoyeon@example.org", "alice@example.org",
                 "ben@example.org"]


def email_state(net) -> dict:
    from relay.model.tables import Member

    with net.sessions() as session:
        return {m.email: (m.email_hard_bounces, m.email_suspended_at, m.email_opted_out_at)
                for m in session.scalars(select(Member).where(Member.email.in_(EMAIL_MEMBERS)))}


def email_events(net) -> list[InboundEvent]:
    with net.sessions() as session:
        return session.scalars(select(InboundEvent).where(InboundEvent.kind == "email").order_by(InboundEvent.id)).all()


def test_a_forged_complaint_listing_many_members_changes_nobodys_email(client, net, caplog):
    """Issue 13: one feedback report from anyone used to opt every member it named out of email."""
    before = email_state(net)
    assert post_mime(client, arf(*EMAIL_MEMBERS), f"cases@{DOMAIN}", "fbl@isp.example.net").status_code == 200
    run_worker(net)
    assert email_state(net) == before
    with net.sessions() as session:
        assert session.scalars(select(EmailBounce)).all() == []
    [stored] = email_events(net)
    assert stored.outcome == "bounce_ignored" and "no relay-signed delivery" in stored.detail
    assert "no relay-signed delivery" in caplog.text


def test_forged_delivery_reports_suspend_nobody(client, net):
    """Three DSNs sent straight to the From address, proving nothing, used to suspend the member."""
    for _ in range(net.settings.hard_bounce_limit):
        assert post_mime(client, DSN, f"cases@{DOMAIN}").status_code == 200
    run_worker(net)
    alice = member(net, ALICE)
    assert alice.email_hard_bounces == 0 and alice.email_suspended_at is None
    assert {e.outcome for e in email_events(net)} == {"bounce_ignored"}


def test_hard_bounces_to_the_verp_address_count_for_that_delivery_only(client, net):
    """A bounce that comes back to delivery D's signed VERP address counts for D's recipient; the other
    recipients the same report names change nothing (formerly: an unsigned DSN to cases@)."""
    from relay.inbound.bounce_handling import reset_bounces
    from relay.infra.db import transaction
    from relay.providers.verp import bounce_address

    delivery = email_delivery(net, ALICE)
    verp = bounce_address(net.settings, delivery.id)
    assert verp.startswith("bounce+") and verp.endswith(f"@{DOMAIN}")
    for _ in range(net.settings.hard_bounce_limit):
        assert post_mime(client, dsn("alice@example.org", "ben@example.org"), verp).status_code == 200
    run_worker(net)
    alice = member(net, ALICE)
    assert alice.email_hard_bounces == net.settings.hard_bounce_limit and alice.email_suspended_at is not None
    ben = member(net, "+12025550105")
    assert ben.email_hard_bounces == 0 and ben.email_suspended_at is None
    with net.sessions() as session:
        bounces = session.scalars(select(EmailBounce)).all()
    assert [(b.kind, b.status, b.member_id) for b in bounces] == [("hard", "5.1.1", alice.id)] * 3
    assert all(e.outcome == "bounce" and "ignored 1" in e.detail for e in email_events(net))
    # The coordinator undoes it.
    with transaction(net.sessions) as session:
        from relay.model.tables import Member

        reset_bounces(session, session.get(Member, alice.id), source="test")
    assert member(net, ALICE).email_suspended_at is None


def test_postmark_original_recipient_is_the_verp_address(client, net):
    """Postmark names the envelope recipient in OriginalRecipient: a bounce there counts for that delivery."""
    from relay.providers.verp import bounce_address

    verp = bounce_address(net.settings, email_delivery(net, ALICE).id)
    payload = {"From": "MAILER-DAEMON@mx.example.net", "FromFull": {"Email": "MAILER-DAEMON@mx.example.net"},
               "To": f"cases@{DOMAIN}", "OriginalRecipient": verp, "MessageID": "b0b1e2a4-0000-4000-8000-000000000001",
               "Subject": "Undelivered Mail Returned to Sender", "TextBody": "", "HtmlBody": "",
               "Headers": [{"Name": "Return-Path", "Value": "<>"}], "Attachments": [],
               "RawEmail": dsn("alice@example.org", "ben@example.org")}
    auth = {"Authorization": "Basic " + base64.b64encode(b"pm:pw").decode()}
    assert client.post("/webhooks/email/postmark", data=json.dumps(payload), content_type="application/json",
                       headers=auth).status_code == 200
    run_worker(net)
    assert member(net, ALICE).email_hard_bounces == 1
    assert member(net, "+12025550105").email_hard_bounces == 0


def test_a_delayed_report_to_the_verp_address_is_not_a_bounce(client, net):
    from relay.providers.verp import bounce_address

    verp = bounce_address(net.settings, email_delivery(net, ALICE).id)
    post_mime(client, dsn("alice@example.org", action="delayed"), verp)
    run_worker(net)
    assert member(net, ALICE).email_hard_bounces == 0
    [stored] = email_events(net)
    assert stored.outcome == "bounce" and "delayed=1" in stored.detail


def test_a_report_quoting_a_relay_signed_delivery_counts_for_its_recipient_only(client, net):
    """A complaint sent to the From address (feedback loops do) counts when the reported message is one
    relay signed for a delivery, and only for that delivery's recipient, whoever else it names."""
    from relay.providers.verp import DELIVERY_HEADER, bounce_token

    delivery = email_delivery(net, ALICE)
    original = (f"Return-Path: <cases@{DOMAIN}>\nFrom: cases@{DOMAIN}\nTo: alice@example.org\n"
                f"{DELIVERY_HEADER}: {bounce_token(net.settings.secret(), delivery.id)}\n"
                f"Message-ID: <{post_message_id(net.settings.secret(), 1, DOMAIN)}>\nSubject: [C1] Fever and GGO\n")
    before = email_state(net)
    post_mime(client, arf(*EMAIL_MEMBERS, original=original), f"cases@{DOMAIN}", "fbl@isp.example.net")
    run_worker(net)
    after = email_state(net)
    assert after["alice@example.org"][2] is not None  # opted out of email
    assert {k: v for k, v in after.items() if k != "alice@example.org"} == \
        {k: v for k, v in before.items() if k != "alice@example.org"}
    [stored] = email_events(net)
    assert stored.outcome == "bounce" and "complaint=1" in stored.detail and "ignored 4" in stored.detail


def test_a_returned_original_with_the_verp_return_path_counts_too(client, net):
    """The mailbox that took the message wrote our VERP envelope sender into Return-Path; a DSN quoting it
    counts for that delivery's recipient."""
    from relay.providers.verp import bounce_address

    verp = bounce_address(net.settings, email_delivery(net, ALICE).id)
    original = f"Return-Path: <{verp}>\nFrom: cases@{DOMAIN}\nTo: alice@example.org\nSubject: x\n"
    post_mime(client, dsn("alice@example.org", "ben@example.org", original=original), f"cases@{DOMAIN}")
    run_worker(net)
    assert member(net, ALICE).email_hard_bounces == 1
    assert member(net, "+12025550105").email_hard_bounces == 0


def test_a_post_message_id_alone_proves_nothing(client, net):
    """Every recipient of a post (and anyone they forward it to) sees its Message-ID: quoting it is no
    proof of which copy bounced."""
    original = (f"From: cases@{DOMAIN}\nTo: alice@example.org\n"
                f"Message-ID: <{post_message_id(net.settings.secret(), 1, DOMAIN)}>\nSubject: [C1] Fever and GGO\n")
    post_mime(client, arf(*EMAIL_MEMBERS, original=original), f"cases@{DOMAIN}", "fbl@isp.example.net")
    run_worker(net)
    assert all(v[2] is None for v in email_state(net).values())
    assert email_events(net)[0].outcome == "bounce_ignored"


def test_an_auto_reply_to_the_verp_address_is_discarded_not_counted(client, net):
    """Auto-responders answer the envelope sender (RFC 3834), so out-of-office mail now comes to the VERP
    address: it is no report, counts nothing, and is never posted."""
    from relay.providers.verp import bounce_address

    verp = bounce_address(net.settings, email_delivery(net, ALICE).id)
    form = mailgun_form("alice@example.org", "I am out of the office until Monday.", verp,
                        headers=[["Auto-Submitted", "auto-replied"]])
    form["recipient"] = verp
    post_mailgun(client, form)
    run_worker(net)
    assert member(net, ALICE).email_hard_bounces == 0
    [stored] = email_events(net)
    assert stored.outcome == "discarded" and "bounce address" in stored.detail
    assert net.sender("sms").sent == [] and net.sender("email").sent == []


def test_a_bad_token_or_another_recipients_token_is_ignored_and_recorded(client, net, caplog):
    from relay.providers.verp import bounce_address

    alice_delivery = email_delivery(net, ALICE)
    verp = bounce_address(net.settings, alice_delivery.id)
    local, _, host = verp.partition("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + host  # the signature's last character changed
    post_mime(client, dsn("alice@example.org"), forged)
    # A member's own (valid) token, used to report somebody else.
    post_mime(client, dsn("ben@example.org"), verp)
    post_mime(client, arf("ben@example.org"), verp, "fbl@isp.example.net")
    run_worker(net)
    assert member(net, ALICE).email_hard_bounces == 0
    ben = member(net, "+12025550105")
    assert ben.email_hard_bounces == 0 and ben.email_opted_out_at is None
    with net.sessions() as session:
        assert session.scalars(select(EmailBounce)).all() == []
    bad, other, other_arf = email_events(net)
    assert bad.outcome == "bounce_ignored" and "bad signature" in bad.detail
    assert other.outcome == "bounce_ignored" and "another recipient" in other.detail
    assert other_arf.outcome == "bounce_ignored" and "another recipient" in other_arf.detail
    assert "bad signature" in caplog.text and "another recipient" in caplog.text


def test_postmark_needs_basic_auth_and_threads_by_mailbox_hash(client, net):
    token = alice_reply_address(net).split("+", 1)[1].split("@")[0]
    payload = {
        "FromFull": {"Email": "alice@example.org", "Name": "Alice Moreau", "MailboxHash": ""},
        "From": "alice@example.org", "To": f"cases@{DOMAIN}", "ToFull": [{"Email": f"cases@{DOMAIN}"}],
        "OriginalRecipient": f"reply+{token}@{DOMAIN}", "MailboxHash": token, "Subject": "Re: hello",
        "MessageID": "a8c1040e-db1c-4e18-ac79-bc5f64c7ce2c", "TextBody": "Agree from Postmark.",
        "HtmlBody": "", "Headers": [{"Name": "Message-ID", "Value": "<pm-1@mail.example.org>"}],
        "Attachments": [],
    }
    body = json.dumps(payload)
    unauthenticated = client.post("/webhooks/email/postmark", data=body, content_type="application/json")
    assert unauthenticated.status_code == 403
    auth = {"Authorization": "Basic " + base64.b64encode(b"pm:pw").decode()}
    assert client.post("/webhooks/email/postmark", data=body, content_type="application/json",
                       headers=auth).status_code == 200
    run_worker(net)
    with net.sessions() as session:
        stored = session.scalar(select(InboundEvent).where(InboundEvent.kind == "email"))
    assert stored.dedupe_key == "mid:pm-1@mail.example.org" and stored.outcome == "posted"


def test_unknown_provider_is_404(client):
    assert client.post("/webhooks/email/sparkpost", data="x").status_code == 404


def sendgrid_body(sender: str, recipient: str, text: str) -> tuple[str, bytes]:
    boundary = "xYzZY"
    fields = {"from": sender, "to": recipient, "subject": "Re: [C1] Fever and GGO", "text": text,
              "headers": f"From: {sender}\nTo: {recipient}\nSubject: Re: [C1] Fever and GGO\n"
                         f"Message-ID: <sg-{secrets.token_hex(4)}@mail.example.org>\n",
              "envelope": json.dumps({"to": [recipient], "from": sender}), "charsets": json.dumps(
                  {"from": "UTF-8", "to": "UTF-8", "subject": "UTF-8", "text": "utf-8", "headers": "UTF-8"})}
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in fields.items()) + f"--{boundary}--\r\n"
    return f"multipart/form-data; boundary={boundary}", body.encode()


@pytest.mark.parametrize("how", ["path", "query", "basic"])
def test_sendgrid_secret_in_the_path_query_or_basic_auth(tmp_path, database_url, how):
    settings = make_settings(tmp_path / "var", database_url, sendgrid_secret="sg-secret", mail_domain=DOMAIN,
                             secret_key="s3cret")
    services = build_services(settings, dispatcher=RecordingDispatcher(), senders={})
    client = create_app(services=services).test_client()
    content_type, body = sendgrid_body("alice@example.org", f"cases@{DOMAIN}", "Agree.")
    url, headers = "/webhooks/email/sendgrid", {}
    if how == "path":
        url += "/sg-secret"
    elif how == "query":
        url += "?token=sg-secret"
    else:
        headers["Authorization"] = "Basic " + base64.b64encode(b"sendgrid:sg-secret").decode()
    assert client.post("/webhooks/email/sendgrid/wrong", data=body, content_type=content_type).status_code == 403
    assert client.post(url, data=body, content_type=content_type, headers=headers).status_code == 200
    assert services.dispatcher.inbound
    services.dispose()
