"""Read bounces and complaints, so relay can count them per recipient.

- RFC 3464 delivery status notifications (`multipart/report; report-type=delivery-status`): one
  BounceReport per recipient block whose Action is `failed` (hard for 5.x.x, soft for 4.x.x) or
  `delayed` (kind "delayed": not a bounce, the MTA is still trying). `delivered`, `relayed` and
  `expanded` blocks are success reports and are left out.
- RFC 5965 feedback reports (`multipart/report; report-type=feedback-report`) of Feedback-Type
  `abuse` or `fraud`: kind "complaint", for Original-Rcpt-To or else the reported message's To.
  Other feedback types (`auth-failure` DMARC/SPF reports, `not-spam`, `virus`, `other`) are no
  recipient's complaint and give nothing.
- Anything else (old non-RFC bounces: qmail, old Exchange, Yahoo's own format ...): flufl.bounce's
  heuristic detectors; its permanent failures become "hard", its temporary ones "soft", both with
  status "". Only call parse_report on mail that is a bounce (relay.rules.automatic.is_bounce, or mail
  that arrived at a VERP bounce address): heuristics on a person's message can find false bounces.

VERP (http://cr.yp.to/proto/verp.txt): send each recipient's copy with its own envelope sender,
`bounces+kim=example.org@relay.example.org`; a bounce comes back to that address, which names the
recipient even when the DSN is unreadable. verp_address builds one, recipient_from_verp reads it (Mailman's
unsigned form, which anyone can write: relay's own, signed per delivery, is relay.inbound.bounce_proof's, and
only a report proven that way is counted, relay.inbound.bounce_handling.handle_report).
"""
from __future__ import annotations

import copy
import email
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from typing import Literal

from flufl.bounce import all_failures

from relay.infra.logs import mask_text
from relay.model.messages import InboundEmail

log = logging.getLogger(__name__)

Kind = Literal["hard", "soft", "delayed", "complaint"]
KINDS: tuple[Kind, ...] = ("hard", "soft", "delayed", "complaint")

# Feedback-Type values that are a recipient complaining about our mail (RFC 5965 §7.3; RFC 6650
# recommends abuse for spam complaints). auth-failure (RFC 6591) is a DMARC/SPF failure report.
COMPLAINT_TYPES = frozenset({"abuse", "fraud"})

DELIVERY_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
FEEDBACK_TYPES = frozenset({"message/feedback-report"})
ORIGINAL_TYPES = frozenset({"message/rfc822", "message/global", "text/rfc822-headers",
                            "message/rfc822-headers", "message/global-headers"})
# Parts whose content is the returned message or report fields: never look inside them for more
# reports (a bounce of a bounce carries the first bounce).
_LEAVES = DELIVERY_STATUS_TYPES | FEEDBACK_TYPES | ORIGINAL_TYPES

FLUFL_DIAGNOSTIC = "detected by flufl.bounce (no RFC 3464 report)"
FLUFL_LOST_REPORT_DIAGNOSTIC = ("detected by flufl.bounce; the message says it is an RFC 3464 report but its "
                                "delivery-status part is missing, so a permanent failure is counted as soft")

