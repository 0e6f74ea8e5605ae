"""The `relay` command line: run the service (up, web, worker, beat), migrate, and operate."""
from __future__ import annotations

import os
import secrets
import shlex
import sys
from pathlib import Path

import click

from .settings import Settings, SettingsError

# A webhook spends part of its time waiting on PostgreSQL's commit and on Redis: one worker
# process more than there are cores keeps every core busy meanwhile. Measured on 2 cores
# (docs/scale.md): 3 sync workers take ~25% more webhooks a second than 2, and more than 3, or
# threads (the GIL), add nothing.
def _cores() -> int:
    """Cores this process may run on (a container's cpuset, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


WEB_WORKERS = _cores() + 1
WEB_THREADS = 1


def gunicorn_options(workers: int, threads: int) -> list[str]:
    """The gunicorn settings of `relay web`; the ingest benchmark runs its baseline with the same."""
    worker_class = ["--worker-class", "gthread", "--threads", str(threads)] if threads > 1 else []
    return ["--workers", str(workers), *worker_class, "--access-logfile", "-", "--graceful-timeout", "10",
            "--timeout", "30", "--logger-class", "relay.access_log.RedactingLogger"]  # no tokens in the access log


def _settings(port: int | None = None, serving: bool = False) -> Settings:
    """Settings from the environment; `serving` (up, web, worker, beat) also refuses what must not run."""
    try:
        settings = Settings.from_env()
        if serving:
            settings.check_startup()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if port is not None and port != settings.port:
        env_base = os.environ.get("RELAY_PUBLIC_BASE_URL", "").strip()
        settings = settings.replace(port=port, public_base_url=env_base.rstrip("/") or f"http://127.0.0.1:{port}")
    return settings


def cli_actor():
    """The audit actor for a command run on the server."""
    from .audit import cli_actor as actor

    return actor()


def _services(settings: Settings):
    from .services import build_services

    return build_services(settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """relay: SMS and email case discussion relay for medical networks."""
    from .logs import configure_logging

    configure_logging()


# ---------------------------------------------------------------- running


@main.command()
@click.option("--port", type=int, default=None, help="Port to listen on (default RELAY_PORT or 8000).")
@click.option("--host", default="127.0.0.1", show_default=True)
def up(port: int | None, host: str) -> None:
    """Migrate, then run the web server and a Celery worker (with beat) side by side."""
    settings = _settings(port, serving=True)
    _upgrade(settings)
    env = dict(os.environ, RELAY_PORT=str(settings.port), RELAY_PUBLIC_BASE_URL=settings.public_base_url)
    # The embedded mode is a developer's or a trial's machine: show the dev outbox there (to an admin)
    # unless RELAY_DEV_OUTBOX says otherwise; a deployment turns it on only by asking.
    if settings.embedded_broker and not settings.production and not os.environ.get("RELAY_DEV_OUTBOX", "").strip():
        env["RELAY_DEV_OUTBOX"] = "on"
        settings = settings.replace(dev_outbox=True)
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(settings.var_dir / "metrics")
    _clear_metrics(Path(metrics_dir))
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    me = [sys.executable, "-m", "relay.cli"]
    from .supervise import Child, Supervisor, stop_on_signals

    # One level of supervision: the worker child runs Celery itself (--no-supervise); a child that
    # dies is started again with backoff while the other goes on (relay/supervise.py).
    supervisor = Supervisor([
        Child("web", me + ["web", "--port", str(settings.port), "--host", host], env),
        Child("worker", me + ["worker", "--beat", "--concurrency", "2", "--no-supervise"], env),
    ])
    stop_on_signals(supervisor.stopping)
    outbox = ("" if settings.twilio_configured else
              f"; SMS go to the dev outbox at {settings.public_base_url}/dev/outbox" + (
                  " (sign in as an admin to read it)" if settings.dev_outbox
                  else " (files only: RELAY_DEV_OUTBOX=on shows the page)"))
    click.echo(f"relay is up at {settings.public_base_url} (database {_safe_url(settings.database_url)}, "
               f"broker {_safe_url(settings.broker_url)}){outbox}. Ctrl-C stops it.")
    click.echo(f"Coordinator console: {settings.public_base_url}/console/ — `relay demo` seeds a network and prints "
               f"a sign-in; or set a member's password with `relay members password EMAIL`.")
    supervisor.run()


@main.command()
@click.option("--port", type=int, default=None, help="Port (default RELAY_PORT or 8000).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Use 0.0.0.0 inside a container.")
@click.option("--workers", type=int, default=WEB_WORKERS, show_default="cores + 1",
              help="gunicorn worker processes.")
@click.option("--threads", type=int, default=WEB_THREADS, show_default=True,
              help="Threads per worker (gunicorn's gthread worker; 1: the sync worker).")
def web(port: int | None, host: str, workers: int, threads: int) -> None:
    """Run the web receiver under gunicorn."""
    settings = _settings(port, serving=True)
    args = ["gunicorn", "--bind", f"{host}:{settings.port}", *gunicorn_options(workers, threads),
            "webhooks.app:create_app()"]
    env = dict(os.environ, RELAY_PORT=str(settings.port), RELAY_PUBLIC_BASE_URL=settings.public_base_url)
    # gunicorn >= 23 keeps a control socket in $XDG_RUNTIME_DIR; give each relay its own so two
    # instances on one host never remove each other's.
    run_dir = settings.var_dir / "run" / str(settings.port)
    run_dir.mkdir(parents=True, exist_ok=True)
    env["XDG_RUNTIME_DIR"] = str(run_dir)
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    os.execve(gunicorn if os.path.exists(gunicorn) else args[0], args, env)


@main.command()
@click.option("--concurrency", "-c", type=int, default=2, show_default=True)
@click.option("--beat", is_flag=True, help="Also run the beat scheduler (and so the sweeper) in this process "
                                           "(single-machine use, or exactly one worker of a deployment).")
@click.option("--queues", "-Q", default="inbound,outbound,bulk,maintenance", show_default=True,
              help="Queues to consume: inbound (webhooks, statuses), outbound (single sends: relayed replies), "
                   "bulk (broadcast batches), maintenance (sweeper, scheduled notices).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--metrics-port", type=int, default=None,
              help="Serve this worker host's Prometheus metrics (task timings) on this port.")
@click.option("--no-supervise", is_flag=True, hidden=True,
              help="Run Celery in this process instead of a restarted child (used by relay up and the supervisor).")
def worker(concurrency: int, beat: bool, queues: str, loglevel: str, metrics_port: int | None,
           no_supervise: bool) -> None:
    """Run a Celery worker (run as many as you like).

    The Celery worker runs as a child process that is started again, with backoff, whenever it exits
    (relay/supervise.py); this process also warns when no sweeper has run for two sweep periods."""
    settings = _settings(serving=True)
    # Task timings from every worker process land in one directory (set before prometheus loads).
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = settings.var_dir / "metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if metrics_port:
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(metrics_port, addr="0.0.0.0", registry=registry)
    if not no_supervise:
        _supervise_worker(settings, concurrency, beat, queues, loglevel)
        return
    from workers.app import create_celery

    app = create_celery(settings)
    argv = ["worker", f"--loglevel={loglevel}", "-Q", queues, "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "--hostname", f"relay-{os.getpid()}@%h"]
    if beat:
        argv.append("--beat")
    app.worker_main(argv)


def _supervise_worker(settings: Settings, concurrency: int, beat: bool, queues: str, loglevel: str) -> None:
    """Run the Celery worker as a child restarted whenever it exits, and watch for the sweeper."""
    from workers.app import SWEEP_EVERY_SECONDS

    from .db import make_engine, make_session_factory
    from .heartbeats import SweeperWatch
    from .supervise import Child, Supervisor, stop_on_signals

    child = [sys.executable, "-m", "relay.cli", "worker", "--no-supervise", "--concurrency", str(concurrency),
             "-Q", queues, "--loglevel", loglevel] + (["--beat"] if beat else [])
    supervisor = Supervisor([Child("celery worker", child, dict(os.environ))])
    stop_on_signals(supervisor.stopping)
    if not beat:
        click.echo("This worker runs no sweeper: run `relay beat` once per deployment (or one worker with --beat); "
                   "a warning follows if no sweep is recorded for two sweep periods.", err=True)
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0) \
        if settings.database_url.startswith("postgresql") else make_engine(settings.database_url)
    watch = SweeperWatch(make_session_factory(engine), SWEEP_EVERY_SECONDS)
    try:
        supervisor.run(on_tick=watch.tick)
    finally:
        engine.dispose()


@main.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the Celery beat scheduler (exactly one per deployment)."""
    from workers.app import create_celery

    app = create_celery(_settings(serving=True))
    app.start(["beat", f"--loglevel={loglevel}"])


