"""One SMTP mail transaction (MAIL, RCPT, DATA) to one recipient over an aiosmtplib connection, made of
aiosmtplib's own commands (execute_command, data, rset): what SMTP.sendmail does, without parsing
addresses relay has already checked again at every send.

Why not sendmail() for every message: it validates the sender and the recipient with email.utils'
address parser, then parses each again to quote it (four pure-Python parses a message, ~60 us here with
a VERP sender), and normalises the whole message once more only to compute SIZE, before data()
normalises it again: ~15 % of a worker's CPU per email in a broadcast (issue 18). Here an address is
checked once with a strict pattern (a plain ASCII dot-atom addr-spec, which is what relay's VERP senders
and imported member addresses are, and which email.utils quotes as `<address>` unchanged) and SIZE is
the message's length when it is already CRLF-clean. Anything else (quoting, non-ASCII, bare LFs, a
connection before its EHLO) goes through sendmail() as before. The commands and bytes on the wire are
sendmail's (tests/unit/providers/test_smtp_transaction.py), and so are the errors: SMTPSenderRefused,
SMTPRecipientsRefused, SMTPDataError, with RSET after a refusal."""
from __future__ import annotations

import re
from typing import Sequence

import aiosmtplib
from aiosmtplib import SMTPRecipientRefused, SMTPRecipientsRefused, SMTPResponseException, SMTPSenderRefused
from aiosmtplib.typing import SMTPStatus

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def plain(address: str) -> bool:
    """An ASCII dot-atom addr-spec: sent as `<address>` exactly as aiosmtplib's quoting would send it."""
    return _PLAIN.fullmatch(address) is not None


def clean_size(raw: bytes) -> int | None:
    """The message's SMTP SIZE when it needs no line-ending normalisation (CRLF only, ending in CRLF):
    its length, as aiosmtplib would compute it; None otherwise."""
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") == crlf and raw.count(b"\r") == crlf and raw.endswith(b"\r\n"):
        return len(raw)
    return None


async def send_one(smtp: aiosmtplib.SMTP, sender: str, to: str, raw: bytes, options: Sequence[str] = ()) -> None:
    """smtp.sendmail(sender, [to], raw, mail_options=options), with the same commands and errors."""
    size = clean_size(raw)
    if size is None or smtp.is_ehlo_or_helo_needed or not plain(sender) or not plain(to):
        await smtp.sendmail(sender, [to], raw, mail_options=list(options))
        return
    mail_options = [f"size={size}", *options] if smtp.supports_extension("size") else list(options)
    try:
        response = await smtp.execute_command(b"MAIL", b"FROM:<" + sender.encode("ascii") + b">",
                                              *(option.encode("ascii") for option in mail_options))
        if response.code != SMTPStatus.completed:
            raise SMTPSenderRefused(response.code, response.message, sender)
        response = await smtp.execute_command(b"RCPT", b"TO:<" + to.encode("ascii") + b">")
        if response.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
            raise SMTPRecipientsRefused([SMTPRecipientRefused(response.code, response.message, to)])
        await smtp.data(raw)
    except (SMTPResponseException, SMTPRecipientsRefused):
        try:  # as sendmail: the envelope is reset for the connection's next message
            await smtp.rset()
        except (ConnectionError, SMTPResponseException):
            pass
        raise
