"""Members and lists, and the CSV import (`relay members import FILE.csv`).

Header: name,phone,email,timezone,language,lists,roles[,channels][,whatsapp][,whatsapp_opt_in] — lists,
roles and channels separated by ';'; channels is any of sms, email, whatsapp (default: sms and email, each
when the member has an address for it; WhatsApp only when asked for). A file without the channels column
leaves an existing member's channels as they are (a re-import must not undo the member's own choice). A row
adds its member to its lists; only with `sync_lists` (`relay members import --sync-lists`) does it also take
them off the lists it does not name. `whatsapp` is a WhatsApp number when it differs from the phone;
`whatsapp_opt_in` says how the member consented to WhatsApp (e.g. "signed form 2026-11-02"): it is recorded
in the consent log as `import:<those words>`. Without a recorded opt-in a member who chose WhatsApp gets
nothing there until they message the WhatsApp number or opt in on their preference page.
Good rows are imported, bad rows reported with their line numbers; a member is matched by phone,
then email, so importing the same file again updates rather than duplicates. An empty roles cell
keeps an existing member's roles (a new member is a plain member).

Roles decide who may broadcast and who may grant roles, so the roles column is applied only when the
caller may grant roles (`grant_roles`: the console passes the signed-in member's `member.roles`
permission, `relay members import` its `--grant-roles` flag); otherwise a row that would change
anyone's roles is refused with its line number and the other rows still import. Every import, and
every member it creates or changes (each field before -> after), is in the audit trail."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.infra import audit
from relay.members import consent
from relay.members.emails import is_email_address
from relay.members.phones import InvalidPhone, to_e164
from relay.model.channels import CHANNELS
from relay.model.tables import LANGUAGES, ROLES, Member, MemberList, Membership
from relay.model.translatable import N_, Translatable

HEADER = ["name", "phone", "email", "timezone", "language", "lists", "roles"]
OPTIONAL = ["channels", "whatsapp", "whatsapp_opt_in"]
CHANNEL_NAMES = ", ".join(CHANNELS)


class RowError(Translatable, ValueError):
    """A member row or change that cannot be stored; the message (a catalogue id and its values: line,
    column, value) says why, in the reader's language where one is known (the console's import page and
    member forms); `str()` is the English (`relay members import`, logs)."""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    refused: list[tuple[int, RowError]] = field(default_factory=list)  # each bad row's line and why
    lists_created: list[str] = field(default_factory=list)
    roles_refused: int = 0

    @property
    def errors(self) -> list[tuple[int, str]]:
        """Each bad row's line and why, in English (the CLI, logs); a page says `refused` in its reader's
        language (`i18n.say(language, error)`)."""
        return [(line, str(error)) for line, error in self.refused]


def short_name_of(name: str) -> str:
    """A short display name for SMS: the whole name if short, else its first word."""
    name = " ".join(name.split())
    return name if len(name) <= 16 else name.split(" ")[0][:16]


def _split(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(";") if p.strip()]


def clean_row(row: dict[str, str]) -> dict:
    name = " ".join((row.get("name") or "").split())
    if not name:
        raise RowError(N_("name is empty"))
    phone = None
    if (row.get("phone") or "").strip():
        try:
            phone = to_e164(row["phone"])
        except InvalidPhone as exc:
            raise RowError(exc.message, **exc.variables) from None
    email = (row.get("email") or "").strip().lower() or None
    if email and not is_email_address(email):
        raise RowError(N_("email %(value)s is not an address"), value=repr(email))
    if not phone and not email:
        raise RowError(N_("a member needs a phone or an email"))
    tz = (row.get("timezone") or "").strip() or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RowError(N_("timezone %(zone)s is not an IANA time zone (e.g. Asia/Seoul)"), zone=repr(tz)) from None
    language = (row.get("language") or "").strip().lower() or "en"
    if language not in LANGUAGES:
        raise RowError(N_("language %(value)s is not one of %(languages)s"), value=repr(language),
                       languages=", ".join(LANGUAGES))
    given_roles = [r.lower() for r in _split(row.get("roles"))]
    roles = given_roles or ["member"]
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise RowError(N_("unknown role %(role)s (roles: %(roles)s)"), role=repr(bad[0]), roles=", ".join(ROLES))
    channels_given = "channels" in row  # the column is in the file (DictReader: absent columns are absent keys)
    whatsapp = None
    if (row.get("whatsapp") or "").strip():
        try:
            whatsapp = to_e164(row["whatsapp"])
        except InvalidPhone as exc:
            raise RowError(N_("whatsapp: %(why)s"), why=exc) from None  # said in the reader's language too
    whatsapp_opt_in = " ".join((row.get("whatsapp_opt_in") or "").split())
    channels = [c.lower() for c in _split(row.get("channels"))]
    bad = [c for c in channels if c not in CHANNELS]
    if bad:
        raise RowError(N_("unknown channel %(channel)s (channels: %(channels)s)"), channel=repr(bad[0]),
                       channels=CHANNEL_NAMES)
    if "sms" in channels and not phone:
        raise RowError(N_("channel sms needs a phone number"))
    if "email" in channels and not email:
        raise RowError(N_("channel email needs an email address"))
    if "whatsapp" in channels and not (whatsapp or phone):
        raise RowError(N_("channel whatsapp needs a phone or whatsapp number"))
    if whatsapp_opt_in and "whatsapp" not in channels:
        raise RowError(N_("whatsapp_opt_in is filled but channels does not include whatsapp"))
    if not channels:
        channels = [c for c, address in (("sms", phone), ("email", email)) if address]
    return {"whatsapp": whatsapp, "whatsapp_opt_in": whatsapp_opt_in[:50],
            "whatsapp_discussion": "whatsapp" in channels,
            "name": name, "phone": phone, "email": email, "timezone": tz, "language": language,
            "roles": ";".join(sorted(set(roles), key=ROLES.index)), "roles_given": bool(given_roles),
            "lists": _split(row.get("lists")), "channels_given": channels_given,
            "sms_discussion": "sms" in channels, "email_discussion": "email" in channels}


def get_or_create_list(session: Session, name: str) -> tuple[MemberList, bool]:
    found = session.scalar(select(MemberList).where(MemberList.name == name))
    if found:
        return found, False
    created = MemberList(name=name)
    session.add(created)
    session.flush()
    return created, True


def matching_member(session: Session, data: dict) -> Member | None:
    """The member a cleaned row is about: by phone, then by email (None: a new member)."""
    member = None
    if data["phone"]:
        member = session.scalar(select(Member).where(Member.phone == data["phone"]))
    if member is None and data["email"]:
        member = session.scalar(select(Member).where(Member.email == data["email"]))
    return member


def role_set(roles: str | None) -> frozenset[str]:
    return frozenset(r for r in (roles or "").split(";") if r)


def roles_after(member: Member | None, data: dict) -> str:
    """The roles a row leaves its member with: an empty roles cell keeps an existing member's roles."""
    if member is not None and not data.get("roles_given", True):
        return member.roles
    return data["roles"]


