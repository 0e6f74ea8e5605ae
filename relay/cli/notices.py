"""`relay notice new-case|create|preview|send|cancel|stop|correct|status|resume`."""
from __future__ import annotations

import click

from relay.cli.common import cli_actor, cli_services, load_settings


@click.group()
def notice() -> None:
    """Broadcast notices."""


@notice.command("new-case")
@click.argument("case_code")
@click.option("--list", "lists", multiple=True, required=True, help="Member list (repeat for several).")
@click.option("--confirm-identifiers", is_flag=True,
              help="Send even though the text seems to hold a patient identifier (docs/guard.md).")
def notice_new_case(case_code: str, lists: tuple[str, ...], confirm_identifiers: bool) -> None:
    """Send the new-case notice for CASE_CODE (e.g. C123) to the given lists, by SMS and email: each member
    once, on each channel they take."""
    from relay.notices.lifecycle import new_case_notice

    services = cli_services(load_settings())
    try:
        result = new_case_notice(services, case_code, list(lists), actor=cli_actor(),
                                 confirm_identifiers=confirm_identifiers)
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"notice {result.notice_id} for {case_code.upper()}: {_queued(result)}")


def _notice_errors():
    from relay.guard.confirmation import IdentifiersFound
    from relay.library.cases import CaseNotFound
    from relay.notices.lifecycle import NoticeError, NoticeNotFound, UnknownList

    return (CaseNotFound, NoticeError, NoticeNotFound, UnknownList, IdentifiersFound)


def _queued(result) -> str:
    from relay.cli.common import counted

    whatsapp = f", {result.whatsapp} WhatsApp" if result.whatsapp else ""  # issue 19: only when there are any
    return (f"{counted(result.recipients, 'member')}, {result.sms} SMS{whatsapp} and "
            f"{counted(result.emails, 'email')} queued")


@notice.command("create")
@click.option("--kind", required=True, help="new_case, guideline, announcement or correction.")
@click.option("--title", default="", help="One line (a new-case notice defaults to the case title).")
@click.option("--body", default="", help="The text (a correction's text).")
@click.option("--list", "lists", multiple=True, help="Target list (repeat for several; not for a correction).")
@click.option("--case", "case_code", default=None, help="The case it is about, e.g. C12 (a library link otherwise).")
@click.option("--severity", default=None, help="routine (default) or urgent.")
@click.option("--channels", default=None,
              help="Any of sms, email, whatsapp separated by ';' (default all three: each member gets it on those "
                   "they take).")
@click.option("--expires", default=None, help="Not sent after this: a duration (6h, 2d) or an ISO time.")
@click.option("--corrects", type=int, default=None, help="The notice a correction corrects.")
@click.option("--ack-within", default=None, help="Ask recipients to acknowledge within this window (30m, 2h); "
              "the unacknowledged are escalated after it.")
@click.option("--escalate-every", default=None, help="The escalation's next steps come this long apart "
              "(default RELAY_ESCALATION_STEP, 15m).")
def notice_create(kind, title, body, lists, case_code, severity, channels, expires, corrects, ack_within,
                  escalate_every) -> None:
    """Create a draft notice and print its id (preview it, then send it)."""
    from relay.infra.db import transaction
    from relay.notices.lifecycle import create_notice, parse_expiry, parse_window

    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            created = create_notice(session, kind=kind, title=title, body=body, lists=lists,
                                    case_code=case_code, severity=severity, channels=channels,
                                    expires_at=parse_expiry(expires) if expires else None,
                                    corrects_notice_id=corrects, ack_within=parse_window(ack_within),
                                    escalation_step=parse_window(escalate_every, "the escalation step"))
            notice_id = created.id
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(notice_id)


@notice.command("preview")
@click.argument("notice_id", type=int)
def notice_preview(notice_id: int) -> None:
    """Show who NOTICE_ID would reach, its SMS texts with segments and cost, and its emails."""
    from relay.guard.confirmation import findings_in
    from relay.model.tables import Case
    from relay.notices.lifecycle import get_notice, notice_fields
    from relay.notices.preview import preview_notice

    services = cli_services(load_settings())
    try:
        with services.sessions() as session:
            preview = preview_notice(session, services.settings, notice_id)
            notice = get_notice(session, notice_id)
            fields = notice_fields(notice, session.get(Case, notice.case_id) if notice.case_id else None)
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("\n".join(_preview_lines(preview)))
    found = findings_in(fields)  # issue 16: what the guard sees, marked >>like this<<
    if found:
        click.echo("patient identifiers? (edit the notice, or send with --confirm-identifiers):")
        for f in found:
            text = fields[f["field"]]
            click.echo(f"  {f['kind']} in the {f['field']}: ...{text[max(0, f['start'] - 20):f['start']]}"
                       f">>{text[f['start']:f['end']]}<<{text[f['end']:f['end'] + 20]}...")


