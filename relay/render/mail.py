"""Composing relay's outbound email like a well-run mailing list: one stable Message-ID per post,
In-Reply-To and References along the case thread, a reply address bound to (member, case),
RFC 2369/2919/8058 list headers, RFC 3834 Auto-Submitted, and a text and an HTML part. Notices
(new case, guideline, announcement, correction) have their own subjects; a general notice, with no
case thread, gets a Message-ID of its own and no reply address."""
from __future__ import annotations

import re
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.infra.signing import ack_token, notice_message_id, post_message_id, reply_token, signed_id, unsubscribe_token
from relay.model.notice_refs import notice_of
from relay.model.tables import Case, Delivery, Member, Notice, Post, Thread
from relay.providers.smtp_transaction import plain
from relay.render import i18n
from relay.render.environment import environment
from relay.render.i18n import N_

LOOP_HEADER = "X-Relay-Loop"
MAX_REFERENCES = 20  # the first post plus the latest ones: long threads keep a sane header


def render_mail_template(templates_dir: Path, name: str, language: str, **context) -> str:
    """templates/email/<language>/<name> in the language's environment (its catalogue); English for a
    language relay does not speak (tests/unit/render/test_i18n.py: every English template has its twins)."""
    language = i18n.supported(language)
    env = environment(str(templates_dir), language)
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


def preferences_url(settings, member_id: int) -> str:
    """The member's preference page (issue 5: every email links it)."""
    return f"{settings.public_base_url}/preferences/{signed_id(settings.secret(), 'preferences', member_id)}"


def thread_references(session: Session, settings, post: Post) -> list[str]:
    """Message-IDs of the posts before this one in its case thread, oldest first."""
    earlier = list(session.scalars(select(Post.id).where(Post.thread_id == post.thread_id, Post.id < post.id)
                                   .order_by(Post.id)))
    if len(earlier) > MAX_REFERENCES:
        earlier = earlier[:1] + earlier[-(MAX_REFERENCES - 1):]
    secret, domain = settings.secret(), settings.email_domain
    return [post_message_id(secret, pid, domain) for pid in earlier]


# Translated in the reader's language from the catalogue (relay/translations/).
NOTICE_LABELS = {"guideline": N_("Guideline"), "announcement": N_("Announcement"), "correction": N_("Correction")}
URGENT_LABEL = N_("URGENT")


def notice_label(language: str, kind: str) -> str:
    """The label of a notice kind in `language` ("" for a new case, which has none)."""
    return i18n.translate(language, NOTICE_LABELS[kind]) if kind in NOTICE_LABELS else ""


def notice_subject(language: str, kind: str, title: str, code: str = "", urgent: bool = False) -> str:
    """A notice's Subject: "[C1] title" (new case), "[C1] Correction: title", "Guideline: title"."""
    label = notice_label(language, kind)
    text = f"{label}: {title}" if label else title
    if urgent:
        text = f"{i18n.translate(language, URGENT_LABEL)} {text}"
    return f"[{code}] {text}" if code else text


# The clinical summary's field labels, shared by the emails and the library's case page.
SUMMARY_LABELS = {"chief_complaint": N_("Chief complaint"), "symptoms": N_("Symptoms"),
                  "exposure_history": N_("Exposure history"), "findings": N_("Findings")}


def case_summary(case: Case, language: str = i18n.DEFAULT_LANGUAGE) -> list[tuple[str, str]]:
    """The clinical summary fields of a case that have a value, as (label in `language`, value); the
    values keep the language they were written in."""
    return [(i18n.translate(language, SUMMARY_LABELS[key]), value) for key, value in (
        ("chief_complaint", case.chief_complaint), ("symptoms", case.symptoms),
        ("exposure_history", case.exposure_history), ("findings", case.findings)) if value]


def summary_text(case: Case, language: str = i18n.DEFAULT_LANGUAGE) -> str:
    """The clinical summary as "label: value" lines: what a new-case notice adds to its discussion (stored
    with English labels; the library shows it with the reader's, relay/notices/audience.py post_body)."""
    return "\n".join(f"{label}: {value}" for label, value in case_summary(case, language))


