"""Recognise automatic mail (auto-replies, bounces, bulk mail, our own mail looping back) so it is
never relayed into a case discussion.

RFC 3834 asks automatic responders to mark what they send and not to answer automatic or bulk mail;
relay is on the receiving side and applies the same tests (docs: PROTOCOLS.md §8). Only headers and
the envelope are used. Subjects ("Out of Office:", "Automatic reply:") are not: they are translated,
reworded and typed by people too, so they would both miss auto-replies and drop real replies.

`X-Auto-Response-Suppress` is deliberately *not* a signal. It asks Exchange not to auto-reply to the
message carrying it; Outlook puts it on ordinary mail people write, so a human reply often has it
(sisimai dropped it from its RFC 3834 detector for this reason, sisimai/p5-sisimai#491).
"""
from __future__ import annotations

import re
from collections.abc import Collection, Iterator

from relay.model.messages import InboundEmail
from relay.rules.verdict import DISCARD, Verdict

NAME = "automatic"
DESCRIPTION = "the message is an auto-reply, a bounce or report, bulk mail, or our own mail looping back"

# Precedence values that mean "not a person writing to the discussion": bulk, list and junk as in
# RFC 3834 and GNU Mailman; auto_reply is what some vacation programs put on their replies.
BULK_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply"})

# Non-standard headers autoresponders add; their presence marks an auto-reply whatever the value.
AUTOREPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder")

# Exchange / Microsoft 365 put this on mail an Inbox rule generated (auto-reply or forward), and use
# it to stop rule loops.
EXCHANGE_RULES_LOOP = "X-MS-Exchange-Inbox-Rules-Loop"

# Report types that are delivery reports (bounces) or feedback (complaints) rather than replies.
BOUNCE_REPORT_TYPES = frozenset({"delivery-status", "feedback-report"})

_COMMENT = re.compile(r"\([^()]*\)")
_FOLD = re.compile(r"\r?\n[ \t]+")
_WORD = re.compile(r"[a-z0-9.@_+=-]+")
_LIST_ID = re.compile(r"<([^<>]+)>")
_DAEMON_LOCALS = frozenset({"mailer-daemon", "postmaster"})


def automatic_reason(email: InboundEmail, own_list_ids: Collection[str] = (),
                     loop_header: str = "X-Relay-Loop", own_domain: str = "") -> str | None:
    """A short reason when `email` is automatic and must be dropped (never relayed), else None.

    `own_list_ids` are our List-Id values, as the bare id (`cases.relay.example.org`) or the whole
    header value (`Cases <cases.relay.example.org>`). `loop_header` is the header relay puts on
    every message it sends; with `own_domain` set, it only counts when its value names that domain.
    """
    content_type, params = _content_type(email)
    if content_type == "multipart/report":
        report_type = params.get("report-type", "")
        return f"multipart/report ({report_type})" if report_type else "multipart/report"
    for value in _all(email, "Auto-Submitted"):
        token = _token(value)
        if token != "no":
            return f"Auto-Submitted: {token or 'empty'}"
    for value in _all(email, "Precedence"):
        token = _token(value)
        if token in BULK_PRECEDENCE:
            return f"Precedence: {token}"
    for name in AUTOREPLY_HEADERS:
        if email.header(name) is not None:
            return f"{name} header"
    if email.header(EXCHANGE_RULES_LOOP) is not None:
        return "Exchange inbox-rule loop header"
    if own_list_ids:
        ours = {_list_id(value) for value in own_list_ids} - {""}
        for value in _all(email, "List-Id"):
            list_id = _list_id(value)
            if list_id in ours:
                return f"our own List-Id {list_id}"
    for value in _all(email, loop_header):
        if not own_domain or _names_domain(value, own_domain):
            return f"our own {loop_header} header"
    if email.envelope_from == "":
        return "null envelope sender <>"
    return None


def check(ctx):
    """The email rule (relay.rules.EMAIL_RULES): automatic mail is discarded, never answered."""
    reason = automatic_reason(ctx.email, own_list_ids=ctx.own_list_ids, loop_header=ctx.loop_header,
                              own_domain=ctx.own_domain)
    return Verdict(DISCARD, reason) if reason else None


def is_bounce(email: InboundEmail) -> bool:
    """True when `email` is a delivery report or complaint for relay's bounce handling
    (relay.inbound.bounces.parse_report): an RFC 3464 DSN or RFC 5965 feedback report, an Exim bounce
    (`X-Failed-Recipients`), or a message from MAILER-DAEMON / postmaster sent with the null sender.

    A DSN that only says "delayed" is still a bounce message here; parse_report tells the kinds apart.
    Auto-replies are not bounces, although many are sent with the null sender too."""
    content_type, params = _content_type(email)
    if content_type == "multipart/report" and params.get("report-type", "") in BOUNCE_REPORT_TYPES:
        return True
    if email.header("X-Failed-Recipients") is not None:
        return True
    if email.envelope_from == "":
        local = email.from_address.rsplit("@", 1)[0].lower()
        if local in _DAEMON_LOCALS:
            return True
    return False


def _all(email: InboundEmail, name: str) -> Iterator[str]:
    wanted = name.lower()
    return (value for key, value in email.headers if key.lower() == wanted)


def _unfold(value: str) -> str:
    return _FOLD.sub(" ", value).strip()


def _token(value: str) -> str:
    """The first token of a structured header, lowercased, without comments or parameters:
    `Auto-Replied; owner-email="x@y" (vacation)` -> `auto-replied`."""
    value = _COMMENT.sub(" ", _unfold(value))
    return value.split(";", 1)[0].strip().strip('"').lower()


def _content_type(email: InboundEmail) -> tuple[str, dict[str, str]]:
    raw = email.header("Content-Type")
    if raw is None:
        return "text/plain", {}
    parts = _unfold(raw).split(";")
    params: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"').lower()
    return parts[0].strip().lower(), params


def _names_domain(value: str, domain: str) -> bool:
    """True when a word of `value` is `domain` or an address at it (not merely contains it:
    `notrelay.example.org` does not name `relay.example.org`)."""
    domain = domain.lower().strip()
    for word in _WORD.findall(_unfold(value).lower()):
        word = word.strip(".")
        if word == domain or word.endswith("@" + domain):
            return True
    return False


def _list_id(value: str) -> str:
    """The id inside `List-Id: Phrase <id>`, or the bare value; lowercased (RFC 2919 ids compare
    case-insensitively)."""
    value = _unfold(value)
    found = _LIST_ID.search(value)
    return (found.group(1) if found else value).strip().lower()


def envelope_is_null(return_path: str) -> bool:
    """True for a Return-Path header value that is the null sender (`<>`), for adapters that only
    have the header: `InboundEmail.envelope_from` should then be ''. An adapter that does not know
    the envelope sender at all must not use '' for it, or every message would count as automatic."""
    return re.sub(r"\s", "", return_path) == "<>"
