"""`relay demo`: a small network, its notice, and a signed curl that plays a member's reply."""
from __future__ import annotations

import secrets
import shlex

import click

from relay.cli.common import cli_actor, cli_services, load_settings, upgrade_database
from relay.infra.settings import DEV_ACCOUNT_SID

# Alice also takes WhatsApp (issue 19), with her consent recorded as the import's words.
DEMO_CSV = """name,phone,email,timezone,language,lists,roles,channels,whatsapp,whatsapp_opt_in
Kim Jiwon,+821012345601,jiwon.kim@example.org,Asia/Seoul,ko,tft-demo,admin;coordinator;member,,,
Lee Minho,+821012345602,minho.lee@example.org,Asia/Seoul,ko,tft-demo,member,,,
Park Seoyeon,+821012345603,seoyeon.park@example.org,Asia/Seoul,en,tft-demo,member,,,
Alice Moreau,+33612345604,alice.moreau@example.org,Europe/Paris,en,tft-demo,member,sms;email;whatsapp,,demo sign-up form
Ben Carter,+12025550105,ben.carter@example.org,America/New_York,en,tft-demo,member,,,
"""

DEMO_WHATSAPP_MEMBER = "+33612345604"
DEMO_WHATSAPP_SENDER = "whatsapp:+14155238886"  # used in the curl when RELAY_TWILIO_WHATSAPP_FROM is a service


DEMO_COORDINATOR = "jiwon.kim@example.org"


DEMO_TITLE = "54-year-old with fever and bilateral ground-glass opacities"


DEMO_INBOUND_NUMBER = "+15005550006"


@click.command()
def demo() -> None:
    """Seed a small network (a list, 5 members, one case), send its notice, and print a curl that
    plays a member's SMS reply."""
    from sqlalchemy import select

    from relay.infra.db import transaction
    from relay.library.cases import create_case
    from relay.members.directory import import_members
    from relay.model.tables import Case
    from relay.notices.lifecycle import new_case_notice
    from relay.providers.twilio_sms import sign

    settings = load_settings()
    upgrade_database(settings, quiet=True)
    services = cli_services(settings)
    with transaction(services.sessions) as session:
        report = import_members(session, DEMO_CSV, grant_roles=True, actor=cli_actor())
        existing = session.scalar(select(Case).where(Case.title == DEMO_TITLE))
        is_new = existing is None
        case = existing if existing is not None else create_case(
            session, DEMO_TITLE, chief_complaint="Fever and dry cough for 5 days",
            symptoms="Fever 38.6 C, dry cough, myalgia",
            exposure_history="Returned from a city with community spread 9 days ago",
            findings="CT: bilateral peripheral ground-glass opacities, lower lobes")
        code = case.code
    click.echo(f"members: {report.created} new, {report.updated} updated; list tft-demo; case {code}")
    if is_new:
        result = new_case_notice(services, code, ["tft-demo"], actor=cli_actor())
        click.echo(f"notice sent to {result.recipients} members")
    to = min(settings.own_numbers) if settings.own_numbers else DEMO_INBOUND_NUMBER
    params = {
        "MessageSid": "SM" + secrets.token_hex(16),
        "AccountSid": settings.webhook_account_sid or DEV_ACCOUNT_SID,
        "From": "+821012345602",
        "To": to,
        "Body": f"{code} Looks like organising pneumonia. Suggest follow-up CT in 2 weeks.",
        "NumMedia": "0",
    }
    url = f"{settings.public_base_url}/webhooks/twilio/sms"
    signature = sign(settings.signing_token(), url, params)
    data = " ".join(f"--data-urlencode {shlex.quote(f'{k}={v}')}" for k, v in params.items())
    click.echo("\nPlay Lee Minho's SMS reply (relay up must be running):\n")
    click.echo(f"curl -sS -X POST {url} -H {shlex.quote('X-Twilio-Signature: ' + signature)} {data}\n")
    _whatsapp_curl(settings, code, url)
    click.echo(f"Then open {settings.public_base_url}/dev/outbox (signed in as below) to see the relayed texts, "
               f"and {settings.case_url(code)} for the discussion.")
    password = _demo_coordinator_password(services)
    click.echo(f"\nSign in to the coordinator console and the dev outbox at {settings.public_base_url}/signin as "
               f"{DEMO_COORDINATOR} (a coordinator and admin) with the password {password}\n"
               "(a new one each time `relay demo` runs).")


def _whatsapp_curl(settings, code: str, url: str) -> None:
    """The curl of Alice's WhatsApp reply: Twilio posts WhatsApp to the same webhook, `whatsapp:` addresses."""
    from relay.providers.twilio_sms import sign

    sid = "SM" + secrets.token_hex(16)
    params = {
        "SmsMessageSid": sid, "NumMedia": "0", "ProfileName": "Alice", "MessageType": "text", "SmsSid": sid,
        "WaId": DEMO_WHATSAPP_MEMBER.lstrip("+"), "SmsStatus": "received",
        "Body": f"{code} Agree, and worth testing for influenza too.",
        "To": settings.whatsapp_number or DEMO_WHATSAPP_SENDER, "NumSegments": "1", "ReferralNumMedia": "0",
        "MessageSid": sid, "AccountSid": settings.twilio_account_sid or "AC" + "0" * 32,
        "From": f"whatsapp:{DEMO_WHATSAPP_MEMBER}", "ApiVersion": "2010-04-01",
    }
    signature = sign(settings.signing_token(), url, params)
    data = " ".join(f"--data-urlencode {shlex.quote(f'{k}={v}')}" for k, v in params.items())
    click.echo("Play Alice Moreau's WhatsApp reply (Alice takes WhatsApp; her opt-in is in the consent log):\n")
    click.echo(f"curl -sS -X POST {url} -H {shlex.quote('X-Twilio-Signature: ' + signature)} {data}\n")
    if not settings.whatsapp_enabled:
        click.echo("WhatsApp is off in this relay (RELAY_TWILIO_WHATSAPP_FROM is unset): the reply is threaded, but "
                   f"what would go to Alice on WhatsApp goes by her other channels. Start relay with "
                   f"RELAY_TWILIO_WHATSAPP_FROM={DEMO_WHATSAPP_SENDER} to see WhatsApp messages in the outbox.\n")


def _demo_coordinator_password(services) -> str:
    """A fresh random password for the demo coordinator, so a new user can try the console."""
    from relay.access.accounts import set_password
    from relay.infra.db import transaction
    from relay.members.directory import find_member

    password = secrets.token_urlsafe(12)
    with transaction(services.sessions) as session:
        coordinator = find_member(session, DEMO_COORDINATOR)
        if coordinator is None:  # the demo imported them a moment ago
            raise click.ClickException(f"the demo coordinator {DEMO_COORDINATOR} is missing")
        set_password(session, coordinator, password)
    return password
