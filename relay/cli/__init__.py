"""The `relay` command line: run the service (up, web, worker, beat), migrate, and operate.

One module per command group (as Mailman's `cli_<command>.py`). Commands import the core inside
their bodies: `relay --help` and every command start without loading SQLAlchemy, Celery or Pillow."""
from __future__ import annotations

import click

from relay.cli import audit, cases, database, demo, events, guard, guidelines, members, notices, serve, stats, tokens


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """relay: SMS and email case discussion relay for medical networks."""
    from relay.infra.logs import configure_logging

    configure_logging()


main.add_command(serve.up)
main.add_command(serve.web)
main.add_command(serve.worker)
main.add_command(serve.beat)
main.add_command(database.db)
main.add_command(members.members)
main.add_command(cases.cases)
main.add_command(guidelines.guidelines)
main.add_command(notices.notice)
main.add_command(audit.audit_log)
main.add_command(events.events)
main.add_command(tokens.tokens)
main.add_command(stats.stats)  # issue 20
main.add_command(demo.demo)
main.add_command(guard.guard)
