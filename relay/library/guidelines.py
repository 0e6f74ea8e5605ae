"""Guidelines with versions: a guideline (slug, title) is read in its newest version; every version
is kept, numbered 1, 2, 3, ... (unique per guideline in the database), and each new one must say
what changed, so a reader of the library can follow how the advice moved."""
from __future__ import annotations

import re

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from relay.guard.confirmation import require_confirmation
from relay.infra import audit
from relay.model.tables import Guideline, GuidelineVersion, Member, utcnow
from relay.model.translatable import N_, Translatable

SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?")
FIRST_CHANGES = N_("First version.")  # stored as written; pages show it in the reader's language


class GuidelineError(Translatable, ValueError):
    """A guideline or version that cannot be stored as given; the message says why."""


class GuidelineNotFound(Translatable, LookupError):
    """No guideline by that slug (or version)."""


def _title(text: str) -> str:
    title = " ".join((text or "").split())
    if not title:
        raise GuidelineError(N_("a guideline needs a title"))
    if len(title) > 300:
        raise GuidelineError(N_("the title is longer than %(max)d characters"), max=300)
    return title


def _body(text: str) -> str:
    body = (text or "").strip()
    if not body:
        raise GuidelineError(N_("a guideline version needs its text"))
    return body


def get_guideline(session: Session, slug: str) -> Guideline:
    guideline = session.scalar(select(Guideline).where(Guideline.slug == (slug or "").strip().lower())
                               .options(selectinload(Guideline.versions)))
    if guideline is None:
        raise GuidelineNotFound(N_("no guideline %(slug)s"), slug=repr(slug))
    return guideline


def list_guidelines(session: Session) -> list[Guideline]:
    """Every guideline with its versions, the most recently changed first."""
    latest = (select(GuidelineVersion.guideline_id, func.max(GuidelineVersion.published_at).label("at"))
              .group_by(GuidelineVersion.guideline_id).subquery())
    return list(session.scalars(select(Guideline).join(latest, latest.c.guideline_id == Guideline.id)
                                .options(selectinload(Guideline.versions))
                                .order_by(latest.c.at.desc(), Guideline.id.desc())))


def current_version(guideline: Guideline) -> GuidelineVersion:
    return max(guideline.versions, key=lambda v: v.number)


def _guarded(session: Session, slug: str, fields: dict[str, str | None], confirmed: bool, actor: audit.Actor) -> None:
    """Issue 16: a guideline enters the library as written, so its title, text and what-changed line go through
    the guard like a case's: IdentifiersFound unless confirmed (then audited `guard.confirm`)."""
    found = require_confirmation(fields, confirmed)
    if found:
        audit.record(session, "guard.confirm", f"guideline:{slug}", actor,
                     kinds=",".join(sorted({f["kind"] for f in found})))


def create_guideline(session: Session, slug: str, title: str, body: str, *, changes: str = "",
                     author: Member | None = None, confirm_identifiers: bool = False,
                     actor: audit.Actor = audit.SYSTEM) -> Guideline:
    """A new guideline and its version 1. The slug (its address: lowercase letters, digits and
    hyphens) is unique in the database. Raises IdentifiersFound for text that seems to name a patient,
    unless `confirm_identifiers`."""
    typed = slug or ""
    slug = typed.strip().lower()
    if not SLUG.fullmatch(slug):  # the slug as typed, not as lowered: the user finds what they wrote
        raise GuidelineError(N_("slug %(slug)s: use lowercase letters, digits and hyphens (like masks-in-ct)"), slug=repr(typed))
    title, body = _title(title), _body(body)
    _guarded(session, slug, {"title": title, "body": body, "changes": changes}, confirm_identifiers, actor)
    guideline = Guideline(slug=slug, title=title)
    try:
        with session.begin_nested():
            session.add(guideline)
            session.flush()
    except IntegrityError:
        raise GuidelineError(N_("there is already a guideline %(slug)s: add a version to it instead"), slug=repr(slug)) from None
    session.add(GuidelineVersion(guideline_id=guideline.id, number=1, title=title, body=body,
                                 changes=" ".join(changes.split()) or FIRST_CHANGES,
                                 author_id=author.id if author else None, published_at=utcnow()))
    session.flush()
    session.refresh(guideline)
    return guideline


def add_version(session: Session, slug: str, body: str, changes: str, *, title: str | None = None,
                author: Member | None = None, confirm_identifiers: bool = False,
                actor: audit.Actor = audit.SYSTEM) -> GuidelineVersion:
    """The next version of a guideline; `changes` (what changed, one line) is required. Raises
    IdentifiersFound for text that seems to name a patient, unless `confirm_identifiers`."""
    changes = " ".join((changes or "").split())
    if not changes:
        raise GuidelineError(N_("a new version must say what changed"))
    guideline = get_guideline(session, slug)
    body = _body(body)
    title = _title(title) if title is not None else None
    _guarded(session, guideline.slug, {"title": title, "body": body, "changes": changes}, confirm_identifiers, actor)
    if title is not None:
        guideline.title = title
    for _ in range(5):
        number = (session.scalar(select(func.max(GuidelineVersion.number))
                                 .where(GuidelineVersion.guideline_id == guideline.id)) or 0) + 1
        version = GuidelineVersion(guideline_id=guideline.id, number=number, title=guideline.title, body=body,
                                   changes=changes, author_id=author.id if author else None,
                                   published_at=utcnow())
        try:
            with session.begin_nested():
                session.add(version)
                session.flush()
            return version
        except IntegrityError:
            continue  # another editor took that number at the same moment
    raise RuntimeError("could not number the new version")


def guideline_url(settings, slug: str, number: int | None = None) -> str:
    base = f"{settings.public_base_url}/library/guidelines/{slug}"
    return f"{base}/v{number}" if number else base


def count_view(session: Session, guideline: Guideline) -> None:
    """One page view, counted by an atomic UPDATE (concurrent views all count)."""
    session.execute(update(Guideline).where(Guideline.id == guideline.id).values(views=Guideline.views + 1)
                    .execution_options(synchronize_session=False))
