"""relay/providers/smtp_transaction.py sends one message exactly as aiosmtplib's sendmail() does — the same
commands, options and bytes, read by a real SMTP server (aiosmtpd) — and fails the same way: the same
exception types and codes, and an envelope reset so the connection carries the next message."""
from __future__ import annotations

import asyncio

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtplib.email import quote_address

from relay.providers.smtp_email import classify
from relay.providers.smtp_transaction import clean_size, plain, send_one
from tests.standins.smtp_sink import _free_port

VERP = "bounce+7400-abcdefghijklmnop@relay.example.org"
MESSAGES = [
    (VERP, "member12@example.org", b"Subject: a\r\n\r\nplain\r\n", []),
    (VERP, "o'brien+tag@sub.example.co.kr", b"Subject: b\r\n\r\n.a line with a dot\r\n..two\r\n", []),
    (VERP, "k@example.org", "Subject: c\r\n\r\n흉부 영상\r\n".encode(), ["BODY=8BITMIME"]),
    (VERP, "bare@example.org", b"Subject: d\n\nbare line feeds\n", []),  # not CRLF-clean: sendmail's path
    (VERP, "no-final-newline@example.org", b"Subject: e\r\n\r\nno end", []),
    ("cases@relay.example.org", '"quoted local"@example.org', b"Subject: f\r\n\r\nquoted\r\n", []),
]


class Recorder:
    """Every command's arguments as aiosmtpd parsed them, and what the handlers answer."""

    def __init__(self):
        self.log: list[tuple] = []
        self.refuse: dict[str, str] = {}

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.log.append(("MAIL", address, list(mail_options)))
        envelope.mail_from, envelope.mail_options = address, mail_options
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.log.append(("RCPT", address, list(rcpt_options)))
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope, *args):
        self.log.append(("DATA", envelope.content))
        return "250 Message accepted for delivery"

    async def handle_RSET(self, server, session, envelope):
        self.log.append(("RSET",))
        return "250 OK"


@pytest.fixture
def server():
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, recorder
    controller.stop()


def _run(port: int, send, messages) -> list:
    """Send `messages` over one connection with `send`; each one's exception, or None."""

    async def go():
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
        await smtp.connect()
        outcomes = []
        for sender, to, raw, options in messages:
            try:
                await send(smtp, sender, to, raw, options)
                outcomes.append(None)
            except Exception as exc:  # compared below, type and code
                outcomes.append(exc)
        await smtp.quit()
        return outcomes

    return asyncio.run(go())


async def _sendmail(smtp, sender, to, raw, options):
    await smtp.sendmail(sender, [to], raw, mail_options=options)


def test_the_same_commands_and_bytes_as_sendmail(server, monkeypatch):
    controller, recorder = server
    assert _run(controller.port, _sendmail, MESSAGES) == [None] * len(MESSAGES)
    theirs = list(recorder.log)
    recorder.log.clear()
    by_sendmail = []
    sendmail = aiosmtplib.SMTP.sendmail

    async def counted(smtp, sender, recipients, raw, **kwargs):
        by_sendmail.append(recipients[0])
        return await sendmail(smtp, sender, recipients, raw, **kwargs)

    monkeypatch.setattr(aiosmtplib.SMTP, "sendmail", counted)
    assert _run(controller.port, send_one, MESSAGES) == [None] * len(MESSAGES)
    # the connection's first message (its EHLO), bare LFs, no final CRLF, a quoted address: sendmail's path
    assert by_sendmail == [MESSAGES[i][1] for i in (0, 3, 4, 5)]
    assert recorder.log == theirs
    assert ("MAIL", VERP, ["SIZE=21"]) in theirs  # SIZE as sendmail computes it, for a CRLF-clean message


def test_refusals_raise_what_sendmail_raises_and_the_connection_goes_on(server):
    controller, recorder = server
    recorder.refuse = {"gone@example.org": "550 5.1.1 No such user", "full@example.org": "452 4.2.2 Mailbox full"}
    messages = [(VERP, "gone@example.org", b"Subject: x\r\n\r\nx\r\n", []),
                (VERP, "full@example.org", b"Subject: y\r\n\r\ny\r\n", []),
                (VERP, "ok@example.org", b"Subject: z\r\n\r\nz\r\n", [])]
    theirs = _run(controller.port, _sendmail, messages)
    their_log = list(recorder.log)
    recorder.log.clear()
    ours = _run(controller.port, send_one, messages)
    assert [type(e) for e in ours] == [type(e) for e in theirs] == [aiosmtplib.SMTPRecipientsRefused] * 2 + [type(None)]
    assert [(classify(e).code, classify(e).retryable) for e in ours[:2]] == [("550", False), ("452", True)]
    assert [str(classify(e)) for e in ours[:2]] == [str(classify(e)) for e in theirs[:2]]
    assert recorder.log == their_log  # RSET after each refusal, then the next message whole
    assert [entry[0] for entry in recorder.log].count("RSET") == 2


@pytest.mark.parametrize("address", ["a@b.example", "member.name+tag@example.co.kr", "o'brien@example.org",
                                     "bounce+42-x7cipxbovsh4rcqn@relay.example.org", "UPPER@EXAMPLE.ORG"])
def test_a_plain_address_is_quoted_as_aiosmtplib_quotes_it(address):
    assert plain(address) and quote_address(address) == f"<{address}>"


@pytest.mark.parametrize("address", ["", "a", "a@", "@b.example", "a..b@example.org", ".a@example.org",
                                     "a b@example.org", '"q"@example.org', "a@b.example>", "<a@b.example>",
                                     "a@b.example\r\nRCPT TO:<x@y>", "ü@example.org", "a@exämple.org",
                                     "Name <a@b.example>"])
def test_anything_else_is_left_to_sendmail(address):
    assert not plain(address)


def test_size_only_for_a_message_that_needs_no_normalising():
    assert clean_size(b"a\r\nb\r\n") == 6
    assert clean_size(b"a\nb\r\n") is None
    assert clean_size(b"a\rb\r\n") is None
    assert clean_size(b"a\r\nb") is None