def _money(value) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def _preview_lines(p) -> list[str]:
    from relay.cli.common import counted

    lines = [f"notice {p.notice_id} ({p.kind}, {p.severity}, {p.status}): {p.title}", f"link: {p.link}",
             f"recipients now: {counted(p.recipients, 'member')}; {p.channels['sms']} SMS, "
             f"{counted(p.channels['email'], 'email')}"]
    for total, by_channel, label in (
            (p.held_back, p.held_back_channels, "held back by members' preferences (not sent)"),
            (p.waiting, p.waiting_channels, "waiting for quiet hours to end (sent later, not in the cost)")):
        if total:  # issue 5 and 15: neither is in the counts, segments or cost above
            whatsapp = f", {by_channel['whatsapp']} WhatsApp" if by_channel.get("whatsapp") else ""
            lines.append(f"{label}: {by_channel.get('sms', 0)} SMS, {counted(by_channel.get('email', 0), 'email')}"
                         f"{whatsapp}")
    if p.countries:
        lines.append("SMS by country:")
        lines += [f"  {c.country or '??'}  {counted(c.recipients, 'recipient')}, {counted(c.segments, 'segment')} at "
                  f"{_money(c.price_per_segment_usd)} = {_money(c.cost_usd)}" for c in p.countries]
        lines.append(f"estimated SMS cost: {_money(p.estimated_cost_usd)}")
    if p.whatsapp:  # issue 19
        lines.append(f"WhatsApp: {p.channels['whatsapp']} (by country; a template outside the member's 24-hour "
                     "window, free-form inside it, as of now):")
        lines += [f"  {w.country or '??'}  {w.recipients} recipients: {w.templates} template at "
                  f"{_money(w.template_usd)}, {w.free_form} free-form at {_money(w.session_usd)} = "
                  f"{_money(w.cost_usd)}" for w in p.whatsapp]
        lines.append(f"estimated WhatsApp cost (an estimate): {_money(p.whatsapp_cost_usd)}")
    for s in p.sms:
        lines.append(f"SMS [{s.language}] to {s.recipients}: {s.encoding}, {s.characters} characters, "
                     f"{s.segments} segment{'s' if s.segments != 1 else ''}")
        lines += [f"  | {line}" for line in s.text.splitlines()]
    for e in p.email:
        lines.append(f"email [{e.language}] to {e.recipients}, e.g. {e.sample_to}")
        lines.append(f"  Subject: {e.subject}")
        lines += [f"  | {line}" for line in e.text.splitlines()]
    lines += [f"warning: {w}" for w in p.warnings]
    return lines


@notice.command("send")
@click.argument("notice_id", type=int)
@click.option("--at", "at", default=None, help="Schedule for this ISO time instead of sending now.")
@click.option("--confirm-identifiers", is_flag=True,
              help="Send even though the text seems to hold a patient identifier (docs/guard.md).")
def notice_send(notice_id: int, at: str | None, confirm_identifiers: bool) -> None:
    """Send NOTICE_ID now, or schedule it with --at (sent by the beat task relay.send_scheduled)."""
    from relay.infra.db import transaction
    from relay.notices.lifecycle import parse_time, schedule_notice, send_notice

    services = cli_services(load_settings())
    try:
        if at:
            with transaction(services.sessions) as session:
                when = schedule_notice(session, notice_id, parse_time(at), actor=cli_actor(),
                                       confirm_identifiers=confirm_identifiers).scheduled_for
            assert when is not None  # schedule_notice sets scheduled_for on every notice it returns
            click.echo(f"notice {notice_id} scheduled for {when.isoformat()}")
            return
        result = send_notice(services, notice_id, actor=cli_actor(), confirm_identifiers=confirm_identifiers)
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"notice {notice_id} sent: {_queued(result)}")


