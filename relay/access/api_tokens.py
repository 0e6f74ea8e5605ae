"""Per-member API tokens (`relay tokens create|list|revoke`) and who a bearer token names.

A token is `rly_` + 32 random bytes (secrets.token_urlsafe), shown once when it is made. Only its
SHA-256 is stored, so a copy of the table holds no usable token; looking a token up by the hash of what
was presented compares nothing secret byte by byte (an attacker cannot steer the hash), which is what
makes the check constant-time in effect. SHA-256 without a salt or a slow KDF is enough here because
the token has 256 random bits: there is nothing to guess from a dictionary.

A token carries no roles of its own: every request reads its member's roles and active flag as they are
now, so a role change or a deactivation takes effect on the next request. The shared RELAY_API_TOKEN
is a service token with admin rights, audited as actor "api-token"."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from relay.access.permissions import ADMIN
from relay.infra import audit
from relay.model.tables import ApiToken, Member, utcnow
from relay.model.translatable import N_, Translatable

TOKEN_PREFIX = "rly_"
PREFIX_CHARS = 12  # rly_ and 8 random characters: enough to tell tokens apart, useless to an attacker
LAST_USED_EVERY = timedelta(minutes=1)  # write last_used_at at most this often per token
SERVICE_ACTOR = audit.Actor("api-token", "api")


class TokenError(ValueError):
    """A token cannot be made or revoked as asked (unknown member, unknown token, bad name)."""


@dataclass(frozen=True)
class Caller:
    """Who is calling the API: anonymous (no roles), a member through a token, or the service token."""

    roles: frozenset[str]
    actor: audit.Actor | None = None
    member_id: int | None = None
    token_id: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.actor is None


ANONYMOUS = Caller(frozenset())
SERVICE = Caller(frozenset({ADMIN}), SERVICE_ACTOR)


class TokenRefused(Translatable, ValueError):
    """Why a presented token names no one: English in `str()` (the API's `detail`, the log), a catalogue id
    and its values for the caller's language (the API's `message`)."""


@dataclass(frozen=True)
class Refusal:
    """Why a presented token does not authenticate (answered 401)."""

    reason: TokenRefused


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(session: Session, member: Member, name: str = "", actor: audit.Actor = audit.SYSTEM
                 ) -> tuple[ApiToken, str]:
    """Make a token for `member`; returns the row and the token itself (shown once, never stored)."""
    name = " ".join((name or "").split())
    if len(name) > 100:
        raise TokenError("a token name has at most 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(member_id=member.id, name=name, token_hash=hash_token(token), prefix=token[:PREFIX_CHARS])
    session.add(row)
    session.flush()
    audit.record(session, "token.create", f"token:{row.id}", actor, member=member.id, prefix=row.prefix)
    return row, token


def list_tokens(session: Session, member: Member | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if member is not None:
        query = query.where(ApiToken.member_id == member.id)
    return list(session.scalars(query))


def revoke_token(session: Session, token_id: int, actor: audit.Actor = audit.SYSTEM) -> ApiToken:
    """Revoke a token at once; revoking it again changes nothing (the first time is kept)."""
    row = session.get(ApiToken, token_id) if 0 < token_id <= 2**31 - 1 else None
    if row is None:
        raise TokenError(f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(session, "token.revoke", f"token:{row.id}", actor, member=row.member_id, prefix=row.prefix)
        session.flush()
    return row


def authenticate(session: Session, presented: str, service_token: str = "",
                 now: datetime | None = None) -> Caller | Refusal:
    """The caller a bearer token names, or why it names no one. Reads the member's roles now."""
    if service_token and hmac.compare_digest(presented.encode("utf-8", "surrogatepass"),
                                             service_token.encode("utf-8", "surrogatepass")):
        return SERVICE
    if not presented.startswith(TOKEN_PREFIX) or len(presented) > 200:
        return Refusal(TokenRefused(N_("unknown token")))
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(presented)))
    if row is None:
        return Refusal(TokenRefused(N_("unknown token")))
    if row.revoked_at is not None:
        return Refusal(TokenRefused(N_("token %(prefix)s... was revoked"), prefix=row.prefix))
    member = session.get(Member, row.member_id)
    if member is None or not member.active:
        return Refusal(TokenRefused(N_("token %(prefix)s...: its member is deactivated"), prefix=row.prefix))
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        # A conditional UPDATE: concurrent requests never fight over the row, and a busy token costs
        # one write a minute rather than one per request.
        session.execute(update(ApiToken).where(ApiToken.id == row.id)
                        .values(last_used_at=now).execution_options(synchronize_session=False))
    return Caller(member.role_set, audit.member_actor(member, "api"), member.id, row.id)