_FOLD = re.compile(r"\r?\n[ \t]+")
_COMMENT = re.compile(r"\([^()]*\)")
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?<!\d)([245])\d\d(?![\d.])")
_UTF8_XTEXT = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_DSN_FIELDS = re.compile(r"^(final-recipient|action)\s*:", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class BounceReport:
    """What a report says about one recipient."""

    recipient: str  # lowercased bare address
    kind: Kind  # hard | soft | delayed | complaint
    status: str  # RFC 3463 enhanced status code ("5.1.1"), '' when none was given
    action: str  # the DSN Action (failed | delayed), the Feedback-Type for complaints, '' from flufl
    diagnostic: str  # Diagnostic-Code as given (unfolded), or a short note on where this came from

    @property
    def is_bounce(self) -> bool:
        """True for a failed delivery (hard or soft), the kinds a bounce count should see."""
        return self.kind in ("hard", "soft")


def parse_report(raw_or_email: bytes | str | Message | InboundEmail) -> list[BounceReport]:
    """Every failed, delayed or complained-about recipient a bounce or feedback report names.

    Give the raw MIME message (bytes) when you have it. An InboundEmail from a provider that only
    passed decoded parts is rebuilt into a MIME message from its headers, text and attachments first
    (a `message/delivery-status` attachment is then read like the real part).
    """
    msg = _as_message(raw_or_email)
    reports, recognised = _from_report_parts(msg)
    if not recognised:
        reports = _from_flufl(msg, lost_report=_declares_delivery_status(msg))
    return _unique(reports)


def verp_address(bounce_local: str, domain: str, recipient: str) -> str:
    """The VERP envelope sender for `recipient`: ('bounces', 'relay.example.org', 'kim@example.org')
    -> 'bounces+kim=example.org@relay.example.org' (Mailman's `%(bounces)s+%(mailbox)s=%(host)s`)."""
    recipient = recipient.strip()
    local, at, host = recipient.rpartition("@")
    if not at or not local or not host or '"' in local or "@" in local or any(c.isspace() for c in recipient):
        raise ValueError(f"cannot put {recipient!r} into a VERP address")
    return f"{bounce_local}+{local}={host}@{domain}"


def recipient_from_verp(address: str, bounce_local: str, domain: str) -> str | None:
    """The recipient named by a VERP address made by verp_address (lowercased), or None when
    `address` is not one of ours. Accepts `<...>` and display-name forms."""
    bare = parseaddr(address)[1] or address.strip().strip("<>")
    local, at, host = bare.rpartition("@")
    if not at or host.lower() != domain.lower():
        return None
    prefix = bounce_local.lower() + "+"
    if not local.lower().startswith(prefix):
        return None
    mailbox, eq, rhost = local[len(prefix):].rpartition("=")
    if not eq or not mailbox or not rhost:
        return None
    return f"{mailbox}@{rhost}".lower()


def returned_headers(raw_or_email: bytes | str | Message | InboundEmail) -> list[Message]:
    """The headers of the original message(s) a report returns (its message/rfc822 or
    text/rfc822-headers parts), where relay looks for the proof that the report is about its own mail
    (relay.inbound.bounce_proof). Returned messages inside those are not looked into."""
    msg = _as_message(raw_or_email)
    found = []
    for part in _parts(msg):
        if part is not msg and part.get_content_type() in ORIGINAL_TYPES:
            headers = _original_headers(part)
            if headers is not None:
                found.append(headers)
    return found


# -- reading RFC 3464 / RFC 5965 report parts ----------------------------------------------------

def _from_report_parts(msg: Message) -> tuple[list[BounceReport], bool]:
    """Reports from delivery-status and feedback-report parts, and whether any such part was read
    (a DSN that only reports successes is recognised and gives no reports: no flufl fallback)."""
    reports: list[BounceReport] = []
    recognised = False
    original: Message | None = None
    feedback: list[Message] = []
    for part in _parts(msg):
        content_type = part.get_content_type()
        if content_type in DELIVERY_STATUS_TYPES:
            found, seen = _dsn_reports(part)
            reports.extend(found)
            recognised = recognised or seen
        elif content_type in FEEDBACK_TYPES:
            feedback.append(part)
        elif content_type in ORIGINAL_TYPES and original is None:
            original = _original_headers(part)
    for part in feedback:
        fields = _merged(_field_blocks(part))
        if fields.get("Feedback-Type") is None:
            continue
        recognised = True
        reports.extend(_complaints(fields, original))
    return reports, recognised


def _dsn_reports(part: Message) -> tuple[list[BounceReport], bool]:
    reports: list[BounceReport] = []
    seen = False
    for block in _field_blocks(part):
        action_value = block.get("Action")
        recipient_values = [block.get("Original-Recipient"), block.get("Final-Recipient")]
        if action_value is None and not any(recipient_values):
            continue  # the per-message block (Reporting-MTA, Arrival-Date ...)
        seen = True
        action = _token(str(action_value or ""))
        diagnostic = _unfold(str(block.get("Diagnostic-Code") or ""))
        status = _enhanced(str(block.get("Status") or "")) or _enhanced(diagnostic)
        if action.startswith("fail") or action == "error":  # opensmtpd has said "error"
            action = "failed"
            kind: Kind = "soft" if _status_class(status, diagnostic) == "4" else "hard"
        elif action.startswith("delay"):
            action = "delayed"
            kind = "delayed"
        else:
            continue  # delivered, relayed, expanded: nothing went wrong
        recipient = next((r for r in map(_dsn_address, recipient_values) if r), None)
        if recipient is None:
            log.warning("DSN block with Action %s names no usable recipient: %s", action,
                        mask_text(recipient_values))
            continue
        reports.append(BounceReport(recipient, kind, status, action, diagnostic))
    return reports, seen


def _complaints(fields: Message, original: Message | None) -> list[BounceReport]:
    feedback_type = _token(str(fields.get("Feedback-Type") or ""))
    if feedback_type not in COMPLAINT_TYPES:
        return []
    recipients = _addresses(fields.get_all("Original-Rcpt-To", []))
    if not recipients and original is not None:
        recipients = _addresses(original.get_all("To", []))
    diagnostic = f"Feedback-Type: {feedback_type}"
    agent = _unfold(str(fields.get("User-Agent") or ""))
    if agent:
        diagnostic += f"; User-Agent: {agent}"
    if not recipients:
        log.warning("%s report names no recipient (no Original-Rcpt-To, no To in the original)", feedback_type)
    return [BounceReport(r, "complaint", "", feedback_type, diagnostic) for r in recipients]


def _parts(msg: Message) -> Iterator[Message]:
    """Every part of `msg`, not descending into returned messages or report fields."""
    yield msg
    if msg.get_content_type() in _LEAVES or not msg.is_multipart():
        return
    for sub in msg.get_payload():
        if isinstance(sub, Message):
            yield from _parts(sub)


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status / feedback-report part.

    The email package splits message/delivery-status into blocks itself and reads other message/*
    types as one message whose headers are the fields; when that did not happen (a base64 or
    quoted-printable part, a part rebuilt from a string) the text is split here."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, list):  # parsed before decoding: put the text back together, then decode
        raw = "\n\n".join(block.as_string() for block in payload if isinstance(block, Message))
        probe = Message()
        probe["Content-Transfer-Encoding"] = encoding
        probe.set_payload(raw)
        data = probe.get_payload(decode=True)
    else:
        data = part.get_payload(decode=True)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
    text = text.replace("\r\n", "\n")
    parser = HeaderParser()
    return [parser.parsestr(chunk.strip("\n") + "\n") for chunk in re.split(r"\n[ \t]*\n", text) if chunk.strip()]


def _merged(blocks: list[Message]) -> Message:
    merged = Message()
    for block in blocks:
        for key, value in block.items():
            merged[key] = value
    return merged


def _original_headers(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    data = part.get_payload(decode=True)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
    return HeaderParser().parsestr(text.replace("\r\n", "\n"), headersonly=True)


def _dsn_address(value: object) -> str | None:
    """`rfc822; kim@example.org` (or a bare / angle-bracketed address, as some MTAs write) ->
    'kim@example.org'; None for other address types (x400 ...) and for anything not an address."""
    if not value:
        return None
    text = _unfold(str(value))
    address_type, sep, address = text.partition(";")
    if not sep:
        address_type, address = "rfc822", text
    address_type = address_type.strip().lower()
    if address_type not in ("rfc822", "utf-8"):
        return None
    if address_type == "utf-8":
        address = _UTF8_XTEXT.sub(lambda m: chr(int(m.group(1), 16)), address)
    address = parseaddr(_COMMENT.sub(" ", address).strip())[1] or address.strip().strip("<>")
    return address.lower() if _looks_like_address(address) else None


def _addresses(values: list) -> list[str]:
    found = []
    for _name, address in getaddresses([_unfold(str(v)) for v in values]):
        address = address.strip().lower()
        if _looks_like_address(address) and address not in found:
            found.append(address)
    return found


def _looks_like_address(address: str) -> bool:
    local, at, host = address.rpartition("@")
    return bool(at and local and host) and not any(c.isspace() for c in address)


def _enhanced(text: str) -> str:
    found = _ENHANCED.search(text)
    return ".".join(found.groups()) if found else ""


def _status_class(status: str, diagnostic: str) -> str:
    if status:
        return status[0]
    basic = _BASIC.search(diagnostic)
    return basic.group(1) if basic else ""


def _token(value: str) -> str:
    """The first word of a field, lowercased, without comments: `Failed (gave up)` -> `failed`."""
    words = _COMMENT.sub(" ", _unfold(value)).split(";", 1)[0].split()
    return words[0].lower() if words else ""


def _unfold(value: str) -> str:
    return " ".join(_FOLD.sub(" ", value).split())


def _unique(reports: list[BounceReport]) -> list[BounceReport]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for report in reports:
        if (report.recipient, report.kind) not in seen:
            seen.add((report.recipient, report.kind))
            unique.append(report)
    return unique


# -- non-RFC bounces -------------------------------------------------------------------------------

def _from_flufl(msg: Message, lost_report: bool = False) -> list[BounceReport]:
    """flufl.bounce's permanent failures as hard, temporary ones as soft.

    With `lost_report` (the message declares itself an RFC 3464 delivery report but the report part
    is gone, as when a provider adapter kept only the text) permanent failures are counted as soft:
    flufl's text heuristics read e.g. Postfix's "Delayed Mail (still being retried)" warning text as a
    permanent failure, and only the missing report part would have said "delayed"."""
    try:
        temporary, permanent = all_failures(_with_str_headers(msg))
    except Exception:  # a heuristic detector choking on odd input must not lose the message
        log.exception("flufl.bounce failed on a bounce message")
        return []
    if lost_report:
        reports = [BounceReport(_decode(a), "soft", "", "", FLUFL_LOST_REPORT_DIAGNOSTIC)
                   for a in sorted(permanent | temporary)]
    else:
        reports = [BounceReport(_decode(a), "hard", "", "", FLUFL_DIAGNOSTIC) for a in sorted(permanent)]
        reports += [BounceReport(_decode(a), "soft", "", "", FLUFL_DIAGNOSTIC)
                    for a in sorted(temporary - permanent)]
    return [r for r in reports if _looks_like_address(r.recipient)]


def _with_str_headers(msg: Message) -> Message:
    """A copy of `msg` whose header values are all str. The email package returns an email.header.Header
    for a header with raw non-ASCII bytes (a UTF-8 Subject written without RFC 2047), and some
    flufl.bounce detectors call str methods on header values (Sina: `msg.get('from', '').lower()`),
    which then raises and loses the whole bounce."""
    msg = copy.deepcopy(msg)
    for part in msg.walk():
        items = part.items()
        if all(isinstance(value, str) for _, value in items):
            continue
        for name in set(part.keys()):
            del part[name]
        for name, value in items:
            part[name] = str(value)
    return msg


def _declares_delivery_status(msg: Message) -> bool:
    return (msg.get_content_type() == "multipart/report"
            and str(msg.get_param("report-type", "") or "").lower() == "delivery-status")


def _decode(address: bytes) -> str:
    return address.decode("ascii", "replace").strip().strip("<>").lower()


# -- input -----------------------------------------------------------------------------------------

def _as_message(raw_or_email: bytes | str | Message | InboundEmail) -> Message:
    if isinstance(raw_or_email, Message):
        return raw_or_email
    if isinstance(raw_or_email, (bytes, bytearray, memoryview)):
        return email.message_from_bytes(bytes(raw_or_email))
    if isinstance(raw_or_email, str):
        return email.message_from_string(raw_or_email)
    if isinstance(raw_or_email, InboundEmail):
        return email.message_from_bytes(rebuild_mime(raw_or_email))
    raise TypeError(f"parse_report needs raw MIME bytes, a str, a Message or an InboundEmail, "
                    f"not {type(raw_or_email).__name__}")


_DROPPED_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version", "content-length"})


def rebuild_mime(inbound: InboundEmail) -> bytes:
    """A MIME message made from what a provider adapter kept: the headers, the text (or, without
    text, the HTML) and the attachments. The top-level type (e.g. multipart/report;
    report-type=delivery-status) is kept with a fresh boundary; an attachment that is plainly
    delivery-status fields but was labelled text/plain or octet-stream is relabelled."""
    content_type, params = _header_type(inbound.header("Content-Type") or "text/plain")
    bodies: list[tuple[str, bytes]] = []
    if inbound.text:
        bodies.append(("text/plain; charset=utf-8", inbound.text.encode("utf-8")))
    elif inbound.html:
        bodies.append(("text/html; charset=utf-8", inbound.html.encode("utf-8")))
    for attachment in inbound.attachments:
        kind = (attachment.content_type or "application/octet-stream").strip()
        base = kind.split(";", 1)[0].strip().lower()
        if base in ("text/plain", "application/octet-stream") and _looks_like_dsn(attachment.content):
            kind = "message/delivery-status"
        bodies.append((kind, attachment.content))
    head = [f"{key}: {_unfold(value)}" for key, value in inbound.headers if key.lower() not in _DROPPED_HEADERS]
    head.append("MIME-Version: 1.0")
    if len(bodies) <= 1 and not content_type.startswith("multipart/"):
        kind, body = bodies[0] if bodies else ("text/plain; charset=utf-8", b"")
        head += [f"Content-Type: {kind}", "Content-Transfer-Encoding: 8bit"]
        return "\n".join(head).encode("utf-8") + b"\n\n" + body
    boundary = "=_relay_rebuilt_" + secrets.token_hex(12)
    top = content_type if content_type.startswith("multipart/") else "multipart/mixed"
    extra = "".join(f'; {k}="{v}"' for k, v in params.items() if k != "boundary")
    head.append(f'Content-Type: {top}{extra}; boundary="{boundary}"')
    out = "\n".join(head).encode("utf-8") + b"\n\n"
    for kind, body in bodies:
        out += f"--{boundary}\nContent-Type: {kind}\nContent-Transfer-Encoding: 8bit\n\n".encode() + body + b"\n"
    return out + f"--{boundary}--\n".encode()


def _header_type(value: str) -> tuple[str, dict[str, str]]:
    probe = Message()
    probe["Content-Type"] = _unfold(value)
    params = {k.lower(): str(v) for k, v in (probe.get_params() or [])[1:]}
    return probe.get_content_type(), params


def _looks_like_dsn(content: bytes) -> bool:
    text = content[:20000].decode("utf-8", "replace")
    return {m.lower() for m in _DSN_FIELDS.findall(text)} == {"final-recipient", "action"}