# ---------------------------------------------------------------- database


@main.group()
def db() -> None:
    """Database migrations."""


def _upgrade(settings: Settings) -> None:
    from .migrate import upgrade

    upgrade(settings.database_url)


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every Alembic migration (safe to run again)."""
    settings = _settings()
    _upgrade(settings)
    click.echo(f"database {_safe_url(settings.database_url)} is up to date")


# ---------------------------------------------------------------- members and cases


@main.group()
def members() -> None:
    """Members and lists."""


@members.command("import")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--grant-roles", is_flag=True,
              help="Apply the roles column (make coordinators and admins). Without it a row that would change "
                   "anyone's roles is refused with its line number.")
def members_import(csv_file, grant_roles: bool) -> None:
    """Import members from CSV: name,phone,email,timezone,language,lists,roles.

    Whoever runs this has a shell on the server, but on a shared host that need not be an admin of the
    network: roles are granted only when asked for with --grant-roles (and the audit trail says so)."""
    from .db import transaction
    from .members import import_members

    services = _services(_settings())
    with transaction(services.sessions) as session:
        report = import_members(session, csv_file.read(), grant_roles=grant_roles, actor=cli_actor())
    for line, reason in report.errors:
        click.echo(f"line {line}: {reason}", err=True)
    if report.lists_created:
        click.echo(f"new lists: {', '.join(report.lists_created)}")
    click.echo(f"imported {report.created} new, updated {report.updated}, {len(report.errors)} rows with errors")
    if report.errors:
        sys.exit(1)


@members.command("password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def members_password(email: str, password_stdin: bool) -> None:
    """Set the console/library sign-in password of the member with EMAIL (prompts twice)."""
    from .accounts import PasswordError, check_password_rules, set_password
    from .db import transaction
    from .members import find_member

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        check_password_rules(password)
    except PasswordError as exc:
        raise click.ClickException(str(exc)) from None
    services = _services(_settings())
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
    """Choose how WHO (id, phone or email) takes case discussion: sms, email, sms;email or none."""
    from .db import transaction
    from .members import RowError, find_member, set_channels

    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            member = find_member(session, who)
            if member is None:
                raise click.ClickException(f"no member {who!r}")
            set_channels(member, [] if channels.strip().lower() == "none" else channels.split(";"))
            chosen = ", ".join(member.channels) or "none"
    except RowError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{who}: {chosen}")


@members.command("bounces")
@click.argument("who", required=False)
@click.option("--reset", is_flag=True, help="Undo a bounce suspension: email starts again.")
def members_bounces(who: str | None, reset: bool) -> None:
    """Show members whose email bounced (or WHO's bounces); --reset lifts a suspension."""
    from sqlalchemy import select

    from .bounce_handling import reset_bounces
    from .db import transaction
    from .members import find_member
    from .models import EmailBounce, Member

    services = _services(_settings())
    with transaction(services.sessions) as session:
        if who:
            member = find_member(session, who)
            if member is None:
                raise click.ClickException(f"no member {who!r}")
            if reset:
                reset_bounces(session, member, source="cli")
                click.echo(f"{member.email}: bounces reset, email resumed")
                return
            for b in session.scalars(select(EmailBounce).where(EmailBounce.member_id == member.id)
                                     .order_by(EmailBounce.id)):
                click.echo(f"{b.created_at:%Y-%m-%d %H:%M} {b.kind:9} {b.status:7} {b.diagnostic[:80]}")
            return
        for m in session.scalars(select(Member).where(Member.email_hard_bounces > 0).order_by(Member.id)):
            state = "suspended" if m.email_suspended_at else "receiving"
            click.echo(f"{m.id:6} {m.email:40} {m.email_hard_bounces} hard bounces, {state}")


@main.group()
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
def cases_add(title: str, chief_complaint: str, symptoms: str, exposure: str, findings: str, draft: bool,
              members_only: bool) -> None:
    """Create a case and print its number (open and public unless --draft / --members-only)."""
    from .cases import create_case
    from .db import transaction

    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            case = create_case(session, title, chief_complaint, symptoms, exposure, findings, draft=draft,
                               visibility="members" if members_only else "public")
            code = case.code
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(code)


@cases.command("close")
@click.argument("case_code")
@click.option("--reopen", is_flag=True, help="Open a closed case again.")
def cases_close(case_code: str, reopen: bool) -> None:
    """Close a case to new posts (members who reply are told so), or reopen it."""
    from .cases import CaseNotFound, get_case
    from .db import transaction

    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            case = get_case(session, case_code)
            case.status = "open" if reopen else "closed"
            code, status = case.code, case.status
    except CaseNotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{code} is {status}")


@cases.command("publish")
@click.argument("case_code")
def cases_publish(case_code: str) -> None:
    """Publish a draft case: it opens and enters the library."""
    from .cases import CaseNotFound, CaseStateError, publish_case
    from .db import transaction

    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            code = publish_case(session, case_code, actor=cli_actor()).code
    except (CaseNotFound, CaseStateError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{code} is published")


@cases.command("visibility")
@click.argument("case_code")
@click.argument("visibility", type=click.Choice(["members", "public"], case_sensitive=False))
def cases_visibility(case_code: str, visibility: str) -> None:
    """Who can read CASE_CODE in the library: members only, or the public."""
    from .cases import CaseNotFound, set_visibility
    from .db import transaction

    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            case = set_visibility(session, case_code, visibility, actor=cli_actor())
            code, chosen = case.code, case.visibility
    except CaseNotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{code} is {'members-only' if chosen == 'members' else 'public'}")


@cases.command("drafts")
def cases_drafts() -> None:
    """List the draft cases (intake mail lands here) waiting for `relay cases publish`."""
    from sqlalchemy import func, select

    from .models import Case, CaseImage

    services = _services(_settings())
    with services.sessions() as session:
        rows = session.execute(
            select(Case, func.count(CaseImage.id)).outerjoin(
                CaseImage, (CaseImage.case_id == Case.id) & (CaseImage.status == "stored"))
            .where(Case.status == "draft").group_by(Case.id).order_by(Case.number)).all()
        for case, images in rows:
            click.echo(f"{case.code}\t{case.created_at:%Y-%m-%d %H:%M}\t{images} image(s)\t{case.title}")
    if not rows:
        click.echo("no draft cases")


@main.group()
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

    from .models import Member

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
def guidelines_add(slug: str, title: str, body: str | None, body_file, author_email: str | None) -> None:
    """Create guideline SLUG (its address: /library/guidelines/SLUG) with version 1."""
    from .db import transaction
    from .guidelines import GuidelineError, create_guideline, guideline_url

    text = _guideline_body(body, body_file)
    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            guideline = create_guideline(session, slug, title, text, author=_author(session, author_email))
            slug = guideline.slug
    except GuidelineError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{slug} v1 {guideline_url(services.settings, slug)}")


@guidelines.command("update")
@click.argument("slug")
@click.option("--changes", required=True, help="What changed since the previous version (required).")
@click.option("--body", help="The whole new text (or --body-file).")
@click.option("--body-file", type=click.File("r", encoding="utf-8"), help="Read the text from a file (- for stdin).")
@click.option("--title", help="A new title.")
@click.option("--author", "author_email", help="The author's email (a member).")
def guidelines_update(slug: str, changes: str, body: str | None, body_file, title: str | None,
                      author_email: str | None) -> None:
    """Publish the next version of guideline SLUG, saying what changed."""
    from .db import transaction
    from .guidelines import GuidelineError, GuidelineNotFound, add_version, guideline_url

    text = _guideline_body(body, body_file)
    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            version = add_version(session, slug, text, changes, title=title, author=_author(session, author_email))
            number, slug = version.number, version.guideline.slug
    except (GuidelineError, GuidelineNotFound) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{slug} v{number} {guideline_url(services.settings, slug, number)}")


@guidelines.command("list")
def guidelines_list() -> None:
    """Every guideline: slug, current version, when, title."""
    from .guidelines import current_version, list_guidelines

    services = _services(_settings())
    with services.sessions() as session:
        found = list_guidelines(session)
        for guideline in found:
            latest = current_version(guideline)
            click.echo(f"{guideline.slug}\tv{latest.number}\t{latest.published_at:%Y-%m-%d}\t{guideline.title}")
    if not found:
        click.echo("no guidelines")


@main.group()
def notice() -> None:
    """Broadcast notices."""


@notice.command("new-case")
@click.argument("case_code")
@click.option("--list", "lists", multiple=True, required=True, help="Member list (repeat for several).")
def notice_new_case(case_code: str, lists: tuple[str, ...]) -> None:
    """Send the new-case SMS notice for CASE_CODE (e.g. C123) to the given lists."""
    from .notices import new_case_notice

    services = _services(_settings())
    try:
        result = new_case_notice(services, case_code, list(lists), actor=cli_actor())
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"notice {result.notice_id} for {case_code.upper()}: {result.recipients} members, "
               f"{result.sms} SMS and {result.emails} emails queued")


def _notice_errors():
    from .cases import CaseNotFound
    from .notices import NoticeError, NoticeNotFound, UnknownList

    return (CaseNotFound, NoticeError, NoticeNotFound, UnknownList)


def _queued(result) -> str:
    return f"{result.recipients} members, {result.sms} SMS and {result.emails} emails queued"


@notice.command("create")
@click.option("--kind", required=True, help="new_case, guideline, announcement or correction.")
@click.option("--title", default="", help="One line (a new-case notice defaults to the case title).")
@click.option("--body", default="", help="The text (a correction's text).")
@click.option("--list", "lists", multiple=True, help="Target list (repeat for several; not for a correction).")
@click.option("--case", "case_code", default=None, help="The case it is about, e.g. C12 (a library link otherwise).")
@click.option("--severity", default=None, help="routine (default) or urgent.")
@click.option("--channels", default=None, help="sms, email or sms;email (default both).")
@click.option("--expires", default=None, help="Not sent after this: a duration (6h, 2d) or an ISO time.")
@click.option("--corrects", type=int, default=None, help="The notice a correction corrects.")
def notice_create(kind, title, body, lists, case_code, severity, channels, expires, corrects) -> None:
    """Create a draft notice and print its id (preview it, then send it)."""
    from .db import transaction
    from .notices import create_notice, parse_expiry

    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            created = create_notice(session, kind=kind, title=title, body=body, lists=lists,
                                    case_code=case_code, severity=severity, channels=channels,
                                    expires_at=parse_expiry(expires) if expires else None,
                                    corrects_notice_id=corrects)
            notice_id = created.id
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(notice_id)


@notice.command("preview")
@click.argument("notice_id", type=int)
def notice_preview(notice_id: int) -> None:
    """Show who NOTICE_ID would reach, its SMS texts with segments and cost, and its emails."""
    from .preview import preview_notice

    services = _services(_settings())
    try:
        with services.sessions() as session:
            preview = preview_notice(session, services.settings, notice_id)
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("\n".join(_preview_lines(preview)))


def _money(value) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def _preview_lines(p) -> list[str]:
    lines = [f"notice {p.notice_id} ({p.kind}, {p.severity}, {p.status}): {p.title}", f"link: {p.link}",
             f"recipients: {p.recipients} members; {p.channels['sms']} SMS, {p.channels['email']} emails"]
    if p.held_back or p.waiting:  # issue 5: the consent ladder and quiet hours
        lines.append(f"held back by preferences: {p.held_back}; waiting for quiet hours to end: {p.waiting}")
    if p.countries:
        lines.append("SMS by country:")
        lines += [f"  {c.country or '??'}  {c.recipients} recipients, {c.segments} segments at "
                  f"{_money(c.price_per_segment_usd)} = {_money(c.cost_usd)}" for c in p.countries]
        lines.append(f"estimated SMS cost: {_money(p.estimated_cost_usd)}")
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
def notice_send(notice_id: int, at: str | None) -> None:
    """Send NOTICE_ID now, or schedule it with --at (sent by the beat task relay.send_scheduled)."""
    from .db import transaction
    from .notices import parse_time, schedule_notice, send_notice

    services = _services(_settings())
    try:
        if at:
            with transaction(services.sessions) as session:
                when = schedule_notice(session, notice_id, parse_time(at), actor=cli_actor()).scheduled_for
            click.echo(f"notice {notice_id} scheduled for {when.isoformat()}")
            return
        result = send_notice(services, notice_id, actor=cli_actor())
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"notice {notice_id} sent: {_queued(result)}")


