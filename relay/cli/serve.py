"""Running relay: `relay up` (everything, supervised), `relay web`, `relay worker`, `relay beat`."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from relay.cli.common import (
    DEFAULT_WEB_SERVER,
    WEB_SERVERS,
    clear_metrics,
    granian_options,
    gunicorn_options,
    load_settings,
    safe_url,
    upgrade_database,
    web_defaults,
)
from relay.infra.settings import Settings


def up_banner(settings: Settings) -> str:
    """What `relay up` prints: where it runs, and where SMS and email go without a provider (the dev outbox)."""
    to_outbox = [what for what, configured in (("SMS", settings.twilio_configured),
                                               ("email", settings.smtp_configured)) if not configured]
    outbox = ("" if not to_outbox else
              f"; {' and '.join(to_outbox)} go to the dev outbox at {settings.public_base_url}/dev/outbox" + (
                  " (sign in as an admin to read it)" if settings.dev_outbox
                  else " (files only: RELAY_DEV_OUTBOX=on shows the page)"))
    return (f"relay is up at {settings.public_base_url} (database {safe_url(settings.database_url)}, "
            f"broker {safe_url(settings.broker_url)}){outbox}. Ctrl-C stops it.")


@click.command()
@click.option("--port", type=int, default=None, help="Port to listen on (default RELAY_PORT or 8000).")
@click.option("--host", default="127.0.0.1", show_default=True)
def up(port: int | None, host: str) -> None:
    """Migrate, then run the web server and a Celery worker (with beat) side by side."""
    settings = load_settings(port, serving=True)
    upgrade_database(settings)
    env = dict(os.environ, RELAY_PORT=str(settings.port), RELAY_PUBLIC_BASE_URL=settings.public_base_url)
    # The embedded mode is a developer's or a trial's machine: show the dev outbox there (to an admin)
    # unless RELAY_DEV_OUTBOX says otherwise; a deployment turns it on only by asking.
    if settings.embedded_broker and not settings.production and not os.environ.get("RELAY_DEV_OUTBOX", "").strip():
        env["RELAY_DEV_OUTBOX"] = "on"
        settings = settings.replace(dev_outbox=True)
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(settings.var_dir / "metrics")
    clear_metrics(Path(metrics_dir))
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    me = [sys.executable, "-m", "relay.cli"]
    from relay.infra.supervise import Child, Supervisor, stop_on_signals

    # One level of supervision: the worker child runs Celery itself (--no-supervise); a child that
    # dies is started again with backoff while the other goes on (relay/infra/supervise.py).
    supervisor = Supervisor([
        Child("web", me + ["web", "--port", str(settings.port), "--host", host], env),
        Child("worker", me + ["worker", "--beat", "--concurrency", "2", "--no-supervise"], env),
    ])
    stop_on_signals(supervisor.stopping)
    click.echo(up_banner(settings))
    click.echo(f"Coordinator console: {settings.public_base_url}/console/ — `relay demo` seeds a network and prints "
               f"a sign-in; or set a member's password with `relay members password EMAIL`.")
    supervisor.run()


@click.command()
@click.option("--port", type=int, default=None, help="Port (default RELAY_PORT or 8000).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Use 0.0.0.0 inside a container.")
@click.option("--server", type=click.Choice(WEB_SERVERS), default=None,
              help="The HTTP server (default RELAY_WEB_SERVER, else granian). gunicorn took ~0.6 of "
                   "granian's webhooks a second here, at a higher p99 (docs/scale.md).")
@click.option("--workers", type=int, default=None,
              help="Worker processes (default: gunicorn cores + 1, granian cores / 2, at least 1).")
@click.option("--threads", type=int, default=None,
              help="Threads per worker (default: gunicorn 1, its sync worker; more runs its gthread worker; "
                   "granian 4 blocking threads).")
def web(port: int | None, host: str, server: str | None, workers: int | None, threads: int | None) -> None:
    """Run the web receiver under gunicorn or granian."""
    settings = load_settings(port, serving=True)
    server = server or web_server()
    default_workers, default_threads = web_defaults(server)
    workers, threads = workers or default_workers, threads or default_threads
    env = dict(os.environ, RELAY_PORT=str(settings.port), RELAY_PUBLIC_BASE_URL=settings.public_base_url)
    if server == "granian":
        args = ["granian", "--host", host, "--port", str(settings.port),
                *granian_options(workers, threads),
                "--factory", "webhooks.serving:granian_app"]
    else:
        args = ["gunicorn", "--bind", f"{host}:{settings.port}",
                *gunicorn_options(workers, threads), "webhooks.app:create_app()"]
        # gunicorn >= 23 keeps a control socket in $XDG_RUNTIME_DIR; give each relay its own so two
        # instances on one host never remove each other's.
        run_dir = settings.var_dir / "run" / str(settings.port)
        run_dir.mkdir(parents=True, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(run_dir)
    program = os.path.join(os.path.dirname(sys.executable), args[0])
    os.execve(program if os.path.exists(program) else args[0], args, env)


def web_server() -> str:
    """RELAY_WEB_SERVER, checked: a typo must not silently pick the other server."""
    chosen = os.environ.get("RELAY_WEB_SERVER", "").strip().lower() or DEFAULT_WEB_SERVER
    if chosen not in WEB_SERVERS:
        raise click.ClickException(f"RELAY_WEB_SERVER={chosen!r}: choose {' or '.join(WEB_SERVERS)}")
    return chosen


@click.command()
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
    (relay/infra/supervise.py); this process also warns when no sweeper has run for two sweep periods."""
    settings = load_settings(serving=True)
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
    from relay.infra.db import make_engine, make_session_factory
    from relay.infra.heartbeats import SweeperWatch
    from relay.infra.supervise import Child, Supervisor, stop_on_signals

    child = [sys.executable, "-m", "relay.cli", "worker", "--no-supervise", "--concurrency", str(concurrency),
             "-Q", queues, "--loglevel", loglevel] + (["--beat"] if beat else [])
    supervisor = Supervisor([Child("celery worker", child, dict(os.environ))])
    stop_on_signals(supervisor.stopping)
    if not beat:
        click.echo("This worker runs no sweeper: run `relay beat` once per deployment (or one worker with --beat); "
                   "a warning follows if no sweep is recorded for two sweep periods.", err=True)
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0) \
        if settings.database_url.startswith("postgresql") else make_engine(settings.database_url)
    watch = SweeperWatch(make_session_factory(engine), settings.sweep_every.total_seconds())
    try:
        supervisor.run(on_tick=watch.tick)
    finally:
        engine.dispose()


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the Celery beat scheduler (exactly one per deployment)."""
    from workers.app import create_celery

    app = create_celery(load_settings(serving=True))
    app.start(["beat", f"--loglevel={loglevel}"])
