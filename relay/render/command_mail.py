"""issue 17: the email answering a coordinator's command by email (relay/inbound/email_commands.py): the same
words as the SMS answer, as a plain operational message (no list headers, no threading, no unsubscribe)."""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from relay.model.tables import Delivery


def command_reply_email(settings, delivery: Delivery) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.email_from
    message["To"] = delivery.to_address
    message["Subject"] = f"{settings.network_name}: your command"
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(f"command.{delivery.id}", domain=settings.email_domain)
    message["Auto-Submitted"] = "auto-replied"  # RFC 3834: never answered by an auto-responder
    message.set_content(delivery.body)
    return message
