"""Cases: created with the next short number (C1, C2, ...) and their one discussion thread; publishing
(draft -> open), discarding (draft -> discarded), closing and reopening (never a draft), visibility (public
or members only), the library's search and its view counter.

The library shows a case only once it is published (published_at is set): a draft is published or
discarded, never closed or reopened into the library (drafts include intake mail nobody reviewed).
A discarded draft keeps its row, number and audit trail (so the intake mail that made it stays
explainable), but get_case() answers "no case" for it to every caller, so it is in no library, search,
API answer, console list or SMS thread again, and its number is never handed out again."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Mapping

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import String

from relay.access import permissions
from relay.guard.confirmation import require_confirmation
from relay.infra import audit
from relay.model.tables import Case, Thread, utcnow
from relay.model.translatable import N_, Translatable
from relay.render.i18n import TranslatableError

STATUSES = ("draft", "open", "closed", "discarded")
DISCARDED = "discarded"
VISIBILITIES = ("public", "members")
PER_PAGE = 50
MAX_QUERY_CHARS = 200
MAX_QUERY_TERMS = 10
MAX_PAGE = 100_000


class CaseNotFound(Translatable, LookupError):
    """No such case (or one the reader may not see: the same answer)."""


class CaseStateError(TranslatableError):
    """The case is not in a state that allows the change (publishing a case that is not a draft). A page
    shows it with exc.in_language(language); str() is the English."""


class CaseError(Translatable, ValueError):
    """A case that cannot be stored as given (no title, an unknown visibility); the message says why."""


class SearchError(Translatable, ValueError):
    """A search parameter that cannot be understood (bad date, status or page)."""


def parse_code(code: str) -> int:
    """'C123', 'c123', '#123' or '123' -> 123."""
    text = (code or "").strip().lstrip("#")
    if text[:1] in ("C", "c"):
        text = text[1:]
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() is True, int("²") fails
        raise CaseNotFound(N_("%(code)s is not a case code (expected something like C123)"), code=repr(code))
    return int(text)


def get_case(session: Session, code: str, *, include_discarded: bool = False) -> Case:
    """The case with that code. A discarded draft is "no case" exactly like a number never used, unless
    `include_discarded` (the changes below, which then say it was discarded)."""
    number = parse_code(code)
    case = session.scalar(select(Case).where(Case.number == number))
    if case is None or (case.status == DISCARDED and not include_discarded):
        raise CaseNotFound(N_("no case %(code)s"), code=f"C{number}")
    return case


_DISCARDED_REFUSALS = {"published": N_("%(code)s was discarded: it cannot be published"),
                       "closed": N_("%(code)s was discarded: it cannot be closed"),
                       "reopened": N_("%(code)s was discarded: it cannot be reopened"),
                       "changed": N_("%(code)s was discarded: it cannot be changed")}
_NOT_A_DRAFT = {"open": N_("%(code)s is open, not a draft: only a draft that was never published can be discarded"),
                "closed": N_("%(code)s is closed, not a draft: only a draft that was never published can be "
                             "discarded")}
_PUBLISHED = N_("%(code)s was published: only a draft that was never published can be discarded")


def _changeable(session: Session, code: str, change: str) -> Case:
    """The case to publish, close, reopen or change; a discarded one is refused, saying so (to staff)."""
    case = get_case(session, code, include_discarded=True)
    if case.status == DISCARDED:
        raise CaseStateError(_DISCARDED_REFUSALS[change], code=case.code)
    return case


def create_case(session: Session, title: str, chief_complaint: str = "", symptoms: str = "",
                exposure_history: str = "", findings: str = "", *, draft: bool = False,
                visibility: str = "public", confirm_identifiers: bool = False) -> Case:
    """Create a case and its thread; the number is the next free one (unique in the database).

    By default the case is open and public, in the library at once (published now); a draft waits
    for publish_case(). Issue 16: a case published at once whose text holds a patient identifier is refused
    (IdentifiersFound) unless `confirm_identifiers`; a draft is checked when it is published."""
    title = " ".join((title or "").split())  # one line: it becomes an email Subject
    if not title:
        raise CaseError(N_("a case needs a title"))
    if not draft:
        require_confirmation({"title": title, "chief complaint": chief_complaint, "symptoms": symptoms,
                              "exposure history": exposure_history, "findings": findings}, confirm_identifiers)
    visibility = _visibility(visibility)
    for _ in range(5):
        number = (session.scalar(select(func.max(Case.number))) or 0) + 1
        try:
            with session.begin_nested():
                case = Case(number=number, title=title, chief_complaint=chief_complaint, symptoms=symptoms,
                            exposure_history=exposure_history, findings=findings,
                            status="draft" if draft else "open", visibility=visibility,
                            published_at=None if draft else utcnow())
                session.add(case)
                session.flush()
                session.add(Thread(case_id=case.id))
                session.flush()
            return case
        except IntegrityError:
            continue  # another coordinator took that number at the same moment
    raise RuntimeError("could not allocate a case number")


def case_fields(case: Case) -> dict[str, str]:
    """The text a case publishes, by field, for the patient-information guard (issue 16)."""
    return {"title": case.title, "chief complaint": case.chief_complaint, "symptoms": case.symptoms,
            "exposure history": case.exposure_history, "findings": case.findings}


def publish_case(session: Session, code: str, actor: audit.Actor = audit.SYSTEM,
                 confirm_identifiers: bool = False) -> Case:
    """Draft -> open: the case enters the library (published now). A case already published is refused, and so
    is a case whose text holds a patient identifier unless `confirm_identifiers` (issue 16, IdentifiersFound).

    A closed or open case that was never published (an older row, or a draft closed before closing
    drafts was refused) is published as it stands: it enters the library and keeps its status. A discarded
    draft is refused."""
    case = _changeable(session, code, "published")
    if case.published_at is not None:
        raise CaseStateError(N_("%(code)s is already published (%(status)s)"), code=case.code, status=case.status)
    confirmed = require_confirmation(case_fields(case), confirm_identifiers)
    if confirmed:
        audit.record(session, "guard.confirm", f"case:{case.code}", actor,
                     kinds=",".join(sorted({f["kind"] for f in confirmed})))
    if case.status == "draft":
        case.status = "open"
    case.published_at = utcnow()
    audit.record(session, "case.publish", f"case:{case.code}", actor)
    session.flush()
    return case


def close_case(session: Session, code: str, *, reopen: bool = False, actor: audit.Actor = audit.SYSTEM) -> Case:
    """Open -> closed (new posts are refused), or with reopen closed -> open. A draft is refused: it
    is published (publish_case) or discarded, never closed or reopened into the library."""
    case = _changeable(session, code, "reopened" if reopen else "closed")
    if case.status == "draft":
        raise CaseStateError(N_("%(code)s is a draft: publish it first (relay cases publish %(code)s); "
                                "a draft cannot be closed or reopened"), code=case.code)
    wanted = "open" if reopen else "closed"
    if case.status != wanted:
        audit.record(session, "case.reopen" if reopen else "case.close", f"case:{case.code}", actor,
                     before=case.status, after=wanted)
        case.status = wanted
    session.flush()
    return case


def discard_case(session: Session, code: str, *, roles, actor: audit.Actor) -> Case:
    """Draft -> discarded, for a coordinator or an admin (`roles` must allow case.discard: checked here, for
    every shell). Only a draft that was never published; audited `case.discard`. The row stays (marked, not
    deleted: its number is not reused, and the audit trail and any intake mail that made it stay
    explainable), but from now on get_case() answers "no case" for it to everyone. Discarding it again, or
    discarding any other case, is refused (CaseStateError)."""
    permissions.require(roles, "case.discard")
    case = get_case(session, code, include_discarded=True)
    if case.status == DISCARDED:
        raise CaseStateError(N_("%(code)s is already discarded"), code=case.code)
    if case.status != "draft" or case.published_at is not None:
        raise CaseStateError(_NOT_A_DRAFT.get(case.status, _PUBLISHED), code=case.code)
    # no title in the trail: it is append-only, and an intake mail's subject may name a patient
    audit.record(session, "case.discard", f"case:{case.code}", actor, before=case.status)
    case.status = DISCARDED
    session.flush()
    return case


def draft_condition() -> ColumnElement[bool]:
    """The cases waiting for review (never published, not discarded), for the drafts lists."""
    return and_(Case.published_at.is_(None), Case.status != DISCARDED)


def set_visibility(session: Session, code: str, visibility: str, actor: audit.Actor = audit.SYSTEM) -> Case:
    """'public' (anyone can read it in the library) or 'members' (members only)."""
    visibility = _visibility(visibility)
    case = _changeable(session, code, "changed")
    if case.visibility != visibility:
        audit.record(session, "case.visibility", f"case:{case.code}", actor, before=case.visibility, after=visibility)
    case.visibility = visibility
    session.flush()
    return case


def _visibility(value: str) -> str:
    value = (value or "").strip().lower()
    if value not in VISIBILITIES:
        raise CaseError(N_("visibility must be one of %(values)s, not %(value)s"), values=", ".join(VISIBILITIES),
                        value=repr(value))
    return value


def is_published(case: Case) -> bool:
    """In the library: published (never a draft or a discarded one, whatever its status says)."""
    return case.status not in ("draft", DISCARDED) and case.published_at is not None


def published_condition() -> ColumnElement[bool]:
    """is_published() as SQL, for the library's lists and the digests."""
    return and_(Case.status.not_in(("draft", DISCARDED)), Case.published_at.is_not(None))


