"""issue 17: a reply with ACK acknowledges a notice by email, once, only from a proven sender (the signed
reply address or an aligned SPF/DKIM pass), and is never posted to the discussion."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from relay.infra.db import transaction
from relay.infra.signing import notice_message_id
from relay.model.tables import InboundEvent, Post
from relay.model.urgent import Acknowledgement
from relay.notices.lifecycle import create_notice, send_notice
from relay.render.mail import reply_address
from tests.conftest import run_worker
from tests.helpers import member
from tests.unit.inbound.test_mail import DOMAIN, mailgun_form, net, post_mailgun  # noqa: F401 (the fixture)
from webhooks.app import create_app

ALICE = "+33612345604"


@pytest.fixture
def urgent(net):  # noqa: F811
    with transaction(net.sessions) as session:
        case_notice = create_notice(session, kind="announcement", title="Masks in C1's room", case_code="C1",
                                    lists=["tft"], severity="urgent", ack_within=timedelta(minutes=30)).id
        general = create_notice(session, kind="announcement", title="Isolation guideline changed", lists=["tft"],
                                severity="urgent", ack_within=timedelta(minutes=30)).id
    send_notice(net, case_notice)
    send_notice(net, general)
    run_worker(net)
    net.ids = {"case": case_notice, "general": general}
    return net


def _events(services):
    with services.sessions() as session:
        return [(e.outcome, e.detail) for e in session.scalars(select(InboundEvent).where(InboundEvent.kind == "email"))]


def _acks(services):
    with services.sessions() as session:
        return [(a.notice_id, a.member_id, a.channel) for a in session.scalars(select(Acknowledgement))]


def test_ack_to_the_signed_reply_address_records_it(urgent):
    client = create_app(services=urgent).test_client()
    alice = member(urgent, ALICE).id
    to = reply_address(urgent.settings, alice, 1)
    post_mailgun(client, mailgun_form("alice@example.org", f"ACK {urgent.ids['case']}\n\n> quoted notice", to))
    post_mailgun(client, mailgun_form("alice@example.org", f"ok {urgent.ids['case']}", to))  # again: once
    run_worker(urgent)
    assert _acks(urgent) == [(urgent.ids["case"], alice, "email")]
    assert [o for o, _ in _events(urgent)] == ["acknowledged", "acknowledged"]
    with urgent.sessions() as session:
        assert session.scalars(select(Post).where(Post.kind == "reply")).all() == []  # never a post


def test_a_bare_ack_to_the_notice_email_finds_its_notice(urgent):
    client = create_app(services=urgent).test_client()
    answered = notice_message_id(urgent.settings.secret(), urgent.ids["general"], DOMAIN)
    post_mailgun(client, mailgun_form("alice@example.org", "ACK", f"cases@{DOMAIN}", subject="Re: Isolation",
                                      in_reply_to=answered, headers=[["X-Mailgun-Spf", "Pass"]]))
    run_worker(urgent)
    assert _acks(urgent) == [(urgent.ids["general"], member(urgent, ALICE).id, "email")]


def test_an_unproven_sender_records_nothing(urgent):
    client = create_app(services=urgent).test_client()
    post_mailgun(client, mailgun_form("alice@example.org", f"ACK {urgent.ids['general']}", f"cases@{DOMAIN}"))
    run_worker(urgent)
    assert _acks(urgent) == []
    [(outcome, detail)] = _events(urgent)
    assert outcome == "rejected" and "sender not proven" in detail


def test_a_bare_ack_with_two_open_requests_says_which(urgent):
    client = create_app(services=urgent).test_client()
    post_mailgun(client, mailgun_form("alice@example.org", "ACK", f"cases@{DOMAIN}", subject="Re: x",
                                      headers=[["X-Mailgun-Spf", "Pass"]]))
    run_worker(urgent)
    assert _acks(urgent) == [] and "say which" in _events(urgent)[0][1]