@notice.command("cancel")
@click.argument("notice_id", type=int)
def notice_cancel(notice_id: int) -> None:
    """Withdraw NOTICE_ID while it is a draft or scheduled (a sent notice needs a correction)."""
    from relay.infra.db import transaction
    from relay.notices.lifecycle import cancel_notice

    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            cancel_notice(session, notice_id, actor=cli_actor())
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"notice {notice_id} cancelled")


@notice.command("stop")
@click.argument("notice_id", type=int)
def notice_stop(notice_id: int) -> None:
    """Stop NOTICE_ID after it went out: no more escalation (other channels, calls, the report), and what
    still waits is cancelled; what went out stays (send a correction to take it back)."""
    from relay.cli.cases import OPERATOR_ROLES
    from relay.infra.db import transaction
    from relay.notices.lifecycle import stop_notice

    services = cli_services(load_settings())
    try:
        with transaction(services.sessions) as session:
            result = stop_notice(session, notice_id, roles=OPERATOR_ROLES, actor=cli_actor())
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"notice {notice_id} stopped: no further escalation; {result.cancelled} waiting messages cancelled")


@notice.command("correct")
@click.argument("notice_id", type=int)
@click.option("--text", required=True, help="The correction, sent to exactly those who received NOTICE_ID.")
@click.option("--confirm-identifiers", is_flag=True,
              help="Send even though the text seems to hold a patient identifier (docs/guard.md).")
def notice_correct(notice_id: int, text: str, confirm_identifiers: bool) -> None:
    """Send a correction of NOTICE_ID to its recipients, on the same channels."""
    from relay.notices.corrections import correct_notice

    services = cli_services(load_settings())
    try:
        result = correct_notice(services, notice_id, text, actor=cli_actor(), confirm_identifiers=confirm_identifiers)
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"correction {result.notice_id} of notice {notice_id}: {_queued(result)}")


@notice.command("status")
@click.argument("notice_id", type=int)
def notice_status(notice_id: int) -> None:
    """Print NOTICE_ID's state and its deliveries counted by channel and status."""
    from relay.notices import acks
    from relay.notices.lifecycle import delivery_counts, get_notice
    from relay.notices.status import live_counts, rate_limited_until

    services = cli_services(load_settings())
    try:
        with services.sessions() as session:
            found = get_notice(session, notice_id)
            counts = delivery_counts(session, found)
            live = live_counts(session, found) if counts else {}
            last_due = rate_limited_until(session, found) if live.get("rate_limited") else None
            ack = acks.counts(acks.table(session, found)) if acks.requests_ack(found) and counts else None
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    when = {"sent": found.sent_at, "stopped": found.sent_at, "scheduled": found.scheduled_for}.get(found.status)
    click.echo(f"notice {found.id} ({found.kind}, {found.severity}) {found.status}"
               f"{' ' + when.isoformat() if when else ''}: {found.title}")
    for channel in sorted(counts):
        click.echo(f"{channel}: " + ", ".join(f"{status} {n}" for status, n in sorted(counts[channel].items())))
    if not counts:
        click.echo("no deliveries")
    waiting = [f"{label}: {live[key]}" for key, label in (
        ("rate_limited", "waiting for the rate limit"), ("quiet_hours", "waiting for quiet hours to end"),
        ("held", "waiting for the hold to end")) if live.get(key)]
    if waiting:  # queued, not failed: when each goes is in its next_attempt_at
        click.echo("queued " + "; ".join(waiting)
                   + (f" (the last due {last_due.isoformat(timespec='seconds')})" if last_due else ""))
    if ack is not None:  # issue 17
        steps = ", ".join(f"{step} {n}" for step, n in sorted(ack["escalated_by_step"].items())) or "none"
        click.echo(f"acknowledged {ack['acknowledged']} of {ack['total']}; waiting {ack['waiting']}; "
                   f"escalated {ack['escalated']} ({steps}); unreachable {ack['unreachable']}")


@notice.command("resume")
@click.argument("notice_id", type=int)
def notice_resume(notice_id: int) -> None:
    """Resume NOTICE_ID after an error burst paused it: its held deliveries go back in the queue."""
    from relay.outbound.bursts import NoticeNotPaused, resume

    services = cli_services(load_settings())
    try:
        count = resume(services, notice_id, actor=cli_actor())
    except NoticeNotPaused as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"notice {notice_id} resumed: {count} deliveries back in the queue")
