"""What every command shares: settings, services, the audit actor, small formatting helpers."""
from __future__ import annotations

import os
from pathlib import Path

import click

from relay.infra.settings import Settings, SettingsError


# gunicorn (`relay web --server gunicorn`): a webhook spends part of its time waiting on PostgreSQL's commit
# and on Redis: one worker process more than there are cores keeps every core busy meanwhile. Measured on 2 cores
# (docs/scale.md): 3 sync workers take ~25% more webhooks a second than 2, and more than 3, or
# threads (the GIL), add nothing.
def cores() -> int:
    """Cores this process may run on (a container's cpuset, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


WEB_WORKERS = cores() + 1


WEB_THREADS = 1

# granian (`relay web`'s default server since issue 18 item 5): its HTTP is Rust, and one process's blocking
# threads serve every connection from one queue. Measured on 2 cores (docs/scale.md, "The web server"): one
# process with 4 threads took 1,500-1,800 signed webhooks a second at a p99 of 27-37 ms, where gunicorn's 3
# sync workers took ~1,000 at ~50 ms; 2 or 3 processes took as many, but each queued its own connections
# (p99 53-70 ms).
GRANIAN_WORKERS = max(1, cores() // 2)
GRANIAN_THREADS = 4
WEB_SERVERS = ("gunicorn", "granian")
DEFAULT_WEB_SERVER = "granian"


def web_defaults(server: str) -> tuple[int, int]:
    """(worker processes, threads per worker) of `relay web --server S` when not given."""
    return (GRANIAN_WORKERS, GRANIAN_THREADS) if server == "granian" else (WEB_WORKERS, WEB_THREADS)


def granian_options(workers: int, threads: int) -> list[str]:
    """The granian settings of `relay web --server granian` (the app comes from webhooks.serving.granian_app,
    which writes relay's redacted access log: granian's own would write tokens in paths, so it stays off)."""
    return ["--interface", "wsgi", "--http", "1", "--no-ws", "--workers", str(workers),
            "--blocking-threads", str(threads), "--workers-kill-timeout", "10", "--respawn-failed-workers"]


def gunicorn_options(workers: int, threads: int) -> list[str]:
    """The gunicorn settings of `relay web`; the ingest benchmark runs its baseline with the same."""
    worker_class = ["--worker-class", "gthread", "--threads", str(threads)] if threads > 1 else []
    return ["--workers", str(workers), *worker_class, "--access-logfile", "-", "--graceful-timeout", "10",
            "--timeout", "30", "--logger-class", "relay.infra.access_log.RedactingLogger",  # no tokens in the access log
            "--config", "python:webhooks.serving"]  # the workers' hooks (gc.freeze once the app is loaded)


def load_settings(port: int | None = None, serving: bool = False) -> Settings:
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
    from relay.infra.audit import cli_actor as actor

    return actor()


def cli_services(settings: Settings):
    from relay.services import build_services

    return build_services(settings)


def upgrade_database(settings: Settings, quiet: bool = False) -> None:
    """Apply the migrations; quiet: without alembic's INFO lines (`relay demo` prints only its own output)."""
    import logging

    logger = logging.getLogger("alembic")
    level = logger.level
    if quiet:  # before alembic is imported: it logs its plugins' setup at import
        logger.setLevel(logging.WARNING)
    try:
        from relay.infra.migrate import upgrade

        upgrade(settings.database_url)
    finally:
        logger.setLevel(level)


def utc_now():
    from relay.model.tables import utcnow

    return utcnow()


def age_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(0, seconds):.0f}s"


def safe_url(url: str) -> str:
    """A URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def clear_metrics(path: Path) -> None:
    """Start with an empty multiprocess metrics directory (only prometheus' own files are removed)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def member_or_fail(session, who: str):
    """The member named by WHO (id, phone or email), or a ClickException saying there is none."""
    from relay.members.directory import find_member

    member = find_member(session, who)
    if member is None:
        raise click.ClickException(f"no member {who!r}")
    return member


def counted(number: int, singular: str, plural: str | None = None) -> str:
    """'1 member', '2 members' (plural: the word when it is not singular + 's')."""
    return f"{number} {singular if number == 1 else (plural or singular + 's')}"
