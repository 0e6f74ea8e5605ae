"""`relay members import|password|channels|bounces`."""
from __future__ import annotations

import sys

import click

from relay.cli.common import cli_actor, cli_services, counted, load_settings, member_or_fail


@click.group()
def members() -> None:
    """Members and lists."""


@members.command("import")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--grant-roles", is_flag=True,
              help="Apply the roles column (make coordinators and admins). Without it a row that would change "
                   "anyone's roles is refused with its line number.")
@click.option("--sync-lists", is_flag=True,
              help="Also take each member in the file off the lists their row does not name (without it a row "
                   "only adds list memberships).")
def members_import(csv_file, grant_roles: bool, sync_lists: bool) -> None:
    """Import members from CSV: name,phone,email,timezone,language,lists,roles[,channels].

    Lists, roles and channels are separated by ';'; channels is sms, email or sms;email. Without a
    channels column, existing members keep their channels (new ones take every channel they have an
    address for).

    Whoever runs this has a shell on the server, but on a shared host that need not be an admin of the
    network: roles are granted only when asked for with --grant-roles (and the audit trail says so)."""
    from relay.infra.db import transaction
    from relay.members.directory import import_members

    services = cli_services(load_settings())
    with transaction(services.sessions) as session:
        report = import_members(session, csv_file.read(), grant_roles=grant_roles, sync_lists=sync_lists,
                                actor=cli_actor())
    for line, reason in report.errors:
        click.echo(f"line {line}: {reason}", err=True)
    if report.lists_created:
        click.echo(f"new lists: {', '.join(report.lists_created)}")
    click.echo(f"imported {report.created} new, updated {report.updated}, "
               f"{counted(len(report.errors), 'row')} with errors")
    if report.errors:
        sys.exit(1)


@members.command("password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def members_password(email: str, password_stdin: bool) -> None:
    """Set the console/library sign-in password of the member with EMAIL (prompts twice)."""
    from relay.access.accounts import PasswordError, check_password_rules, set_password
    from relay.infra.db import transaction
    from relay.members.directory import find_member

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        check_password_rules(password)
    except PasswordError as exc:
        raise click.ClickException(str(exc)) from None
    services = cli_services(load_settings())
    with transaction(services.sessions) as session:
        member = find_member(session, email) if "@" in email else None
        if member is None:
            raise click.ClickException(f"no member with the email {email!r}")
        set_password(session, member, password)
        name = member.name
    click.echo(f"password set for {name} <{email.strip().lower()}>; sign in at {services.settings.public_base_url}/signin")


@members.command("channels")
@click.argument("who")
@click.argument("channels")
def members_channels(who: str, channels: str) -> None:
    """Choose how WHO (id, phone or email) takes case discussion: any of sms, email, whatsapp (';'-separated), or none."""
    from relay.infra.db import transaction
    from relay.members.directory import RowError, set_channels

    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            member = member_or_fail(session, who)
            set_channels(member, [] if channels.strip().lower() == "none" else channels.split(";"))
            chosen = ", ".join(member.channels) or "none"
            waiting = member.whatsapp_discussion and member.whatsapp_opted_in_at is None
    except RowError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{who}: {chosen}")
    if "whatsapp" in chosen and not services.settings.whatsapp_enabled:
        click.echo("WhatsApp is off (RELAY_TWILIO_WHATSAPP_FROM is unset): nothing goes there until it is set")
    elif waiting:  # issue 19: WhatsApp needs the member's recorded consent
        click.echo("WhatsApp: waiting for the member's opt-in (they message the WhatsApp number, or opt in on "
                   "their preference page); nothing is sent there until then")


@members.command("bounces")
@click.argument("who", required=False)
@click.option("--reset", is_flag=True, help="Undo a bounce suspension: email starts again.")
def members_bounces(who: str | None, reset: bool) -> None:
    """Show members whose email bounced (or WHO's bounces); --reset lifts a suspension."""
    from sqlalchemy import select

    from relay.inbound.bounce_handling import reset_bounces
    from relay.infra.db import transaction
    from relay.model.tables import EmailBounce, Member

    if reset and not who:  # a reset of everyone by a forgotten argument is too easy; say whose
        raise click.UsageError("--reset needs WHO: the member (id, phone or email) whose bounces to reset")
    services = cli_services(load_settings())
    with transaction(services.sessions) as session:
        if who:
            member = member_or_fail(session, who)
            if reset:
                reset_bounces(session, member, source="cli")
                click.echo(f"{member.email}: bounces reset, email resumed")
                return
            bounces = list(session.scalars(select(EmailBounce).where(EmailBounce.member_id == member.id)
                                           .order_by(EmailBounce.id)))
            for b in bounces:
                click.echo(f"{b.created_at:%Y-%m-%d %H:%M} {b.kind:9} {b.status:7} {b.diagnostic[:80]}")
            if not bounces:
                click.echo(f"no bounces for {member.email or member.phone}")
            return
        bounced = list(session.scalars(select(Member).where(Member.email_hard_bounces > 0).order_by(Member.id)))
        for m in bounced:
            state = "suspended" if m.email_suspended_at else "receiving"
            click.echo(f"{m.id:6} {m.email:40} {counted(m.email_hard_bounces, 'hard bounce')}, {state}")
        if not bounced:
            click.echo("no member has a hard email bounce")