def notice_parts(settings, notice: Notice | None, case: Case | None, language: str, unsubscribe_url: str,
                 text: str) -> tuple[str, str, dict]:
    """Subject, template name and template context of a notice's email (compose and preview share it)."""
    kind = notice.kind if notice is not None else "new_case"
    urgent = notice is not None and notice.severity == "urgent"
    code = case.code if case is not None else ""
    url = settings.case_url(code) if case is not None else settings.library_url
    if kind == "new_case":
        if case is None:
            raise ValueError("a new-case notice's email needs its case")
        context = dict(notice=True, code=code, title=case.title, url=url, text=text,
                       summary=case_summary(case, language), author=settings.network_name,
                       unsubscribe_url=unsubscribe_url, **members_only(settings, case))
        return notice_subject(language, kind, case.title, code, urgent), "post", context
    if notice is None:
        raise ValueError(f"a {kind} email needs its notice")
    context = dict(kind=kind, label=notice_label(language, kind), urgent=urgent, code=code, title=notice.title,
                   body=text, url=url, network=settings.network_name, unsubscribe_url=unsubscribe_url,
                   **members_only(settings, case))
    return notice_subject(language, kind, notice.title, code, urgent), "notice", context


def members_only(settings, case: Case | None) -> dict:
    """Template context for a members-only case: its page needs a sign-in, and the email says so."""
    return {"members_only": case is not None and case.visibility == "members",
            "signin_url": f"{settings.public_base_url}/signin"}


def render_email_text(settings, template: str, language: str, context: dict) -> str:
    """The text part of an email from templates/email/<language>/<template>.txt."""
    return render_mail_template(settings.templates_dir, f"{template}.txt", language, **context)


def _row(session: Session, model: type[T], ident: int | None, delivery: Delivery) -> T:
    """A row an email is built from; a delivery's member, post, thread and case are kept while it exists."""
    row = session.get(model, ident) if ident is not None else None
    if row is None:
        raise LookupError(f"delivery {delivery.id}: its {model.__name__.lower()} {ident} is gone")
    return row


def compose(session: Session, settings, delivery: Delivery) -> EmailMessage:
    """The email for one delivery of a post or a general notice, built from the rows (the same bytes every time)."""
    member = _row(session, Member, delivery.member_id, delivery)
    language = member.language
    unsubscribe_https, unsubscribe_mailto = unsubscribe_urls(settings, member.id)
    notice = notice_of(session, delivery)
    if delivery.post_id is None:  # a general notice: no case, no thread
        if notice is None:
            raise LookupError(f"delivery {delivery.id}: its notice is gone")
        subject, template, context = notice_parts(settings, notice, None, language, unsubscribe_https, notice.body)
        context["preferences_url"] = preferences_url(settings, member.id)
        _ask_ack(settings, notice, member.id, context)
        references = []
        if notice.corrects_notice_id is not None:
            references = [notice_message_id(settings.secret(), notice.corrects_notice_id, settings.email_domain)]
        return compose_message(settings, member, settings.network_name, subject, notice.sent_at or notice.created_at,
                        notice_message_id(settings.secret(), notice.id, settings.email_domain), references, None,
                        context["url"], True, (unsubscribe_https, unsubscribe_mailto),
                        *_parts(settings, template, language, context))
    post = _row(session, Post, delivery.post_id, delivery)
    thread = _row(session, Thread, post.thread_id, delivery)
    case = _row(session, Case, thread.case_id, delivery)
    author = session.get(Member, post.author_id) if post.author_id else None
    is_notice = post.kind == "notice"
    url = settings.case_url(case.code)
    if is_notice:
        subject, template, context = notice_parts(settings, notice, case, language, unsubscribe_https, post.body)
    else:
        subject, template = f"Re: [{case.code}] {case.title}", "post"
        context = dict(notice=False, code=case.code, title=case.title, url=url, text=post.body,
                       summary=case_summary(case, language),
                       author=author.short_name if author else settings.network_name,
                       unsubscribe_url=unsubscribe_https, **members_only(settings, case))
    context["preferences_url"] = preferences_url(settings, member.id)
    if is_notice:
        _ask_ack(settings, notice, member.id, context)
    sender_name = settings.network_name if is_notice or author is None else f"{author.short_name} via {settings.network_name}"
    reply_to = formataddr((f"{case.code} {settings.network_name}", reply_address(settings, member.id, case.id)))
    return compose_message(settings, member, sender_name, subject, post.created_at,
                    post_message_id(settings.secret(), post.id, settings.email_domain),
                    thread_references(session, settings, post), reply_to, url, is_notice,
                    (unsubscribe_https, unsubscribe_mailto), *_parts(settings, template, language, context))


