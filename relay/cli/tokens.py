"""`relay tokens create|list|revoke`: API tokens."""
from __future__ import annotations

import click

from relay.cli.common import cli_actor, cli_services, load_settings, member_or_fail


@click.group()
def tokens() -> None:
    """Per-member API tokens (bearer tokens for /api/v1/)."""


@tokens.command("create")
@click.option("--member", "who", required=True, help="The member (email, phone or id) the token acts as.")
@click.option("--name", default="", help="What the token is for, e.g. 'nightly export'.")
def tokens_create(who: str, name: str) -> None:
    """Make a token carrying the member's roles and print it (once: only its hash is kept)."""
    from relay.access.api_tokens import TokenError, create_token
    from relay.infra.db import transaction

    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            member = member_or_fail(session, who)
            row, token = create_token(session, member, name, actor=cli_actor())
            token_id, roles, active = row.id, ", ".join(sorted(member.role_set)) or "none", member.active
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)
    click.echo(f"token {token_id} for {who} (roles: {roles}). Store it now: it is not shown again.", err=True)
    if not active:
        click.echo("warning: the member is deactivated; the token is refused until they are active", err=True)


@tokens.command("list")
@click.option("--member", "who", default=None, help="Only this member's tokens (email, phone or id).")
def tokens_list(who: str | None) -> None:
    """List tokens: id, prefix, member, name, created, last used and revoked times (never the token)."""
    from relay.access.api_tokens import list_tokens

    services = cli_services(load_settings())
    with services.sessions() as session:
        member = None
        if who:
            member = member_or_fail(session, who)
        rows = list_tokens(session, member)

        def when(value) -> str:
            return value.isoformat(timespec="seconds") if value else "-"

        for row in rows:
            owner = row.member.email or row.member.phone or f"member {row.member_id}"
            state = f"revoked {when(row.revoked_at)}" if row.revoked_at else "active"
            click.echo(f"{row.id:5} {row.prefix}... {owner:32} {row.name or '-':20} created {when(row.created_at)} "
                       f"last used {when(row.last_used_at)} {state}")
        if not rows:
            click.echo("no tokens")


@tokens.command("revoke")
@click.argument("token_id", type=int)
def tokens_revoke(token_id: int) -> None:
    """Revoke token TOKEN_ID at once (the next request with it gets 401)."""
    from relay.access.api_tokens import TokenError, revoke_token
    from relay.infra.db import transaction

    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            row = revoke_token(session, token_id, actor=cli_actor())
            revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "now"
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"token {token_id} revoked at {revoked}")
