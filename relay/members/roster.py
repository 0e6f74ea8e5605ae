"""Editing the roster from the API: list summaries, adding and removing a member from a list, and
changing a few of a member's fields with the same validation as the CSV import. Role and activation
changes are audited on their own (they decide who may broadcast), and every edit as member.edit with
each changed field before -> after."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from relay.infra import audit
from relay.infra.storage import insert_if_new
from relay.members.directory import RowError, record_member_change, short_name_of, snapshot
from relay.model.tables import LANGUAGES, ROLES, Member, MemberList, Membership
from relay.model.translatable import N_, Translatable

EDITABLE = ("name", "timezone", "language", "roles", "active")


class ListNotFound(Translatable, LookupError):
    """No list by that name."""


@dataclass(frozen=True)
class ListSummary:
    name: str
    members: int
    created_at: datetime


def list_summaries(session: Session) -> list[ListSummary]:
    """Every list with its member count, by name."""
    counts = (select(MemberList.name, MemberList.created_at, func.count(Membership.id))
              .outerjoin(Membership, Membership.list_id == MemberList.id)
              .group_by(MemberList.id, MemberList.name, MemberList.created_at).order_by(MemberList.name))
    return [ListSummary(name, n, created) for name, created, n in session.execute(counts)]


def get_list(session: Session, name: str) -> MemberList:
    found = session.scalar(select(MemberList).where(MemberList.name == name))
    if found is None:
        raise ListNotFound(N_("no list %(name)s"), name=repr(name))
    return found


def list_summary(session: Session, name: str) -> ListSummary:
    found = get_list(session, name)
    n = session.scalar(select(func.count(Membership.id)).where(Membership.list_id == found.id)) or 0
    return ListSummary(found.name, n, found.created_at)


def add_to_list(session: Session, name: str, member: Member, actor: audit.Actor = audit.SYSTEM) -> bool:
    """Put `member` on the list; True if they were not on it. The unique (list, member) constraint
    decides, so two concurrent adds make one membership."""
    found = get_list(session, name)
    added = insert_if_new(session, Membership.__table__, {"list_id": found.id, "member_id": member.id}) is not None
    if added:
        audit.record(session, "list.add", f"list:{found.name}", actor, member=member.id)
    return added


def remove_from_list(session: Session, name: str, member: Member, actor: audit.Actor = audit.SYSTEM) -> bool:
    """Take `member` off the list; True if they were on it."""
    found = get_list(session, name)
    removed = session.execute(delete(Membership).where(Membership.list_id == found.id,  # type: ignore[attr-defined]  # DML gives a CursorResult; Session.execute is typed Result
                                                       Membership.member_id == member.id)).rowcount > 0
    if removed:
        audit.record(session, "list.remove", f"list:{found.name}", actor, member=member.id)
    return removed


def update_member(session: Session, member: Member, changes: dict, actor: audit.Actor = audit.SYSTEM) -> Member:
    """Apply validated changes to name, timezone, language, roles (a list) and active. Raises
    RowError (with the reason) for a bad value and TypeError for a value of the wrong type."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise RowError(N_("%(field)s cannot be changed here (editable: %(editable)s)"), field=repr(unknown[0]),
                       editable=", ".join(EDITABLE))
    before = snapshot(member)
    if "name" in changes:
        name = " ".join(_text(changes, "name").split())
        if not name or len(name) > 200:
            raise RowError(N_("name must be 1 to 200 characters"))
        member.name, member.short_name = name, short_name_of(name)
    if "timezone" in changes:
        tz = _text(changes, "timezone").strip()
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise RowError(N_("timezone %(zone)s is not an IANA time zone (e.g. Asia/Seoul)"), zone=repr(tz)) from None
        member.timezone = tz
    if "language" in changes:
        language = _text(changes, "language").strip().lower()
        if language not in LANGUAGES:
            raise RowError(N_("language %(value)s is not one of %(languages)s"), value=repr(language),
                           languages=", ".join(LANGUAGES))
        member.language = language
    if "roles" in changes:
        roles = changes["roles"]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise TypeError("'roles' must be a list of role names")
        wanted = sorted({r.strip().lower() for r in roles if r.strip()}, key=lambda r: (r not in ROLES, r))
        bad = [r for r in wanted if r not in ROLES]
        if bad or not wanted:
            if not bad:
                raise RowError(N_("a member needs a role"))
            raise RowError(N_("unknown role %(role)s (roles: %(roles)s)"), role=repr(bad[0]), roles=", ".join(ROLES))
        new_roles = ";".join(sorted(wanted, key=ROLES.index))
        if new_roles != member.roles:
            audit.record(session, "member.roles", f"member:{member.id}", actor, before=member.roles, after=new_roles)
            member.roles = new_roles
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise TypeError("'active' must be true or false")
        if changes["active"] != member.active:
            audit.record(session, "member.active", f"member:{member.id}", actor, after=changes["active"])
            member.active = changes["active"]
    record_member_change(session, member, before, actor, via="api")
    return member


def _text(changes: dict, name: str) -> str:
    if not isinstance(changes[name], str):
        raise TypeError(f"{name!r} must be a string")
    return changes[name]
