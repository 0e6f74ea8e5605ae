"""`relay audit`: the audit trail."""
from __future__ import annotations

import click

from relay.cli.common import cli_services, load_settings


@click.command("audit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--action", default=None, help="only this action, e.g. notice.send")
def audit_log(limit: int, action: str | None) -> None:
    """Print the newest audit events (broadcasts, publications, holds, opt-out changes)."""
    from relay.infra.audit import known_actions, recent

    services = cli_services(load_settings())
    with services.sessions() as session:
        if action and action not in (known := known_actions(session)):
            raise click.ClickException(f"unknown action {action!r}; the known actions are: {', '.join(known)}")
        events = recent(session, limit, action)
        if not events:
            click.echo(f"no audit events for action {action}" if action else "no audit events yet")
        for event in events:
            detail = " ".join(f"{k}={v}" for k, v in sorted(event.detail.items()))
            click.echo(f"{event.created_at.isoformat(timespec='seconds')} {event.action} {event.subject} "
                       f"by {event.actor} via {event.source}{' ' + detail if detail else ''}")
