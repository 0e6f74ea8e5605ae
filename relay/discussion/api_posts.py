"""A member's reply posted through the API, relayed like an SMS or email reply (channel "web").

Nothing doubled: with an Idempotency-Key, the request is recorded as an inbound event
(provider "api", kind "post", key "<member id>:<Idempotency-Key>") under the same unique constraint that
deduplicates provider webhooks, and the post is tied to that event by posts.inbound_event_id (also
unique). A retried request finds the event and answers with the post it made, and with the number of
members the first request relayed it to (kept in the event's detail, "post 5 on C1, relayed to 4": the
followers may have changed since). The event is processed in the same transaction, so the sweeper never
sees it waiting."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from relay.discussion.posting import publish_reply
from relay.guard.confirmation import require_confirmation
from relay.inbound.record import record_inbound
from relay.infra.db import transaction
from relay.infra.dispatch import dispatch_safely
from relay.model.tables import Case, InboundEvent, Member, Post, utcnow
from relay.outbound import fanout

MAX_TEXT = 6400  # as an inbound SMS body


class PostRefused(ValueError):
    """The reply cannot be posted (an empty text, a closed case)."""


@dataclass(frozen=True)
class ApiPost:
    post_id: int
    created: bool  # False: a retry with the same Idempotency-Key, answered with the first post
    relayed_to: int  # members the post is relayed to


def clean_text(text: str) -> str:
    """Trim the ends and drop control characters other than newlines and tabs."""
    cleaned = "".join(c for c in text if c in "\n\t" or c.isprintable()).strip()
    if not cleaned:
        raise PostRefused("the text is empty")
    if len(cleaned) > MAX_TEXT:
        raise PostRefused(f"the text has more than {MAX_TEXT} characters")
    return cleaned


def post_reply(services, case_id: int, member_id: int, text: str, idempotency_key: str | None,
               confirm_identifiers: bool = False) -> ApiPost:
    """Save the member's post in the case thread, plan its relays, commit, then dispatch them.

    Issue 16: a text that seems to hold a patient identifier raises IdentifiersFound (the API's 409 with the
    findings) unless `confirm_identifiers`; nothing is kept, so the same Idempotency-Key may be sent again."""
    text = clean_text(text)
    key = idempotency_key or secrets.token_hex(16)
    with transaction(services.sessions) as session:
        recorded = record_inbound(session, provider="api", kind="post", dedupe_key=f"{member_id}:{key}"[:120],
                                  raw=text, sender=f"member:{member_id}")
        if not recorded.created:
            post = session.scalar(select(Post).where(Post.inbound_event_id == recorded.event_id))
            if post is None:  # the first request with this key was refused: refuse the same way
                event = session.get(InboundEvent, recorded.event_id)
                assert event is not None  # record_inbound just found it; inbound events are never deleted
                raise PostRefused(event.detail or "this Idempotency-Key was used by a refused request")
            event = session.get(InboundEvent, recorded.event_id)
            assert event is not None  # record_inbound just found it; inbound events are never deleted
            detail = event.detail or ""
            relayed = re.search(r"relayed to (\d+)$", detail)
            return ApiPost(post.id, False, int(relayed.group(1)) if relayed else 0)
        event = session.get(InboundEvent, recorded.event_id)
        case = session.get(Case, case_id)
        member = session.get(Member, member_id)
        assert event is not None  # record_inbound just inserted it
        # the caller found the case (visible_case) and the member (the caller's token); neither is ever deleted
        assert case is not None and member is not None
        if case.status != "open":
            raise PostRefused(f"{case.code} is {case.status}: it takes no new posts")
        found = require_confirmation({"text": text}, confirm_identifiers)
        event.guard_verdict = "warn" if found else "pass"
        event.guard_kinds = sorted({f["kind"] for f in found})
        post, rows = publish_reply(session, services.settings, case, member, text, "web", event.id)
        ids = fanout.plan(session, rows) if rows else []
        result = ApiPost(post.id, True, len({row["member_id"] for row in rows}))
        event.processed_at, event.outcome = utcnow(), "posted"
        event.detail = f"post {post.id} on {case.code}, relayed to {result.relayed_to}"
    if ids:
        dispatch_safely(services.dispatcher.deliver, ids)
    return result
