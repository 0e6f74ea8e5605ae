"""`relay stats`: the headline figures of a month (docs/reach.md), as `GET /api/v1/stats` gives them."""
from __future__ import annotations

import json

import click

from relay.cli.common import cli_services, load_settings


@click.command("stats")
@click.option("--month", default=None, metavar="YYYY-MM", help="the UTC month (default: the current one)")
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
def stats(month: str | None, as_json: bool) -> None:
    """Print a month's headline figures: active members, their countries, the month's library readers."""
    from relay.reach.headline import headline_figures
    from relay.reach.periods import PeriodError

    services = cli_services(load_settings())
    with services.sessions() as session:
        try:
            figures = headline_figures(session, month)
        except PeriodError as exc:
            raise click.BadParameter(str(exc), param_hint="--month") from None
    if as_json:
        click.echo(json.dumps(figures.as_dict()))
        return
    click.echo(f"{figures.month}: {figures.members:,} members in {figures.countries:,} countries, "
               f"{figures.readers:,} readers this month ({figures.visitors:,} visitors, "
               f"{figures.member_readers:,} signed-in members; each day's distinct readers, summed)")
    click.echo(f"headline figures {'published' if figures.published else 'not published'} on the library's front page")
