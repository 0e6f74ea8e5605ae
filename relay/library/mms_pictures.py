"""The pictures of an MMS (Twilio's NumMedia, MediaUrlN, MediaContentTypeN): one pending CaseImage per
(inbound event, media index), unique, so planning twice files nothing twice; relay/inbound/mms.py fetches
each one afterwards.

Here, below relay/discussion, because two places plan them: the reply path when a message is posted
(relay/inbound/replies.py), and the patient-information guard when its author or a coordinator releases a
held message (relay/discussion/holding.py): the pictures of a held MMS wait with its text, unfetched."""
from __future__ import annotations

from typing import Mapping

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relay.model.tables import Case, CaseImage, InboundEvent, Post
from relay.providers import twilio_sms

MAX_MEDIA = 10  # Twilio's own limit per message


def media_items(form: Mapping[str, str]) -> list[tuple[int, str, str]]:
    """(index, url, declared content type) of each media item in an inbound SMS form."""
    try:
        count = int(form.get("NumMedia") or 0)
    except ValueError:
        return []
    items = []
    for index in range(min(max(count, 0), MAX_MEDIA)):
        url = (form.get(f"MediaUrl{index}") or "").strip()
        if url:
            items.append((index, url, (form.get(f"MediaContentType{index}") or "")[:40]))
    return items


def plan_mms_images(session: Session, event: InboundEvent, case: Case, post: Post | None,
                    form: Mapping[str, str]) -> list[int]:
    """One pending image row per media item of the message; returns the ids to fetch."""
    ids = []
    for index, url, content_type in media_items(form):
        image = CaseImage(case_id=case.id, post_id=post.id if post is not None else None, source="mms",
                          source_key=f"mms:{event.id}:{index}", source_url=url, status="pending",
                          filename=f"mms-{event.id}-{index}", content_type=content_type)
        try:
            with session.begin_nested():
                session.add(image)
                session.flush()
        except IntegrityError:
            continue  # already planned by an earlier run
        ids.append(image.id)
    return ids



def released_pictures(session: Session, event_id: int | None, case: Case, post: Post) -> list[int]:
    """The pictures of a held SMS or WhatsApp message that is now posted, planned under its post; the ids to
    fetch. None when the message had none, or its stored request was already emptied by the retention."""
    event = session.get(InboundEvent, event_id) if event_id is not None else None
    if event is None or event.kind != "sms" or not event.raw:  # WhatsApp messages come in as kind sms too
        return []
    return plan_mms_images(session, event, case, post, twilio_sms.parse_raw(event.raw))