def ack_url(settings, notice_id: int, member_id: int) -> str:
    """issue 17: the signed link that acknowledges the notice for the member (GET shows a button, POST records)."""
    return f"{settings.public_base_url}/ack/{ack_token(settings.secret(), notice_id, member_id)}"


def _ask_ack(settings, notice: Notice | None, member_id: int, context: dict) -> None:
    if notice is not None and notice.ack_within_s is not None:
        context["ack_url"], context["ack_number"] = ack_url(settings, notice.id, member_id), notice.id


def _parts(settings, template: str, language: str, context: dict) -> tuple[str, str]:
    return (render_email_text(settings, template, language, context),
            render_mail_template(settings.templates_dir, f"{template}.html", language, **context))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """Header text on one line: CR, LF and other control characters become spaces (reliability: a name or
    title that somehow holds CR/LF can neither add a header nor make composing the email fail). Called for
    every email of a broadcast (relay/outbound/bulk.py), so one regular expression, not a loop per character."""
    return " ".join(_CONTROL.sub(" ", text or "").split())


def pre_rendered_to(name: str | None, address: str | None) -> bytes | None:
    """The To line that a pre-rendered email (a broadcast's notices, relay/outbound/bulk.py; digests,
    relay/render/digest_mail.py) puts in place of its placeholder: the name on one line (RFC 2047 when it is not
    ASCII), and only a plain ASCII addr-spec as the address. None for any other address (one holding a line break,
    say): that email is composed whole, where compose() quotes what needs quoting and refuses a line break."""
    if not address or not plain(address):
        return None
    return formataddr((one_line(name or ""), address), charset="utf-8").encode("ascii")


T = TypeVar("T")


class Addressee(Protocol):
    """Whom an email is addressed to: a Member, or a digest subscriber who may not be one."""
    name: str
    email: str | None


def compose_message(settings, member: Addressee, sender_name: str, subject: str, date, message_id: str,
             references: list[str], reply_to: str | None, archived_at: str, automatic: bool,
             unsubscribe: tuple[str, str], text: str, html: str) -> EmailMessage:
    # refold_source="none": a header stored with set_raw() goes out exactly as written (see below).
    message = EmailMessage(policy=SMTP.clone(refold_source="none"))
    message["From"] = formataddr((one_line(sender_name), settings.email_from))
    message["To"] = formataddr((one_line(member.name), member.email or ""))
    message["Subject"] = one_line(subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{message_id}>"
    if references:
        message["In-Reply-To"] = f"<{references[-1]}>"
        message["References"] = " ".join(f"<{ref}>" for ref in references)
    if reply_to:
        message["Reply-To"] = reply_to
    message["List-Id"] = f"{settings.network_name} cases <{list_id(settings)}>"
    # Folded here, one URL per line, and stored raw: given the whole value, the email package turns a
    # URL longer than a line into RFC 2047 encoded-words, which RFC 2369/8058 readers do not decode.
    message.set_raw("List-Unsubscribe", f"<{unsubscribe[0]}>,\r\n <{unsubscribe[1]}>")
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["List-Archive"] = f"<{settings.library_url}>"
    message["Archived-At"] = f"<{archived_at}>"
    message["Precedence"] = "list"
    message["X-Auto-Response-Suppress"] = "All"  # asks Exchange not to answer with out-of-office mail
    message[LOOP_HEADER] = settings.email_domain
    if automatic:
        message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def compose_bytes(session: Session, settings, delivery: Delivery) -> bytes:
    return compose(session, settings, delivery).as_bytes()
