"""Notices: a new-case notice goes to every member of the chosen lists, each person once, on SMS,
and makes them followers of the case discussion (so their replies and others' reach them)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from . import fanout
from .db import transaction
from .models import Case, Member, MemberList, Membership, Notice, Post
from .threads import ensure_thread
from .sending import dispatch_deliveries
from .texts import fit_sms, render_sms


class UnknownList(LookupError):
    pass


@dataclass(frozen=True)
class NoticeResult:
    notice_id: int
    recipients: int  # members reached on at least one channel
    delivery_ids: tuple[int, ...]
    sms: int = 0
    emails: int = 0


def new_case_notice(services, case_code: str, list_names: list[str]) -> NoticeResult:
    """Plan and dispatch the SMS notice for a case: its number, title, library link, how to reply."""
    from .cases import get_case

    settings = services.settings
    with transaction(services.sessions) as session:
        case: Case = get_case(session, case_code)
        lists = session.scalars(select(MemberList).where(MemberList.name.in_(list_names))).all()
        missing = sorted(set(list_names) - {l.name for l in lists})
        if missing:
            raise UnknownList(f"no list named {', '.join(missing)}")
        thread = ensure_thread(session, case)
        url = settings.case_url(case.code)
        summary = "\n".join(f"{label}: {value}" for label, value in (
            ("Chief complaint", case.chief_complaint), ("Symptoms", case.symptoms),
            ("Exposure history", case.exposure_history), ("Findings", case.findings)) if value)
        post = Post(thread_id=thread.id, kind="notice", channel="console",
                    body=summary or f"New case {case.code}: {case.title}")
        session.add(post)
        session.flush()
        notice = Notice(kind="new_case", case_id=case.id, post_id=post.id, lists=";".join(sorted(list_names)))
        session.add(notice)
        session.flush()
        in_lists = Member.id.in_(select(Membership.member_id).where(Membership.list_id.in_([l.id for l in lists])))
        everyone = list(session.scalars(select(Member.id).where(in_lists)))
        fanout.follow(session, thread.id, everyone, reason="notified")
        texts: dict[str, str] = {}

        def sms_text(language: str) -> str:
            if language not in texts:
                texts[language] = fit_sms(render_sms(settings.templates_dir, "new_case", language,
                                                     network=settings.network_name, code=case.code,
                                                     title=case.title, url=url), url)
            return texts[language]

        rows = fanout.post_rows(post.id, case.id, "notice", fanout.reachable_members(session, in_lists), sms_text)
        for row in rows:
            if row["channel"] == "email":
                row["body"] = post.body
        ids = fanout.plan(session, rows)
        notice_id = notice.id
    dispatch_deliveries(services, ids)
    return NoticeResult(notice_id, len({r["member_id"] for r in rows}), tuple(ids),
                        sms=sum(r["channel"] == "sms" for r in rows), emails=sum(r["channel"] == "email" for r in rows))
