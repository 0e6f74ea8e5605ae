"""issue 17: coordinator commands by email to the relay address: carried out only for a coordinator whose
provider reports an aligned SPF/DKIM pass, answered by email with the preview and a code bound to the address;
anyone else, or an unproven sender, gets nothing done and no answer."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from relay.model.tables import InboundEvent, Notice
from relay.model.urgent import ConfirmationCode
from relay.notices.lifecycle import send_scheduled
from tests.conftest import run_worker
from tests.helpers import reads_english
from tests.unit.inbound.test_mail import DOMAIN, mailgun_form, net, post_mailgun  # noqa: F401 (the fixture)
from webhooks.app import create_app

SPF = [["X-Mailgun-Spf", "Pass"]]


def _command(client, sender: str, text: str, proven: bool = True):
    post_mailgun(client, mailgun_form(sender, text, f"cases@{DOMAIN}", subject="command",
                                      headers=SPF if proven else []))


def _answers(net, to: str) -> list[str]:  # noqa: F811
    return [m.raw.decode() for m in net.sender("email").sent if m.to == to]


def _notices(net):  # noqa: F811
    with net.sessions() as session:
        return list(session.scalars(select(Notice).where(Notice.kind == "announcement")))


def test_a_proven_coordinator_drafts_and_sends_by_email(net):  # noqa: F811
    reads_english(net, "jiwon@example.org")  # her answers are read in English below
    client = create_app(services=net).test_client()
    _command(client, "jiwon@example.org", "URGENT tft ACK 10m: Isolation guideline changed")
    run_worker(net)
    [answer] = _answers(net, "jiwon@example.org")
    assert "Subject: relay: your command" in answer and "ACK asked within 10m" in answer
    code = re.search(r"SEND ([A-Z2-9]{6})", answer).group(1)
    [draft] = _notices(net)
    assert (draft.status, draft.severity, draft.ack_within_s) == ("draft", "urgent", 600)
    with net.sessions() as session:
        assert session.scalar(select(ConfirmationCode.address)) == "jiwon@example.org"
    _command(client, "jiwon@example.org", f"SEND {code}")
    run_worker(net)
    send_scheduled(net)  # beat sends the confirmed notice
    run_worker(net)
    assert _notices(net)[0].status == "sent"
    assert any("Reply ACK" in m.body for m in net.sender("sms").sent)


def test_unproven_or_unauthorised_senders_get_nothing_done_and_no_answer(net):  # noqa: F811
    client = create_app(services=net).test_client()
    _command(client, "jiwon@example.org", "NOTICE tft: hello", proven=False)  # a forged From, perhaps
    _command(client, "minho@example.org", "NOTICE tft: hello")  # a member, proven
    run_worker(net)
    assert _notices(net) == []
    assert net.sender("email").sent == []
    with net.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ConfirmationCode)) == 0
        details = [e.detail for e in session.scalars(select(InboundEvent).where(InboundEvent.kind == "email")
                                                     .order_by(InboundEvent.id))]
    assert "sender not proven" in details[0]
    assert "no reply token" in details[1]  # a member's NOTICE is an ordinary mail: no case named, not relayed


def test_a_members_reply_that_begins_with_urgent_is_posted_to_its_case(net):  # noqa: F811
    """Like by SMS: only a coordinator's NOTICE/URGENT is a command; a member's is the reply it reads as."""
    from relay.model.tables import Post

    client = create_app(services=net).test_client()
    post_mailgun(client, mailgun_form("minho@example.org", "URGENT case: 45M with hemoptysis, see C3",
                                      f"cases@{DOMAIN}", subject="Re: [C1] Fever and GGO", headers=SPF))
    run_worker(net)
    assert _notices(net) == []
    with net.sessions() as session:
        assert session.scalar(select(InboundEvent.outcome).where(InboundEvent.kind == "email")) == "posted"
        assert "hemoptysis" in session.scalar(select(Post.body).order_by(Post.id.desc()))