@notice.command("cancel")
@click.argument("notice_id", type=int)
def notice_cancel(notice_id: int) -> None:
    """Withdraw NOTICE_ID while it is a draft or scheduled (a sent notice needs a correction)."""
    from .db import transaction
    from .notices import cancel_notice

    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            cancel_notice(session, notice_id, actor=cli_actor())
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"notice {notice_id} cancelled")


@notice.command("correct")
@click.argument("notice_id", type=int)
@click.option("--text", required=True, help="The correction, sent to exactly those who received NOTICE_ID.")
def notice_correct(notice_id: int, text: str) -> None:
    """Send a correction of NOTICE_ID to its recipients, on the same channels."""
    from .corrections import correct_notice

    services = _services(_settings())
    try:
        result = correct_notice(services, notice_id, text, actor=cli_actor())
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"correction {result.notice_id} of notice {notice_id}: {_queued(result)}")


@notice.command("status")
@click.argument("notice_id", type=int)
def notice_status(notice_id: int) -> None:
    """Print NOTICE_ID's state and its deliveries counted by channel and status."""
    from .notice_status import live_counts, rate_limited_until
    from .notices import delivery_counts, get_notice

    services = _services(_settings())
    try:
        with services.sessions() as session:
            found = get_notice(session, notice_id)
            counts = delivery_counts(session, found)
            live = live_counts(session, found) if counts else {}
            last_due = rate_limited_until(session, found) if live.get("rate_limited") else None
    except _notice_errors() as exc:
        raise click.ClickException(str(exc)) from None
    when = {"sent": found.sent_at, "scheduled": found.scheduled_for}.get(found.status)
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


