"""Raw RFC 5322 messages -> InboundEmail (stdlib `email`, policy.default), and the address, Message-ID,
charset and assembly helpers the inbound adapters (mailgun, sendgrid, postmark) share.

A real-shape message (a Japanese reply as Outlook writes it: ISO-2022-JP with Windows extensions such
as ① and 髙 in the body, References folded over three lines; tests/data/mime/iso2022jp_reply.eml):

    Return-Path: <Takahashi.Akiko@Clinic.example.jp>
    From: =?iso-2022-jp?b?GyRCOWI2NhsoQiAbJEJMQDtSGyhC?= <Takahashi.Akiko@Clinic.example.jp>
    To: "C123 discussion" <c123@relay.example.org>
    Subject: =?iso-2022-jp?b?UmU6IEMxMjMgGyRCNjtJdBsoQlgbJEJAfiROPWo4KyRLJEQkJCRGGyhC?=
    Message-ID: <TYCP286MB2305A1F0C3D14E9B8A7B2C4DA1@TYCP286MB2305.JPNP286.PROD.OUTLOOK.COM>
    In-Reply-To: <c123.p2.5f1e@relay.example.org>
    References: <c123.p1.0a9c@relay.example.org>
     <CAK7bX2m8Qv+3kZ@mail.gmail.com>
     <c123.p2.5f1e@relay.example.org>
    Content-Type: text/plain; charset="iso-2022-jp"
    Content-Transfer-Encoding: 7bit
"""
from __future__ import annotations

import codecs
import re
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Iterable, Iterator, Sequence

from relay.model.messages import Attachment, InboundEmail
from relay.providers.errors import BadWebhook

# Charsets mail software writes but labels with a narrower name: decode with the superset it really used.
_SUPERSETS = {"ascii": "utf-8", "euc_kr": "cp949", "gb2312": "gb18030", "gbk": "gb18030",
              "shift_jis": "cp932", "iso8859-1": "cp1252", "iso2022_jp": "iso2022_jp_ext"}
_PYTHON_ONLY = frozenset({"undefined", "punycode", "idna", "unicode-escape", "raw-unicode-escape",
                          "mbcs", "oem"})
_KEEP_FOLDING = policy.compat32  # re-serialises an attached message without refolding its headers


def codec_for(charset: str | None) -> str:
    """The Python codec for a declared charset: its usual superset; UTF-8 when missing, unknown or not a
    mail charset at all (charset="base64", "rot13", "unicode_escape" ... are Python codecs too)."""
    try:
        info = codecs.lookup((charset or "utf-8").strip().strip('"').strip())
    except LookupError:
        return "utf-8"
    if info.name in _PYTHON_ONLY or not getattr(info, "_is_text_encoding", True):  # base64, zlib, rot13 ...
        return "utf-8"
    return _SUPERSETS.get(info.name, info.name)