def is_visible(case: Case, *, member: bool) -> bool:
    """Whether the library shows this case: only a published one; a members-only case only to a member."""
    return is_published(case) and (member or case.visibility == "public")


def count_view(session: Session, case: Case) -> int:
    """One page view: an atomic UPDATE ... SET views = views + 1 (never read-modify-write in
    Python), so concurrent views are all counted; returns the new count."""
    statement = (update(Case).where(Case.id == case.id).values(views=Case.views + 1)
                 .execution_options(synchronize_session=False))
    if session.get_bind().dialect.update_returning:
        views = session.execute(statement.returning(Case.views)).scalar_one()
    else:  # pragma: no cover - every supported database has RETURNING
        session.execute(statement)
        views = session.scalar(select(Case.views).where(Case.id == case.id)) or 0
    set_committed_value(case, "views", views)  # what the row holds; not a change to write back
    return views


# ---------------------------------------------------------------- search


class relay_lower(GenericFunction):
    """lower() that folds Unicode the same on PostgreSQL and SQLite (see relay.infra.db.make_engine)."""

    type = String()
    inherit_cache = True


@compiles(relay_lower)
def _lower_default(element, compiler, **kw):
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(relay_lower, "sqlite")
def _lower_sqlite(element, compiler, **kw):
    return f"relay_lower({compiler.process(element.clauses, **kw)})"


