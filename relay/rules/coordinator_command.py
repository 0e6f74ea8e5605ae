"""issue 17: a coordinator's command by SMS (or email to the relay address), as the whole message, any case:

    NOTICE <list>[,<list>...] [ACK | ACK? | ACK 30m]: <text>    a routine draft notice, previewed
    URGENT <list>[,<list>...] [ACK | ACK? | ACK 30m]: <text>    an urgent one
    SEND <code> / CANCEL <code>                                 confirm or drop what a code stands for
    STATUS <notice>                                             delivery and acknowledgement counts
    HOLD ALL / RESUME ALL                                       the emergency hold, each confirmed by a code
    STAND DOWN <notice>                                         stop a sent notice and its escalation

STAND DOWN, not STOP <n>: STOP (and CANCEL, END, QUIT ...) is the carriers' opt-out word and stays one
(relay/rules/keywords.py); "STOP 12" is no command at all.

Only members whose roles allow the action (relay/access/permissions.py) get a COMMAND verdict. A member
who may not send notices and whose message merely looks like NOTICE/URGENT ("URGENT case: 45M with
hemoptysis, see C3") is not refused here: the rule lets it through to the ordinary reply path, where it is
posted to its case like any text (never a notice: nothing here runs for it), or, when it threads into no
case, answered with how to post and that only coordinators send notices (relay/inbound/replies.py,
template not_coordinator). Anyone else who sends the other words gets the usual "not authorised" answer;
nothing is created either way. The words are parsed
here (pure); relay/inbound/coordinator_commands.py carries them out and checks the permission again."""
from __future__ import annotations

import re
from dataclasses import dataclass

from relay.access.permissions import allowed
from relay.rules.verdict import COMMAND, REJECT, Verdict

NAME = "coordinator_command"
DESCRIPTION = ("the message is a coordinator command (NOTICE, URGENT, SEND, CANCEL, STATUS, HOLD ALL, RESUME ALL, "
               "STAND DOWN)")

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a phone screen
CODE_LENGTH = 6

_LIST = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
_DRAFT = re.compile(r"(NOTICE|URGENT)\s+(%s(?:\s*,\s*%s)*)(\s+ACK(\?|\s*\d{1,4}\s*[smhdSMHD])?)?\s*:\s*(.+)"
                    % (_LIST, _LIST), re.IGNORECASE | re.DOTALL)
_CODE = re.compile(r"(SEND|CANCEL)\s+([%s]{%d})" % (CODE_ALPHABET + CODE_ALPHABET.lower(), CODE_LENGTH),
                   re.IGNORECASE)
_STATUS = re.compile(r"STATUS\s+#?(\d{1,9})", re.IGNORECASE)
_HOLD = re.compile(r"(HOLD|RESUME)\s+ALL", re.IGNORECASE)
_STAND_DOWN = re.compile(r"STAND\s*DOWN\s+#?(\d{1,9})", re.IGNORECASE)
DRAFTS = ("notice", "urgent")  # free text after the words: from a member, perhaps just a reply

# the permission each command needs (SEND of a hold code also needs hold.toggle: checked when carried out)
PERMISSIONS = {"notice": "notice.create", "urgent": "notice.create", "send": "notice.send",
               "cancel": "notice.send", "status": "notice.read", "hold": "hold.toggle", "resume": "hold.toggle",
               "stand_down": "notice.stop"}


@dataclass(frozen=True)
class Command:
    verb: str  # notice | urgent | send | cancel | status | hold | resume | stand_down
    lists: tuple[str, ...] = ()
    ack: str | None = None  # None: no acknowledgement asked; "": the default window; "30m": this window
    text: str = ""
    code: str = ""
    notice_id: int | None = None


def parse(body: str) -> Command | None:
    """The command the whole message is, or None."""
    text = (body or "").strip()
    match = _DRAFT.fullmatch(text)
    if match:
        verb, lists, words = match.group(1).lower(), match.group(2), match.group(5)
        ack = None
        if match.group(3):  # ACK, ACK? or ACK 30m
            window = match.group(4)
            ack = "" if not window or window == "?" else re.sub(r"\s", "", window).lower()
        names = tuple(sorted({n.strip().lower() for n in lists.split(",") if n.strip()}))
        return Command(verb, lists=names, ack=ack, text=" ".join(words.split()))
    plain = " ".join(text.rstrip(".!").split())
    if match := _CODE.fullmatch(plain):
        return Command(match.group(1).lower(), code=match.group(2).upper())
    if match := _STATUS.fullmatch(plain):
        return Command("status", notice_id=int(match.group(1)))
    if match := _HOLD.fullmatch(plain):
        return Command(match.group(1).lower())
    if match := _STAND_DOWN.fullmatch(plain):
        return Command("stand_down", notice_id=int(match.group(1)))
    return None


def looks_like_draft(body: str) -> bool:
    """Whether the message reads as NOTICE/URGENT <list>: <text> (whoever sent it)."""
    command = parse(body)
    return command is not None and command.verb in DRAFTS


def check(ctx):
    command = parse(ctx.text)
    if command is None or ctx.member_id is None:
        return None
    if not ctx.member_active or not allowed(ctx.member_roles, PERMISSIONS[command.verb]):
        if command.verb in DRAFTS:
            return None  # not a command from them: the reply path (authorisation, then a case or an answer)
        return Verdict(REJECT, f"{command.verb.upper()} needs the coordinator or admin role", reply="not_authorised")
    return Verdict(COMMAND, f"coordinator command {command.verb.upper()}", command="coordinator",
                   argument=command.verb)