@notice.command("resume")
@click.argument("notice_id", type=int)
def notice_resume(notice_id: int) -> None:
    """Resume NOTICE_ID after an error burst paused it: its held deliveries go back in the queue."""
    from .bursts import NoticeNotPaused, resume

    services = _services(_settings())
    try:
        count = resume(services, notice_id, actor=cli_actor())
    except NoticeNotPaused as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"notice {notice_id} resumed: {count} deliveries back in the queue")


@main.command("audit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--action", default=None, help="only this action, e.g. notice.send")
def audit_log(limit: int, action: str | None) -> None:
    """Print the newest audit events (broadcasts, publications, holds, opt-out changes)."""
    from .audit import recent

    services = _services(_settings())
    with services.sessions() as session:
        for event in recent(session, limit, action):
            detail = " ".join(f"{k}={v}" for k, v in sorted(event.detail.items()))
            click.echo(f"{event.created_at.isoformat(timespec='seconds')} {event.action} {event.subject} "
                       f"by {event.actor} via {event.source}{' ' + detail if detail else ''}")


# ---------------------------------------------------------------- inbound events


@main.group()
def events() -> None:
    """Stored webhooks whose processing failed: list them, run one again."""


@events.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000))
def events_list(limit: int) -> None:
    """Set-aside and failing inbound events: id, kind, state, attempts, age, last error."""
    from .set_aside import troubled

    services = _services(_settings())
    now = _now()
    with services.sessions() as session:
        rows = troubled(session, limit)
    for row in rows:
        age = _age((now - row.received_at).total_seconds())
        error = " ".join(row.last_error.split())[:120] or "-"
        click.echo(f"{row.id:8} {row.kind:6} {row.state:9} attempts {row.attempts:2}  {age:>5} old  {error}")
    if not rows:
        click.echo("no failed or set-aside events")