def snapshot(member: Member | None) -> dict:
    """The audited fields of a member (no secrets: passwords and tokens live elsewhere)."""
    if member is None:
        return {}
    return {"name": member.name, "phone": member.phone, "email": member.email, "timezone": member.timezone,
            "language": member.language, "roles": member.roles, "active": member.active,
            "sms_discussion": member.sms_discussion, "email_discussion": member.email_discussion,
            "whatsapp": member.whatsapp, "whatsapp_discussion": member.whatsapp_discussion,
            "lists": ";".join(sorted(m.member_list.name for m in member.memberships))}


def changes_between(before: dict, after: dict) -> dict[str, list]:
    """{field: [before, after]} for every field that differs."""
    return {key: [before.get(key), value] for key, value in after.items() if before.get(key) != value}


def record_member_change(session: Session, member: Member, before: dict, actor: audit.Actor, **detail) -> bool:
    """Audit what changed on `member` since `before` (member.create or member.edit); False: nothing did."""
    session.flush()
    session.refresh(member, ["memberships"])
    changes = changes_between(before, snapshot(member))
    if not changes:
        return False
    audit.record(session, "member.edit" if before else "member.create", f"member:{member.id}", actor,
                 changes=changes, **detail)
    return True


def upsert_member(session: Session, data: dict) -> tuple[Member, bool]:
    member = matching_member(session, data)
    created = member is None
    roles = roles_after(member, data)
    if member is None:
        member = Member()
        session.add(member)
    member.roles = roles
    keep_channels = not created and not data.get("channels_given", True)
    for key in ("name", "phone", "email", "timezone", "language", "sms_discussion", "email_discussion",
                "whatsapp", "whatsapp_discussion"):
        if keep_channels and key in ("sms_discussion", "email_discussion", "whatsapp_discussion"):
            continue
        if key == "whatsapp" and not created and data.get("whatsapp") is None:
            continue  # no WhatsApp number in the row: the member's own stands (issue 15: absent means unchanged)
        if key in data:  # whatsapp: only from the import (the console's form does not carry it yet)
            setattr(member, key, data[key])
    if keep_channels:  # no channels column: the member's choice stands, less a channel with no address now
        member.sms_discussion = bool(member.sms_discussion and member.phone)
        member.email_discussion = bool(member.email_discussion and member.email)
    member.short_name = short_name_of(data["name"])
    session.flush()
    return member, created


