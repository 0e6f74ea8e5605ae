"""Issue 13 item 1: an email posts only when it proves its sender.

Proof is relay's signed reply address bound to the member, or the provider's SPF/DKIM pass for a domain
aligned with the From domain (relay/providers/sender_auth.py). Anything else is kept as "unconfirmed" and the member
is asked, at their registered address, to confirm; confirming posts exactly once, within the window.
The inbound flood and repeat limits apply to email as to SMS."""
from __future__ import annotations

import base64
import json
import re
import secrets
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select

from relay.model.messages import AuthVerdict
from relay.model.tables import InboundEvent, Post
from relay.providers.sender_auth import aligned, proof
from tests.conftest import run_worker
from tests.unit.inbound.test_mail import (  # noqa: F401 — fixtures
    ALICE,
    DOMAIN,
    KIM,
    alice_reply_address,
    client,
    mailgun_form,
    net,
    post_mailgun,
)

FORGED_TEXT = "Stop the antibiotics today."


def _events(net) -> list[InboundEvent]:
    with net.sessions() as session:
        return list(session.scalars(select(InboundEvent).where(InboundEvent.kind == "email")
                                    .order_by(InboundEvent.id)))


def _replies(net) -> list[Post]:
    with net.sessions() as session:
        return list(session.scalars(select(Post).where(Post.kind == "reply")))


def _confirm_link(net) -> str:
    [mail] = [m for m in net.sender("email").sent if m.to == "alice@example.org"]
    text = message_from_bytes(mail.raw, policy=policy.default).get_body(("plain",)).get_content()
    assert FORGED_TEXT in text  # the member sees what would be posted in their name
    return re.search(r"https?://\S+/email/confirm/(\S+)", text).group(0)


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# ---- the forgery

def test_a_forged_from_with_a_case_code_does_not_post_and_the_member_is_asked(client, net):
    form = mailgun_form("Alice Moreau <alice@example.org>", FORGED_TEXT, f"cases@{DOMAIN}",
                        subject="Re: [C1] Fever and GGO")
    assert post_mailgun(client, form).status_code == 200
    run_worker(net)
    [event] = _events(net)
    assert event.outcome == "unconfirmed", event.detail
    assert _replies(net) == []
    assert net.sender("sms").sent == []  # nothing relayed to the followers
    assert [m.to for m in net.sender("email").sent] == ["alice@example.org"]  # only the member, asked
    _confirm_link(net)


def test_confirming_posts_exactly_once(client, net):
    post_mailgun(client, mailgun_form("alice@example.org", FORGED_TEXT, f"cases@{DOMAIN}"))
    run_worker(net)
    path = _path(_confirm_link(net))
    page = client.get(path)  # a link scanner's GET changes nothing
    assert page.status_code == 200 and b"<form" in page.data
    run_worker(net)
    assert _replies(net) == []
    assert client.post(path).status_code == 200
    run_worker(net)
    [post] = _replies(net)
    assert post.body == FORGED_TEXT and post.channel == "email"
    assert KIM in {m.to for m in net.sender("sms").sent}  # relayed to the followers now
    [event] = _events(net)
    assert event.outcome == "posted" and "confirmed" in event.detail
    sent = len(net.sender("sms").sent)
    again = client.post(path)
    assert again.status_code == 410
    run_worker(net)
    assert len(_replies(net)) == 1 and len(net.sender("sms").sent) == sent


def test_an_expired_confirmation_does_nothing(client, net):
    post_mailgun(client, mailgun_form("alice@example.org", FORGED_TEXT, f"cases@{DOMAIN}"))
    run_worker(net)
    path = _path(_confirm_link(net))
    with net.sessions() as session, session.begin():
        event = session.scalar(select(InboundEvent).where(InboundEvent.kind == "email"))
        event.received_at = event.received_at - net.settings.email_confirm_window - timedelta(minutes=1)
    assert client.post(path).status_code == 410
    run_worker(net)
    assert _replies(net) == []
    assert _events(net)[0].outcome == "unconfirmed"


def test_a_forged_confirmation_link_is_refused(client, net):
    post_mailgun(client, mailgun_form("alice@example.org", FORGED_TEXT, f"cases@{DOMAIN}"))
    run_worker(net)
    event_id = _events(net)[0].id
    assert client.post(f"/email/confirm/{event_id}-aaaaaaaaaaaaaaaa").status_code == 404
    assert _replies(net) == []


def test_a_flood_of_forgeries_asks_the_member_a_few_times_only(client, net):
    for n in range(6):
        post_mailgun(client, mailgun_form("alice@example.org", f"{FORGED_TEXT} {n}", f"cases@{DOMAIN}"))
    run_worker(net)
    assert {e.outcome for e in _events(net)} == {"unconfirmed"}
    assert len(net.sender("email").sent) == 3


# ---- proof by the signed reply address (as before) and by the provider's verdicts