@events.command("retry")
@click.argument("event_id", type=int)
def events_retry(event_id: int) -> None:
    """Run EVENT_ID again: its attempts start from zero and it is queued (audited as inbound.retry)."""
    from .set_aside import NotRetryable, retry

    services = _services(_settings())
    try:
        retry(services, event_id, actor=cli_actor())
    except NotRetryable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"inbound event {event_id} queued again (attempts reset); `relay events list` shows it if it fails")


def _now():
    from .models import utcnow

    return utcnow()


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(0, seconds):.0f}s"


# ---------------------------------------------------------------- API tokens


@main.group()
def tokens() -> None:
    """Per-member API tokens (bearer tokens for /api/v1/)."""


@tokens.command("create")
@click.option("--member", "who", required=True, help="The member (email, phone or id) the token acts as.")
@click.option("--name", default="", help="What the token is for, e.g. 'nightly export'.")
def tokens_create(who: str, name: str) -> None:
    """Make a token carrying the member's roles and print it (once: only its hash is kept)."""
    from .api_tokens import TokenError, create_token
    from .db import transaction
    from .members import find_member

    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            member = find_member(session, who)
            if member is None:
                raise click.ClickException(f"no member {who!r}")
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
    from .api_tokens import list_tokens
    from .members import find_member

    services = _services(_settings())
    with services.sessions() as session:
        member = None
        if who:
            member = find_member(session, who)
            if member is None:
                raise click.ClickException(f"no member {who!r}")
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
    from .api_tokens import TokenError, revoke_token
    from .db import transaction

    services = _services(_settings())
    try:
        with transaction(services.sessions) as session:
            row = revoke_token(session, token_id, actor=cli_actor())
            revoked = row.revoked_at.isoformat(timespec="seconds")
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"token {token_id} revoked at {revoked}")


