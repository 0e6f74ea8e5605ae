"""Unguessable, stateless tokens: reply addresses bound to (member, case), unsubscribe links bound to
a member, and the Message-IDs relay gives its posts — each signed with RELAY_SECRET_KEY (HMAC-SHA256),
so nothing needs looking up to check one and nobody can forge another member's.

Tokens are lowercase letters and digits only: mail systems may fold the case of a local part."""
from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass

_SIG_CHARS = 16  # 80 bits of HMAC, base32
_SIG_BYTES = _SIG_CHARS * 5 // 8  # base32 writes 5 bytes as 8 characters: these 10 bytes are exactly those 16


def _sign(secret: str, purpose: str, *parts: object) -> str:
    """The first 16 base32 characters of the HMAC. One-shot hmac.digest and only the 10 bytes shown encoded:
    the same characters as encoding the whole digest, at a third of the CPU (issue 18: a personalised email
    signs three tokens)."""
    message = ":".join([purpose, *map(str, parts)]).encode()
    digest = hmac.digest(secret.encode(), message, "sha256")
    return base64.b32encode(digest[:_SIG_BYTES]).decode().lower()


def _check(secret: str, purpose: str, signature: str, *parts: object) -> bool:
    return hmac.compare_digest(_sign(secret, purpose, *parts), signature.lower())


@dataclass(frozen=True)
class ReplyToken:
    member_id: int
    case_id: int


def reply_token(secret: str, member_id: int, case_id: int) -> str:
    return f"{member_id}-{case_id}-{_sign(secret, 'reply', member_id, case_id)}"


_REPLY = re.compile(r"^(\d{1,12})-(\d{1,12})-([a-z2-7]{%d})$" % _SIG_CHARS)


def read_reply_token(secret: str, token: str) -> ReplyToken | None:
    match = _REPLY.match((token or "").strip().lower())
    if not match:
        return None
    member_id, case_id = int(match.group(1)), int(match.group(2))
    return ReplyToken(member_id, case_id) if _check(secret, "reply", match.group(3), member_id, case_id) else None


def unsubscribe_token(secret: str, member_id: int, scope: str = "email") -> str:
    return f"{member_id}-{scope}-{_sign(secret, 'unsubscribe', member_id, scope)}"


_UNSUB = re.compile(r"^(\d{1,12})-([a-z]{1,20})-([a-z2-7]{%d})$" % _SIG_CHARS)


def read_unsubscribe_token(secret: str, token: str) -> tuple[int, str] | None:
    match = _UNSUB.match((token or "").strip().lower())
    if not match:
        return None
    member_id, scope = int(match.group(1)), match.group(2)
    return (member_id, scope) if _check(secret, "unsubscribe", match.group(3), member_id, scope) else None


def post_message_id(secret: str, post_id: int, domain: str) -> str:
    """The Message-ID of a post's email, the same for every recipient and every send (no brackets)."""
    return f"post-{post_id}.{_sign(secret, 'post', post_id, domain)}@{domain}"


def notice_message_id(secret: str, notice_id: int, domain: str) -> str:
    """The Message-ID of a general notice's email (one with no case thread), the same for everyone."""
    return f"notice-{notice_id}.{_sign(secret, 'notice', notice_id, domain)}@{domain}"


_POST_ID = re.compile(r"^post-(\d{1,12})\.([a-z2-7]{%d})@(.+)$" % _SIG_CHARS)


def post_of_message_id(secret: str, message_id: str) -> int | None:
    """The post a Message-ID we sent stands for, or None (someone else's id, or a forgery)."""
    match = _POST_ID.match((message_id or "").strip().strip("<>").lower())
    if not match:
        return None
    post_id, domain = int(match.group(1)), match.group(3)
    return post_id if _check(secret, "post", match.group(2), post_id, domain) else None


# issue 5: signed links to a member's preference page and to confirm a digest subscription.
_SIGNED_ID = re.compile(r"^(\d{1,12})-([a-z2-7]{%d})$" % _SIG_CHARS)


def signed_id(secret: str, purpose: str, ident: int) -> str:
    """`<id>-<signature>`, good only for `purpose` ("preferences", "confirm-digest")."""
    return f"{ident}-{_sign(secret, purpose, ident)}"


def read_signed_id(secret: str, purpose: str, token: str) -> int | None:
    match = _SIGNED_ID.match((token or "").strip().lower())
    if not match:
        return None
    ident = int(match.group(1))
    return ident if _check(secret, purpose, match.group(2), ident) else None


# issue 17: the acknowledgement link of an urgent notice's email, bound to (notice, member)
def ack_token(secret: str, notice_id: int, member_id: int) -> str:
    return f"{notice_id}-{member_id}-{_sign(secret, 'ack', notice_id, member_id)}"


_ACK = re.compile(r"^(\d{1,12})-(\d{1,12})-([a-z2-7]{%d})$" % _SIG_CHARS)


def read_ack_token(secret: str, token: str) -> tuple[int, int] | None:
    """(notice id, member id) of a valid acknowledgement token, else None."""
    match = _ACK.match((token or "").strip().lower())
    if not match:
        return None
    notice_id, member_id = int(match.group(1)), int(match.group(2))
    return (notice_id, member_id) if _check(secret, "ack", match.group(3), notice_id, member_id) else None
