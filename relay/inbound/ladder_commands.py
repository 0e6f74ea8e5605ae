"""The consent ladder by SMS: MUTE C123, UNMUTE C123, PAUSE 24H / 7D, DIGEST, URGENT ONLY (START and
STOP stay in relay/inbound/sms.py with relay/members/consent.py). Each change is logged by relay/members/ladder.py and
confirmed to the member with one SMS (templates/sms/<language>/ladder_<command>.txt)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relay.library.cases import CaseNotFound, get_case
from relay.members import ladder
from relay.model.tables import Member, MemberList, Membership


def apply(session: Session, settings, member: Member, verdict, source: str, plan, channel: str = "sms") -> None:
    """Apply one ladder command from the member's SMS (or WhatsApp message: `channel`) to that channel,
    and plan its confirmation (plan.reply)."""
    command, argument = verdict.command, verdict.argument
    if command in ("mute", "unmute"):
        try:
            case = get_case(session, argument)
        except CaseNotFound:
            plan.reply("unknown_case", code=argument)
            return
        change = ladder.mute if command == "mute" else ladder.unmute
        change(session, member, channel, case.id, case.code, source)
        plan.reply(f"ladder_{command}", case_id=case.id, code=case.code)
    elif command == "pause":
        until = ladder.pause(session, member, channel, ladder.PAUSES[argument], source)
        local = until.astimezone(ladder.zone(member.timezone))
        plan.reply("ladder_pause", until=local.strftime("%Y-%m-%d %H:%M"), zone=member.timezone or "UTC")
    elif command == "digest" and argument:  # DIGEST <list>: that list's routine notices in the digest only
        found = session.execute(select(MemberList.id, MemberList.name).join(
            Membership, Membership.list_id == MemberList.id).where(
            Membership.member_id == member.id, func.lower(MemberList.name) == argument.lower())).first()
        if found is None:
            plan.reply("ladder_unknown_list", list_name=argument.lower())
            return
        ladder.set_list_digest(session, member, channel, found.id, found.name, True, source)
        plan.reply("ladder_digest_list", list_name=found.name, library=settings.library_url)
    elif command == "digest":
        ladder.set_mode(session, member, channel, "digest", source)
        plan.reply("ladder_digest", library=settings.library_url)
    elif command == "urgent_only":
        ladder.set_mode(session, member, channel, "urgent_only", source)
        plan.reply("ladder_urgent_only")
