"""`relay guidelines add|update|list`."""
from __future__ import annotations

import click

from relay.cli.common import cli_services, load_settings


@click.group()
def guidelines() -> None:
    """Guidelines in the library, with versions."""


def _guideline_body(body: str | None, body_file) -> str:
    if body_file is not None:
        return body_file.read()
    if body is None:
        raise click.UsageError("give the text with --body or --body-file")
    return body


def _author(session, email: str | None):
    if not email:
        return None
    from sqlalchemy import select

    from relay.model.tables import Member

    member = session.scalar(select(Member).where(Member.email == email.strip().lower()))
    if member is None:
        raise click.ClickException(f"no member with email {email}")
    return member


@guidelines.command("add")
@click.argument("slug")
@click.option("--title", required=True)
@click.option("--body", help="The text (or --body-file).")
@click.option("--body-file", type=click.File("r", encoding="utf-8"), help="Read the text from a file (- for stdin).")
@click.option("--author", "author_email", help="The author's email (a member).")
@click.option("--confirm-identifiers", is_flag=True,
              help="Publish even though the text seems to hold a patient identifier (docs/guard.md).")
def guidelines_add(slug: str, title: str, body: str | None, body_file, author_email: str | None,
                   confirm_identifiers: bool) -> None:
    """Create guideline SLUG (its address: /library/guidelines/SLUG) with version 1."""
    from relay.guard.confirmation import IdentifiersFound
    from relay.infra.audit import cli_actor
    from relay.infra.db import transaction
    from relay.library.guidelines import GuidelineError, create_guideline, guideline_url

    text = _guideline_body(body, body_file)
    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            guideline = create_guideline(session, slug, title, text, author=_author(session, author_email),
                                         confirm_identifiers=confirm_identifiers, actor=cli_actor())
            slug = guideline.slug
    except (GuidelineError, IdentifiersFound) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{slug} v1 {guideline_url(services.settings, slug)}")


@guidelines.command("update")
@click.argument("slug")
@click.option("--changes", required=True, help="What changed since the previous version (required).")
@click.option("--body", help="The whole new text (or --body-file).")
@click.option("--body-file", type=click.File("r", encoding="utf-8"), help="Read the text from a file (- for stdin).")
@click.option("--title", help="A new title.")
@click.option("--author", "author_email", help="The author's email (a member).")
@click.option("--confirm-identifiers", is_flag=True,
              help="Publish even though the text seems to hold a patient identifier (docs/guard.md).")
def guidelines_update(slug: str, changes: str, body: str | None, body_file, title: str | None,
                      author_email: str | None, confirm_identifiers: bool) -> None:
    """Publish the next version of guideline SLUG, saying what changed."""
    from relay.guard.confirmation import IdentifiersFound
    from relay.infra.audit import cli_actor
    from relay.infra.db import transaction
    from relay.library.guidelines import GuidelineError, GuidelineNotFound, add_version, guideline_url

    text = _guideline_body(body, body_file)
    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            version = add_version(session, slug, text, changes, title=title, author=_author(session, author_email),
                                  confirm_identifiers=confirm_identifiers, actor=cli_actor())
            number, slug = version.number, version.guideline.slug
    except (GuidelineError, GuidelineNotFound, IdentifiersFound) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{slug} v{number} {guideline_url(services.settings, slug, number)}")


@guidelines.command("list")
def guidelines_list() -> None:
    """Every guideline: slug, current version, when, title."""
    from relay.library.guidelines import current_version, list_guidelines

    services = cli_services(load_settings())
    with services.sessions() as session:
        found = list_guidelines(session)
        for guideline in found:
            latest = current_version(guideline)
            click.echo(f"{guideline.slug}\tv{latest.number}\t{latest.published_at:%Y-%m-%d}\t{guideline.title}")
    if not found:
        click.echo("no guidelines")
