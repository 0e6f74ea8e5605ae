"""issue 17: a coordinator's command by SMS (or email to the relay address), as the whole message, any case:

    NOTICE <list>[,<list>...] [ACK | ACK? | ACK 30m]: <text>    a routine draft notice, previewed
    URGENT <list>[,<list>...] [ACK | ACK? | ACK 30m]: <text>    an urgent one
    SEND <code> / CANCEL <code>                                 confirm or drop what a code stands for
    STATUS <notice>                                             delivery and acknowledgement counts
    HOLD ALL / RESUME ALL                                       the emergency hold, each confirmed by a code

Only members whose roles allow the action (relay/access/permissions.py) get a COMMAND verdict; anyone else
who sends these words gets the usual "not authorised" answer and nothing is created. The words are parsed
here (pure); relay/inbound/coordinator_commands.py carries them out and checks the permission again."""
from __future__ import annotations

import re
from dataclasses import dataclass

from relay.access.permissions import allowed
from relay.rules.verdict import COMMAND, REJECT, Verdict

NAME = "coordinator_command"
DESCRIPTION = "the message is a coordinator command (NOTICE, URGENT, SEND, CANCEL, STATUS, HOLD ALL, RESUME ALL)"

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a phone screen
CODE_LENGTH = 6

_LIST = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
_DRAFT = re.compile(r"(NOTICE|URGENT)\s+(%s(?:\s*,\s*%s)*)(\s+ACK(\?|\s*\d{1,4}\s*[smhdSMHD])?)?\s*:\s*(.+)"
                    % (_LIST, _LIST), re.IGNORECASE | re.DOTALL)
_CODE = re.compile(r"(SEND|CANCEL)\s+([%s]{%d})" % (CODE_ALPHABET + CODE_ALPHABET.lower(), CODE_LENGTH),
                   re.IGNORECASE)
_STATUS = re.compile(r"STATUS\s+#?(\d{1,9})", re.IGNORECASE)
_HOLD = re.compile(r"(HOLD|RESUME)\s+ALL", re.IGNORECASE)

# the permission each command needs (SEND of a hold code also needs hold.toggle: checked when carried out)
PERMISSIONS = {"notice": "notice.create", "urgent": "notice.create", "send": "notice.send",
               "cancel": "notice.send", "status": "notice.read", "hold": "hold.toggle", "resume": "hold.toggle"}


@dataclass(frozen=True)
class Command:
    verb: str  # notice | urgent | send | cancel | status | hold | resume
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
    return None


def check(ctx):
    command = parse(ctx.text)
    if command is None or ctx.member_id is None:
        return None
    if not ctx.member_active or not allowed(ctx.member_roles, PERMISSIONS[command.verb]):
        return Verdict(REJECT, f"{command.verb.upper()} needs the coordinator or admin role", reply="not_authorised")
    return Verdict(COMMAND, f"coordinator command {command.verb.upper()}", command="coordinator",
                   argument=command.verb)
