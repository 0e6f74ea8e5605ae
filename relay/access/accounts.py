"""Member accounts for the console and the library: one password per member, hashed with argon2id
(argon2-cffi's PasswordHasher, its current recommended parameters), and the sign-in check.

Sign-in answers the same for an unknown email, an inactive member, a member without a password and
a wrong password (and spends the same hashing time on each), so the form never tells an outsider
which addresses are members."""
from __future__ import annotations

import hashlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from relay.model.tables import Member, MemberPassword, utcnow

MIN_LENGTH = 10
MAX_LENGTH = 1024  # argon2 takes any length; a cap stops a megabyte "password" costing real work

_hasher = PasswordHasher()
# Verified against when the email is unknown, so that answer takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("relay: no such member")


class PasswordError(ValueError):
    """A password relay will not accept (too short, too long); the message says why."""


def check_password_rules(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"a password may have at most {MAX_LENGTH} characters")


def set_password(session: Session, member: Member, password: str) -> None:
    """Hash and store `password` for `member` (replacing any earlier one)."""
    check_password_rules(password)
    digest = _hasher.hash(password)
    row = session.scalar(select(MemberPassword).where(MemberPassword.member_id == member.id))
    if row is None:
        session.add(MemberPassword(member_id=member.id, password_hash=digest))
    else:
        row.password_hash, row.updated_at = digest, utcnow()
    session.flush()


def has_password(session: Session, member_id: int) -> bool:
    return session.scalar(select(MemberPassword.id).where(MemberPassword.member_id == member_id)) is not None


def authenticate(session: Session, email: str, password: str) -> Member | None:
    """The active member with this email and password, or None (for every kind of failure alike)."""
    email = (email or "").strip().lower()
    password = password or ""
    member = session.scalar(select(Member).where(Member.email == email)) if email else None
    row = (session.scalar(select(MemberPassword).where(MemberPassword.member_id == member.id))
           if member is not None else None)
    if row is None or len(password) > MAX_LENGTH:
        _verify(_DUMMY_HASH, password[:MAX_LENGTH])
        return None
    if not _verify(row.password_hash, password) or member is None or not member.active:  # a row means a member
        return None
    if _hasher.check_needs_rehash(row.password_hash):  # parameters were raised since it was set
        row.password_hash = _hasher.hash(password)
    return member


def session_stamp(session: Session, member_id: int) -> str:
    """A short fingerprint of the member's current password hash and session generation: kept in the
    signed session cookie and checked on every request, it makes every earlier session invalid once
    the password changes or the member signs out (end_sessions)."""
    row = session.execute(select(MemberPassword.password_hash, MemberPassword.session_generation)
                          .where(MemberPassword.member_id == member_id)).first()
    if row is None or not row.password_hash:
        return ""
    return hashlib.sha256(f"{row.password_hash}:{row.session_generation}".encode()).hexdigest()[:16]


def end_sessions(session: Session, member_id: int) -> None:
    """Invalidate every session of the member server-side (a copied cookie stops working too): the
    database decides, so it holds whatever state Redis is in."""
    session.execute(update(MemberPassword).where(MemberPassword.member_id == member_id).values(
        session_generation=MemberPassword.session_generation + 1, updated_at=MemberPassword.updated_at))


def _verify(digest: str, password: str) -> bool:
    try:
        return _hasher.verify(digest, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
