"""Posting a member's reply in a case thread and planning its relay, whatever it came in by: SMS
(relay/inbound/sms.py), email (relay/inbound/mail.py), the web (relay/discussion/web_posts.py) or the API
(relay/discussion/api_posts.py). One thread across every channel.

`Posts` does the same for many replies processed in one transaction (a drained batch of SMS,
relay/inbound/batch.py), set-wise: the followers of the batch's threads are read in one query, and the
posts, their authors' participation and their relays are written together (`write`), one statement
each, instead of three statements and a round trip per reply. What each post relays to is decided when
it is posted, from the followers as they are at that point of the batch (authors who posted earlier in
the batch included), exactly as one by one."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import insert
from sqlalchemy.orm import Session

from relay.discussion import threads
from relay.model.channels import CHANNELS
from relay.model.tables import Case, Member, Post, utcnow
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
    followers = fanout.recipients_from(fanout.participants(session, thread.id, exclude_member_id=author.id),
                                       set(CHANNELS))
    return post, relay_rows(settings, case, author, text, followers, post.id)


def relay_rows(settings, case: Case, author: Member, text: str, followers: list[fanout.Recipient],
               post_id: int | None) -> list[dict]:
    """The relay of a post to its followers: one delivery row per follower and channel."""
    url = settings.case_url(case.code)
    texts: dict[str, str] = {}

    def sms_text(language: str) -> str:
        if language not in texts:
            texts[language] = fit_sms(render_sms(settings.templates_dir, "relay", language, code=case.code,
                                                 author=author.short_name, text=text), url, language=language)
        return texts[language]

    return fanout.delivery_rows(followers, purpose="relay", post_id=post_id, case_id=case.id,
                                sms_text=sms_text, email_body=text)


@dataclass
class PendingPost:
    """A post of the batch not written yet: its id is known after `Posts.write`."""

    values: dict
    rows: list[dict]  # its relays (post_id and dedupe_key filled in by `Posts.write`)
    id: int | None = None


@dataclass
class Posts:
    """The posts of one transaction's replies, written together (see the module docstring). Reads its
    followers from the database as of the last `write` (or the start): call `write` before anything
    that may change who follows a thread or which channels they take (a command), and before the rows
    are planned."""

    session: Session
    pending: list[PendingPost] = field(default_factory=list)
    _followers: dict[int, dict[int, object]] = field(default_factory=dict)  # thread -> {member: reachable row}
    _joining: list[dict] = field(default_factory=list)  # authors to add as participants

    def load(self, thread_ids) -> None:
        """Read the followers of these threads in one query (threads read already are kept)."""
        wanted = sorted(set(thread_ids) - set(self._followers))
        if not wanted:
            return
        found = fanout.participants_by_thread(self.session, wanted)
        for thread_id in wanted:
            self._followers[thread_id] = {row.id: row for row in found.get(thread_id, [])}

    def publish(self, settings, case: Case, author: Member, text: str, channel: str,
                event_id: int | None) -> tuple[PendingPost, list[dict]]:
        """publish_reply, deferred: the post and its author's participation are written by `write`, and its
        relay rows get their post id then."""
        thread = threads.ensure_thread(self.session, case)
        self.load([thread.id])
        following = self._followers[thread.id]
        if author.id not in following:  # as follow() then participants() would see the author: if reachable
            joined = fanout.reachable_members(self.session, Member.id == author.id)
            if joined:
                following[author.id] = joined[0]
                self._followers[thread.id] = dict(sorted(following.items()))  # member id order, as participants()
                following = self._followers[thread.id]
        self._joining.append({"thread_id": thread.id, "member_id": author.id, "reason": "posted",
                              "created_at": utcnow()})
        others = [row for member_id, row in following.items() if member_id != author.id]
        rows = relay_rows(settings, case, author, text, fanout.recipients_from(others, set(CHANNELS)), None)
        post = PendingPost({"thread_id": thread.id, "author_id": author.id, "kind": "reply", "channel": channel,
                            "body": text, "inbound_event_id": event_id, "created_at": utcnow()}, rows)
        self.pending.append(post)
        return post, rows

    def write(self) -> None:
        """Insert the pending posts (one statement), their authors as participants (one), and give their
        relay rows their post ids; then forget the followers read (they may change after this point)."""
        pending, self.pending = self.pending, []
        joining, self._joining = self._joining, []
        self._followers = {}
        if not pending:
            return
        values = [post.values for post in pending]
        if self.session.get_bind().dialect.name == "postgresql":  # one statement, whatever the count
            returned = fanout.insert_rows_set_wise(self.session, Post.__table__, values, (Post.inbound_event_id, Post.id))
        else:
            returned = list(self.session.execute(insert(Post).returning(Post.inbound_event_id, Post.id), values))
        ids = dict(returned)  # by inbound event: a post is unique per event
        for post in pending:
            post.id = ids[post.values["inbound_event_id"]]  # missing: the event was posted already, the batch fails
            post_id = post.id
            for row in post.rows:
                row["post_id"] = post_id
                row["dedupe_key"] = f"post:{post_id}:{row['member_id']}:{row['channel']}"
        fanout.follow_many(self.session, joining)