def import_members(session: Session, text: str, *, grant_roles: bool = True, sync_lists: bool = False,
                   actor: audit.Actor = audit.SYSTEM) -> ImportReport:
    """Import members from CSV text. Each row is its own savepoint: one bad row spoils nothing.

    sync_lists: each row's member ends up on exactly the lists the row names (taken off the others);
    without it a row only adds memberships.

    The core trusts its caller with `grant_roles`; the console and the command line decide it (see
    the module docstring). The import and each member it creates or changes are audited as `actor`."""
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [h for h in HEADER if h not in (reader.fieldnames or [])]
    if missing:
        report.refused.append((1, RowError(N_("header lacks %(missing)s (expected %(header)s)"),
                                           missing=", ".join(missing), header=",".join(HEADER))))
        return report
    for row in reader:
        line = reader.line_num
        try:
            data = clean_row(row)
            existing = matching_member(session, data)
            before = role_set(existing.roles) if existing is not None else frozenset({"member"})
            wanted = role_set(roles_after(existing, data))
            if not grant_roles and wanted != before:
                report.roles_refused += 1
                change = {"roles": repr(data["roles"]), "before": ";".join(sorted(before)),
                          "after": ";".join(sorted(wanted))}
                if existing is not None:
                    raise RowError(N_("roles %(roles)s would change this member's roles (%(before)s -> %(after)s); "
                                      "only a caller who may grant roles can import this row"), **change)
                raise RowError(N_("roles %(roles)s would change a new member's roles (%(before)s -> %(after)s); "
                                  "only a caller who may grant roles can import this row"), **change)
            with session.begin_nested():
                was = snapshot(existing)
                member, created = upsert_member(session, data)
                for list_name in data["lists"]:
                    member_list, new_list = get_or_create_list(session, list_name)
                    if new_list:
                        report.lists_created.append(list_name)
                    exists = session.scalar(select(Membership.id).where(
                        Membership.list_id == member_list.id, Membership.member_id == member.id))
                    if exists is None:
                        session.add(Membership(list_id=member_list.id, member_id=member.id))
                if sync_lists:
                    for membership in list(member.memberships):
                        if membership.member_list.name not in data["lists"]:
                            session.delete(membership)
                if data.get("whatsapp_opt_in"):  # issue 19: the consent the importer vouches for, with its words
                    consent.opt_in_whatsapp(session, member, f"import:{data['whatsapp_opt_in']}", actor=actor)
                record_member_change(session, member, was, actor, via="import", line=line)
            report.created += created
            report.updated += not created
        except RowError as exc:
            report.refused.append((line, exc))
        except Exception as exc:  # a constraint clash (e.g. phone of one member, email of another)
            report.refused.append((line, RowError(N_("could not save: %(why)s"),
                                                  why=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")))
    audit.record(session, "member.import", "members", actor, created=report.created, updated=report.updated,
                 errors=len(report.errors), roles_refused=report.roles_refused, roles_granted=grant_roles,
                 sync_lists=sync_lists)
    return report


def find_member(session: Session, who: str) -> Member | None:
    """A member by id, phone (any format) or email."""
    who = (who or "").strip()
    if who.isascii() and who.isdigit() and len(who) < 10:
        return session.get(Member, int(who))
    if "@" in who:
        return session.scalar(select(Member).where(Member.email == who.lower()))
    try:
        return session.scalar(select(Member).where(Member.phone == to_e164(who)))
    except InvalidPhone:
        return None


def set_channels(member: Member, channels: list[str]) -> None:
    """Choose the channels a member takes case discussion by; each needs an address. Choosing WhatsApp
    sends nothing there until the member's opt-in is recorded (relay.members.consent.opt_in_whatsapp)."""
    wanted = [c.strip().lower() for c in channels if c.strip()]
    bad = [c for c in wanted if c not in CHANNELS]
    if bad:
        raise RowError(N_("unknown channel %(channel)s (channels: %(channels)s)"), channel=repr(bad[0]),
                       channels=CHANNEL_NAMES)
    if "whatsapp" in wanted and not member.whatsapp_number:
        raise RowError(N_("channel whatsapp needs a phone or whatsapp number"))
    if "sms" in wanted and not member.phone:
        raise RowError(N_("channel sms needs a phone number"))
    if "email" in wanted and not member.email:
        raise RowError(N_("channel email needs an email address"))
    member.sms_discussion = "sms" in wanted
    member.email_discussion = "email" in wanted
    member.whatsapp_discussion = "whatsapp" in wanted