def clean(text: str) -> str:
    """Text safe to store: raw 8-bit bytes the parser kept as surrogates read as UTF-8, no NUL characters."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "")


def decode_text(data: bytes, charset: str | None) -> str:
    """Body bytes in their declared charset; never raises (mislabelled UTF-8 and Windows JIS handled)."""
    codec = codec_for(charset)
    try:
        return clean(data.decode(codec))
    except UnicodeError:
        pass
    if codec.startswith("iso2022_jp"):
        return clean(_jis_as_cp932(data))  # CP50220: NEC row 13 (①) and IBM kanji (髙) Python's codecs lack
    try:
        return clean(data.decode("utf-8"))
    except UnicodeError:
        return clean(data.decode(codec, "replace"))


_JIS_ESCAPE = re.compile(rb"\x1b(\$[@B]|\([BJI])")


def _jis_as_cp932(data: bytes) -> str:
    """ISO-2022-JP as Windows writes it, re-encoded to Shift_JIS bytes and decoded as cp932."""
    out, mode = bytearray(), b"(B"
    for index, piece in enumerate(_JIS_ESCAPE.split(data)):
        if index % 2:
            mode = piece
        elif mode in (b"$@", b"$B"):
            for j1, j2 in zip(piece[::2], piece[1::2]):
                s1 = ((j1 + 1) >> 1) + (0x70 if j1 <= 0x5E else 0xB0)
                s2 = j2 + ((0x1F + (j2 >= 0x60)) if j1 % 2 else 0x7E)
                out += bytes((s1 & 0xFF, s2 & 0xFF))
        elif mode == b"(I":
            out += bytes(b | 0x80 for b in piece)
        else:
            out += piece
    return out.decode("cp932", "replace")


def header_text(name: str, value: str) -> str:
    """A header value as the stdlib presents it: unfolded, RFC 2047 words decoded."""
    try:
        text = str(policy.default.header_fetch_parse(name, value))
    except Exception:  # the stdlib header parser has raised on hostile input before; keep the raw text
        text = "".join(str(value).splitlines())
    return clean(text)


def first_header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), None)


_COMMENT_OR_QUOTED = re.compile(r'\([^()]*\)|"(?:[^"\\]|\\.)*"')
_ANGLED = re.compile(r"<\s*([^<>\s]+)\s*>")


def bare_ids(header_value: str | None) -> tuple[str, ...]:
    """Message-IDs in a Message-ID / In-Reply-To / References value: no angle brackets, in order, each
    once. Folding, commas, comments and quoted phrases are skipped; when no id is bracketed at all,
    whitespace/comma separated tokens containing '@' are taken (broken mailers)."""
    text = _COMMENT_OR_QUOTED.sub(" ", header_value or "")
    found = _ANGLED.findall(text) or [t.strip("<>") for t in re.split(r"[\s,]+", text) if "@" in t]
    return tuple(dict.fromkeys(item for item in found if item))


def _mailboxes(value: str | None) -> list[tuple[str, str]]:
    """(display name, address as written) for every mailbox in an address-list value."""
    if not value or not value.strip():
        return []
    try:
        pairs = [(a.display_name, a.addr_spec) for a in policy.default.header_factory("To", value).addresses]
    except Exception:
        pairs = getaddresses([value])
    result = []
    for name, address in pairs:
        local, _, domain = address.strip().rpartition("@")
        if local and domain and not set("<>\r\n") & set(address):
            result.append((clean(name or "").strip(), address.strip()))
    return result


def address_of(value: str | None) -> tuple[str, str]:
    """The first mailbox of an address value: (display name, lowercased address), ('', '') if none."""
    for name, address in _mailboxes(value):
        return name, address.lower()
    return "", ""


def addresses_of(values: Iterable[str | None]) -> list[str]:
    """Every lowercased address in the given address-list values, in order."""
    return [address.lower() for value in values for _, address in _mailboxes(value)]


def envelope_address(value: str | None) -> str:
    """An SMTP reverse-path (MAIL FROM, Return-Path) as a bare lowercased address; '' for <>."""
    return address_of((value or "").strip())[1]


def mailbox_hash_of(values: Iterable[str | None]) -> str:
    """The part after '+' in the local part of the first plus-addressed recipient, case kept."""
    for value in values:
        for _, address in _mailboxes(value):
            local = address.rpartition("@")[0]
            if "+" in local:
                return local.split("+", 1)[1]
    return ""


def _lines(text: str) -> str:
    return clean(text).replace("\r\n", "\n").replace("\r", "\n")


def inbound_email(*, provider: str, headers: Sequence[tuple[str, str]], envelope_from: str | None,
                  recipients: Sequence[str], provider_message_id: str = "",
                  sender: tuple[str, str] | None = None, from_value: str | None = None,
                  header_recipients: Sequence[str | None] | None = None, subject: str | None = None,
                  mailbox_hash: str | None = None, text: str = "", html: str = "",
                  attachments: Sequence[Attachment] = ()) -> InboundEmail:
    """The InboundEmail every adapter returns, from what its provider gave.

    headers: (name, raw or decoded value) pairs in order; threading ids, Return-Path and (unless given)
    From, To, Cc and Subject are read from them. envelope_from None means "not given": the Return-Path
    header, else the From address. sender is an already split (name, address) pair."""
    headers = tuple((clean(name), header_text(name, value)) for name, value in headers)
    name, address = (sender[0] or "", address_of(sender[1])[1]) if sender else ("", "")
    if not address:
        name, address = address_of(from_value if from_value is not None else first_header(headers, "From"))
    if not address:
        raise BadWebhook("the message has no usable From address")
    if envelope_from is None:
        return_path = first_header(headers, "Return-Path")
        envelope = envelope_address(return_path) if return_path is not None else address
    else:
        envelope = envelope_address(envelope_from)
    if header_recipients is None:
        header_recipients = [first_header(headers, "To"), first_header(headers, "Cc")]
    everyone = tuple(dict.fromkeys(addresses_of(recipients) + addresses_of(header_recipients)))
    if subject is None:
        subject = first_header(headers, "Subject") or ""
    return InboundEmail(
        provider=provider, provider_message_id=clean(provider_message_id or ""),
        message_id=next(iter(bare_ids(first_header(headers, "Message-ID"))), ""),
        envelope_from=envelope, from_address=address, from_name=clean(name), recipients=everyone,
        mailbox_hash=clean(mailbox_hash) if mailbox_hash else mailbox_hash_of(recipients),
        subject=_lines(subject).replace("\n", " ").strip(), text=_lines(text), html=_lines(html),
        in_reply_to=bare_ids(first_header(headers, "In-Reply-To")),
        references=bare_ids(first_header(headers, "References")),
        headers=headers, attachments=tuple(attachments))


def safe_filename(name: str | None) -> str:
    """A provider's attachment filename without directories or control characters ('' when none)."""
    base = re.split(r"[\\/]", clean(name or ""))[-1]
    return "".join(ch for ch in base if ch >= " " and ch != "\x7f").strip()


