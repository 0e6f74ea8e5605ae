"""Posting a member's reply in a case thread and planning its relay, whatever it came in by: SMS
(relay/inbound/sms.py), email (relay/inbound/mail.py), the web (relay/discussion/web_posts.py) or the API
(relay/discussion/api_posts.py). One thread across every channel."""
from __future__ import annotations

from sqlalchemy.orm import Session

from relay.discussion import threads
from relay.model.tables import Case, Member, Post
from relay.outbound import fanout
from relay.render.texts import fit_sms, render_sms


def publish_reply(session: Session, settings, case: Case, author: Member, text: str, channel: str,
                  event_id: int | None) -> tuple[Post, list[dict]]:
    """Save a member's post in the case thread and plan its relay to every other follower, on each
    channel they take (whatever channel the post came in by): one thread across SMS and email."""
    thread = threads.ensure_thread(session, case)
    post = Post(thread_id=thread.id, author_id=author.id, kind="reply", channel=channel, body=text,
                inbound_event_id=event_id)
    session.add(post)
    session.flush()
    fanout.follow(session, thread.id, [author.id], reason="posted")
    url = settings.case_url(case.code)
    texts: dict[str, str] = {}

    def sms_text(language: str) -> str:
        if language not in texts:
            texts[language] = fit_sms(render_sms(settings.templates_dir, "relay", language, code=case.code,
                                                 author=author.short_name, text=text), url, language=language)
        return texts[language]

    followers = fanout.recipients_from(fanout.participants(session, thread.id, exclude_member_id=author.id),
                                       set(fanout.CHANNELS))
    return post, fanout.delivery_rows(followers, purpose="relay", post_id=post.id, case_id=case.id,
                                      sms_text=sms_text, email_body=text)
