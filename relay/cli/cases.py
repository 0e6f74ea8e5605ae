"""`relay cases add|close|publish|discard|visibility|drafts`."""
from __future__ import annotations

import click

from relay.cli.common import cli_actor, cli_services, load_settings

OPERATOR_ROLES = frozenset({"admin"})  # the server's shell (relay.access.permissions checks it in the core)


@click.group()
def cases() -> None:
    """Cases."""


@cases.command("add")
@click.option("--title", required=True)
@click.option("--chief-complaint", default="")
@click.option("--symptoms", default="")
@click.option("--exposure", default="", help="Exposure history.")
@click.option("--findings", default="")
@click.option("--draft", is_flag=True, help="Keep it out of the library until `relay cases publish`.")
@click.option("--members-only", is_flag=True, help="Only members can read it in the library.")
@click.option("--confirm-identifiers", is_flag=True,
              help="Publish even though the text seems to hold a patient identifier (docs/guard.md).")
def cases_add(title: str, chief_complaint: str, symptoms: str, exposure: str, findings: str, draft: bool,
              members_only: bool, confirm_identifiers: bool) -> None:
    """Create a case and print its number (open and public unless --draft / --members-only)."""
    from relay.infra.db import transaction
    from relay.library.cases import create_case

    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            case = create_case(session, title, chief_complaint, symptoms, exposure, findings, draft=draft,
                               visibility="members" if members_only else "public",
                               confirm_identifiers=confirm_identifiers)
            code = case.code
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(code)


@cases.command("close")
@click.argument("case_code")
@click.option("--reopen", is_flag=True, help="Open a closed case again.")
def cases_close(case_code: str, reopen: bool) -> None:
    """Close a case to new posts (members who reply are told so), or reopen it. A draft is refused."""
    from relay.infra.db import transaction
    from relay.library.cases import CaseNotFound, CaseStateError, close_case

    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            case = close_case(session, case_code, reopen=reopen, actor=cli_actor())
            code, status = case.code, case.status
    except (CaseNotFound, CaseStateError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{code} is {status}")


@cases.command("publish")
@click.argument("case_code")
@click.option("--confirm-identifiers", is_flag=True,
              help="Publish even though the text seems to hold a patient identifier (docs/guard.md).")
def cases_publish(case_code: str, confirm_identifiers: bool) -> None:
    """Publish a draft case: it opens and enters the library (a never-published closed case enters it closed)."""
    from relay.guard.confirmation import IdentifiersFound
    from relay.infra.db import transaction
    from relay.library.cases import CaseNotFound, CaseStateError, publish_case

    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            code = publish_case(session, case_code, actor=cli_actor(), confirm_identifiers=confirm_identifiers).code
    except (CaseNotFound, CaseStateError, IdentifiersFound) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{code} is published")


@cases.command("discard")
@click.argument("case_code")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def cases_discard(case_code: str, yes: bool) -> None:
    """Discard a draft that was never published (an intake mail sent by mistake): it never enters the library,
    and its number is not used again. Asks first unless --yes. Audited."""
    from relay.infra.db import transaction
    from relay.library.cases import CaseNotFound, CaseStateError, discard_case, get_case

    services = cli_services(load_settings())
    try:
        if not yes:
            with services.sessions() as session:
                case = get_case(session, case_code, include_discarded=True)
                code, title = case.code, case.title
            click.confirm(f"Discard draft {code} ({title})? It will never enter the library", abort=True)
        with transaction(services.sessions) as session:
            # whoever runs relay on the server is its operator, as for publish and close
            code = discard_case(session, case_code, roles=OPERATOR_ROLES, actor=cli_actor()).code
    except (CaseNotFound, CaseStateError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{code} is discarded")


@cases.command("visibility")
@click.argument("case_code")
@click.argument("visibility", type=click.Choice(["members", "public"], case_sensitive=False))
def cases_visibility(case_code: str, visibility: str) -> None:
    """Who can read CASE_CODE in the library: members only, or the public."""
    from relay.infra.db import transaction
    from relay.library.cases import CaseNotFound, set_visibility

    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            case = set_visibility(session, case_code, visibility, actor=cli_actor())
            code, chosen = case.code, case.visibility
    except CaseNotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{code} is {'members-only' if chosen == 'members' else 'public'}")


@cases.command("drafts")
def cases_drafts() -> None:
    """List the cases not in the library yet (drafts; intake mail lands here) waiting for `relay cases publish`
    (or `relay cases discard`)."""
    from sqlalchemy import func, select

    from relay.library.cases import draft_condition
    from relay.model.tables import Case, CaseImage

    services = cli_services(load_settings())
    with services.sessions() as session:
        rows = session.execute(
            select(Case, func.count(CaseImage.id)).outerjoin(
                CaseImage, (CaseImage.case_id == Case.id) & (CaseImage.status == "stored"))
            .where(draft_condition()).group_by(Case.id).order_by(Case.number)).all()
        for case, images in rows:
            state = "" if case.status == "draft" else f" ({case.status}, never published)"
            click.echo(f"{case.code}\t{case.created_at:%Y-%m-%d %H:%M}\t{images} image(s)\t{case.title}{state}")
    if not rows:
        click.echo("no draft cases")
