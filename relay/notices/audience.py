"""Who a notice reaches and with what words, read-only, so sending and the preview agree: list
members each once (however many of the lists they are on), on the notice's channels that they chose
and can take now (an address, not opted out, email not suspended); a correction goes to the
original's recipients instead (original_audience below; relay/notices/corrections.py sends it)."""
from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from relay.infra.storage import in_values
from relay.model.delivery_states import ACCEPTED, DELIVERED, READ, SENT
from relay.model.notice_refs import deliveries_filter
from relay.model.tables import Case, Delivery, Member, MemberList, Membership, Notice
from relay.outbound import fanout
from relay.outbound.fanout import CHANNELS, Recipient, recipients_from
from relay.render.mail import summary_text
from relay.render.texts import SMS_MAX_CHARS, fit_sms, render_sms

__all__ = ["CHANNELS", "Recipient", "audience", "channels_of", "in_lists", "link", "list_names", "post_body",
           "recipients_from", "sms_text"]


def channels_of(notice: Notice) -> tuple[str, ...]:
    """The notice's channels, in CHANNELS order."""
    chosen = {c.strip() for c in (notice.channels or "").split(";")}
    return tuple(c for c in CHANNELS if c in chosen)


def list_names(notice: Notice) -> list[str]:
    """The names of the notice's target lists."""
    return [name for name in (notice.lists or "").split(";") if name]


def _memberships_on(names: list[str], at_least: int = 0, below: int | None = None):
    """The member ids on the named lists, with member ids in [at_least, below)."""
    query = (select(Membership.member_id).join(MemberList, MemberList.id == Membership.list_id)
             .where(MemberList.name.in_(names)))
    if at_least:
        query = query.where(Membership.member_id >= at_least)
    if below is not None:
        query = query.where(Membership.member_id < below)
    return query


def in_lists(names: list[str], below: int | None = None, at_least: int = 0):
    """A filter on Member: on at least one of the named lists (with member ids in [at_least, below): one
    wave of a broadcast, bounded inside the subquery so the database reads only that range)."""
    on_lists = Member.id.in_(_memberships_on(names, at_least, below))
    bounds = ([Member.id >= at_least] if at_least else []) + ([Member.id < below] if below is not None else [])
    return and_(on_lists, *bounds) if bounds else on_lists


def wave_of(session: Session, names: list[str], at_least: int, below: int | None):
    """A filter on Member: on one of the named lists, with member ids in [at_least, below) (one wave of a
    broadcast: at most a wave's size per list). On PostgreSQL the wave's member ids are read first (one
    range scan of the memberships index per list) and passed as one array: the IN-subquery of in_lists()
    let the planner, without fresh statistics (a list just imported), re-scan the wave's memberships for
    every member (a nested loop: 1.4 s for a wave of 1,920 members, against 10 ms). Elsewhere in_lists()."""
    if session.get_bind().dialect.name != "postgresql":
        return in_lists(names, below=below, at_least=at_least)
    return in_values(session, Member.id, sorted(set(session.scalars(_memberships_on(names, at_least, below)))))


def audience(session: Session, notice: Notice) -> list[Recipient]:
    """Who the notice goes to now, on which channels, each member once."""
    wanted = set(channels_of(notice))
    if notice.kind == "correction":
        return original_audience(session, notice, wanted)
    return recipients_from(fanout.reachable_members(session, in_lists(list_names(notice))), wanted)


# A correction reaches those the original reached: its deliveries the provider accepted, sent or delivered.
RECEIVED = (ACCEPTED, SENT, DELIVERED, READ)


def received(session: Session, original: Notice) -> dict[int, set[str]]:
    """member id -> the channels on which the original notice reached them."""
    reached: dict[int, set[str]] = {}
    rows = session.execute(select(Delivery.member_id, Delivery.channel).where(
        deliveries_filter(original), Delivery.status.in_(RECEIVED), Delivery.member_id.is_not(None)))
    for member_id, channel in rows:
        if member_id is not None:  # the query excludes NULL; this narrows the type
            reached.setdefault(member_id, set()).add(channel)
    return reached


def original_audience(session: Session, correction: Notice, wanted: set[str]) -> list[Recipient]:
    """The correction's recipients: the original's, on the channels it reached them on, still reachable."""
    original = session.get(Notice, correction.corrects_notice_id)
    if original is None:
        return []
    reached = received(session, original)
    if not reached:
        return []
    members = []
    ids = sorted(reached)
    for start in range(0, len(ids), 500):
        members.extend(fanout.reachable_members(session, Member.id.in_(ids[start:start + 500])))
    return recipients_from(members, wanted, allowed=reached)


def link(settings, case: Case | None) -> str:
    """The library link every notice carries: its case's page, or the library for general notices."""
    return settings.case_url(case.code) if case is not None else settings.library_url


def sms_text(settings, notice: Notice, case: Case | None, language: str) -> str:
    """The notice's SMS in `language`, from templates/sms/<language>/<kind>.txt, fitted to the limit."""
    url = link(settings, case)
    title = case.title if notice.kind == "new_case" and case is not None else notice.title
    shown = url  # a members-only case's page needs a sign-in: the SMS says so next to its link
    if case is not None and case.visibility == "members":
        shown = f"{url} ({MEMBERS_ONLY.get(language, MEMBERS_ONLY['en'])})"
    text = render_sms(settings.templates_dir, notice.kind, language, network=settings.network_name,
                      code=case.code if case is not None else "", title=title, body=notice.body or "", url=shown,
                      urgent=notice.severity == "urgent")
    if notice.ack_within_s is not None:  # issue 17: the instruction always ends the text, never cut
        ack = render_sms(settings.templates_dir, "ack_request", language, number=notice.id)
        return fit_sms(text, url, SMS_MAX_CHARS - len(ack) - 1, language=language) + "\n" + ack
    return fit_sms(text, url, language=language)


MEMBERS_ONLY = {"en": "members only: sign in to read", "ko": "회원 전용: 로그인 필요"}


def post_body(notice: Notice, case: Case) -> str:
    """What the notice adds to its case discussion (the clinical summary for a new case)."""
    if notice.kind == "new_case":
        return summary_text(case) or notice.body or f"New case {case.code}: {case.title}"
    return notice.body or notice.title
