"""A signed-in member's post to a case discussion from the library page (channel "web").

It is relayed exactly like an SMS or email reply (relay.discussion.posting.publish_reply): the post joins the
thread and goes to every other follower on the channels they take. A web post is recorded as an
inbound event (provider "web", kind "post") keyed by the member and the form's one-time submission
key, so a double submit hits the events' unique constraint and yields the first post, not a second.

Issue 16: a post carrying a patient identifier is held (relay/discussion/holding.py), not posted; the page
shows its author what was found and where (never the value), with buttons to send it as written or drop it
(`decide_held`), or the text to correct and post again."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from relay import guard
from relay.access import permissions
from relay.discussion import holding
from relay.discussion.posting import publish_reply
from relay.infra.db import transaction
from relay.library.cases import CaseNotFound, get_case, is_visible
from relay.model.tables import HeldMessage, InboundEvent, Member, Post, utcnow
from relay.outbound import fanout
from relay.outbound.queueing import dispatch_deliveries
from relay.render import i18n
from relay.render.i18n import N_, TranslatableError

log = logging.getLogger(__name__)

MAX_CHARS = 5000


class WebPostError(TranslatableError):
    """The post cannot be made (empty, too long, case closed); the message says why, in the reader's
    language on the page (relay/render/i18n.py)."""


@dataclass(frozen=True)
class WebPost:
    post_id: int | None  # None: held by the patient-information guard
    case_code: str
    duplicate: bool
    relayed_to: int
    held_code: str = ""  # issue 16: the hold's code, for the page's send/drop buttons
    where: str = ""  # what was found and where, in the member's language (never the value)


def _key(member_id: int, submission: str) -> str:
    submission = (submission or "").strip()
    if not (8 <= len(submission) <= 64 and submission.isascii() and submission.replace("-", "").isalnum()):
        raise WebPostError(N_("the form's submission key is missing; reload the page and try again"))
    return f"{member_id}:{submission}"


def post_from_web(services, member_id: int, case_code: str, text: str, submission: str) -> WebPost:
    """Save the member's post and relay it; the same submission key again returns the first post."""
    text = (text or "").replace("\r\n", "\n").strip()
    if not text:
        raise WebPostError(N_("write something before posting"))
    if len(text) > MAX_CHARS:
        raise WebPostError(N_("a post may have at most %(max)d characters"), max=MAX_CHARS)
    key = _key(member_id, submission)
    settings = services.settings
    try:
        with transaction(services.sessions) as session:
            member = session.get(Member, member_id)
            if member is None or not member.active:
                raise permissions.Forbidden(N_("no active member"))
            permissions.require(member.role_set, "case.post")
            case = get_case(session, case_code)
            if not is_visible(case, member=True):
                raise CaseNotFound(N_("no case %(code)s"), code=case.code)
            existing = _existing(session, key)
            if existing is not None:
                return _again(session, existing, case.code, member.language)
            if case.status != "open":
                raise WebPostError(N_("%(code)s is closed to new posts"), code=case.code)
            event = InboundEvent(provider="web", kind="post", dedupe_key=key, raw=text, sender=member.email or "",
                                 processed_at=utcnow(), outcome="posted", detail=f"web post to {case.code}")
            session.add(event)
            session.flush()  # the unique (provider, kind, dedupe_key) refuses a concurrent double submit
            found = holding.check(session, settings, case, text, event)
            if found.held:
                held = holding.hold(session, settings, case=case, member=member, text=text, channel="web",
                                    event_id=event.id, found=found)
                event.outcome = "held"
                return WebPost(None, case.code, False, 0, held.code, found.where(text, member.language))
            post, rows = publish_reply(session, settings, case, member, text, "web", event.id)
            holding.supersede(session, member, case.id, "web")  # the corrected post replaces a held one
            ids = fanout.plan(session, rows) if rows else []
            result = WebPost(post.id, case.code, False, len({r["member_id"] for r in rows}))
    except IntegrityError:
        with services.sessions() as session:  # the other submit of the same form won; its post stands
            event_id = _existing(session, key)
            if event_id is None:
                raise
            found_member = session.get(Member, member_id)
            return _again(session, event_id, case_code, found_member.language if found_member else "en")
    log.info("web post %s by member %s to %s, relayed to %s members", result.post_id, member_id, result.case_code,
             result.relayed_to)
    dispatch_deliveries(services, ids)
    return result


def decide_held(services, member_id: int, code: str, decision: str) -> holding.Decision:
    """The author's buttons under a held post: `send` it as written (once) or `drop` it."""
    if decision not in ("send", "drop"):
        raise WebPostError(N_("choose send or drop"))
    with transaction(services.sessions) as session:
        member = session.get(Member, member_id)
        if member is None:
            raise permissions.Forbidden(N_("no active member"))
        result = holding.decide(session, services.settings, member, f"guard_{decision}", code, "web")
        if result.outcome == "rejected":
            raise permissions.Forbidden(N_("you may not post"))
        ids = fanout.plan(session, result.rows) if result.rows else []
    log.info("web: member %s chose %s for a held post: %s", member_id, decision, result.outcome)
    dispatch_deliveries(services, ids)
    holding.fetch_pictures(services, result.images)
    return result


def _existing(session, key: str) -> int | None:
    """The inbound event of this submission, if it was made before."""
    return session.scalar(select(InboundEvent.id).where(
        InboundEvent.provider == "web", InboundEvent.kind == "post", InboundEvent.dedupe_key == key))


def _again(session, event_id: int, case_code: str, language: str) -> WebPost:
    """The same submission again: its post, or its hold."""
    post_id = session.scalar(select(Post.id).where(Post.inbound_event_id == event_id))
    if post_id is not None:
        return WebPost(post_id, case_code, True, 0)
    held = session.scalar(select(HeldMessage).where(HeldMessage.inbound_event_id == event_id))
    if held is None:
        return WebPost(None, case_code, True, 0)
    findings = [guard.Finding(f["kind"], f["start"], f["end"]) for f in held.findings or []]
    return WebPost(None, case_code, True, 0, held.code, guard.describe(held.body, findings,
                                                                         i18n.translator(language).gettext))
