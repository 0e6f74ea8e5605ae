"""Cases: created with the next short number (C1, C2, ...) and their one discussion thread."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import Case, Thread


class CaseNotFound(LookupError):
    pass


def parse_code(code: str) -> int:
    """'C123', 'c123', '#123' or '123' -> 123."""
    text = (code or "").strip().lstrip("#")
    if text[:1] in ("C", "c"):
        text = text[1:]
    if not text.isdigit():
        raise CaseNotFound(f"{code!r} is not a case code (expected something like C123)")
    return int(text)


def get_case(session: Session, code: str) -> Case:
    number = parse_code(code)
    case = session.scalar(select(Case).where(Case.number == number))
    if case is None:
        raise CaseNotFound(f"no case C{number}")
    return case


def create_case(session: Session, title: str, chief_complaint: str = "", symptoms: str = "",
                exposure_history: str = "", findings: str = "") -> Case:
    """Create a case and its thread; the number is the next free one (unique in the database)."""
    title = " ".join((title or "").split())  # one line: it becomes an email Subject
    if not title:
        raise ValueError("a case needs a title")
    for _ in range(5):
        number = (session.scalar(select(func.max(Case.number))) or 0) + 1
        try:
            with session.begin_nested():
                case = Case(number=number, title=title, chief_complaint=chief_complaint, symptoms=symptoms,
                            exposure_history=exposure_history, findings=findings)
                session.add(case)
                session.flush()
                session.add(Thread(case_id=case.id))
                session.flush()
            return case
        except IntegrityError:
            continue  # another coordinator took that number at the same moment
    raise RuntimeError("could not allocate a case number")