def test_the_signed_reply_address_is_proof(client, net):
    post_mailgun(client, mailgun_form("alice@example.org", "Agree.", alice_reply_address(net)))
    run_worker(net)
    assert _events(net)[0].outcome == "posted"


@pytest.mark.parametrize("headers, envelope", [
    ([["X-Mailgun-Spf", "Pass"]], "alice@example.org"),
    ([["X-Mailgun-Spf", "Pass"]], "bounces@mail.example.org"),  # a subdomain of the From domain
    ([["DKIM-Signature", "v=1; a=rsa-sha256; d=example.org; s=s1; b=x"], ["X-Mailgun-Dkim-Check-Result", "Pass"]],
     "bounces@esp.example.net"),
    ([["Authentication-Results", "mx.trusted.example; dkim=pass header.d=example.org; spf=fail"]],
     "x@esp.example.net"),
])
def test_an_aligned_mailgun_verdict_posts(client, net, headers, envelope):
    net.settings = net.settings.replace(email_trusted_authserv_ids=("mx.trusted.example",))
    post_mailgun(client, mailgun_form("alice@example.org", "Agree.", f"cases@{DOMAIN}", headers=headers,
                                      envelope=envelope))
    run_worker(net)
    assert _events(net)[0].outcome == "posted", _events(net)[0].detail


@pytest.mark.parametrize("headers, envelope", [
    ([["X-Mailgun-Spf", "Pass"]], "alice@evil.example"),  # SPF passes, but for the forger's domain
    ([["X-Mailgun-Spf", "Fail"]], "alice@example.org"),
    ([["X-Mailgun-Spf", "Pass"], ["X-Mailgun-Spf", "SoftFail"]], "alice@example.org"),  # a forged copy
    ([["DKIM-Signature", "v=1; d=evil.example; s=s1"], ["X-Mailgun-Dkim-Check-Result", "Pass"]], "a@evil.example"),
    ([["DKIM-Signature", "v=1; d=example.org; s=s1"], ["DKIM-Signature", "v=1; d=evil.example; s=s1"],
      ["X-Mailgun-Dkim-Check-Result", "Pass"]], "a@evil.example"),  # which one passed?
    ([["Authentication-Results", "mx.evil.example; dkim=pass header.d=example.org"]], "a@evil.example"),
])
def test_a_failing_or_misaligned_mailgun_verdict_is_held(client, net, headers, envelope):
    net.settings = net.settings.replace(email_trusted_authserv_ids=("mx.trusted.example",))
    post_mailgun(client, mailgun_form("alice@example.org", "Agree.", f"cases@{DOMAIN}", headers=headers,
                                      envelope=envelope))
    run_worker(net)
    assert _events(net)[0].outcome == "unconfirmed"
    assert _replies(net) == []


def _sendgrid(client, spf: str, dkim: str, envelope_from: str = "alice@example.org"):
    boundary, sender, recipient = "xYzZY", "alice@example.org", f"cases@{DOMAIN}"
    fields = {"headers": f"From: {sender}\nTo: {recipient}\nSubject: Re: [C1] Fever and GGO\n"
                         f"Message-ID: <sg-{secrets.token_hex(4)}@mail.example.org>\n",
              "dkim": dkim, "from": sender, "to": recipient, "subject": "Re: [C1] Fever and GGO", "text": "Agree.",
              "envelope": json.dumps({"to": [recipient], "from": envelope_from}), "SPF": spf}
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in fields.items()) + f"--{boundary}--\r\n"
    return client.post("/webhooks/email/sendgrid/sg-secret", data=body.encode(),
                       content_type=f"multipart/form-data; boundary={boundary}")


@pytest.fixture
def sg_client(net):
    from webhooks.app import create_app

    net.settings = net.settings.replace(sendgrid_secret="sg-secret")
    return create_app(services=net).test_client()


@pytest.mark.parametrize("spf, dkim, envelope_from, outcome", [
    ("pass", "{@example.org : pass}", "alice@example.org", "posted"),
    ("softfail", "{@example.org : pass}", "alice@evil.example", "posted"),  # DKIM alone is enough
    ("pass", "none", "alice@example.org", "posted"),  # SPF alone is enough
    ("pass", "{@evil.example : pass}", "a@evil.example", "unconfirmed"),
    ("fail", "{@example.org : fail}", "alice@example.org", "unconfirmed"),
    ("", "", "alice@example.org", "unconfirmed"),
])
def test_sendgrid_verdicts(sg_client, net, spf, dkim, envelope_from, outcome):
    assert _sendgrid(sg_client, spf, dkim, envelope_from).status_code == 200
    run_worker(net)
    assert _events(net)[0].outcome == outcome, _events(net)[0].detail


