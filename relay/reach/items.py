"""Reach for one case (views per day, the discussion's posts per day by channel) and for one notice (how
fast its deliveries went out, per channel). Authorised here: `reach.read`."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relay.access.permissions import require
from relay.model.notice_refs import deliveries_filter
from relay.model.tables import Case, CaseDayViews, Delivery, Notice, Post, Thread

from .days import as_date, day_of, midnight
from .figures import CHANNEL_ORDER, Table, ordered
from .periods import Period

# the timeline's buckets: the first that shows the whole send in at most 60 of them
BUCKET_MINUTES = (1, 5, 15, 60, 360, 1440)


def case_views(session: Session, roles: Iterable[str], case: Case, period: Period) -> Table:
    require(roles, "reach.read")
    found = dict(session.execute(select(CaseDayViews.day, CaseDayViews.views).where(
        CaseDayViews.case_id == case.id, CaseDayViews.day >= period.start, CaseDayViews.day <= period.end)).all())
    return Table("case_views", ["day", "views"], [[d.isoformat(), found.get(d, 0)] for d in period.days])


def case_activity(session: Session, roles: Iterable[str], case: Case, period: Period) -> Table:
    """Posts (replies and notices) in the case's discussion per day and channel."""
    require(roles, "reach.read")
    day = day_of(session, Post.created_at)
    rows = session.execute(select(day, Post.channel, func.count()).join(Thread, Thread.id == Post.thread_id).where(
        Thread.case_id == case.id, Post.created_at >= midnight(period.start),
        Post.created_at < midnight(period.end + timedelta(days=1))).group_by(day, Post.channel)).all()
    counts = {(as_date(when), channel): int(n) for when, channel, n in rows}
    channels = ordered((c for _, c in counts), CHANNEL_ORDER) or ["sms", "email"]
    return Table("case_activity", ["day", *channels],
                 [[d.isoformat(), *(counts.get((d, c), 0) for c in channels)] for d in period.days])


def notice_timeline(session: Session, roles: Iterable[str], notice: Notice) -> tuple[Table, int]:
    """The notice's deliveries handed to a provider, counted per bucket of minutes after the notice was
    sent, per channel; and the bucket's length in minutes. Empty until the notice is sent."""
    require(roles, "reach.read")
    started = notice.sent_at
    if started is None:
        return Table("notice_timeline", ["minutes", "sms", "email"], []), 1
    rows = session.execute(select(Delivery.channel, Delivery.sent_at).where(
        deliveries_filter(notice), Delivery.sent_at.is_not(None))).all()
    offsets = [(channel, max(0.0, (sent - started).total_seconds() / 60)) for channel, sent in rows if sent]
    span = max((minutes for _, minutes in offsets), default=0)
    bucket = next((b for b in BUCKET_MINUTES if span / b < 60), BUCKET_MINUTES[-1])
    counts = Counter((channel, int(minutes // bucket)) for channel, minutes in offsets)
    channels = ordered((c for c, _ in counts), CHANNEL_ORDER) or ["sms", "email"]
    last = max((n for _, n in counts), default=0)
    return Table("notice_timeline", ["minutes", *channels],
                 [[str(n * bucket), *(counts.get((c, n), 0) for c in channels)] for n in range(last + 1)]), bucket
