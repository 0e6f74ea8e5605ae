"""Issue 16 by email: a reply carrying a patient identifier is held; the author is told once at their own
address (kind and place, never the value) and answers by replying SEND <code> or DROP <code>."""
from __future__ import annotations

import email
import re
from email import policy

from sqlalchemy import select

from relay.model.tables import HeldMessage, InboundEvent, Post
from tests.conftest import run_worker
from tests.unit.inbound.test_mail import alice_reply_address, client, mailgun_form, net, post_mailgun  # noqa: F401

ALICE = "Alice Moreau <alice@example.org>"


def _posts(net) -> list[str]:
    with net.sessions() as session:
        return list(session.scalars(select(Post.body).where(Post.kind == "reply")))


def _hold(client, net):
    form = mailgun_form(ALICE, "Patient Jane Doe, MRN 12345678: GGO both lower lobes.", alice_reply_address(net))
    assert post_mailgun(client, form).status_code == 200
    run_worker(net)
    sent = net.sender("email").sent
    assert [m.to for m in sent] == ["alice@example.org"] and net.sender("sms").sent == []
    message = email.message_from_bytes(sent[0].raw, policy=policy.default)
    net.sender("email").sent.clear()
    return message


def test_an_email_reply_with_identifiers_is_held_and_its_author_told_without_the_values(client, net):
    message = _hold(client, net)
    text = message.get_body(("plain",)).get_content()
    assert "NOT relayed" in text and "a patient's name" in text and "a record or chart number" in text
    assert "Jane" not in text and "12345678" not in text
    assert alice_reply_address(net) in message["Reply-To"]
    assert "Not relayed" in message["Subject"]
    with net.sessions() as session:
        stored = session.scalar(select(InboundEvent).where(InboundEvent.kind == "email"))
        assert stored.outcome == "held" and stored.guard_kinds == ["record_number", "patient_name"]
        assert "12345678" not in stored.detail
    assert _posts(net) == []


def test_replying_send_releases_it_once_and_drop_drops(client, net):
    message = _hold(client, net)
    code = re.search(r"SEND ([A-Z0-9]{6})", message.get_body(("plain",)).get_content()).group(1)
    for _ in range(2):
        post_mailgun(client, mailgun_form(ALICE, f"SEND {code}", alice_reply_address(net)))
    run_worker(net)
    assert _posts(net) == ["Patient Jane Doe, MRN 12345678: GGO both lower lobes."]
    with net.sessions() as session:
        outcomes = sorted(session.scalars(select(InboundEvent.outcome).where(InboundEvent.kind == "email")))
    assert outcomes == ["guard:released", "guard:unknown_code", "held"]
    assert len(net.sender("sms").sent) == 4  # relayed to every SMS follower once


def test_replying_drop_drops_and_nothing_is_relayed(client, net):
    message = _hold(client, net)
    code = re.search(r"DROP ([A-Z0-9]{6})", message.get_body(("plain",)).get_content()).group(1)
    post_mailgun(client, mailgun_form(ALICE, f"DROP {code}", alice_reply_address(net)))
    run_worker(net)
    with net.sessions() as session:
        assert session.scalar(select(HeldMessage.status)) == "dropped"
    assert _posts(net) == [] and net.sender("sms").sent == []


def test_a_forged_send_from_the_authors_address_without_proof_releases_nothing(client, net):
    message = _hold(client, net)
    code = re.search(r"SEND ([A-Z0-9]{6})", message.get_body(("plain",)).get_content()).group(1)
    # no signed reply address and no SPF/DKIM verdict: the From line alone proves nothing
    post_mailgun(client, mailgun_form(ALICE, f"SEND {code}", "cases@relay.example.org", subject="Re: [C1] x"))
    run_worker(net)
    with net.sessions() as session:
        assert session.scalar(select(HeldMessage.status)) == "held"
    assert _posts(net) == []