_NUMBER = re.compile(r"#?[cC]?(\d{1,9})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class SearchParams:
    q: str = ""
    status: str | None = None  # open | closed | None for both
    date_from: date | None = None
    date_to: date | None = None
    page: int = 1

    def as_args(self, **changes) -> dict[str, str]:
        """Query-string arguments that repeat this search (for links to other pages)."""
        values = {"q": self.q, "status": self.status or "", "from": self.date_from.isoformat() if self.date_from else "",
                  "to": self.date_to.isoformat() if self.date_to else "", "page": str(self.page)}
        values.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v and not (k == "page" and v == "1")}


def parse_search_params(args: Mapping[str, str]) -> SearchParams:
    """The library's and the API's query string (q, status, from, to, page) -> SearchParams.
    Empty values mean 'no filter'; anything else that cannot be understood raises SearchError."""
    q = " ".join((args.get("q") or "").split())
    if len(q) > MAX_QUERY_CHARS:
        raise SearchError(N_("q is too long (at most %(max)d characters)"), max=MAX_QUERY_CHARS)
    status: str | None = (args.get("status") or "").strip().lower()
    if status in ("", "any", "all"):
        status = None
    elif status not in ("open", "closed"):
        raise SearchError(N_("status must be open or closed"))
    date_from, date_to = _date(args, "from"), _date(args, "to")
    if date_from and date_to and date_from > date_to:
        raise SearchError(N_("from is after to"))
    page_text = (args.get("page") or "1").strip()
    if not (page_text.isascii() and page_text.isdigit()) or not 1 <= int(page_text) <= MAX_PAGE:
        raise SearchError(N_("page must be a whole number from 1 to %(max)d"), max=MAX_PAGE)
    return SearchParams(q=q, status=status, date_from=date_from, date_to=date_to, page=int(page_text))