def _describe(part: Message) -> tuple[str, str | None, bool, str | None]:
    """(content type, filename, inline?, charset) of a part. RFC 2231 parameters in a charset the stdlib
    fails on (punycode, undefined) make it an anonymous application/octet-stream attachment."""
    try:
        filename = part.get_filename()
        inline = filename is None and part.get_content_disposition() != "attachment"
        return part.get_content_type(), filename, inline, part.get_content_charset()
    except (UnicodeError, LookupError):
        return "application/octet-stream", None, False, None


def _leaves(message: Message) -> Iterator[Message]:
    """The non-multipart parts, depth first, in order (without recursion: nesting depth is the sender's)."""
    stack = [message]
    while stack:
        part = stack.pop()
        payload = part.get_payload()
        if isinstance(payload, list) and _describe(part)[0].startswith("multipart/"):
            stack.extend(reversed(payload))  # type: ignore[arg-type]  # typeshed types get_payload() loosely: bytes or None with decode=True, a list of Messages when multipart
        else:
            yield part


def _content(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    if data is not None:
        return data  # type: ignore[return-value]  # typeshed types get_payload() loosely: bytes or None with decode=True, a list of Messages when multipart
    inner = part.get_payload()  # message/rfc822, message/delivery-status: parsed sub-messages
    if isinstance(inner, list):
        return b"".join(sub.as_bytes(policy=_KEEP_FOLDING) for sub in inner)  # type: ignore[union-attr]  # typeshed types get_payload() loosely: bytes or None with decode=True, a list of Messages when multipart
    return str(inner).encode("utf-8", "surrogateescape")


def email_from_mime(raw: bytes, provider: str, provider_message_id: str = "",
                    envelope_from: str | None = None, recipients: Sequence[str] = ()) -> InboundEmail:
    """A whole RFC 5322 message as relay's InboundEmail.

    Inline text/plain and text/html parts are the bodies (several of one kind are joined, as Apple Mail
    splits a body around inline images); every other leaf part, message/rfc822 included, is an
    attachment. envelope_from None: Return-Path, else the From address. recipients (the envelope's)
    come first, then To and Cc."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except RecursionError:  # the stdlib parser recurses once per nested multipart
        raise BadWebhook("the MIME structure is nested too deeply") from None
    except (UnicodeError, LookupError) as exc:  # e.g. multipart parameters in charset*=punycode''
        raise BadWebhook(f"undecodable MIME parameters: {exc}") from None
    texts: list[str] = []
    htmls: list[str] = []
    attachments = []
    for part in _leaves(message):
        ctype, filename, inline, charset = _describe(part)
        if inline and ctype in ("text/plain", "text/html"):
            body = decode_text(part.get_payload(decode=True) or b"", charset)  # type: ignore[arg-type]  # typeshed types get_payload() loosely: bytes or None with decode=True, a list of Messages when multipart
            (texts if ctype == "text/plain" else htmls).append(body)
        else:
            attachments.append(Attachment(safe_filename(filename), ctype, _content(part)))
    return inbound_email(provider=provider, provider_message_id=provider_message_id,
                         headers=list(message.raw_items()), envelope_from=envelope_from,
                         recipients=recipients, text="\n".join(texts), html="\n".join(htmls),
                         attachments=attachments)
