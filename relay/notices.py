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
    recipients: int
    delivery_ids: tuple[int, ...]


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
        post = Post(thread_id=thread.id, kind="notice", channel="console",
                    body=f"New case {case.code}: {case.title}")
        session.add(post)
        session.flush()
        notice = Notice(kind="new_case", case_id=case.id, post_id=post.id, lists=";".join(sorted(list_names)))
        session.add(notice)
        session.flush()
        members = session.execute(
            select(Member.id, Member.phone, Member.language, Member.active, Member.sms_opted_out_at)
            .join(Membership, Membership.member_id == Member.id)
            .where(Membership.list_id.in_([l.id for l in lists]))
            .distinct()
            .order_by(Member.id)
        ).all()
        fanout.follow(session, thread.id, [m.id for m in members], reason="notified")
        texts: dict[str, str] = {}
        rows = []
        for m in members:
            if not (m.active and m.phone and m.sms_opted_out_at is None):
                continue
            if m.language not in texts:
                texts[m.language] = fit_sms(render_sms(settings.templates_dir, "new_case", m.language,
                                                       network=settings.network_name, code=case.code,
                                                       title=case.title, url=url), url)
            rows.append({"dedupe_key": f"post:{post.id}:{m.id}:sms", "purpose": "notice", "post_id": post.id,
                         "case_id": case.id, "member_id": m.id, "to_address": m.phone, "body": texts[m.language]})
        ids = fanout.plan(session, rows)
        notice_id = notice.id
    dispatch_deliveries(services, ids)
    return NoticeResult(notice_id, len(ids), tuple(ids))
