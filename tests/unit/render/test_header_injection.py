"""CR/LF in names and case titles (however they got into the database) cannot add email headers:
every relayed email still has exactly one From, To and Subject and no Bcc, and nothing fails."""
from __future__ import annotations

from dataclasses import replace
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select, update

from relay.infra.db import transaction
from relay.model.tables import Case, Delivery, Member
from relay.notices.lifecycle import new_case_notice
from tests.conftest import run_worker
from tests.helpers import record_sms

LEE = "+821012345602"
EVIL = "\r\nBcc: v@evil.example\r\nX-Injected: 1"


def test_crlf_in_names_and_titles_cannot_inject_headers(network, mail):
    # the payload holds an email address, which the patient-information guard (issue 16) would hold
    network.settings = replace(network.settings, guard="off")
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    with transaction(network.sessions) as session:
        session.execute(update(Member).where(Member.phone == LEE)
                        .values(name="Lee" + EVIL, short_name=("Lee" + EVIL)[:40]))
        session.execute(update(Member).where(Member.phone != LEE).values(name="Reader" + EVIL))
        session.execute(update(Case).values(title="Fever" + EVIL))
    mail.sent.clear()
    record_sms(network, LEE, "C1 Subject: spoofed\r\nBcc: another@evil.example")
    run_worker(network)
    with network.sessions() as session:
        failed = list(session.scalars(select(Delivery).where(Delivery.status == "failed")))
    assert failed == []
    assert mail.sent, "the relay went out by email"
    for sent in mail.sent:
        message = message_from_bytes(sent.raw, policy=policy.default)
        head = sent.raw.split(b"\r\n\r\n", 1)[0].lower()
        assert b"\r\nbcc:" not in head and b"\r\nx-injected:" not in head, head
        assert message["Bcc"] is None and message["X-Injected"] is None
        for name in ("From", "To", "Subject"):
            assert len(message.get_all(name)) == 1


@pytest.mark.parametrize("text, expected", [
    ("Kim Min-jun", "Kim Min-jun"),
    ("Kim\r\nBcc: attacker@evil.example", "Kim Bcc: attacker@evil.example"),
    ("\x00a\x1fb\x7fc", "a b c"),
    ("  tabs\tand\vform\ffeeds  ", "tabs and form feeds"),
    ("김민준\u3000박", "김민준 박"),  # other whitespace is collapsed too, as str.split() sees it
    ("", ""),
    (None, ""),
])
def test_header_text_is_put_on_one_line(text, expected):
    from relay.render.mail import one_line

    assert one_line(text) == expected
