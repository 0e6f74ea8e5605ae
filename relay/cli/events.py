"""`relay events list|retry`: inbound events that failed or were set aside."""
from __future__ import annotations

import click

from relay.cli.common import age_text, cli_actor, cli_services, load_settings, utc_now


@click.group()
def events() -> None:
    """Stored webhooks whose processing failed: list them, run one again."""


@events.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000))
def events_list(limit: int) -> None:
    """Set-aside and failing inbound events: id, kind, state, attempts, age, last error."""
    from relay.inbound.set_aside import troubled

    services = cli_services(load_settings())
    now = utc_now()
    with services.sessions() as session:
        rows = troubled(session, limit)
    for row in rows:
        age = age_text((now - row.received_at).total_seconds())
        error = " ".join(row.last_error.split())[:120] or "-"
        click.echo(f"{row.id:8} {row.kind:6} {row.state:9} attempts {row.attempts:2}  {age:>5} old  {error}")
    if not rows:
        click.echo("no failed or set-aside events")


@events.command("retry")
@click.argument("event_id", type=int)
def events_retry(event_id: int) -> None:
    """Run EVENT_ID again: its attempts start from zero and it is queued (audited as inbound.retry)."""
    from relay.inbound.set_aside import NotRetryable, retry

    services = cli_services(load_settings())
    try:
        retry(services, event_id, actor=cli_actor())
    except NotRetryable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"inbound event {event_id} queued again (attempts reset); `relay events list` shows it if it fails")