# ---------------------------------------------------------------- demo

DEMO_CSV = """name,phone,email,timezone,language,lists,roles
Kim Jiwon,+821012345601,jiwon.kim@example.org,Asia/Seoul,ko,tft-demo,admin;coordinator;member
Lee Minho,+821012345602,minho.lee@example.org,Asia/Seoul,ko,tft-demo,member
Park Seoyeon,+821012345603,seoyeon.park@example.org,Asia/Seoul,en,tft-demo,member
Alice Moreau,+33612345604,alice.moreau@example.org,Europe/Paris,en,tft-demo,member
Ben Carter,+12025550105,ben.carter@example.org,America/New_York,en,tft-demo,member
"""
DEMO_COORDINATOR = "jiwon.kim@example.org"
DEMO_TITLE = "54-year-old with fever and bilateral ground-glass opacities"
DEMO_INBOUND_NUMBER = "+15005550006"


@main.command()
def demo() -> None:
    """Seed a small network (a list, 5 members, one case), send its notice, and print a curl that
    plays a member's SMS reply."""
    from sqlalchemy import select

    from .cases import create_case
    from .db import transaction
    from .members import import_members
    from .models import Case
    from .notices import new_case_notice
    from .providers.twilio_sms import sign

    settings = _settings()
    _upgrade(settings)
    services = _services(settings)
    with transaction(services.sessions) as session:
        report = import_members(session, DEMO_CSV, grant_roles=True, actor=cli_actor())
        case = session.scalar(select(Case).where(Case.title == DEMO_TITLE))
        is_new = case is None
        if is_new:
            case = create_case(session, DEMO_TITLE, chief_complaint="Fever and dry cough for 5 days",
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
        "AccountSid": settings.twilio_account_sid or "AC" + "0" * 32,
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
    click.echo(f"Then open {settings.public_base_url}/dev/outbox (signed in as below) to see the relayed texts, "
               f"and {settings.case_url(code)} for the discussion.")
    password = _demo_coordinator_password(services)
    click.echo(f"\nSign in to the coordinator console and the dev outbox at {settings.public_base_url}/signin as "
               f"{DEMO_COORDINATOR} (a coordinator and admin) with the password {password}\n"
               "(a new one each time `relay demo` runs).")


def _demo_coordinator_password(services) -> str:
    """A fresh random password for the demo coordinator, so a new user can try the console."""
    from .accounts import set_password
    from .db import transaction
    from .members import find_member

    password = secrets.token_urlsafe(12)
    with transaction(services.sessions) as session:
        set_password(session, find_member(session, DEMO_COORDINATOR), password)
    return password


def _safe_url(url: str) -> str:
    """A URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _clear_metrics(path: Path) -> None:
    """Start with an empty multiprocess metrics directory (only prometheus' own files are removed)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
