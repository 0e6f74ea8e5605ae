"""A member's reply by text, on any phone channel (SMS, WhatsApp): the case it is for, the
patient-information guard, the post, its relays and the author's one answer. One function for both
channels, so a rule added here (issue 16's hold, say) holds on every channel at once."""
from __future__ import annotations

from sqlalchemy.orm import Session

from relay.discussion import holding, threads
from relay.discussion.posting import Posts, publish_reply
from relay.library import mms_pictures
from relay.model.tables import Case, InboundEvent, Member, utcnow
from relay.rules import coordinator_command


def accept_reply(session: Session, settings, event: InboundEvent, member: Member, body: str, form, plan,
                 channel: str, posts: Posts | None = None) -> tuple[str, int | None]:
    """Resolve the thread, save the post, plan the relays (plan.rows, plan.images) and the author's answer
    (plan.reply); returns (outcome, post id). With `posts` (a batch's, relay/discussion/posting.py), a post
    with no pictures is written with the batch's others, and its id is not known yet (None is returned)."""
    if not body.strip() and not mms_pictures.media_items(form):  # nothing at all: say so, not "which case?"
        plan.reply("empty_post", code=None)
        return "empty", None
    resolution = threads.resolve_thread(session, member.id, body, utcnow(), settings.reply_window,
                                        settings.ambiguity_window)
    if resolution.how == threads.UNKNOWN_CODE:
        plan.reply("unknown_case", code=resolution.code)
        return "unknown_case", None
    if resolution.how in (threads.NONE, threads.AMBIGUOUS):
        example = resolution.candidates[0] if resolution.candidates else "C123"
        # issue 17: a member's "URGENT ...: ..." is no notice (only coordinators send those): say so, and how to post
        plan.reply("not_coordinator" if coordinator_command.looks_like_draft(body) else "ask_case", example=example,
                   candidates=list(resolution.candidates))
        return f"asked:{resolution.how}", None
    case = session.get(Case, resolution.case_id)
    if case is None:  # resolve_thread found it a moment ago in this transaction
        plan.reply("unknown_case", code=resolution.code)
        return "unknown_case", None
    media = mms_pictures.media_items(form)
    text = resolution.text or (f"[{len(media)} image{'s' if len(media) > 1 else ''}]" if media else "")
    if not text:
        plan.reply("empty_post", case_id=case.id, code=case.code)
        return "empty", None
    if case.status != "open":
        plan.reply("closed_case", case_id=case.id, code=case.code)
        return "closed_case", None

    # issue 16: a reply carrying a patient identifier is kept, not relayed, until its author decides
    found = holding.check(session, settings, case, text, event)
    if found.held:
        held = holding.hold(session, settings, case=case, member=member, text=text, channel=channel,
                            event_id=event.id, found=found)
        plan.reply("guard_held", case_id=case.id, code=case.code, hold_code=held.code,
                   where=found.where(text, plan.language), hours=round(settings.guard_hold_for.total_seconds() / 3600))
        return "held", None
    post_id: int | None = None
    if posts is not None and not mms_pictures.media_items(form):  # written with the batch's posts
        _pending, rows = posts.publish(settings, case, member, text, channel, event.id)
        holding.supersede(session, member, case.id, channel)  # a corrected reply replaces the author's held one
        plan.rows.extend(rows)
    else:
        if posts is not None:  # the batch's posts first, so this one's followers include their authors
            posts.write()
        post, rows = publish_reply(session, settings, case, member, text, channel, event.id)
        post_id = post.id
        holding.supersede(session, member, case.id, channel)
        plan.rows.extend(rows)
        plan.images.extend(mms_pictures.plan_mms_images(session, event, case, post, form))
    reached = len({row["member_id"] for row in plan.rows})
    if found.verdict == holding.WARN:
        plan.reply("guard_warned", case_id=case.id, code=case.code, count=reached,
                   where=found.where(text, plan.language))
    else:
        plan.reply("confirmation", case_id=case.id, code=case.code, count=reached)
    return "posted", post_id
