"""The audit trail: who broadcast, published, held or changed consent, when, and from where.

Callers pass an Actor; the core functions that change something that matters (send a notice, publish a
case, change visibility, hold sending, opt out) write one AuditEvent in the same transaction as the
change, so the record exists exactly when the change does."""
from __future__ import annotations

import getpass
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.model.tables import AuditEvent, Member


@dataclass(frozen=True)
class Actor:
    label: str  # member:3, cli:root, api-token, scheduler, provider:twilio
    source: str  # cli | api | console | sms | email | web | provider | beat | system
    member_id: int | None = None


# Every action the code records (tests/unit/infra/test_audit.py checks each audit.record call against it), so
# `relay audit --action` can tell an unknown action from one that simply has no events yet.
ACTIONS = (
    "case.close", "case.create", "case.discard", "case.publish", "case.purge", "case.reopen", "case.visibility",
    "command.code_refused", "command.draft", "command.refused", "command.send", "command.status",  # issue 17
    "consent.opt_in", "consent.opt_out",
    "guard.black_out", "guard.confirm", "guard.drop", "guard.expire", "guard.hold", "guard.release",  # issue 16
    "guard.release_image",
    "hold.off", "hold.on",
    "inbound.retry",
    "list.add", "list.remove",
    "member.active", "member.calls", "member.create", "member.edit", "member.import", "member.roles",
    "notice.cancel", "notice.pause", "notice.resume", "notice.schedule", "notice.send",
    "notice.stop",  # issue 17: a sent notice's escalation stopped
    "reach.headline_published", "reach.headline_withdrawn",  # issue 20
    "token.create", "token.revoke",
)

SYSTEM = Actor("system", "system")
SCHEDULER = Actor("scheduler", "beat")


def cli_actor() -> Actor:
    """Whoever runs the command on the server (the operating-system user)."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return Actor(f"cli:{user}", "cli")


def member_actor(member: Member, source: str) -> Actor:
    return Actor(f"member:{member.id}", source, member.id)


def record(session: Session, action: str, subject: str = "", actor: Actor = SYSTEM, **detail) -> AuditEvent:
    event = AuditEvent(action=action, subject=subject, actor=actor.label, actor_member_id=actor.member_id,
                       source=actor.source, detail=detail)
    session.add(event)
    return event


def known_actions(session: Session) -> list[str]:
    """ACTIONS and any other action already in the trail (recorded by an older or newer relay)."""
    return sorted(set(ACTIONS) | set(session.scalars(select(AuditEvent.action).distinct())))


def recent(session: Session, limit: int = 100, action: str | None = None) -> list[AuditEvent]:
    """Newest first."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEvent.action == action)
    return list(session.scalars(query))