@pytest.mark.parametrize("headers, outcome", [
    ([{"Name": "Received-SPF", "Value": "pass (example.org: Sender is authorized to use 'alice@example.org' in "
                                         "'mfrom' identity) receiver=pm; identity=mailfrom; "
                                         "envelope-from=\"alice@example.org\"; helo=mail.example.org"}], "posted"),
    ([{"Name": "X-Spam-Tests", "Value": "DKIM_SIGNED,DKIM_VALID,DKIM_VALID_AU,SPF_HELO_NONE"}], "posted"),
    ([{"Name": "Received-SPF", "Value": "fail (example.org: Sender is not authorized) envelope-from=\"alice@example.org\""},
      {"Name": "X-Spam-Tests", "Value": "DKIM_SIGNED,DKIM_VALID,SPF_FAIL"}], "unconfirmed"),
    ([{"Name": "Received-SPF", "Value": "pass (evil.example: …) envelope-from=\"x@evil.example\""}], "unconfirmed"),
    ([{"Name": "X-Spam-Tests", "Value": "DKIM_VALID_AU"},  # the forger's copy next to Postmark's
      {"Name": "X-Spam-Tests", "Value": "DKIM_SIGNED,DKIM_INVALID"}], "unconfirmed"),
])
def test_postmark_verdicts(client, net, headers, outcome):
    payload = {
        "FromFull": {"Email": "alice@example.org", "Name": "Alice Moreau", "MailboxHash": ""},
        "From": "alice@example.org", "To": f"cases@{DOMAIN}", "ToFull": [{"Email": f"cases@{DOMAIN}"}],
        "OriginalRecipient": f"cases@{DOMAIN}", "MailboxHash": "", "Subject": "Re: [C1] Fever and GGO",
        "MessageID": "a8c1040e-db1c-4e18-ac79-bc5f64c7ce2c", "TextBody": "Agree from Postmark.", "HtmlBody": "",
        "Headers": [{"Name": "Return-Path", "Value": "<alice@example.org>"},
                    {"Name": "Message-ID", "Value": f"<pm-{secrets.token_hex(4)}@mail.example.org>"}, *headers],
        "Attachments": [],
    }
    auth = {"Authorization": "Basic " + base64.b64encode(b"pm:pw").decode()}
    assert client.post("/webhooks/email/postmark", data=json.dumps(payload), content_type="application/json",
                       headers=auth).status_code == 200
    run_worker(net)
    assert _events(net)[0].outcome == outcome, _events(net)[0].detail


# ---- flood and repeat limits

def test_email_flooding_hits_the_inbound_limits(client, net):
    limit = net.settings.inbound_per_minute
    for n in range(limit + 3):
        post_mailgun(client, mailgun_form("alice@example.org", f"Update {n}", alice_reply_address(net)))
    run_worker(net)
    outcomes = [e.outcome for e in _events(net)]
    assert outcomes.count("posted") == limit
    assert outcomes.count("throttled") == 3
    assert len(_replies(net)) == limit


def test_an_email_auto_responder_repeating_itself_is_not_relayed_twice(client, net):
    for _ in range(2):
        post_mailgun(client, mailgun_form("alice@example.org", "I am away this week.", alice_reply_address(net)))
    run_worker(net)
    assert [e.outcome for e in _events(net)] == ["posted", "repeat"]


# ---- alignment

@pytest.mark.parametrize("domain, from_domain, expected", [
    ("hospital.example", "hospital.example", True),
    ("mail.hospital.example", "hospital.example", True),
    ("hospital.example", "mail.hospital.example", True),
    ("Hospital.Example.", "hospital.example", True),
    ("evil.example", "hospital.example", False),
    ("hospital.example.evil.example", "hospital.example", False),
    ("mail.hospital.co.uk", "hospital.co.uk", True),
    ("co.uk", "hospital.co.uk", False),  # a public suffix speaks for nobody
    ("evil.github.io", "github.io", False),
    ("", "hospital.example", False),
])
def test_alignment(domain, from_domain, expected):
    assert aligned(domain, from_domain) is expected


def test_authentication_results_count_only_from_trusted_servers():
    verdicts = [AuthVerdict("dkim", "pass", "example.org", "ar:mx.evil.example")]
    assert proof(verdicts, "alice@example.org", ("mx.trusted.example",)) is None
    verdicts = [AuthVerdict("dkim", "pass", "example.org", "ar:mx.trusted.example")]
    assert proof(verdicts, "alice@example.org", ("mx.trusted.example",))


def test_settings():
    from relay.infra.settings import Settings

    default = Settings.from_env({})
    assert default.email_confirm_window == timedelta(hours=48) and default.email_trusted_authserv_ids == ()
    custom = Settings.from_env({"RELAY_EMAIL_CONFIRM_WINDOW": "2h",
                                "RELAY_EMAIL_TRUSTED_AUTHSERV_IDS": "MX.Hospital.example, mx.b.example"})
    assert custom.email_confirm_window == timedelta(hours=2)
    assert custom.email_trusted_authserv_ids == ("mx.hospital.example", "mx.b.example")
