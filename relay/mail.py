"""Composing relay's outbound email like a well-run mailing list: one stable Message-ID per post,
In-Reply-To and References along the case thread, a reply address bound to (member, case),
RFC 2369/2919/8058 list headers, RFC 3834 Auto-Submitted, and a text and an HTML part."""
from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Case, Delivery, Member, Post, Thread
from .tokens import post_message_id, reply_token, unsubscribe_token

LOOP_HEADER = "X-Relay-Loop"
MAX_REFERENCES = 20  # the first post plus the latest ones: long threads keep a sane header


@lru_cache(maxsize=8)
def _environment(templates_dir: str) -> Environment:
    return Environment(loader=FileSystemLoader(templates_dir), undefined=StrictUndefined,
                       autoescape=select_autoescape(enabled_extensions=("html",), default=False),
                       trim_blocks=True, lstrip_blocks=True)


def _render(templates_dir: Path, name: str, language: str, **context) -> str:
    env = _environment(str(templates_dir))
    template = env.select_template([f"email/{language}/{name}", f"email/en/{name}"])
    return template.render(language=language, **context)


def list_id(settings) -> str:
    return f"cases.{settings.email_domain}"


def reply_address(settings, member_id: int, case_id: int) -> str:
    return f"reply+{reply_token(settings.secret(), member_id, case_id)}@{settings.email_domain}"


def unsubscribe_urls(settings, member_id: int) -> tuple[str, str]:
    token = unsubscribe_token(settings.secret(), member_id)
    return (f"{settings.public_base_url}/unsubscribe/{token}",
            f"mailto:unsubscribe+{token}@{settings.email_domain}?subject=unsubscribe")


def thread_references(session: Session, settings, post: Post) -> list[str]:
    """Message-IDs of the posts before this one in its case thread, oldest first."""
    earlier = list(session.scalars(select(Post.id).where(Post.thread_id == post.thread_id, Post.id < post.id)
                                   .order_by(Post.id)))
    if len(earlier) > MAX_REFERENCES:
        earlier = earlier[:1] + earlier[-(MAX_REFERENCES - 1):]
    secret, domain = settings.secret(), settings.email_domain
    return [post_message_id(secret, pid, domain) for pid in earlier]


def compose(session: Session, settings, delivery: Delivery) -> EmailMessage:
    """The email for one delivery of a post, built from the rows (the same bytes every time)."""
    post = session.get(Post, delivery.post_id)
    thread = session.get(Thread, post.thread_id)
    case = session.get(Case, thread.case_id)
    member = session.get(Member, delivery.member_id)
    author = session.get(Member, post.author_id) if post.author_id else None
    notice = post.kind == "notice"
    language = member.language if member else "en"
    url = settings.case_url(case.code)
    unsubscribe_https, unsubscribe_mailto = unsubscribe_urls(settings, member.id)
    summary = [(key, value) for key, value in (
        ("chief_complaint", case.chief_complaint), ("symptoms", case.symptoms),
        ("exposure_history", case.exposure_history), ("findings", case.findings)) if value]
    context = dict(notice=notice, code=case.code, title=case.title, url=url, text=post.body, summary=summary,
                   author=author.short_name if author else settings.network_name,
                   unsubscribe_url=unsubscribe_https)

    # refold_source="none": a header stored with set_raw() goes out exactly as written (see below).
    message = EmailMessage(policy=SMTP.clone(refold_source="none"))
    sender_name = settings.network_name if notice or author is None else f"{author.short_name} via {settings.network_name}"
    message["From"] = formataddr((sender_name, settings.email_from))
    message["To"] = formataddr((member.name, member.email))
    message["Subject"] = f"{'' if notice else 'Re: '}[{case.code}] {case.title}"
    message["Date"] = format_datetime(post.created_at)
    message["Message-ID"] = f"<{post_message_id(settings.secret(), post.id, settings.email_domain)}>"
    references = thread_references(session, settings, post)
    if references:
        message["In-Reply-To"] = f"<{references[-1]}>"
        message["References"] = " ".join(f"<{ref}>" for ref in references)
    message["Reply-To"] = formataddr((f"{case.code} {settings.network_name}",
                                      reply_address(settings, member.id, case.id)))
    message["List-Id"] = f"{settings.network_name} cases <{list_id(settings)}>"
    # Folded here, one URL per line, and stored raw: given the whole value, the email package turns a
    # URL longer than a line into RFC 2047 encoded-words, which RFC 2369/8058 readers do not decode.
    message.set_raw("List-Unsubscribe", f"<{unsubscribe_https}>,\r\n <{unsubscribe_mailto}>")
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["List-Archive"] = f"<{settings.public_base_url}/library/>"
    message["Archived-At"] = f"<{url}>"
    message["Precedence"] = "list"
    message["X-Auto-Response-Suppress"] = "All"  # asks Exchange not to answer with out-of-office mail
    message[LOOP_HEADER] = settings.email_domain
    if notice:
        message["Auto-Submitted"] = "auto-generated"
    message.set_content(_render(settings.templates_dir, "post.txt", language, **context))
    message.add_alternative(_render(settings.templates_dir, "post.html", language, **context), subtype="html")
    return message


def compose_bytes(session: Session, settings, delivery: Delivery) -> bytes:
    return compose(session, settings, delivery).as_bytes()
