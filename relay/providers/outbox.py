"""The dev outbox: with no provider configured, outbound messages are written as JSON files under
var/outbox/ (shown at /dev/outbox) instead of being sent.

An email rendered whole (digests, confirmations, "preferences changed") carries no separate body: its
text column is the message's text/plain part, so every email shows what it says and its links."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

from relay.model.messages import OutboundMessage, SendResult


class OutboxSender:
    name = "outbox"

    def __init__(self, settings):
        self.directory: Path = settings.outbox_dir
        self.senders = {"sms": settings.twilio_from or "relay", "email": settings.email_from,
                        "whatsapp": getattr(settings, "whatsapp_from", "") or "relay"}

    def send(self, message: OutboundMessage) -> SendResult:
        self.directory.mkdir(parents=True, exist_ok=True)
        sid = f"OB{message.delivery_id:032d}"
        # One file per delivery id: sending the same delivery again rewrites, never adds.
        path = self.directory / f"{message.channel}-{message.delivery_id:09d}.json"
        extra: dict[str, str] = {}
        body = message.body
        if message.raw is not None:  # email: keep the whole message too, openable in a mail client
            eml = path.with_suffix(".eml")
            eml.write_bytes(message.raw)
            parsed = message_from_bytes(message.raw, policy=policy.default)
            extra = {"subject": str(parsed["Subject"] or ""), "message_id": str(parsed["Message-ID"] or ""),
                     "in_reply_to": str(parsed["In-Reply-To"] or ""), "eml": eml.name}
            if not (body or "").strip():
                body = _plain_text(parsed)
        record = {
            "sid": sid,
            "channel": message.channel,
            "to": message.to,
            "from": self.senders.get(message.channel, "relay"),
            "body": body,
            **({"content_sid": message.content_sid, "content_variables": message.content_variables}
               if message.content_sid else {}),
            "delivery_id": message.delivery_id,
            "written_at": datetime.now(timezone.utc).isoformat(),
            **extra,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=2))
        os.replace(tmp, path)
        return SendResult(provider_message_id=sid, provider_status="queued")


def _plain_text(parsed) -> str:
    """The text/plain part of an email (else its HTML part), "" when it has neither."""
    part = parsed.get_body(("plain", "html"))
    try:
        return part.get_content().replace("\r\n", "\n").strip() if part is not None else ""
    except (LookupError, ValueError):  # an unknown charset: the .eml still has it all
        return ""


def read_outbox(directory: Path, limit: int = 200) -> list[dict]:
    """The newest messages first, for the /dev/outbox page."""
    if not directory.exists():
        return []
    files = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    records = []
    for path in files[:limit]:
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return records
