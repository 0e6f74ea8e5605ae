"""Who a notice reaches and with what words, read-only, so sending and the preview agree: list
members each once (however many of the lists they are on), on the notice's channels that they chose
and can take now (an address, not opted out, email not suspended); a correction goes to the
original's recipients instead (relay/notices/corrections.py)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.outbound import fanout
from relay.outbound.fanout import CHANNELS, Recipient, recipients_from
from relay.model.tables import Case, Member, MemberList, Membership, Notice
from relay.render.texts import fit_sms, render_sms

__all__ = ["CHANNELS", "Recipient", "audience", "channels_of", "in_lists", "link", "list_names", "post_body",
           "recipients_from", "sms_text"]


def channels_of(notice: Notice) -> tuple[str, ...]:
    """The notice's channels, in CHANNELS order."""
    chosen = {c.strip() for c in (notice.channels or "").split(";")}
    return tuple(c for c in CHANNELS if c in chosen)


def list_names(notice: Notice) -> list[str]:
    """The names of the notice's target lists."""
    return [name for name in (notice.lists or "").split(";") if name]


def in_lists(names: list[str], below: int | None = None):
    """A filter on Member: on at least one of the named lists (with member ids below `below`: a
    broadcast's first wave, bounded inside the subquery so the database reads only that range)."""
    on_lists = (select(Membership.member_id).join(MemberList, MemberList.id == Membership.list_id)
                .where(MemberList.name.in_(names)))
    if below is None:
        return Member.id.in_(on_lists)
    return Member.id.in_(on_lists.where(Membership.member_id < below)) & (Member.id < below)


def audience(session: Session, notice: Notice) -> list[Recipient]:
    """Who the notice goes to now, on which channels, each member once."""
    wanted = set(channels_of(notice))
    if notice.kind == "correction":
        from relay.notices.corrections import original_audience

        return original_audience(session, notice, wanted)
    return recipients_from(fanout.reachable_members(session, in_lists(list_names(notice))), wanted)


def link(settings, case: Case | None) -> str:
    """The library link every notice carries: its case's page, or the library for general notices."""
    return settings.case_url(case.code) if case is not None else settings.library_url


def sms_text(settings, notice: Notice, case: Case | None, language: str) -> str:
    """The notice's SMS in `language`, from templates/sms/<language>/<kind>.txt, fitted to the limit."""
    url = link(settings, case)
    title = case.title if notice.kind == "new_case" and case is not None else notice.title
    text = render_sms(settings.templates_dir, notice.kind, language, network=settings.network_name,
                      code=case.code if case is not None else "", title=title, body=notice.body or "", url=url,
                      urgent=notice.severity == "urgent")
    return fit_sms(text, url)


def post_body(notice: Notice, case: Case) -> str:
    """What the notice adds to its case discussion (the clinical summary for a new case)."""
    if notice.kind == "new_case":
        summary = "\n".join(f"{label}: {value}" for label, value in (
            ("Chief complaint", case.chief_complaint), ("Symptoms", case.symptoms),
            ("Exposure history", case.exposure_history), ("Findings", case.findings)) if value)
        return summary or notice.body or f"New case {case.code}: {case.title}"
    return notice.body or notice.title