def _date(args: Mapping[str, str], name: str) -> date | None:
    text = (args.get(name) or "").strip()
    if not text:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise SearchError(N_("%(name)s must be a date like 2020-03-01"), name=name) from None


@dataclass
class SearchResult:
    cases: list[Case]
    total: int
    page: int
    per_page: int
    params: SearchParams = field(default_factory=SearchParams)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def library_date():
    """The date a case is listed under: when it was published, else (older rows) when created."""
    return func.coalesce(Case.published_at, Case.created_at)


def _escape_like(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _term_condition(term: str):
    """One search word: the case number (C12, #12 or 12) or a piece of the title or findings,
    case-insensitively. The word is a bound parameter with LIKE's wildcards escaped."""
    pattern = f"%{_escape_like(term.lower())}%"
    conditions: list[ColumnElement[bool]] = [relay_lower(Case.title).like(pattern, escape="/"),
                  relay_lower(Case.findings).like(pattern, escape="/")]
    number = _NUMBER.fullmatch(term)
    if number:
        conditions.append(Case.number == int(number.group(1)))
    return or_(*conditions)


def search_cases(session: Session, q: str = "", status: str | None = None, date_from: date | None = None,
                 date_to: date | None = None, include_member_only: bool = False, page: int = 1,
                 per_page: int = PER_PAGE) -> SearchResult:
    """The library's case list, newest first (by library_date, then number), `per_page` a page.

    q: words that must all match, each the case number (C12 or 12), or text in the title or the
    findings (case-insensitive). status: 'open', 'closed' or None for both. date_from/date_to:
    inclusive calendar dates (UTC) of the library date. Only published cases are listed; members-only cases
    only with include_member_only."""
    if status not in (None, "open", "closed"):
        raise SearchError(N_("status must be open or closed"))
    page = max(1, int(page))
    when = library_date()
    where = [published_condition()]
    if not include_member_only:
        where.append(Case.visibility == "public")
    if status:
        where.append(Case.status == status)
    if date_from:
        where.append(when >= datetime.combine(date_from, time.min, tzinfo=timezone.utc))
    if date_to:
        try:
            where.append(when < datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=timezone.utc))
        except OverflowError:
            pass  # up to the end of time
    terms = (q or "").split()[:MAX_QUERY_TERMS]
    where.extend(_term_condition(term) for term in terms)
    condition = and_(*where)
    total = session.scalar(select(func.count(Case.id)).where(condition)) or 0
    cases = list(session.scalars(select(Case).where(condition)
                                 .order_by(when.desc(), Case.number.desc())
                                 .limit(per_page).offset((page - 1) * per_page)))
    params = SearchParams(q=" ".join((q or "").split()), status=status, date_from=date_from,
                          date_to=date_to, page=page)
    return SearchResult(cases=cases, total=total, page=page, per_page=per_page, params=params)


def search(session: Session, params: SearchParams, *, include_member_only: bool) -> SearchResult:
    return search_cases(session, params.q, params.status, params.date_from, params.date_to,
                        include_member_only=include_member_only, page=params.page)
